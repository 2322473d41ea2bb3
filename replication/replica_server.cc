// The replica server: a thin gRPC layer (callback API) over ReplicaStore. Each call is
// authenticated from its headers before its request is read, runs one validated store call inline
// (a small synchronous RocksDB write or read) and finishes. A plaintext server's connections come
// through a ConnectionGate, which caps them.
#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <grpcpp/generic/async_generic_service.h>
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <exception>
#include <filesystem>
#include <functional>
#include <map>
#include <mutex>
#include <system_error>
#include <utility>

#include "auth.h"
#include "connection_gate.h"
#include "dcpkv/core/names.h"
#include "dcpkv/replication/internal/grpc_status.h"
#include "dcpkv/replication/internal/record_hash.h"
#include "dcpkv/replication/internal/replica_store.h"
#include "dcpkv/replication/replica.h"
#include "pem_files.h"
#include "replication.grpc.pb.h"

namespace dcpkv::replication {
namespace {

namespace v1 = ::dcpkv::replication::v1;

// Smallest max_message_bytes accepted: room for a small manifest.
constexpr size_t kMinMaxMessageBytes = size_t{4} << 10;

std::string_view View(const grpc::string_ref& s) { return std::string_view(s.data(), s.size()); }

// Runs a call's work: an exception it throws (std::bad_alloc, ...) fails the call, not the server.
Status Guarded(const std::function<Status()>& body) {
  try {
    return body();
  } catch (const std::exception& e) {
    return InternalError(std::string("replica: ") + e.what());
  }
}

class ReplicaService;

// One PutStream call: the token is checked before the first read, the first piece's names and
// announced size before the record is held (the size against the record limit and the bytes
// every stream holds at once), and then the pieces are appended and the record stored.
class PutStreamReactor final : public grpc::ServerReadReactor<v1::PutPiece> {
 public:
  PutStreamReactor(ReplicaService* service, grpc::CallbackServerContext* context);
  void OnReadDone(bool ok) override;
  void OnDone() override;

 private:
  // Validates the first piece and reserves its record's bytes.
  Status Begin();
  // Finishes the call with `s`; no read is pending.
  void End(const Status& s);

  ReplicaService* const service_;
  v1::PutPiece piece_;
  bool begun_ = false;
  std::string ns_, checkpoint_id_, hash_;
  uint64_t announced_ = 0;
  uint64_t reserved_ = 0;
  std::string record_;
};

using gen = v1::ManifestReplica;

// The unary methods are left to the generic service below (ReplicaService::CreateReactor), whose
// calls gRPC hands over before reading their request: a typed unary method would have its request
// read whole first, before the token could be checked. PutStream keeps its typed handler (a
// client-streaming call is not read ahead either).
using ServiceBase =
    gen::WithGenericMethod_Put<gen::WithGenericMethod_Get<gen::WithGenericMethod_List<
        gen::WithGenericMethod_Delete<gen::WithCallbackMethod_PutStream<gen::Service>>>>>;

// A unary method served through the generic service: parses the request, runs, serializes the
// response.
using UnaryMethod = std::function<Status(grpc::ByteBuffer* request, grpc::ByteBuffer* response)>;

template <typename Request, typename Response, typename Body>
UnaryMethod MakeUnary(std::string name, Body body) {
  return [name = std::move(name), body](grpc::ByteBuffer* in, grpc::ByteBuffer* out) -> Status {
    Request request;
    if (!grpc::SerializationTraits<Request>::Deserialize(in, &request).ok()) {
      return InvalidArgumentError(name + ": the request is not a valid " +
                                  Request::descriptor()->name());
    }
    Response response;
    DCPKV_RETURN_IF_ERROR(body(request, &response));
    bool own_buffer = false;
    if (!grpc::SerializationTraits<Response>::Serialize(response, out, &own_buffer).ok()) {
      return InternalError(name + ": the response cannot be serialized");
    }
    return Status::Ok();
  };
}

class ReplicaService final : public ServiceBase, public grpc::CallbackGenericService {
 public:
  ReplicaService(ReplicaStore* store, const std::string& token, const ReplicaServerLimits& limits)
      : store_(store), authorization_(token.empty() ? "" : BearerHeader(token)), limits_(limits) {
    const std::string prefix = std::string("/") + gen::service_full_name() + "/";
    unary_[prefix + "Put"] = MakeUnary<v1::PutRequest, v1::PutResponse>(
        "Put", [this](const v1::PutRequest& r, v1::PutResponse*) {
          return store_->Put(r.namespace_(), r.checkpoint_id(), r.record(), r.record_xxh3_128());
        });
    unary_[prefix + "Get"] = MakeUnary<v1::GetRequest, v1::GetResponse>(
        "Get", [this](const v1::GetRequest& r, v1::GetResponse* response) -> Status {
          DCPKV_ASSIGN_OR_RETURN(std::string record,
                                 store_->Get(r.namespace_(), r.checkpoint_id()));
          response->set_record_xxh3_128(RecordHashHex(record));
          response->set_record(std::move(record));
          return Status::Ok();
        });
    unary_[prefix + "List"] = MakeUnary<v1::ListRequest, v1::ListResponse>(
        "List", [this](const v1::ListRequest& r, v1::ListResponse* response) -> Status {
          DCPKV_ASSIGN_OR_RETURN(std::vector<std::string> ids, store_->List(r.namespace_()));
          for (std::string& id : ids) response->add_checkpoint_ids(std::move(id));
          return Status::Ok();
        });
    unary_[prefix + "Delete"] = MakeUnary<v1::DeleteRequest, v1::DeleteResponse>(
        "Delete", [this](const v1::DeleteRequest& r, v1::DeleteResponse*) {
          return store_->Delete(r.namespace_(), r.checkpoint_id());
        });
  }

  grpc::ServerReadReactor<v1::PutPiece>* PutStream(grpc::CallbackServerContext* context,
                                                   v1::PutResponse*) override {
    return new PutStreamReactor(this, context);
  }

  // Every call that no typed handler serves: the unary methods, and names the replica does not
  // know (UNIMPLEMENTED).
  grpc::ServerGenericBidiReactor* CreateReactor(
      grpc::GenericCallbackServerContext* context) override;

  ReplicaStore* store() const { return store_; }
  const ReplicaServerLimits& limits() const { return limits_; }

  // The unary method called `path` ("/package.Service/Method"); null if there is none.
  const UnaryMethod* FindUnary(const std::string& path) const {
    auto it = unary_.find(path);
    return it == unary_.end() ? nullptr : &it->second;
  }

  // Takes `bytes` of the budget of every PutStream's records; false if they do not fit.
  bool Reserve(uint64_t bytes) {
    std::lock_guard<std::mutex> lock(budget_mu_);
    if (bytes > limits_.put_stream_bytes - held_) return false;
    held_ += bytes;
    return true;
  }
  void Release(uint64_t bytes) {
    std::lock_guard<std::mutex> lock(budget_mu_);
    held_ -= bytes;
  }

  Status Authenticate(const grpc::CallbackServerContext& context) const {
    if (authorization_.empty()) return Status::Ok();
    const auto& metadata = context.client_metadata();
    auto [begin, end] = metadata.equal_range(kAuthorizationKey);
    if (begin == end) return UnauthenticatedError("missing \"authorization\" metadata");
    if (std::next(begin) != end || !HeaderMatches(View(begin->second), authorization_)) {
      return UnauthenticatedError("wrong bearer token");
    }
    return Status::Ok();
  }

 private:
  ReplicaStore* const store_;
  const std::string authorization_;  // "Bearer <token>"; empty: no check
  const ReplicaServerLimits limits_;
  std::map<std::string, UnaryMethod> unary_;
  std::mutex budget_mu_;
  size_t held_ = 0;  // GUARDED_BY(budget_mu_): record bytes PutStreams hold
};

// One unary call: its method is looked up and the token checked from the call's headers, and
// only then is its request read.
class UnaryReactor final : public grpc::ServerGenericBidiReactor {
 public:
  UnaryReactor(ReplicaService* service, grpc::GenericCallbackServerContext* context) {
    method_ = service->FindUnary(context->method());
    if (method_ == nullptr) {
      std::string name = context->method().substr(0, 128);
      std::replace_if(
          name.begin(), name.end(), [](char c) { return c < 0x20 || c > 0x7e; }, '?');
      Finish(grpc::Status(grpc::StatusCode::UNIMPLEMENTED,
                          "the replica has no method \"" + name + "\""));
      return;
    }
    if (Status s = service->Authenticate(*context); !s.ok()) {
      Finish(ToGrpcStatus(s));
      return;
    }
    StartRead(&request_);
  }

  void OnReadDone(bool ok) override {
    if (!ok) {  // the client half-closed without a request, or the call failed (too large)
      Finish(ToGrpcStatus(InvalidArgumentError("the call ended before its request arrived")));
      return;
    }
    const Status s = Guarded([&] { return (*method_)(&request_, &response_); });
    request_.Clear();
    if (!s.ok()) {
      Finish(ToGrpcStatus(s));
      return;
    }
    StartWriteAndFinish(&response_, grpc::WriteOptions(), grpc::Status::OK);
  }

  void OnDone() override { delete this; }

 private:
  const UnaryMethod* method_ = nullptr;
  grpc::ByteBuffer request_;
  grpc::ByteBuffer response_;
};

grpc::ServerGenericBidiReactor* ReplicaService::CreateReactor(
    grpc::GenericCallbackServerContext* context) {
  return new UnaryReactor(this, context);
}

PutStreamReactor::PutStreamReactor(ReplicaService* service, grpc::CallbackServerContext* context)
    : service_(service) {
  // The headers came with the call: a stranger is refused before a byte of the body is read.
  Status s = service_->Authenticate(*context);
  if (!s.ok()) {
    End(s);
    return;
  }
  StartRead(&piece_);
}

Status PutStreamReactor::Begin() {
  ns_ = piece_.namespace_();
  checkpoint_id_ = piece_.checkpoint_id();
  hash_ = piece_.record_xxh3_128();
  announced_ = piece_.record_size();
  DCPKV_RETURN_IF_ERROR(ValidateNamespace(ns_));
  DCPKV_RETURN_IF_ERROR(ValidateCheckpointId(checkpoint_id_));
  const ReplicaServerLimits& limits = service_->limits();
  if (announced_ == 0) return InvalidArgumentError("PutStream: the record is empty");
  if (announced_ > limits.max_record_bytes) {
    return ResourceExhaustedError("PutStream: a record of " + std::to_string(announced_) +
                                  " bytes is over the replica's limit of " +
                                  std::to_string(limits.max_record_bytes));
  }
  if (!service_->Reserve(announced_)) {
    return ResourceExhaustedError(
        "PutStream: the replica holds as many records in transfer as "
        "it may (" +
        std::to_string(limits.put_stream_bytes) + " bytes); try again later");
  }
  reserved_ = announced_;
  record_.reserve(announced_);
  return Status::Ok();
}

void PutStreamReactor::OnReadDone(bool ok) {
  if (!ok) {  // the client has sent everything (or the call ended)
    Status s = !begun_ ? InvalidArgumentError("PutStream: no piece was sent")
               : record_.size() != announced_
                   ? InvalidArgumentError("PutStream: " + std::to_string(record_.size()) +
                                          " bytes arrived of the " + std::to_string(announced_) +
                                          " announced")
                   : Status::Ok();
    if (s.ok())
      s = Guarded([&] { return service_->store()->Put(ns_, checkpoint_id_, record_, hash_); });
    End(s);
    return;
  }
  if (!begun_) {
    begun_ = true;
    if (Status s = Begin(); !s.ok()) {
      End(s);
      return;
    }
  }
  if (piece_.data().size() > announced_ - record_.size()) {
    End(InvalidArgumentError("PutStream: more bytes arrived than the " +
                             std::to_string(announced_) + " announced"));
    return;
  }
  record_.append(piece_.data());
  piece_.Clear();
  StartRead(&piece_);
}

void PutStreamReactor::End(const Status& s) {
  record_.clear();
  record_.shrink_to_fit();
  Finish(ToGrpcStatus(s));
}

void PutStreamReactor::OnDone() {
  if (reserved_ > 0) service_->Release(reserved_);
  delete this;
}

// A listen address is "<host>:<port>", the port a number up to 65535 (0: the system picks).
Status ValidateListenAddress(const std::string& listen) {
  const size_t colon = listen.rfind(':');
  const std::string port = colon == std::string::npos ? "" : listen.substr(colon + 1);
  if (colon == 0 || port.empty() || port.size() > 5 ||
      port.find_first_not_of("0123456789") != std::string::npos || std::stoi(port) > 65535) {
    return InvalidArgumentError("replica listen address \"" + listen + "\" is not <host>:<port>");
  }
  return Status::Ok();
}

Status ValidateOptions(const ReplicaServerOptions& options) {
  if (options.root.empty()) return InvalidArgumentError("replica root is empty");
  DCPKV_RETURN_IF_ERROR(ValidateListenAddress(options.listen));
  if (options.tls_cert_file.empty() != options.tls_key_file.empty()) {
    return InvalidArgumentError("tls_cert_file and tls_key_file must be given together");
  }
  if (!options.client_ca_file.empty() && options.tls_cert_file.empty()) {
    return InvalidArgumentError("client_ca_file requires TLS (tls_cert_file and tls_key_file)");
  }
  if (options.max_message_bytes < kMinMaxMessageBytes ||
      options.max_message_bytes > static_cast<size_t>(INT_MAX)) {
    return InvalidArgumentError("max_message_bytes " + std::to_string(options.max_message_bytes) +
                                " is outside [" + std::to_string(kMinMaxMessageBytes) + ", " +
                                std::to_string(INT_MAX) + "]");
  }
  const ReplicaServerLimits& l = options.limits;
  for (const auto& [value, name] : {std::pair{l.handshake_timeout, "handshake_timeout"},
                                    std::pair{l.connection_idle, "connection_idle"},
                                    std::pair{l.keepalive_time, "keepalive_time"},
                                    std::pair{l.keepalive_timeout, "keepalive_timeout"}}) {
    if (value.count() <= 0 || value.count() > INT_MAX) {
      return InvalidArgumentError(std::string("replica limit ") + name + " " +
                                  std::to_string(value.count()) + " ms is outside [1, " +
                                  std::to_string(INT_MAX) + "] ms");
    }
  }
  if (l.max_connections < 1 || l.max_connections_per_address < 1) {
    return InvalidArgumentError(
        "replica limits max_connections and max_connections_per_address must be at least 1");
  }
  if (l.max_concurrent_streams < 1) {
    return InvalidArgumentError("replica limit max_concurrent_streams must be at least 1");
  }
  if (l.max_metadata_bytes < 1024) {
    return InvalidArgumentError("replica limit max_metadata_bytes must be at least 1024");
  }
  if (l.max_request_bytes < kMinMaxMessageBytes || l.max_request_bytes > INT_MAX) {
    return InvalidArgumentError(
        "replica limit max_request_bytes " + std::to_string(l.max_request_bytes) + " is outside [" +
        std::to_string(kMinMaxMessageBytes) + ", " + std::to_string(INT_MAX) + "]");
  }
  if (l.max_record_bytes == 0 || l.put_stream_bytes < l.max_record_bytes) {
    return InvalidArgumentError(
        "replica limits max_record_bytes and put_stream_bytes: max_record_bytes must be positive "
        "and at most put_stream_bytes");
  }
  if (l.memory_quota_bytes < (size_t{16} << 20)) {
    return InvalidArgumentError("replica limit memory_quota_bytes must be at least 16 MiB");
  }
  return ValidateToken(options.token, "replica token");
}

// The channel arguments and resource quota that carry ReplicaServerLimits.
void ApplyLimits(const ReplicaServerLimits& l, grpc::ServerBuilder& builder) {
  builder.AddChannelArgument(GRPC_ARG_SERVER_HANDSHAKE_TIMEOUT_MS,
                             static_cast<int>(l.handshake_timeout.count()));
  builder.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_IDLE_MS,
                             static_cast<int>(l.connection_idle.count()));
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS,
                             static_cast<int>(l.keepalive_time.count()));
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS,
                             static_cast<int>(l.keepalive_timeout.count()));
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  builder.AddChannelArgument(GRPC_ARG_MAX_CONCURRENT_STREAMS, l.max_concurrent_streams);
  builder.AddChannelArgument(GRPC_ARG_MAX_METADATA_SIZE, l.max_metadata_bytes);
  // Without BDP probing, flow-control windows stay at HTTP/2's 64 KiB per call instead of growing
  // with the link: what a refused call's client had sent before its refusal reached it is that
  // much at most (measured: strangers' refused 4 MiB Puts raised the peak RSS by 61-93 MiB with
  // probing, by 3 MiB without).
  builder.AddChannelArgument(GRPC_ARG_HTTP2_BDP_PROBE, 0);
  grpc::ResourceQuota quota("dcpkv-replica");
  quota.Resize(l.memory_quota_bytes);
  builder.SetResourceQuota(quota);
}

StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeCredentials(
    const ReplicaServerOptions& options) {
  if (options.tls_cert_file.empty()) return grpc::InsecureServerCredentials();
  DCPKV_ASSIGN_OR_RETURN(std::string cert, ReadPemFile(options.tls_cert_file, "tls_cert_file"));
  DCPKV_ASSIGN_OR_RETURN(std::string key, ReadPemFile(options.tls_key_file, "tls_key_file"));
  grpc::SslServerCredentialsOptions ssl(GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
  if (!options.client_ca_file.empty()) {
    DCPKV_ASSIGN_OR_RETURN(ssl.pem_root_certs,
                           ReadPemFile(options.client_ca_file, "client_ca_file"));
    ssl.client_certificate_request = GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY;
  }
  ssl.pem_key_cert_pairs.push_back({std::move(key), std::move(cert)});
  return grpc::SslServerCredentials(ssl);
}

// Creates the root and takes its lock file (<root>/LOCK), so that two replicas never serve one
// root. Returns the lock's file descriptor.
StatusOr<int> LockRoot(const std::string& root) {
  std::error_code ec;
  std::filesystem::create_directories(root, ec);
  if (ec) return IOError("creating replica root \"" + root + "\": " + ec.message());
  const std::string path = root + "/LOCK";
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return IOError("opening " + path + ": " + std::strerror(errno));
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    ::close(fd);
    if (err == EWOULDBLOCK) {
      return FailedPreconditionError("replica root \"" + root + "\" is served by another replica");
    }
    return IOError("locking " + path + ": " + std::strerror(err));
  }
  return fd;
}

}  // namespace

struct ReplicaServer::Impl {
  ~Impl() {
    if (root_lock_fd >= 0) ::close(root_lock_fd);
  }

  int root_lock_fd = -1;
  std::unique_ptr<ReplicaStore> store;
  std::unique_ptr<ConnectionGate> gate;  // plaintext servers: the accept loop
  std::unique_ptr<ReplicaService> service;
  std::unique_ptr<grpc::Server> server;
  int port = 0;
  std::mutex shutdown_mu;
  bool shut_down = false;  // GUARDED_BY(shutdown_mu)
};

StatusOr<std::unique_ptr<ReplicaServer>> ReplicaServer::Start(const ReplicaServerOptions& options) {
  DCPKV_RETURN_IF_ERROR(ValidateOptions(options));
  DCPKV_ASSIGN_OR_RETURN(std::shared_ptr<grpc::ServerCredentials> credentials,
                         MakeCredentials(options));
  auto impl = std::make_unique<Impl>();
  DCPKV_ASSIGN_OR_RETURN(impl->root_lock_fd, LockRoot(options.root));
  impl->store = std::make_unique<ReplicaStore>(options.root, options.diagnostics);
  impl->service =
      std::make_unique<ReplicaService>(impl->store.get(), options.token, options.limits);

  grpc::ServerBuilder builder;
  if (options.tls_cert_file.empty()) {
    // Plaintext: the gate listens, caps the connections and hands them to gRPC.
    DCPKV_ASSIGN_OR_RETURN(
        impl->gate,
        ConnectionGate::Listen(options.listen, {options.limits.max_connections,
                                                options.limits.max_connections_per_address,
                                                options.limits.handshake_timeout}));
    impl->port = impl->gate->port();
  } else {
    builder.AddListeningPort(options.listen, credentials, &impl->port);
  }
  builder.RegisterService(impl->service.get());
  builder.RegisterCallbackGenericService(impl->service.get());
  // A request (read after its token was checked) is at most a piece of a PutStream.
  builder.SetMaxReceiveMessageSize(
      static_cast<int>(std::min(options.max_message_bytes, options.limits.max_request_bytes)));
  builder.SetMaxSendMessageSize(static_cast<int>(options.max_message_bytes));
  // gRPC binds with SO_REUSEPORT by default: a port in use would then be shared, not refused.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  ApplyLimits(options.limits, builder);
  impl->server = builder.BuildAndStart();
  if (impl->server == nullptr || impl->port == 0) {
    if (impl->server != nullptr) impl->server->Shutdown();
    return UnavailableError("replica cannot listen on " + options.listen +
                            " (address in use or not local, or a bad TLS key or certificate)");
  }
  if (impl->gate != nullptr) impl->gate->Start(impl->server.get());
  return std::unique_ptr<ReplicaServer>(new ReplicaServer(std::move(impl)));
}

ReplicaServer::ReplicaServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

ReplicaServer::~ReplicaServer() { Shutdown(); }

int ReplicaServer::port() const { return impl_->port; }

void ReplicaServer::Shutdown(std::chrono::milliseconds grace) {
  std::lock_guard<std::mutex> lock(impl_->shutdown_mu);
  if (impl_->shut_down) return;
  impl_->shut_down = true;
  if (impl_->gate != nullptr) impl_->gate->Stop();
  // Calls still running at the deadline are cancelled; Shutdown returns once every handler has.
  impl_->server->Shutdown(std::chrono::system_clock::now() + grace);
  impl_->server->Wait();
  impl_->store->Close();
  ::close(impl_->root_lock_fd);
  impl_->root_lock_fd = -1;
}

}  // namespace dcpkv::replication

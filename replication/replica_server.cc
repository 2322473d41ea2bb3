// The replica server: a thin gRPC layer (callback API) over ReplicaStore. Each handler
// authenticates, runs one validated store call inline (a small synchronous RocksDB write or read)
// and finishes.
#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <grpcpp/grpcpp.h>

#include <cerrno>
#include <climits>
#include <cstring>
#include <exception>
#include <filesystem>
#include <functional>
#include <mutex>
#include <system_error>
#include <utility>

#include "auth.h"
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

class ReplicaService final : public v1::ManifestReplica::CallbackService {
 public:
  ReplicaService(ReplicaStore* store, const std::string& token)
      : store_(store), authorization_(token.empty() ? "" : BearerHeader(token)) {}

  grpc::ServerUnaryReactor* Put(grpc::CallbackServerContext* context, const v1::PutRequest* request,
                                v1::PutResponse*) override {
    return Handle(context, [&] {
      return store_->Put(request->namespace_(), request->checkpoint_id(), request->record(),
                         request->record_xxh3_128());
    });
  }

  grpc::ServerUnaryReactor* Get(grpc::CallbackServerContext* context, const v1::GetRequest* request,
                                v1::GetResponse* response) override {
    return Handle(context, [&]() -> Status {
      DCPKV_ASSIGN_OR_RETURN(std::string record,
                             store_->Get(request->namespace_(), request->checkpoint_id()));
      response->set_record_xxh3_128(RecordHashHex(record));
      response->set_record(std::move(record));
      return Status::Ok();
    });
  }

  grpc::ServerUnaryReactor* List(grpc::CallbackServerContext* context,
                                 const v1::ListRequest* request,
                                 v1::ListResponse* response) override {
    return Handle(context, [&]() -> Status {
      DCPKV_ASSIGN_OR_RETURN(std::vector<std::string> ids, store_->List(request->namespace_()));
      for (std::string& id : ids) response->add_checkpoint_ids(std::move(id));
      return Status::Ok();
    });
  }

  grpc::ServerUnaryReactor* Delete(grpc::CallbackServerContext* context,
                                   const v1::DeleteRequest* request, v1::DeleteResponse*) override {
    return Handle(context,
                  [&] { return store_->Delete(request->namespace_(), request->checkpoint_id()); });
  }

 private:
  // Authenticates the call, then runs `body`, and finishes the call with its status.
  grpc::ServerUnaryReactor* Handle(grpc::CallbackServerContext* context,
                                   const std::function<Status()>& body) {
    Status status = Authenticate(*context);
    if (status.ok()) {
      try {
        status = body();
      } catch (const std::exception& e) {  // e.g. std::bad_alloc: fail the call, not the server
        status = InternalError(std::string("replica: ") + e.what());
      }
    }
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    reactor->Finish(ToGrpcStatus(status));
    return reactor;
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

  ReplicaStore* const store_;
  const std::string authorization_;  // "Bearer <token>"; empty: no check
};

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
  if (l.max_concurrent_streams < 1) {
    return InvalidArgumentError("replica limit max_concurrent_streams must be at least 1");
  }
  if (l.max_metadata_bytes < 1024) {
    return InvalidArgumentError("replica limit max_metadata_bytes must be at least 1024");
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
  impl->service = std::make_unique<ReplicaService>(impl->store.get(), options.token);

  grpc::ServerBuilder builder;
  builder.AddListeningPort(options.listen, credentials, &impl->port);
  builder.RegisterService(impl->service.get());
  builder.SetMaxReceiveMessageSize(static_cast<int>(options.max_message_bytes));
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
  return std::unique_ptr<ReplicaServer>(new ReplicaServer(std::move(impl)));
}

ReplicaServer::ReplicaServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

ReplicaServer::~ReplicaServer() { Shutdown(); }

int ReplicaServer::port() const { return impl_->port; }

void ReplicaServer::Shutdown(std::chrono::milliseconds grace) {
  std::lock_guard<std::mutex> lock(impl_->shutdown_mu);
  if (impl_->shut_down) return;
  impl_->shut_down = true;
  // Calls still running at the deadline are cancelled; Shutdown returns once every handler has.
  impl_->server->Shutdown(std::chrono::system_clock::now() + grace);
  impl_->server->Wait();
  impl_->store->Close();
  ::close(impl_->root_lock_fd);
  impl_->root_lock_fd = -1;
}

}  // namespace dcpkv::replication

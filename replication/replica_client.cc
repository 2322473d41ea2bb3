#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <climits>
#include <utility>

#include "auth.h"
#include "dcpkv/core/manifest_record_codec.h"
#include "dcpkv/core/names.h"
#include "dcpkv/replication/internal/grpc_status.h"
#include "dcpkv/replication/internal/record_hash.h"
#include "dcpkv/replication/replica.h"
#include "pem_files.h"
#include "replication.grpc.pb.h"

namespace dcpkv::replication {
namespace {

namespace v1 = ::dcpkv::replication::v1;

// Longest wait between reconnection attempts to a replica that is down (gRPC's default, 120 s,
// would leave a restarted replica unused for minutes).
constexpr int kMaxReconnectBackoffMs = 10'000;

// Record bytes per PutStream message, well under a replica's request limit (4 MiB by default).
constexpr size_t kPutPieceBytes = size_t{1} << 20;

Status ValidateOptions(const std::string& target, const ReplicaClientOptions& options) {
  if (target.empty()) return InvalidArgumentError("replica target is empty");
  if (options.tls_cert_file.empty() != options.tls_key_file.empty()) {
    return InvalidArgumentError("replica " + target +
                                ": tls_cert_file and tls_key_file must be given together");
  }
  if (options.tls_ca_file.empty() &&
      (!options.tls_cert_file.empty() || !options.tls_server_name.empty())) {
    return InvalidArgumentError("replica " + target +
                                ": tls_cert_file, tls_key_file and tls_server_name require "
                                "tls_ca_file");
  }
  if (options.deadline <= std::chrono::milliseconds::zero()) {
    return InvalidArgumentError("replica " + target + ": deadline must be positive");
  }
  if (options.max_message_bytes == 0 || options.max_message_bytes > static_cast<size_t>(INT_MAX)) {
    return InvalidArgumentError("replica " + target + ": max_message_bytes " +
                                std::to_string(options.max_message_bytes) + " is outside [1, " +
                                std::to_string(INT_MAX) + "]");
  }
  return ValidateToken(options.token, "replica token");
}

StatusOr<std::shared_ptr<grpc::ChannelCredentials>> MakeCredentials(
    const ReplicaClientOptions& options) {
  if (options.tls_ca_file.empty()) return grpc::InsecureChannelCredentials();
  grpc::SslCredentialsOptions ssl;
  DCPKV_ASSIGN_OR_RETURN(ssl.pem_root_certs, ReadPemFile(options.tls_ca_file, "tls_ca_file"));
  if (!options.tls_cert_file.empty()) {
    DCPKV_ASSIGN_OR_RETURN(ssl.pem_cert_chain, ReadPemFile(options.tls_cert_file, "tls_cert_file"));
    DCPKV_ASSIGN_OR_RETURN(ssl.pem_private_key, ReadPemFile(options.tls_key_file, "tls_key_file"));
  }
  return grpc::SslCredentials(ssl);
}

}  // namespace

struct ReplicaClient::Impl {
  // A context for one call: its deadline and the token.
  void Prepare(grpc::ClientContext* context) const {
    context->set_deadline(std::chrono::system_clock::now() + options.deadline);
    if (!authorization.empty()) context->AddMetadata(kAuthorizationKey, authorization);
  }

  // "replica <target>: <call>", the context of every error.
  std::string Context(std::string_view call) const {
    return "replica " + target + ": " + std::string(call);
  }

  // Checks the names of a call before it is sent.
  Status ValidateNames(std::string_view call, std::string_view ns,
                       const std::string* checkpoint_id) const {
    Status s = ValidateNamespace(ns);
    if (s.ok() && checkpoint_id != nullptr) s = ValidateCheckpointId(*checkpoint_id);
    return s.WithContext(Context(call));
  }

  std::string target;
  ReplicaClientOptions options;
  std::string authorization;  // "Bearer <token>"; empty: none
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<v1::ManifestReplica::Stub> stub;
};

StatusOr<std::unique_ptr<ReplicaClient>> ReplicaClient::Connect(
    const std::string& target, const ReplicaClientOptions& options) {
  DCPKV_RETURN_IF_ERROR(ValidateOptions(target, options));
  StatusOr<std::shared_ptr<grpc::ChannelCredentials>> credentials = MakeCredentials(options);
  if (!credentials.ok()) return credentials.status().WithContext("replica " + target);
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(static_cast<int>(options.max_message_bytes));
  args.SetMaxSendMessageSize(static_cast<int>(options.max_message_bytes));
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, kMaxReconnectBackoffMs);
  if (!options.tls_server_name.empty()) args.SetSslTargetNameOverride(options.tls_server_name);

  auto impl = std::make_unique<Impl>();
  impl->target = target;
  impl->options = options;
  if (!options.token.empty()) impl->authorization = BearerHeader(options.token);
  impl->channel = grpc::CreateCustomChannel(target, *credentials, args);
  impl->stub = v1::ManifestReplica::NewStub(impl->channel);
  return std::unique_ptr<ReplicaClient>(new ReplicaClient(std::move(impl)));
}

ReplicaClient::ReplicaClient(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

ReplicaClient::~ReplicaClient() = default;

const std::string& ReplicaClient::target() const { return impl_->target; }

Status ReplicaClient::Put(const std::string& ns, const ManifestRecord& record) {
  DCPKV_RETURN_IF_ERROR(impl_->ValidateNames("Put", ns, &record.checkpoint_id));
  const std::string encoded = EncodeManifestRecord(record);
  const std::string hash = RecordHashHex(encoded);
  const std::string call = impl_->Context("Put \"" + record.checkpoint_id + "\"");
  // A record larger than one piece goes in pieces (PutStream): a replica reads a request of at
  // most a few MiB. A smaller one (a manifest of up to a few hundred ranks) goes in one Put.
  if (encoded.size() > kPutPieceBytes) {
    v1::PutResponse response;
    grpc::ClientContext context;
    impl_->Prepare(&context);
    std::unique_ptr<grpc::ClientWriter<v1::PutPiece>> writer =
        impl_->stub->PutStream(&context, &response);
    v1::PutPiece piece;
    piece.set_namespace_(ns);
    piece.set_checkpoint_id(record.checkpoint_id);
    piece.set_record_size(encoded.size());
    piece.set_record_xxh3_128(hash);
    for (size_t at = 0; at < encoded.size(); at += kPutPieceBytes) {
      piece.set_data(encoded.substr(at, kPutPieceBytes));
      if (!writer->Write(piece)) break;  // the replica ended the call: Finish says why
      piece.Clear();
    }
    writer->WritesDone();
    const grpc::Status streamed = writer->Finish();
    if (streamed.error_code() != grpc::StatusCode::UNIMPLEMENTED) {
      return FromGrpcStatus(streamed, call);
    }
  }
  // In one request: a small record, or a large one for a replica of the protocol's first
  // version (which has no PutStream, and reads up to its own message limit).
  v1::PutRequest request;
  request.set_namespace_(ns);
  request.set_checkpoint_id(record.checkpoint_id);
  request.set_record(encoded);
  request.set_record_xxh3_128(hash);
  v1::PutResponse response;
  grpc::ClientContext context;
  impl_->Prepare(&context);
  return FromGrpcStatus(impl_->stub->Put(&context, request, &response), call);
}

StatusOr<ManifestRecord> ReplicaClient::Get(const std::string& ns,
                                            const std::string& checkpoint_id) {
  DCPKV_RETURN_IF_ERROR(impl_->ValidateNames("Get", ns, &checkpoint_id));
  v1::GetRequest request;
  request.set_namespace_(ns);
  request.set_checkpoint_id(checkpoint_id);
  v1::GetResponse response;
  grpc::ClientContext context;
  impl_->Prepare(&context);
  const std::string call = impl_->Context("Get \"" + checkpoint_id + "\"");
  DCPKV_RETURN_IF_ERROR(FromGrpcStatus(impl_->stub->Get(&context, request, &response), call));
  if (response.record_xxh3_128() != RecordHashHex(response.record())) {
    return DataLossError(call + ": the record's XXH3-128 does not match the one sent with it");
  }
  StatusOr<ManifestRecord> record = DecodeManifestRecord(response.record());
  if (!record.ok()) return record.status().WithContext(call);
  if (record->checkpoint_id != checkpoint_id) {
    return DataLossError(call + ": the replica sent the record of checkpoint \"" +
                         record->checkpoint_id + "\"");
  }
  return record;
}

StatusOr<std::vector<std::string>> ReplicaClient::List(const std::string& ns) {
  DCPKV_RETURN_IF_ERROR(impl_->ValidateNames("List", ns, nullptr));
  v1::ListRequest request;
  request.set_namespace_(ns);
  v1::ListResponse response;
  grpc::ClientContext context;
  impl_->Prepare(&context);
  DCPKV_RETURN_IF_ERROR(
      FromGrpcStatus(impl_->stub->List(&context, request, &response), impl_->Context("List")));
  std::vector<std::string> ids(response.checkpoint_ids().begin(), response.checkpoint_ids().end());
  std::sort(ids.begin(), ids.end());
  return ids;
}

Status ReplicaClient::Delete(const std::string& ns, const std::string& checkpoint_id) {
  DCPKV_RETURN_IF_ERROR(impl_->ValidateNames("Delete", ns, &checkpoint_id));
  v1::DeleteRequest request;
  request.set_namespace_(ns);
  request.set_checkpoint_id(checkpoint_id);
  v1::DeleteResponse response;
  grpc::ClientContext context;
  impl_->Prepare(&context);
  return FromGrpcStatus(impl_->stub->Delete(&context, request, &response),
                        impl_->Context("Delete \"" + checkpoint_id + "\""));
}

}  // namespace dcpkv::replication

// Status conversion between dcpkv and gRPC, both ways. The codes keep their meaning for the
// caller: a replica that cannot be reached is UNAVAILABLE, bad credentials UNAUTHENTICATED, and so
// on; gRPC codes without a dcpkv counterpart become INTERNAL.
#ifndef DCPKV_REPLICATION_INTERNAL_GRPC_STATUS_H_
#define DCPKV_REPLICATION_INTERNAL_GRPC_STATUS_H_

#include <grpcpp/support/status.h>

#include <string_view>

#include "dcpkv/status.h"

namespace dcpkv::replication {

// What a server handler returns for `status`. An I/O error of the replica's disk becomes
// UNAVAILABLE: the replica may well succeed later.
grpc::Status ToGrpcStatus(const Status& status);

// What a client call returns for `status`, the message prefixed by `context` (which names the
// target and the call).
Status FromGrpcStatus(const grpc::Status& status, std::string_view context);

}  // namespace dcpkv::replication

#endif  // DCPKV_REPLICATION_INTERNAL_GRPC_STATUS_H_

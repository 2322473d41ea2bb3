// CreateNcclProcessGroup: options, the unique id through the rendezvous server, the NCCL
// communicator (nccl_comm.h) and the framing over it (nccl_transport.h).
#include "dcpkv/nccl_process_group.h"

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <map>
#include <mutex>
#include <tuple>
#include <utility>

#include "dcpkv/api/cuda_device.h"
#include "dcpkv/api/nccl_transport.h"
#include "group_options.h"
#include "tcp_store.h"

#if DCPKV_WITH_NCCL
#include "nccl_comm.h"
#endif

namespace dcpkv {
namespace {

using nccl::Clock;

Status CheckOptions(const NcclProcessGroupOptions& o) {
  DCPKV_RETURN_IF_ERROR(CheckGroupOptions(o.rank, o.world_size, o.timeout));
  if (o.device < -1) {
    return InvalidArgumentError("device " + std::to_string(o.device) +
                                " is neither a device index nor -1");
  }
  if (o.max_transfer_bytes < 64 || o.max_transfer_bytes < static_cast<uint64_t>(o.world_size)) {
    return InvalidArgumentError("max_transfer_bytes " + std::to_string(o.max_transfer_bytes) +
                                " is less than 64 or than world_size");
  }
  if (o.world_size == 1 || o.server != nullptr) return Status::Ok();
  return CheckRendezvousServer(o.rank, o.master_addr, o.master_port, o.start_server,
                               o.server_protocol);
}

#if DCPKV_WITH_NCCL

// The n-th group a rank of this process creates under one server and prefix reads the n-th
// id key: groups made again under the same prefix never read an old id. Counted per rank, so
// that ranks running as threads of one process count alike.
std::string NextIdKey(const std::string& host, int port, const std::string& prefix, int rank) {
  static std::mutex mu;
  static std::map<std::tuple<std::string, int, std::string, int>, int> made;
  std::lock_guard<std::mutex> lock(mu);
  const int n = made[{host, port, prefix, rank}]++;
  return "dcpkv/nccl/" + prefix + "/unique_id#" + std::to_string(n);
}

// What the group keeps alive: the server it may run, the client it rendezvoused with.
struct Rendezvous {
  std::shared_ptr<TcpStoreServer> server;
  std::shared_ptr<TcpStoreClient> client;
};

// The unique id of the group: rank 0 makes and publishes it, the others wait for it.
StatusOr<std::string> ExchangeUniqueId(const NcclProcessGroupOptions& o, Rendezvous* rv,
                                       Clock::time_point deadline) {
  if (o.world_size == 1) return nccl::NewUniqueId();
  rv->server = o.server;
  std::string host = o.master_addr;
  int port = o.master_port;
  if (rv->server != nullptr) {
    host = rv->server->host();
    port = rv->server->port();
  } else if (o.rank == 0 && o.start_server) {
    DCPKV_ASSIGN_OR_RETURN(rv->server, TcpStoreServer::Start(host, port));
    port = rv->server->port();
  }
  DCPKV_ASSIGN_OR_RETURN(
      rv->client, TcpStoreClient::Connect(
                      host, port, o.timeout,
                      rv->server != nullptr ? RendezvousProtocol::kDcpkv : o.server_protocol));
  const std::string key = NextIdKey(host, port, o.prefix, o.rank);
  std::string id;
  if (o.rank == 0) {
    DCPKV_ASSIGN_OR_RETURN(id, nccl::NewUniqueId());
    DCPKV_RETURN_IF_ERROR(rv->client->Set(key, id, deadline));
  } else {
    StatusOr<std::string> got = rv->client->WaitGet(key, deadline);
    if (!got.ok() && got.status().code() == StatusCode::kDeadlineExceeded) {
      return DeadlineExceededError("rank 0 did not publish the NCCL unique id within " +
                                   std::to_string(o.timeout.count()) + " ms (key '" + key + "')");
    }
    DCPKV_RETURN_IF_ERROR(got.status());
    id = std::move(got).value();
  }
  rv->client->Disconnect();
  return id;
}

#endif

}  // namespace

bool NcclBackendBuilt() {
#if DCPKV_WITH_NCCL
  return true;
#else
  return false;
#endif
}

StatusOr<std::unique_ptr<ProcessGroup>> CreateNcclProcessGroup(
    const NcclProcessGroupOptions& options) {
  DCPKV_RETURN_IF_ERROR(CheckOptions(options).WithContext("CreateNcclProcessGroup"));
#if !DCPKV_WITH_NCCL
  return FailedPreconditionError(
      "CreateNcclProcessGroup: this build of dcpkv has no NCCL backend (configure with the CUDA "
      "toolkit and NCCL found, DCPKV_WITH_CUDA=ON and DCPKV_WITH_NCCL=ON)");
#else
  const std::string what = "CreateNcclProcessGroup (rank " + std::to_string(options.rank) + " of " +
                           std::to_string(options.world_size) + ")";
  StatusOr<int> devices = cuda::DeviceCount();
  if (!devices.ok()) {
    return FailedPreconditionError(what + ": " + std::string(devices.status().message()));
  }
  int device = options.device;
  if (device < 0) {
    DCPKV_ASSIGN_OR_RETURN(device, nccl::CurrentDevice());
  }
  DCPKV_RETURN_IF_ERROR(cuda::CheckDevice(Device::Cuda(device), what + ": the group's device"));
  const auto deadline = Clock::now() + options.timeout;
  auto rv = std::make_shared<Rendezvous>();
  StatusOr<std::string> id = ExchangeUniqueId(options, rv.get(), deadline);
  if (!id.ok()) return id.status().WithContext(what);
  nccl::NcclCommOptions comm{options.rank, options.world_size, *id, device,
                             static_cast<size_t>(options.max_transfer_bytes)};
  StatusOr<std::unique_ptr<nccl::DeviceCollectives>> transport =
      nccl::CreateNcclCollectives(comm, deadline);
  if (!transport.ok()) return transport.status().WithContext(what);
  StatusOr<std::unique_ptr<ProcessGroup>> group = nccl::NewDeviceCollectivesGroup(
      std::move(transport).value(), nccl::DeviceGroupOptions{"nccl", options.timeout, rv},
      deadline);
  if (!group.ok()) return group.status().WithContext(what);
  return group;
#endif
}

StatusOr<NcclProcessGroupOptions> NcclProcessGroupOptionsFromEnv(
    std::chrono::milliseconds timeout) {
  DCPKV_ASSIGN_OR_RETURN(GlooProcessGroupOptions gloo, GlooProcessGroupOptionsFromEnv(timeout));
  NcclProcessGroupOptions o;
  o.rank = gloo.rank;
  o.world_size = gloo.world_size;
  o.master_addr = gloo.master_addr;
  o.master_port = gloo.master_port;
  o.timeout = gloo.timeout;
  o.start_server = gloo.start_server;
  o.server_protocol = gloo.server_protocol;
  o.prefix = gloo.prefix;
  // GlooProcessGroupOptionsFromEnv has checked LOCAL_RANK if it is set.
  if (const char* local = std::getenv("LOCAL_RANK"); local != nullptr && *local != '\0') {
    errno = 0;
    char* end = nullptr;
    const long v = std::strtol(local, &end, 10);
    if (errno == 0 && end != nullptr && *end == '\0' && v >= 0 && v <= INT_MAX) {
      o.device = static_cast<int>(v);
    }
  }
  return o;
}

StatusOr<std::unique_ptr<ProcessGroup>> CreateNcclProcessGroupFromEnv(
    std::chrono::milliseconds timeout) {
  DCPKV_ASSIGN_OR_RETURN(NcclProcessGroupOptions options, NcclProcessGroupOptionsFromEnv(timeout));
  return CreateNcclProcessGroup(options);
}

}  // namespace dcpkv

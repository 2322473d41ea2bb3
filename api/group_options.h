// Checks shared by the process groups' options (gloo, NCCL). Internal to api/.
#ifndef DCPKV_API_GROUP_OPTIONS_H_
#define DCPKV_API_GROUP_OPTIONS_H_

#include <chrono>
#include <string>

#include "dcpkv/gloo_process_group.h"
#include "dcpkv/status.h"

namespace dcpkv {

// INVALID_ARGUMENT unless 1 <= world_size, 0 <= rank < world_size and timeout > 0.
inline Status CheckGroupOptions(int rank, int world_size, std::chrono::milliseconds timeout) {
  if (world_size < 1) {
    return InvalidArgumentError("world_size " + std::to_string(world_size) + " must be at least 1");
  }
  if (rank < 0 || rank >= world_size) {
    return InvalidArgumentError("rank " + std::to_string(rank) + " is outside [0, " +
                                std::to_string(world_size) + ")");
  }
  if (timeout <= std::chrono::milliseconds(0)) {
    return InvalidArgumentError("timeout " + std::to_string(timeout.count()) +
                                " ms must be positive");
  }
  return Status::Ok();
}

// INVALID_ARGUMENT unless the rendezvous server options of a group without a `server` object
// (and of more than one rank) are usable.
inline Status CheckRendezvousServer(int rank, const std::string& master_addr, int master_port,
                                    bool start_server, RendezvousProtocol protocol) {
  if (master_addr.empty()) return InvalidArgumentError("master_addr is empty");
  if (master_port < 0 || master_port > 65535) {
    return InvalidArgumentError("master_port " + std::to_string(master_port) +
                                " is outside [0, 65535]");
  }
  if (master_port == 0 && !(rank == 0 && start_server)) {
    return InvalidArgumentError(
        "master_port 0 is only valid for a rank 0 that starts the rendezvous server");
  }
  if (protocol == RendezvousProtocol::kTorchTcpStore && start_server) {
    return InvalidArgumentError(
        "server_protocol kTorchTcpStore needs start_server = false: the server is torch's "
        "(torchrun's agent store), which dcpkv connects to but does not run");
  }
  return Status::Ok();
}

}  // namespace dcpkv

#endif  // DCPKV_API_GROUP_OPTIONS_H_

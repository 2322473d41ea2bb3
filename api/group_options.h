// Checks shared by the process groups' options (gloo, NCCL). Internal to api/.
#ifndef DCPKV_API_GROUP_OPTIONS_H_
#define DCPKV_API_GROUP_OPTIONS_H_

#include <chrono>
#include <string>

#include "dcpkv/status.h"

namespace dcpkv {

// INVALID_ARGUMENT unless 1 <= world_size, 0 <= rank < world_size and timeout > 0.
inline Status CheckGroupOptions(int rank, int world_size, std::chrono::milliseconds timeout) {
  if (world_size < 1) {
    return InvalidArgumentError("world_size " + std::to_string(world_size) +
                                " must be at least 1");
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

}  // namespace dcpkv

#endif  // DCPKV_API_GROUP_OPTIONS_H_

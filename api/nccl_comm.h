// DeviceCollectives over an NCCL communicator (built only with DCPKV_WITH_NCCL). Internal to
// api/.
//
// Host bytes are copied into a device buffer (through a page-locked host buffer), moved by
// NCCL on a stream of the communicator's own, and copied back, each step on that stream; the
// host then polls an event and the communicator's asynchronous error until the operation is
// done, fails, or passes its deadline. The communicator is non-blocking (config.blocking = 0):
// its creation and every enqueue may return ncclInProgress and are polled the same way, so no
// call blocks past its deadline. Abort (and a failed creation) calls ncclCommAbort.
#ifndef DCPKV_API_NCCL_COMM_H_
#define DCPKV_API_NCCL_COMM_H_

#include <memory>
#include <string>

#include "dcpkv/api/nccl_transport.h"

namespace dcpkv::nccl {

// A new NCCL unique id (its bytes), as rank 0 makes it for the group.
StatusOr<std::string> NewUniqueId();

// The calling thread's current CUDA device.
StatusOr<int> CurrentDevice();

struct NcclCommOptions {
  int rank = 0;
  int size = 1;
  std::string unique_id;  // NewUniqueId()'s bytes, the same on every rank
  int device = 0;
  size_t max_transfer_bytes = size_t{16} << 20;
};

// Creates this rank's communicator; returns once every rank has joined, or fails at
// `deadline` with DEADLINE_EXCEEDED (the communicator aborted).
StatusOr<std::unique_ptr<DeviceCollectives>> CreateNcclCollectives(const NcclCommOptions& options,
                                                                   Clock::time_point deadline);

}  // namespace dcpkv::nccl

#endif  // DCPKV_API_NCCL_COMM_H_

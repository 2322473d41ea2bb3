// The seam between the NCCL process group's framing and NCCL itself. Not installed: api/ and its
// tests only.
//
// DeviceCollectives are the few fixed-size primitives the NCCL group is built from: an
// all-gather, a broadcast, and a group of point-to-point sends and receives, each moving at
// most max_transfer_bytes per rank. NcclCollectives (nccl_comm.h) is the real implementation;
// tests run the framing over a fake one whose ranks are threads.
//
// NewDeviceCollectivesGroup builds a ProcessGroup of variable-size byte buffers on top: 8-byte
// little-endian size headers first, then payloads, chunked into rounds that respect
// max_transfer_bytes (see nccl_process_group.h for the collectives' shapes).
#ifndef DCPKV_API_NCCL_TRANSPORT_H_
#define DCPKV_API_NCCL_TRANSPORT_H_

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "dcpkv/process_group.h"
#include "dcpkv/status.h"

namespace dcpkv::nccl {

using Clock = std::chrono::steady_clock;

struct SendOp {
  int peer = 0;
  const void* data = nullptr;
  size_t bytes = 0;
};

struct RecvOp {
  int peer = 0;
  void* data = nullptr;
  size_t bytes = 0;
};

// Every rank calls the same primitives in the same order (point-to-point: each receive matches
// the peer's send of the same size, in order per pair). A primitive that cannot complete by
// `deadline` fails with DEADLINE_EXCEEDED; one whose peer failed, with UNAVAILABLE.
class DeviceCollectives {
 public:
  virtual ~DeviceCollectives() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  // The most bytes one call moves per rank: AllGather's bytes * size(), Broadcast's bytes, the
  // sum of one SendRecv's sends, and the sum of its receives.
  virtual size_t max_transfer_bytes() const = 0;
  // Every rank contributes `bytes` bytes (the same number everywhere); `out` (size() * bytes)
  // receives rank r's contribution at r * bytes.
  virtual Status AllGather(const void* in, void* out, size_t bytes, Clock::time_point deadline) = 0;
  // Root's `bytes` bytes at `data` end up at `data` on every rank.
  virtual Status Broadcast(void* data, size_t bytes, int root, Clock::time_point deadline) = 0;
  // Runs the sends and receives as one group and waits for all of them.
  virtual Status SendRecv(const std::vector<SendOp>& sends, const std::vector<RecvOp>& recvs,
                          Clock::time_point deadline) = 0;
  // Ends whatever is in flight after a failure; later calls fail.
  virtual void Abort() = 0;
};

struct DeviceGroupOptions {
  // backend() of the group. Default: "nccl".
  std::string backend = "nccl";
  // Initial timeout() of the group. Default: 60 s.
  std::chrono::milliseconds timeout{60000};
  // Kept alive as long as the group (e.g. the rendezvous server). Default: null.
  std::shared_ptr<void> keep_alive;
};

// A ProcessGroup (supports_cpu() false) over `transport`. Checks that every rank has the same
// max_transfer_bytes (INVALID_ARGUMENT otherwise) before returning, by `deadline`.
StatusOr<std::unique_ptr<ProcessGroup>> NewDeviceCollectivesGroup(
    std::unique_ptr<DeviceCollectives> transport, DeviceGroupOptions options,
    Clock::time_point deadline);

// The largest payload a peer may announce (a larger size header is INTERNAL).
inline constexpr uint64_t kMaxMessageBytes = uint64_t{4} << 30;

}  // namespace dcpkv::nccl

#endif  // DCPKV_API_NCCL_TRANSPORT_H_

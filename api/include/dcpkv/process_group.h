// ProcessGroup: the collectives that save and load run between ranks, over byte buffers.
//
// Every rank of a group must call the same collectives in the same order with the same root.
// Each call waits at most timeout() for its peers; a peer that never arrives (crashed, hung,
// or taking another code path) makes the call fail with DEADLINE_EXCEEDED on the ranks that
// wait, and a peer that disconnects makes it fail with UNAVAILABLE: no rank hangs forever.
// After a failed collective the group is broken: later calls fail fast with ABORTED.
//
// Backends: a single process (NewSingleProcessGroup), gloo over TCP (gloo_process_group.h),
// and NCCL where CUDA is present.
//
// Thread safety: a group is used by one thread at a time (collectives are ordered per group).
#ifndef DCPKV_PROCESS_GROUP_H_
#define DCPKV_PROCESS_GROUP_H_

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "dcpkv/export.h"
#include "dcpkv/status.h"

namespace dcpkv {

class DCPKV_EXPORT ProcessGroup {
 public:
  virtual ~ProcessGroup() = default;

  // This process's rank in the group, in [0, size()).
  virtual int rank() const = 0;
  // Number of ranks in the group.
  virtual int size() const = 0;
  // "single", "gloo" or "nccl".
  virtual std::string_view backend() const = 0;
  // True if collectives run on host memory and may be called from any thread (gloo, single):
  // required by async_save's background upload.
  virtual bool supports_cpu() const = 0;

  // Longest wait of one collective for its peers.
  virtual std::chrono::milliseconds timeout() const = 0;
  virtual void set_timeout(std::chrono::milliseconds timeout) = 0;

  // Root receives every rank's buffer, indexed by rank; other ranks receive an empty vector.
  virtual StatusOr<std::vector<std::string>> Gather(std::string_view data, int root) = 0;
  // Rank r receives data[r] from root. `data` is read only on root, where it must hold size()
  // buffers.
  virtual StatusOr<std::string> Scatter(const std::vector<std::string>& data, int root) = 0;
  // Every rank receives root's `data`.
  virtual StatusOr<std::string> Broadcast(std::string_view data, int root) = 0;
  // Every rank receives every rank's buffer, indexed by rank.
  virtual StatusOr<std::vector<std::string>> AllGather(std::string_view data) = 0;
  // Returns once every rank has called Barrier.
  virtual Status Barrier() = 0;

  // Payload bytes this rank has sent through collectives so far (sizes and framing included),
  // for statistics and for tests that check how much a protocol step communicated.
  virtual uint64_t bytes_sent() const = 0;
};

// A group of one rank: collectives return their input at once and send nothing.
DCPKV_EXPORT std::unique_ptr<ProcessGroup> NewSingleProcessGroup();

}  // namespace dcpkv

#endif  // DCPKV_PROCESS_GROUP_H_

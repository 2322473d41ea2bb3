// Verification of committed checkpoints, for `dcpkv verify`: reads every chunk of every rank,
// checks each chunk's checksum and FlatBuffer, that each tensor's saved shards tile it exactly
// and that each shard's chunks cover its bytes exactly as the manifest says. Every problem is
// collected (checkpoint, fqn, shard, byte offset, what); verification goes on past them.
#ifndef DCPKV_INSPECT_VERIFY_H_
#define DCPKV_INSPECT_VERIFY_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "dcpkv/inspect/store_view.h"
#include "dcpkv/status.h"
#include "dcpkv/tensor.h"

namespace dcpkv::inspect {

struct VerifyProblem {
  std::string checkpoint_id;
  std::string fqn;           // empty for a problem of the whole checkpoint (its manifest)
  Shape shard_offsets;       // of the shard at fault, if any
  int rank = -1;             // database holding that shard, -1 if none
  uint64_t byte_offset = 0;  // first byte of the shard affected
  uint64_t byte_end = 0;     // one past the last byte affected (as far as it is known)
  std::string what;
};

struct VerifyReport {
  uint64_t checkpoints = 0;  // checkpoints examined
  uint64_t tensors = 0;      // fqns examined, bytes entries included
  uint64_t shards = 0;
  uint64_t chunks = 0;  // chunks found intact
  uint64_t bytes = 0;   // their payload bytes
  std::vector<VerifyProblem> problems;
  // Checkpoints committed when verify began and deleted (by rm or a running job's retention)
  // before their data was read: not verified, and not problems.
  std::vector<std::string> deleted_meanwhile;
  bool ok() const { return problems.empty(); }
};

// Called as bytes are verified: (bytes done, bytes in total).
using ProgressCallback = std::function<void(uint64_t done, uint64_t total)>;

struct VerifyOptions {
  // Threads that read and check chunks, each with a read of its own in flight. 0: 4.
  int threads = 0;
  // Runs of a shard's chunks are verified in pieces of about this many bytes (cut where a chunk
  // starts), which the threads share. 0: 64 MiB.
  uint64_t piece_bytes = 0;
  // Called as bytes are verified, from any of the threads, one call at a time.
  ProgressCallback progress;
};

// Verifies the checkpoints named in `ids` ("latest" allowed) or, if empty, every checkpoint the
// view lists (damaged manifests are problems; uncommitted data is not). NOT_FOUND for an id that
// names no checkpoint; problems in the data are in the report, not errors, in the same order
// whatever the threads.
StatusOr<VerifyReport> VerifyCheckpoints(StoreView& view, const std::vector<std::string>& ids,
                                         const VerifyOptions& options);
StatusOr<VerifyReport> VerifyCheckpoints(StoreView& view, const std::vector<std::string>& ids,
                                         const ProgressCallback& progress = nullptr);

// "checkpoint \"c\" fqn \"w\" shard [0, 4] rank 1 byte 4096: what"
std::string DescribeProblem(const VerifyProblem& problem);

}  // namespace dcpkv::inspect

#endif  // DCPKV_INSPECT_VERIFY_H_

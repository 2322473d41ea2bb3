// async_save: save without stalling training (DCP's async_save).
//
// AsyncSave copies ("stages") the tensors and bytes of the state dict into CPU memory owned by
// a stager, then runs the ordinary Save protocol on a background thread and returns at once with
// two futures:
//   staging_completion  resolves when the copy is done: from then on the caller may modify its
//                       tensors again. Without use_async_staging the copy happens inside
//                       AsyncSave, so it is already resolved when AsyncSave returns.
//   upload_completion   resolves to the committed Metadata, or to the error of the save (the
//                       same error on every rank, as for Save). Background errors never throw
//                       and never end the process.
// Stateful values have state_dict() called inside AsyncSave, on the caller's thread.
//
// Contracts:
// - Until staging_completion resolves the caller must not modify the tensors it passed.
// - Dropping the response (or its futures) does not cancel or block anything: the upload runs
//   to completion; at process exit dcpkv waits for uploads still running (each is bounded by the
//   process group's timeout).
// - Uploads to one store (and through one stager) never overlap: a new AsyncSave first waits
//   for the previous upload to finish, or, with OverlapPolicy::kRefuse, fails at once with
//   FAILED_PRECONDITION. A refusal is local to the rank that is still busy.
// - The background save runs collectives on options.process_group from another thread: it must
//   be a CPU-capable group (gloo) that nothing else uses while the upload runs (give checkpoints
//   their own group, e.g. CreateGlooSubgroup over all ranks). A GPU-only group is refused.
// - Staging memory is a pool owned by the stager and reused across saves: repeated saves of the
//   same structure allocate nothing new. A stager created by AsyncSave is closed (its memory
//   freed) when its upload finishes; a stager passed in stays the caller's to Close().
#ifndef DCPKV_ASYNC_SAVE_H_
#define DCPKV_ASYNC_SAVE_H_

#include <cstdint>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "dcpkv/checkpoint.h"

namespace dcpkv {

// Where the background save runs. (DCP also has PROCESS, a separate writer process; dcpkv does
// not offer it yet.)
enum class AsyncCheckpointerType { kThread };

struct StagingOptions {
  // Stage into page-locked memory (cudaHostAlloc, or cudaHostRegister of shared memory) for fast
  // device-to-host copies. Needs a CUDA build and a GPU; where either is missing the option is
  // accepted and pageable memory is used (noted once on stderr).
  // Default: true.
  bool use_pinned_memory = true;
  // Stage into shared memory (memfd mappings) that another process could map. Default: false.
  bool use_shared_memory = false;
  // Copy on a background thread: AsyncSave returns before the copy is done and
  // staging_completion tells when it is. Default: true.
  bool use_async_staging = true;
  // Device copies do not block the host (CUDA only; host-to-host copies ignore it).
  // Default: true.
  bool use_non_blocking_copy = true;
};

// Copies a flattened state dict into memory it owns.
// Thread safety: one Stage at a time; Close must not race with Stage.
class AsyncStager {
 public:
  virtual ~AsyncStager() = default;
  // Copies every tensor and bytes entry of `state`; returns a flat state dict that refers to the
  // copies, valid until the next Stage or Close.
  virtual StatusOr<FlatStateDict> Stage(const FlatStateDict& state) = 0;
  // True: AsyncSave runs Stage on the upload thread and returns before the copy is done
  // (use_async_staging). False: Stage runs inside AsyncSave.
  virtual bool stage_in_background() const { return true; }
  // DCP's hooks for stagers whose Stage returns before copies finish (device streams).
  virtual bool should_synchronize_after_execute() const { return false; }
  virtual void SynchronizeStaging() {}
  // Frees the staging memory. Stage afterwards fails with FAILED_PRECONDITION.
  virtual void Close() = 0;
};

class DefaultStager : public AsyncStager {
 public:
  // `max_bytes`: the largest total of staging memory the pool may hold; a Stage that needs more
  // fails with RESOURCE_EXHAUSTED before copying. 0 means no limit.
  explicit DefaultStager(StagingOptions options = {}, uint64_t max_bytes = 0);
  ~DefaultStager() override;

  StatusOr<FlatStateDict> Stage(const FlatStateDict& state) override;
  bool stage_in_background() const override { return options_.use_async_staging; }
  void Close() override;

  const StagingOptions& options() const { return options_; }
  // Bytes of staging memory the pool holds now.
  uint64_t bytes_reserved() const;
  // Buffers allocated since construction (a repeated Stage of the same structure adds none).
  uint64_t allocations() const;
  bool closed() const;

 private:
  class Buffer;  // one staging allocation: heap memory or a shared memory mapping

  StagingOptions options_;
  uint64_t max_bytes_;
  mutable std::mutex mu_;
  bool closed_ = false;                                     // GUARDED_BY(mu_)
  std::map<std::string, std::unique_ptr<Buffer>> buffers_;  // GUARDED_BY(mu_), by fqn + offsets
  std::map<std::string, Bytes> bytes_;                      // GUARDED_BY(mu_), by fqn
  uint64_t allocations_ = 0;                                // GUARDED_BY(mu_)
};

enum class OverlapPolicy {
  kWait,    // a new AsyncSave waits for the previous upload to the same store
  kRefuse,  // it fails at once with FAILED_PRECONDITION
};

struct AsyncSaveOptions {
  // The save itself: checkpoint id, storage, planner, process group, ... (see Save).
  SaveOptions save;
  // Default: kThread.
  AsyncCheckpointerType async_checkpointer_type = AsyncCheckpointerType::kThread;
  // The stager to copy with; null: a DefaultStager made from staging_options, closed after the
  // upload. Default: null.
  std::shared_ptr<AsyncStager> async_stager;
  // Options of the internal stager (a stager passed in has its own). Default: StagingOptions
  // defaults.
  StagingOptions staging_options;
  // Default: kWait.
  OverlapPolicy overlap_policy = OverlapPolicy::kWait;
};

struct AsyncSaveResponse {
  std::shared_future<Status> staging_completion;
  std::shared_future<StatusOr<Metadata>> upload_completion;
};

StatusOr<AsyncSaveResponse> AsyncSave(StateDict& state_dict, const AsyncSaveOptions& options);

}  // namespace dcpkv

#endif  // DCPKV_ASYNC_SAVE_H_

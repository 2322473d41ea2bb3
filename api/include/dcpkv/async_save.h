// async_save: save without stalling training (DCP's async_save).
//
// AsyncSave copies ("stages") the tensors and bytes of the state dict into CPU memory owned by
// a stager, then runs the ordinary Save protocol on a background thread and returns at once with
// two futures:
//   staging_completion  resolves when the copy is done: from then on the caller may modify its
//                       tensors again. Without use_async_staging the copy happens inside
//                       AsyncSave, so it is already resolved when AsyncSave returns (unless
//                       device copies were only enqueued, see below).
//   upload_completion   resolves to the committed Metadata, or to the error of the save (the
//                       same error on every rank, as for Save). Background errors never throw
//                       and never end the process.
// Stateful values have state_dict() called inside AsyncSave, on the caller's thread.
//
// CUDA tensors (tensor.h) are staged by device-to-host copies into the stager's page-locked
// buffers on a stream of the stager's own; with use_non_blocking_copy AsyncSave only enqueues
// them and staging_completion resolves once they are done (the upload thread waits for them).
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
#include "dcpkv/export.h"

namespace dcpkv {

namespace cuda {
class StreamSet;
}  // namespace cuda

// Where the background save runs. (DCP also has PROCESS, a separate writer process; dcpkv does
// not offer it yet.)
enum class AsyncCheckpointerType { kThread };

struct DCPKV_EXPORT StagingOptions {
  // Stage into page-locked memory (cudaHostAlloc, or cudaHostRegister of shared memory) for fast
  // device-to-host copies. Needs a CUDA build and a GPU; where either is missing the option is
  // accepted and pageable memory is used (noted once, as a kInfo diagnostic).
  // Default: true.
  bool use_pinned_memory = true;
  // Stage into shared memory (memfd mappings) that another process could map. Default: false.
  bool use_shared_memory = false;
  // Copy on a background thread: AsyncSave returns before the copy is done and
  // staging_completion tells when it is. Default: true.
  bool use_async_staging = true;
  // Copies of CUDA tensors are only enqueued by Stage, which returns before they are done;
  // SynchronizeStaging waits for them (AsyncSave does, on the upload thread). false: Stage waits
  // for them. Host-to-host copies ignore it.
  // Default: true.
  bool use_non_blocking_copy = true;
  // Where notes go (the pageable fallback). Not owned; must outlive the stager. Default: null,
  // meaning StderrDiagnostics().
  DiagnosticSink* diagnostics = nullptr;
};

// Copies a flattened state dict into memory it owns.
// Thread safety: one Stage at a time; Close must not race with Stage.
class DCPKV_EXPORT AsyncStager {
 public:
  virtual ~AsyncStager() = default;
  // Copies every tensor and bytes entry of `state`; returns a flat state dict that refers to the
  // copies, valid until the next Stage or Close.
  virtual StatusOr<FlatStateDict> Stage(const FlatStateDict& state) = 0;
  // True: AsyncSave runs Stage on the upload thread and returns before the copy is done
  // (use_async_staging). False: Stage runs inside AsyncSave.
  virtual bool stage_in_background() const { return true; }
  // DCP's hooks for stagers whose Stage returns before copies finish (device streams): if
  // should_synchronize_after_execute(), AsyncSave calls SynchronizeStaging after a successful
  // Stage, on the upload thread, and reports staging complete (or SynchronizeStaging's error)
  // only then; the staged dict must not be read before.
  virtual bool should_synchronize_after_execute() const { return false; }
  virtual Status SynchronizeStaging() { return Status::Ok(); }
  // Frees the staging memory. Stage afterwards fails with FAILED_PRECONDITION.
  virtual void Close() = 0;
};

// CUDA tensors: Stage fails with FAILED_PRECONDITION (copying nothing) if one is on a device
// this process cannot use; otherwise each is copied device-to-host into its staging buffer on
// a stream of the stager's (one per device) that first waits for the work enqueued on the
// device's legacy default stream. With use_non_blocking_copy those copies may still run when
// Stage returns: call SynchronizeStaging before reading the result. A later Stage or Close
// waits for them first.
class DCPKV_EXPORT DefaultStager : public AsyncStager {
 public:
  // `max_bytes`: the largest total of staging memory the pool may hold; a Stage that needs more
  // fails with RESOURCE_EXHAUSTED before copying. 0 means no limit.
  explicit DefaultStager(StagingOptions options = {}, uint64_t max_bytes = 0);
  ~DefaultStager() override;

  StatusOr<FlatStateDict> Stage(const FlatStateDict& state) override;
  bool stage_in_background() const override { return options_.use_async_staging; }
  // True while device copies of the last Stage may still run.
  bool should_synchronize_after_execute() const override;
  // Waits for the device copies of the last Stage; their first error.
  Status SynchronizeStaging() override;
  void Close() override;

  const StagingOptions& options() const { return options_; }
  // Bytes of staging memory the pool holds now.
  uint64_t bytes_reserved() const;
  // Buffers allocated since construction (a repeated Stage of the same structure adds none).
  uint64_t allocations() const;
  bool closed() const;

 private:
  class Buffer;  // one staging allocation: heap memory or a shared memory mapping

  // Copies `t` (bytes of it) into `dst`: memcpy, or an enqueued device-to-host copy.
  Status CopyOut(const Tensor& t, void* dst);  // REQUIRES: mu_ held
  Status WaitForCopies();                      // REQUIRES: mu_ held

  StagingOptions options_;
  uint64_t max_bytes_;
  mutable std::mutex mu_;
  bool closed_ = false;                                     // GUARDED_BY(mu_)
  std::map<std::string, std::unique_ptr<Buffer>> buffers_;  // GUARDED_BY(mu_), by fqn + offsets
  std::map<std::string, Bytes> bytes_;                      // GUARDED_BY(mu_), by fqn
  uint64_t allocations_ = 0;                                // GUARDED_BY(mu_)
  // Device copy streams (destroyed, waiting for their copies, before the buffers are freed).
  std::unique_ptr<cuda::StreamSet> streams_;  // GUARDED_BY(mu_)
  bool copies_pending_ = false;               // GUARDED_BY(mu_)
};

enum class OverlapPolicy {
  kWait,    // a new AsyncSave waits for the previous upload to the same store
  kRefuse,  // it fails at once with FAILED_PRECONDITION
};

struct DCPKV_EXPORT AsyncSaveOptions {
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

struct DCPKV_EXPORT AsyncSaveResponse {
  std::shared_future<Status> staging_completion;
  std::shared_future<StatusOr<Metadata>> upload_completion;
};

DCPKV_EXPORT StatusOr<AsyncSaveResponse> AsyncSave(StateDict& state_dict,
                                                   const AsyncSaveOptions& options);

}  // namespace dcpkv

#endif  // DCPKV_ASYNC_SAVE_H_

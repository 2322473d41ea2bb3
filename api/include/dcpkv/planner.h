// Planners: decide what each rank writes on save and reads on load (DCP's SavePlanner and
// LoadPlanner). Every step is a virtual hook, so a job can override any of them; the defaults
// implement DCP's behaviour plus deduplication balanced by bytes, O(n log n) validation and plan
// caching.
//
// Save calls, on every rank: SetUpPlanner, CreateLocalPlan; on the coordinator only:
// CreateGlobalPlan(all local plans); on every rank: FinishPlan(its central plan), then
// ResolveData for each item while writing. Load calls the same steps of LoadPlanner, then
// ResolveTensor/CommitTensor or LoadBytes for each read item, then FinishLoad.
//
// CUDA tensors (tensor.h) are handled here, so that storage sees host memory only: the default
// save planner resolves a device item to a host copy, and the default load planner resolves a
// device tensor to a host stand-in whose committed regions it copies to the device (see
// docs/gpu.md).
//
// Thread safety: a planner is used by one save or load at a time.
#ifndef DCPKV_PLANNER_H_
#define DCPKV_PLANNER_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "dcpkv/export.h"
#include "dcpkv/metadata.h"
#include "dcpkv/plan.h"
#include "dcpkv/state_dict.h"
#include "dcpkv/status.h"

namespace dcpkv {

namespace cuda {
class LoadStaging;
class SaveStaging;
}  // namespace cuda

// Read-only bytes of one write item: valid until the save that asked for them returns, except
// where a planner says otherwise (the default planner's bytes of an item of a CUDA tensor are a
// host copy valid until its next ResolveData).
struct DCPKV_EXPORT ConstBytes {
  const void* data = nullptr;
  size_t size = 0;
};

// Read-only bytes of one write item where they lie in memory, as ResolveStridedData returns
// them: the `size` bytes, in row-major order of `shape`, of the elements (`element_size` bytes
// each) at data + sum(index[d] * strides[d]) elements. Empty `strides`: contiguous, the
// ConstBytes {data, size}. Valid as long as ResolveData's bytes would be.
struct DCPKV_EXPORT ConstStridedBytes {
  const void* data = nullptr;
  size_t size = 0;
  Shape shape;
  std::vector<uint64_t> strides;
  size_t element_size = 1;
};

// The coordinator's result: one final plan per rank and the checkpoint's Metadata.
struct DCPKV_EXPORT GlobalSavePlan {
  std::vector<SavePlan> plans;
  Metadata metadata;
};

// What save remembers between saves when plan caching is on. Managed by the save protocol.
struct DCPKV_EXPORT SavePlanCache {
  bool valid = false;
  int world_size = 0;
  int coordinator_rank = 0;
  uint64_t local_plan_hash = 0;  // every rank: hash of the local plan it sent last
  SavePlan final_plan;           // every rank: the final plan it received last
  // Coordinator only: every rank's last local plan, the final plans and the Metadata.
  // Each rank's last local plan, encoded as the rank sent it (decoded only when some ranks send
  // a cached hash and others a new plan), and its HashSavePlan.
  std::vector<std::string> local_plan_payloads;
  std::vector<uint64_t> local_plan_hashes;
  std::vector<uint64_t> final_plan_hashes;
  GlobalSavePlan global;
};

class DCPKV_EXPORT SavePlanner {
 public:
  virtual ~SavePlanner() = default;
  // `state` must outlive the save.
  virtual Status SetUpPlanner(const FlatStateDict* state, bool is_coordinator) = 0;
  virtual StatusOr<SavePlan> CreateLocalPlan() = 0;
  // Coordinator only. all_plans[r] is rank r's local plan.
  virtual StatusOr<GlobalSavePlan> CreateGlobalPlan(std::vector<SavePlan> all_plans) = 0;
  virtual StatusOr<SavePlan> FinishPlan(SavePlan central_plan) = 0;
  // The bytes to write for `item`, contiguous.
  virtual StatusOr<ConstBytes> ResolveData(const WriteItem& item) = 0;
  // The bytes to write for `item` where they lie, for writers that copy strided memory run by
  // run themselves (KvStorageWriter): a strided tensor is then saved without a contiguous copy.
  // Default: ResolveData's bytes.
  virtual StatusOr<ConstStridedBytes> ResolveStridedData(const WriteItem& item);
  // True if the bytes ResolveData returns for the final plan's items all stay valid until the
  // save returns (the ConstBytes contract), so that a writer may resolve every item first and
  // write them from several threads. False if some are valid only until the next ResolveData:
  // the writer then resolves and writes the items one at a time, in plan order.
  virtual bool ResolvedDataOutlivesNextResolve() const { return true; }
  // Non-null if this planner caches plans between saves: a save whose local plans all equal
  // the previous save's sends only their hashes, and the coordinator reuses the global plan.
  virtual SavePlanCache* plan_cache() { return nullptr; }
};

struct DCPKV_EXPORT DefaultSavePlannerOptions {
  // Write each item replicated on several ranks (same fqn and offsets) exactly once, on the
  // candidate rank with the fewest bytes to write. Default: true.
  bool dedup_replicated_tensors = true;
  // Remember plans between saves (useful with a long-lived Checkpointer). Default: false.
  bool enable_plan_caching = false;
};

// CUDA tensors: CreateLocalPlan fails with FAILED_PRECONDITION if one is on a device this
// process cannot use. FinishPlan notes the final plan's device items in order; ResolveData of
// one waits for its device-to-host copy into a page-locked host buffer and starts the copy of
// the next device item into a second one, so the copy of item k+1 overlaps the writing of item
// k. The returned bytes stay valid until the next ResolveData (the writer must be done with
// them by then, as KvStorageWriter is). Host memory: two buffers of the largest device item,
// kept until the next FinishPlan or the planner's destruction.
class DCPKV_EXPORT DefaultSavePlanner : public SavePlanner {
 public:
  explicit DefaultSavePlanner(DefaultSavePlannerOptions options = {});
  ~DefaultSavePlanner() override;

  Status SetUpPlanner(const FlatStateDict* state, bool is_coordinator) override;
  StatusOr<SavePlan> CreateLocalPlan() override;
  StatusOr<GlobalSavePlan> CreateGlobalPlan(std::vector<SavePlan> all_plans) override;
  StatusOr<SavePlan> FinishPlan(SavePlan central_plan) override;
  // A strided host tensor: a contiguous copy, made once per item and kept until the next
  // SetUpPlanner (writers that read strided memory use ResolveStridedData instead).
  StatusOr<ConstBytes> ResolveData(const WriteItem& item) override;
  // A strided host tensor: a view of its memory, no copy.
  StatusOr<ConstStridedBytes> ResolveStridedData(const WriteItem& item) override;
  // False if the final plan has an item of a CUDA tensor. A subclass whose ResolveData returns
  // bytes that the next call replaces (one reused buffer) must override it to return false.
  bool ResolvedDataOutlivesNextResolve() const override { return device_order_.empty(); }
  SavePlanCache* plan_cache() override;

 private:
  DefaultSavePlannerOptions options_;
  const FlatStateDict* state_ = nullptr;
  SavePlanCache cache_;
  // Host copies of device items, created by the first save that has some.
  std::unique_ptr<cuda::SaveStaging> device_staging_;
  // (fqn, offsets) of each device item of the final plan -> its place in the copy order.
  std::map<std::pair<std::string, Shape>, size_t> device_order_;
  // Contiguous copies of strided host tensors that ResolveData made, by (fqn, offsets).
  std::map<std::pair<std::string, Shape>, std::vector<uint8_t>> contiguous_copies_;
};

class DCPKV_EXPORT LoadPlanner {
 public:
  virtual ~LoadPlanner() = default;
  // `state` must outlive the load; its tensors and bytes entries are filled in place.
  virtual Status SetUpPlanner(FlatStateDict* state, const Metadata* metadata,
                              bool is_coordinator) = 0;
  virtual StatusOr<LoadPlan> CreateLocalPlan() = 0;
  virtual StatusOr<std::vector<LoadPlan>> CreateGlobalPlan(std::vector<LoadPlan> all_plans) = 0;
  virtual StatusOr<LoadPlan> FinishPlan(LoadPlan central_plan) = 0;
  // The local tensor (whole tensor or local shard at item.dest_offsets) to copy into.
  virtual StatusOr<Tensor> ResolveTensor(const ReadItem& item) = 0;
  // Called after the overlap of `item` has been copied into `tensor`.
  virtual Status CommitTensor(const ReadItem& item, const Tensor& tensor) = 0;
  // Delivers a bytes entry.
  virtual Status LoadBytes(const ReadItem& item, std::string data) = 0;
  // Called once ReadData has returned, also after a failed read: completes what CommitTensor
  // left in flight (copies into device tensors) so that Load returns only when the tensors are
  // filled. Default: nothing to do.
  virtual Status FinishLoad() { return Status::Ok(); }
};

struct DCPKV_EXPORT DefaultLoadPlannerOptions {
  // Skip fqns of the state dict that the checkpoint lacks instead of failing. Default: false.
  bool allow_partial_load = false;
  // Most host memory (page-locked where possible) that host stand-ins of CUDA tensors hold at
  // once; a stand-in larger than this is still allowed, one at a time. Default: 1 GiB.
  uint64_t device_staging_bytes = uint64_t{1} << 30;
};

// CUDA tensors: CreateLocalPlan fails with FAILED_PRECONDITION if one is on a device this
// process cannot use. ResolveTensor returns a host stand-in of the device tensor (the reader
// fills it); CommitTensor copies the committed region to the device at once, on a stream of
// the planner's, so that copies overlap the reads that follow; FinishLoad waits for them.
class DCPKV_EXPORT DefaultLoadPlanner : public LoadPlanner {
 public:
  explicit DefaultLoadPlanner(DefaultLoadPlannerOptions options = {});
  ~DefaultLoadPlanner() override;

  Status SetUpPlanner(FlatStateDict* state, const Metadata* metadata, bool is_coordinator) override;
  StatusOr<LoadPlan> CreateLocalPlan() override;
  StatusOr<std::vector<LoadPlan>> CreateGlobalPlan(std::vector<LoadPlan> all_plans) override;
  StatusOr<LoadPlan> FinishPlan(LoadPlan central_plan) override;
  StatusOr<Tensor> ResolveTensor(const ReadItem& item) override;
  Status CommitTensor(const ReadItem& item, const Tensor& tensor) override;
  Status LoadBytes(const ReadItem& item, std::string data) override;
  Status FinishLoad() override;

 private:
  StatusOr<cuda::LoadStaging*> DeviceStaging();

  DefaultLoadPlannerOptions options_;
  FlatStateDict* state_ = nullptr;
  const Metadata* metadata_ = nullptr;
  std::unique_ptr<cuda::LoadStaging> device_staging_;  // created by the first CUDA tensor
};

}  // namespace dcpkv

#endif  // DCPKV_PLANNER_H_

// Host copies of CUDA tensors for save and load, at the planner layer (DCP's resolve_tensor /
// commit_tensor), so that storage only ever sees host memory. Not installed: api/ and its tests
// only.
//
// Save (SaveStaging, used by DefaultSavePlanner::ResolveData): the device items of a final plan
// are copied to host memory in plan order, one item ahead: while the writer checksums and
// writes item k from one host buffer, item k+1 is being copied device-to-host into the other
// (two page-locked buffers the size of the largest device item, events telling when each copy
// is done). The host bytes of an item stay valid until the next Resolve.
//
// Load (LoadStaging, used by DefaultLoadPlanner): a CUDA tensor to fill is stood in for by a
// host tensor of its shape; once the reader has filled a region of it and commits that region,
// the region is copied host-to-device at once (pitched copies, cudaMemcpy2DAsync, into the
// target's layout, strided or not), so reads of the next shards overlap the copies. A stand-in is
// returned to the buffer cache when all of its regions are copied; Finish waits for every copy
// (Load returns only after it).
//
// Host buffers come from a process-wide cache of page-locked buffers (pageable memory when
// page-locked memory cannot be had), so repeated saves and loads do not pay cudaHostAlloc
// again. The cache keeps at most DCPKV_PINNED_CACHE_BYTES (environment; default 1 GiB) of
// released buffers.
//
// Thread safety: a SaveStaging or LoadStaging is used by one thread at a time; the cache is
// thread-safe.
#ifndef DCPKV_API_CUDA_STAGING_H_
#define DCPKV_API_CUDA_STAGING_H_

#include <cstddef>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "dcpkv/api/cuda_copy.h"
#include "dcpkv/status.h"
#include "dcpkv/tensor.h"

namespace dcpkv::cuda {

// Host memory for device copies: page-locked when possible, pageable otherwise.
class HostBuffer {
 public:
  HostBuffer() = default;
  ~HostBuffer();
  HostBuffer(HostBuffer&& other) noexcept;
  HostBuffer& operator=(HostBuffer&& other) noexcept;
  HostBuffer(const HostBuffer&) = delete;
  HostBuffer& operator=(const HostBuffer&) = delete;

  void* data() const { return data_; }
  size_t capacity() const { return capacity_; }
  bool pinned() const { return pinned_; }

 private:
  friend StatusOr<HostBuffer> AcquireHostBuffer(size_t bytes);
  void Free();

  void* data_ = nullptr;
  size_t capacity_ = 0;
  bool pinned_ = false;
};

// A buffer of at least `bytes` (a zero-byte request gets an empty buffer): a cached page-locked
// buffer, a new one, or pageable memory. RESOURCE_EXHAUSTED if no memory can be had.
StatusOr<HostBuffer> AcquireHostBuffer(size_t bytes);
// Returns a buffer to the cache (page-locked ones are kept up to the cache's bound).
void ReleaseHostBuffer(HostBuffer buffer);
// Page-locked bytes the cache holds now (for tests).
size_t CachedHostBytes();

// One CopyStream per device, created on first use. The first use of a device after Begin()
// makes the stream wait for the device's legacy default stream (see cuda_copy.h).
class StreamSet {
 public:
  void Begin() { waited_.clear(); }
  StatusOr<CopyStream*> Get(int device);
  // Synchronizes every stream; the first error.
  Status SynchronizeAll();

 private:
  std::map<int, std::unique_ptr<CopyStream>> streams_;
  std::map<int, bool> waited_;
};

// A device-resident source of bytes to save.
struct DeviceSource {
  int device = 0;
  const void* data = nullptr;
  size_t bytes = 0;
  // A strided source: the copies that pack its `bytes` logical bytes into a host buffer.
  // Empty: `bytes` contiguous bytes from `data`.
  std::vector<PitchedCopy> copies;
};

class SaveStaging {
 public:
  SaveStaging() = default;
  ~SaveStaging();
  SaveStaging(const SaveStaging&) = delete;
  SaveStaging& operator=(const SaveStaging&) = delete;

  // Starts a save whose writer is expected to resolve `order` in this order. Waits for copies
  // of an earlier save. Allocates the two host buffers for the largest source.
  Status Reset(std::vector<DeviceSource> order);
  // Host bytes of order[index], valid until the next Resolve, Reset or Release. Any order
  // works; plan order overlaps copies with writes.
  StatusOr<const void*> Resolve(size_t index);
  // Host bytes of a source outside the order (copied at once), valid as Resolve's.
  StatusOr<const void*> ResolveOther(const DeviceSource& source);
  // Waits for every copy and returns the buffers to the cache.
  void Release();

 private:
  struct Slot {
    HostBuffer buffer;
    Event done;
    bool holds = false;  // index (or the other source) is copied or being copied here
    size_t index = 0;
  };
  Status Launch(const DeviceSource& source, Slot& slot);

  std::vector<DeviceSource> order_;
  StreamSet streams_;
  Slot slots_[2];
  int last_ = -1;  // the slot handed out by the last Resolve
};

class LoadStaging {
 public:
  // `budget_bytes`: how much host memory stand-ins may hold at once (at least one stand-in is
  // always allowed).
  explicit LoadStaging(size_t budget_bytes) : budget_bytes_(budget_bytes) {}
  ~LoadStaging();
  LoadStaging(const LoadStaging&) = delete;
  LoadStaging& operator=(const LoadStaging&) = delete;

  // Starts a load. `expected[key]`: how many regions of stand-in `key` will be committed (a
  // key missing there keeps its stand-in until Finish).
  void Reset(std::map<std::string, size_t> expected);
  // The host stand-in of CUDA tensor `target` under `key` (one per key until all of its regions
  // are committed).
  StatusOr<Tensor> Resolve(const std::string& key, const Tensor& target);
  // The region at `offsets` (relative to the target) of `sizes` was filled in the stand-in:
  // copies it to the target. A key without a stand-in is ignored (a CPU tensor).
  Status Commit(const std::string& key, const Shape& offsets, const Shape& sizes);
  // Waits for every copy and returns every buffer; the first error of the load's copies.
  Status Finish();

 private:
  struct Pending {
    Tensor target;
    HostBuffer buffer;
    size_t remaining = 0;  // SIZE_MAX: unknown
  };
  struct InFlight {
    HostBuffer buffer;
    Event done;
  };
  // Returns buffers whose copies are done; waits for the oldest while `want` more bytes would
  // exceed the budget.
  Status Reclaim(size_t want);

  const size_t budget_bytes_;
  std::map<std::string, size_t> expected_;
  std::map<std::string, Pending> pending_;
  std::deque<InFlight> in_flight_;
  size_t held_bytes_ = 0;  // capacity of pending_ and in_flight_ buffers
  StreamSet streams_;
};

// The copies of a box region (`offsets`, `sizes`) of a packed row-major host stand-in of
// `target` into `target`'s own layout (strided or not): copies' source offsets are relative to
// packed_offset in the stand-in, destination offsets to target_offset in the target.
struct RegionCopies {
  uint64_t packed_offset = 0;
  uint64_t target_offset = 0;
  std::vector<PitchedCopy> copies;
};
RegionCopies PlanRegionCopies(const Tensor& target, const Shape& offsets, const Shape& sizes);

}  // namespace dcpkv::cuda

#endif  // DCPKV_API_CUDA_STAGING_H_

#include "dcpkv/api/cuda_staging.h"

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <mutex>
#include <utility>

#include "pinned_memory.h"

namespace dcpkv::cuda {
namespace {

constexpr size_t kMiB = size_t{1} << 20;

size_t CacheLimit() {
  const char* env = std::getenv("DCPKV_PINNED_CACHE_BYTES");
  if (env != nullptr && *env != '\0') {
    char* end = nullptr;
    const unsigned long long v = std::strtoull(env, &end, 10);
    if (end != nullptr && *end == '\0') return static_cast<size_t>(v);
  }
  return 1024 * kMiB;
}

// Released page-locked buffers by capacity. Never destroyed: freeing page-locked memory while
// the CUDA runtime shuts down at exit is not safe, and the process's memory goes anyway.
struct Cache {
  std::mutex mu;
  std::multimap<size_t, HostBuffer> free;  // GUARDED_BY(mu)
  size_t bytes = 0;                        // GUARDED_BY(mu)
  const size_t limit = CacheLimit();
};

Cache& TheCache() {
  static Cache* cache = new Cache;
  return *cache;
}

// Page-locked allocations are rounded up so that buffers of similar sizes can be reused.
size_t RoundCapacity(size_t bytes) {
  if (bytes >= kMiB) return (bytes + 2 * kMiB - 1) / (2 * kMiB) * (2 * kMiB);
  size_t c = 4096;
  while (c < bytes) c *= 2;
  return c;
}

}  // namespace

HostBuffer::~HostBuffer() { Free(); }

HostBuffer::HostBuffer(HostBuffer&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)),
      capacity_(std::exchange(other.capacity_, 0)),
      pinned_(std::exchange(other.pinned_, false)) {}

HostBuffer& HostBuffer::operator=(HostBuffer&& other) noexcept {
  if (this != &other) {
    Free();
    data_ = std::exchange(other.data_, nullptr);
    capacity_ = std::exchange(other.capacity_, 0);
    pinned_ = std::exchange(other.pinned_, false);
  }
  return *this;
}

void HostBuffer::Free() {
  if (data_ == nullptr) return;
  if (pinned_) {
    FreePinned(data_);
  } else {
    std::free(data_);
  }
  data_ = nullptr;
  capacity_ = 0;
  pinned_ = false;
}

StatusOr<HostBuffer> AcquireHostBuffer(size_t bytes) {
  HostBuffer b;
  if (bytes == 0) return b;
  Cache& cache = TheCache();
  {
    std::lock_guard<std::mutex> lock(cache.mu);
    // The smallest cached buffer that fits, unless it is much larger than needed.
    auto it = cache.free.lower_bound(bytes);
    if (it != cache.free.end() && it->first <= std::max(2 * bytes, bytes + 4 * kMiB)) {
      b = std::move(it->second);
      cache.bytes -= b.capacity();
      cache.free.erase(it);
      return b;
    }
  }
  if (PinnedMemoryAvailable()) {
    const size_t capacity = RoundCapacity(bytes);
    void* p = AllocatePinned(capacity);
    if (p == nullptr) {
      // Out of page-lockable memory: give the cached buffers back and try once more.
      std::multimap<size_t, HostBuffer> dropped;
      {
        std::lock_guard<std::mutex> lock(cache.mu);
        dropped.swap(cache.free);
        cache.bytes = 0;
      }
      dropped.clear();
      p = AllocatePinned(capacity);
    }
    if (p != nullptr) {
      b.data_ = p;
      b.capacity_ = capacity;
      b.pinned_ = true;
      return b;
    }
  }
  b.data_ = std::malloc(bytes);
  if (b.data_ == nullptr) {
    return ResourceExhaustedError("cannot allocate " + std::to_string(bytes) +
                                  " bytes of host memory for device copies");
  }
  b.capacity_ = bytes;
  return b;
}

void ReleaseHostBuffer(HostBuffer buffer) {
  if (!buffer.pinned()) return;  // pageable memory is freed here
  Cache& cache = TheCache();
  std::multimap<size_t, HostBuffer> evicted;  // freed outside the lock
  std::lock_guard<std::mutex> lock(cache.mu);
  cache.bytes += buffer.capacity();
  cache.free.emplace(buffer.capacity(), std::move(buffer));
  while (cache.bytes > cache.limit && !cache.free.empty()) {
    auto largest = std::prev(cache.free.end());
    cache.bytes -= largest->first;
    evicted.insert(cache.free.extract(largest));
  }
}

size_t CachedHostBytes() {
  Cache& cache = TheCache();
  std::lock_guard<std::mutex> lock(cache.mu);
  return cache.bytes;
}

StatusOr<CopyStream*> StreamSet::Get(int device) {
  std::unique_ptr<CopyStream>& stream = streams_[device];
  if (stream == nullptr) {
    StatusOr<std::unique_ptr<CopyStream>> created = CopyStream::Create(device);
    if (!created.ok()) {
      streams_.erase(device);
      return created.status();
    }
    stream = std::move(created).value();
  }
  if (!waited_[device]) {
    DCPKV_RETURN_IF_ERROR(stream->WaitForDefaultStream());
    waited_[device] = true;
  }
  return stream.get();
}

Status StreamSet::SynchronizeAll() {
  Status first;
  for (auto& [device, stream] : streams_) {
    Status s = stream->Synchronize();
    if (first.ok() && !s.ok()) first = s;
  }
  return first;
}

// ---- save ----

SaveStaging::~SaveStaging() { Release(); }

Status SaveStaging::Reset(std::vector<DeviceSource> order) {
  Release();
  order_ = std::move(order);
  streams_.Begin();
  size_t largest = 0;
  for (const DeviceSource& s : order_) largest = std::max(largest, s.bytes);
  for (size_t k = 0; k < 2 && k < order_.size(); ++k) {
    DCPKV_ASSIGN_OR_RETURN(slots_[k].buffer, AcquireHostBuffer(largest));
  }
  return Status::Ok();
}

Status SaveStaging::Launch(const DeviceSource& source, Slot& slot) {
  DCPKV_RETURN_IF_ERROR(slot.done.Wait());  // the slot's previous copy
  slot.holds = false;
  if (slot.buffer.capacity() < source.bytes) {
    ReleaseHostBuffer(std::move(slot.buffer));
    DCPKV_ASSIGN_OR_RETURN(slot.buffer, AcquireHostBuffer(source.bytes));
  }
  DCPKV_ASSIGN_OR_RETURN(CopyStream * stream, streams_.Get(source.device));
  if (source.copies.empty()) {
    DCPKV_RETURN_IF_ERROR(stream->CopyToHost(slot.buffer.data(), source.data, source.bytes));
  } else {
    DCPKV_RETURN_IF_ERROR(
        stream->CopyPitchedToHost(slot.buffer.data(), source.data, source.copies));
  }
  DCPKV_ASSIGN_OR_RETURN(slot.done, stream->Record());
  slot.holds = true;
  return Status::Ok();
}

StatusOr<const void*> SaveStaging::Resolve(size_t index) {
  if (index >= order_.size()) {
    return InternalError("device item " + std::to_string(index) + " of " +
                         std::to_string(order_.size()) + " resolved");
  }
  int s = -1;
  for (int k = 0; k < 2; ++k) {
    if (slots_[k].holds && slots_[k].index == index) s = k;
  }
  if (s < 0) {  // not prefetched: copy it into the slot handed out last (free again now)
    s = last_ >= 0 ? last_ : 0;
    DCPKV_RETURN_IF_ERROR(Launch(order_[index], slots_[s]));
    slots_[s].index = index;
  }
  DCPKV_RETURN_IF_ERROR(slots_[s].done.Wait());
  last_ = s;
  // Prefetch the next item into the other slot while the writer works on this one.
  const size_t next = index + 1;
  Slot& other = slots_[1 - s];
  if (next < order_.size() && !(other.holds && other.index == next)) {
    DCPKV_RETURN_IF_ERROR(Launch(order_[next], other));
    other.index = next;
  }
  return static_cast<const void*>(slots_[s].buffer.data());
}

StatusOr<const void*> SaveStaging::ResolveOther(const DeviceSource& source) {
  const int s = last_ >= 0 ? last_ : 0;
  DCPKV_RETURN_IF_ERROR(Launch(source, slots_[s]));
  DCPKV_RETURN_IF_ERROR(slots_[s].done.Wait());
  slots_[s].holds = false;  // matches no index
  last_ = s;
  return static_cast<const void*>(slots_[s].buffer.data());
}

void SaveStaging::Release() {
  for (Slot& slot : slots_) {
    slot.done.Wait().IgnoreError();  // the buffer may still be a copy's destination
    slot.done = Event();
    slot.holds = false;
    ReleaseHostBuffer(std::move(slot.buffer));
    slot.buffer = HostBuffer();
  }
  last_ = -1;
  order_.clear();
}

// ---- load ----

LoadStaging::~LoadStaging() { Finish().IgnoreError(); }

void LoadStaging::Reset(std::map<std::string, size_t> expected) {
  Finish().IgnoreError();
  expected_ = std::move(expected);
  streams_.Begin();
}

Status LoadStaging::Reclaim(size_t want) {
  while (!in_flight_.empty()) {
    InFlight& f = in_flight_.front();
    DCPKV_ASSIGN_OR_RETURN(bool done, f.done.Done());
    if (!done) {
      if (held_bytes_ + want <= budget_bytes_) break;
      DCPKV_RETURN_IF_ERROR(f.done.Wait());
    }
    held_bytes_ -= f.buffer.capacity();
    ReleaseHostBuffer(std::move(f.buffer));
    in_flight_.pop_front();
  }
  return Status::Ok();
}

StatusOr<Tensor> LoadStaging::Resolve(const std::string& key, const Tensor& target) {
  auto it = pending_.find(key);
  if (it == pending_.end()) {
    DCPKV_RETURN_IF_ERROR(Reclaim(target.nbytes()));
    DCPKV_ASSIGN_OR_RETURN(HostBuffer buffer, AcquireHostBuffer(target.nbytes()));
    held_bytes_ += buffer.capacity();
    auto e = expected_.find(key);
    const size_t remaining = e == expected_.end() ? SIZE_MAX : e->second;
    it = pending_.emplace(key, Pending{target, std::move(buffer), remaining}).first;
  }
  const Pending& p = it->second;
  return Tensor::Wrap(p.target.dtype(), p.target.shape(), p.buffer.data());
}

Status LoadStaging::Commit(const std::string& key, const Shape& offsets, const Shape& sizes) {
  auto it = pending_.find(key);
  if (it == pending_.end()) return Status::Ok();
  Pending& p = it->second;
  DCPKV_ASSIGN_OR_RETURN(CopyStream * stream, streams_.Get(p.target.device().index));
  const RegionCopies region = PlanRegionCopies(p.target, offsets, sizes);
  DCPKV_RETURN_IF_ERROR(stream->CopyPitchedToDevice(
      static_cast<uint8_t*>(p.target.data()) + region.target_offset,
      static_cast<const uint8_t*>(p.buffer.data()) + region.packed_offset, region.copies));
  if (p.remaining != SIZE_MAX && --p.remaining == 0) {
    DCPKV_ASSIGN_OR_RETURN(Event done, stream->Record());
    in_flight_.push_back(InFlight{std::move(p.buffer), std::move(done)});
    pending_.erase(it);
  }
  return Status::Ok();
}

Status LoadStaging::Finish() {
  Status s = streams_.SynchronizeAll();
  for (InFlight& f : in_flight_) ReleaseHostBuffer(std::move(f.buffer));
  for (auto& [key, p] : pending_) ReleaseHostBuffer(std::move(p.buffer));
  in_flight_.clear();
  pending_.clear();
  expected_.clear();
  held_bytes_ = 0;
  return s;
}

RegionCopies PlanRegionCopies(const Tensor& target, const Shape& offsets, const Shape& sizes) {
  const uint64_t element = ElementSize(target.dtype());
  const std::vector<uint64_t> packed = RowMajorByteStrides(target.shape(), element);
  const std::vector<uint64_t> strided = ByteStridesOf(target);
  RegionCopies region;
  for (size_t d = 0; d < offsets.size(); ++d) {
    region.packed_offset += offsets[d] * packed[d];
    region.target_offset += offsets[d] * strided[d];
  }
  region.copies = PlanPitchedCopies(sizes, packed, strided, element);
  return region;
}

}  // namespace dcpkv::cuda

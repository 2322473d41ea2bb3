#include "block_buffer_pool.h"

#include <cstdlib>
#include <new>

namespace dcpkv {
namespace {

// Each buffer starts with a header holding its capacity; Allocate returns what follows it
// (kHeader keeps the 16-byte alignment malloc gives).
constexpr size_t kHeader = 16;

size_t& CapacityOf(void* p) {
  return *reinterpret_cast<size_t*>(static_cast<char*>(p) - kHeader);
}

// Large buffers are rounded up to a multiple of this, so that blocks of nearly the same size
// (chunks of one size, with keys of different lengths) share buffers.
constexpr size_t kGranule = size_t{64} << 10;

}  // namespace

BlockBufferPool::BlockBufferPool(size_t min_pooled_bytes, size_t max_pooled_bytes)
    : min_pooled_bytes_(min_pooled_bytes), max_pooled_bytes_(max_pooled_bytes) {}

BlockBufferPool::~BlockBufferPool() {
  for (auto& [capacity, p] : free_) std::free(static_cast<char*>(p) - kHeader);
}

std::shared_ptr<BlockBufferPool> BlockBufferPool::Shared() {
  // 4 chunks of the default size per read thread of a load's default 8, at most.
  static const auto* const pool =
      new std::shared_ptr<BlockBufferPool>(std::make_shared<BlockBufferPool>(
          size_t{256} << 10, size_t{64} << 20));
  return *pool;
}

void* BlockBufferPool::Allocate(size_t size) {
  size_t capacity = size;
  if (size >= min_pooled_bytes_) {
    capacity = (size + kGranule - 1) / kGranule * kGranule;
    std::lock_guard<std::mutex> lock(mu_);
    // The smallest free buffer that fits, if it is not much larger.
    auto it = free_.lower_bound(size);
    if (it != free_.end() && it->first <= capacity + kGranule) {
      void* p = it->second;
      free_bytes_ -= it->first;
      free_.erase(it);
      return p;
    }
  }
  void* raw = std::malloc(capacity + kHeader);
  if (raw == nullptr) throw std::bad_alloc();
  void* p = static_cast<char*>(raw) + kHeader;
  CapacityOf(p) = capacity;
  return p;
}

void BlockBufferPool::Deallocate(void* p) {
  if (p == nullptr) return;
  const size_t capacity = CapacityOf(p);
  if (capacity >= min_pooled_bytes_) {
    std::lock_guard<std::mutex> lock(mu_);
    if (free_bytes_ + capacity <= max_pooled_bytes_) {
      free_.emplace(capacity, p);
      free_bytes_ += capacity;
      return;
    }
  }
  std::free(static_cast<char*>(p) - kHeader);
}

size_t BlockBufferPool::UsableSize(void* p, size_t) const { return CapacityOf(p); }

size_t BlockBufferPool::pooled_bytes() const {
  std::lock_guard<std::mutex> lock(mu_);
  return free_bytes_;
}

}  // namespace dcpkv

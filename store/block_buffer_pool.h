// BlockBufferPool: the memory allocator of the rank databases' block caches, which RocksDB also
// uses for every data block it reads (cached or not). A chunk's block is megabytes; freshly
// allocated, each costs the kernel a page fault and a cleared page per 4 KiB, which on a cold
// load or `dcpkv verify` of table files that hold chunks inline cost more CPU than the read
// itself. Large buffers are kept when freed (up to a bound) and given out again. Internal to
// store/.
#ifndef DCPKV_STORE_BLOCK_BUFFER_POOL_H_
#define DCPKV_STORE_BLOCK_BUFFER_POOL_H_

#include <rocksdb/memory_allocator.h>

#include <cstddef>
#include <map>
#include <memory>
#include <mutex>

namespace dcpkv {

class BlockBufferPool : public rocksdb::MemoryAllocator {
 public:
  // Buffers of at least `min_pooled_bytes` are kept when freed, `max_pooled_bytes` in all.
  BlockBufferPool(size_t min_pooled_bytes, size_t max_pooled_bytes);
  ~BlockBufferPool() override;

  // The process's pool, shared by every database it opens.
  static std::shared_ptr<BlockBufferPool> Shared();

  const char* Name() const override { return "DcpkvBlockBufferPool"; }
  void* Allocate(size_t size) override;
  void Deallocate(void* p) override;
  size_t UsableSize(void* p, size_t allocation_size) const override;

  size_t pooled_bytes() const;

 private:
  const size_t min_pooled_bytes_;
  const size_t max_pooled_bytes_;
  mutable std::mutex mu_;
  std::multimap<size_t, void*> free_;  // capacity -> buffer (as Allocate returned it)
  size_t free_bytes_ = 0;
};

}  // namespace dcpkv

#endif  // DCPKV_STORE_BLOCK_BUFFER_POOL_H_

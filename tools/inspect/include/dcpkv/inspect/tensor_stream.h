// TensorStream: the bytes of one saved tensor in global row-major order, assembled from every
// rank's shards a bounded slab at a time, however large the tensor and however it was sharded.
//
// A slab is the set of elements whose index has fixed values in the leading dimensions
// 0..k-1, a range in dimension k and any value in the trailing ones, with k the first dimension
// whose trailing block fits the slab budget. A slab is contiguous in the global tensor, and its
// intersection with any saved shard is contiguous in that shard too, so each overlap is one
// ranged read of the shard's chunks (no more bytes than the slab) and one box copy.
//
// Thread safety: not thread-safe.
#ifndef DCPKV_INSPECT_TENSOR_STREAM_H_
#define DCPKV_INSPECT_TENSOR_STREAM_H_

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "dcpkv/inspect/store_view.h"
#include "dcpkv/metadata.h"
#include "dcpkv/status.h"

namespace dcpkv::inspect {

// Default slab budget: 64 MiB.
inline constexpr uint64_t kDefaultSlabBytes = uint64_t{64} << 20;

// The slabs of a tensor of `shape` and `element_size`, front to back.
class SlabCursor {
 public:
  // Slabs hold at most max(max_slab_bytes, one element) bytes.
  SlabCursor(Shape shape, size_t element_size, uint64_t max_slab_bytes);

  bool done() const { return next_element_ >= total_elements_; }
  uint64_t total_elements() const { return total_elements_; }
  // Sets the next slab's offsets and sizes (in the global tensor) and moves past it.
  // REQUIRES: !done()
  void Next(Shape* offsets, Shape* sizes);

 private:
  Shape shape_;
  uint64_t total_elements_ = 1;
  uint64_t next_element_ = 0;
  size_t slab_dim_ = 0;          // k: the dimension a slab ranges over
  uint64_t slab_rows_ = 1;       // its extent along k (at most)
  std::vector<uint64_t> inner_;  // inner_[d]: elements of one index step in dimension d
};

class TensorStream {
 public:
  // Streams `entry` (tensor or bytes entry `fqn` of committed checkpoint `checkpoint_id`).
  // Slabs hold at most max(max_slab_bytes, one element) bytes.
  TensorStream(StoreView* view, std::string checkpoint_id, std::string fqn, EntryMetadata entry,
               uint64_t max_slab_bytes = kDefaultSlabBytes);
  ~TensorStream();

  // Total bytes of the tensor.
  uint64_t total_bytes() const { return total_bytes_; }
  // Bytes returned so far.
  uint64_t position() const { return position_; }
  bool done() const { return position_ >= total_bytes_; }

  // The next slab; empty once done(). Valid until the next call. DATA_LOSS naming the chunk if a
  // chunk is damaged or missing.
  StatusOr<std::span<const uint8_t>> Next();

 private:
  StoreView* view_;
  std::string checkpoint_id_;
  std::string fqn_;
  EntryMetadata entry_;
  uint64_t element_size_ = 1;
  uint64_t total_bytes_ = 0;
  SlabCursor cursor_;
  uint64_t position_ = 0;
  std::vector<uint8_t> slab_;
  std::vector<uint8_t> scratch_;
};

}  // namespace dcpkv::inspect

#endif  // DCPKV_INSPECT_TENSOR_STREAM_H_

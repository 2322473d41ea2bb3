// Strided blocks of elements: where the elements of a (possibly strided) tensor lie, as runs of
// contiguous bytes, and copies between such a block and its row-major bytes.
//
// A block is walked in row-major order of its shape. Its layout collapses the shape into
// "outer" dimensions and one innermost run: the longest suffix of dimensions whose elements are
// contiguous in memory (a whole row of a column shard; a single element of a transposed
// matrix). The logical byte b of the block (its b-th byte in row-major order) then lies in run
// b / run_bytes, at byte b % run_bytes of it.
//
// Thread safety: pure functions of their arguments (copies write only their destination).
#ifndef DCPKV_CORE_STRIDED_H_
#define DCPKV_CORE_STRIDED_H_

#include <cstdint>
#include <vector>

#include "dcpkv/core/box.h"
#include "dcpkv/tensor.h"

namespace dcpkv {

struct StridedLayout {
  // Outer dimensions, outermost first, after dropping dimensions of size 1 and merging those
  // that continue one another; empty for a contiguous block.
  std::vector<uint64_t> outer_sizes;
  std::vector<uint64_t> outer_byte_strides;
  // Bytes of each innermost run (the whole block when it is contiguous).
  uint64_t run_bytes = 0;
  // Logical bytes of the block.
  uint64_t total_bytes = 0;

  bool contiguous() const { return outer_sizes.empty(); }
  // True if two indices of the block address the same memory (an outer stride of 0, or
  // strides that make runs overlap). A conservative test: false guarantees no overlap.
  bool MayOverlap() const;
};

// The layout of a block of `shape` with `strides` (in elements; empty: row-major) of elements of
// `element_size` bytes. REQUIRES: Tensor::Validate() would accept the shape and strides.
StridedLayout MakeStridedLayout(const Shape& shape, const std::vector<uint64_t>& strides,
                                uint64_t element_size);
// The layout of `t` (its shape, strides and dtype).
StridedLayout LayoutOf(const Tensor& t);

// Copies logical bytes [offset, offset + size) of the block at `base` to `dst`.
// REQUIRES: offset + size <= layout.total_bytes.
void GatherBytes(const void* base, const StridedLayout& layout, uint64_t offset, uint64_t size,
                 void* dst);
// Copies `size` bytes from `src` to logical bytes [offset, offset + size) of the block at `base`.
// REQUIRES: offset + size <= layout.total_bytes; !layout.MayOverlap().
void ScatterBytes(void* base, const StridedLayout& layout, uint64_t offset, uint64_t size,
                  const void* src);

// CopyBox (box.h) into a strided destination: the element of dst_box at index i (relative to
// dst_box.offsets) lies at dst + sum(i[d] * dst_byte_strides[d]). The source is row-major.
// REQUIRES: as CopyBox; dst_byte_strides has one entry per dimension; the destination's
// elements do not overlap.
void CopyBoxToStrided(const void* src, const Box& src_box, void* dst, const Box& dst_box,
                      const std::vector<uint64_t>& dst_byte_strides, const Box& region,
                      size_t element_size);

}  // namespace dcpkv

#endif  // DCPKV_CORE_STRIDED_H_

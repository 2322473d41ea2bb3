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
#include <string_view>
#include <vector>

#include "dcpkv/core/box.h"
#include "dcpkv/status.h"
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

// One two-dimensional copy, as cudaMemcpy2D makes them: `rows` runs of `width` bytes, run r
// from src + src_offset + r * src_pitch to dst + dst_offset + r * dst_pitch. When rows > 1 both
// pitches are at least `width`.
struct PitchedCopy {
  uint64_t src_offset = 0;
  uint64_t dst_offset = 0;
  uint64_t src_pitch = 0;
  uint64_t dst_pitch = 0;
  uint64_t width = 0;
  uint64_t rows = 1;
};

// The pitched copies that move every element of a block of `shape` from a source laid out with
// `src_byte_strides` to a destination laid out with `dst_byte_strides` (one stride in bytes per
// dimension; RowMajorByteStrides for a packed side). As few copies as the layouts allow:
// dimensions contiguous on both sides form each copy's width, the longest remaining dimension
// whose pitches allow it forms its rows, and one copy is made per index of the others. A
// contiguous block on both sides is one copy; a column shard of a row-major matrix, one copy of
// many rows. A source may repeat elements (a stride of 0); the destination must not.
std::vector<PitchedCopy> PlanPitchedCopies(const Shape& shape,
                                           const std::vector<uint64_t>& src_byte_strides,
                                           const std::vector<uint64_t>& dst_byte_strides,
                                           uint64_t element_size);

// OK unless `t` is a strided view whose elements may share memory (LayoutOf(t).MayOverlap());
// then INVALID_ARGUMENT naming `what` (e.g. "tensor \"w\""), its shape and strides: such a
// view can be saved but not loaded into.
Status CheckDistinctElements(const Tensor& t, std::string_view what);

// The pitched copies that pack the elements of `t` into row-major bytes (one copy when `t` is
// contiguous).
std::vector<PitchedCopy> PlanPackingCopies(const Tensor& t);

// Byte strides of a row-major block of `shape`.
std::vector<uint64_t> RowMajorByteStrides(const Shape& shape, uint64_t element_size);
// Byte strides of `t`: its strides times its element size (row-major ones when contiguous).
std::vector<uint64_t> ByteStridesOf(const Tensor& t);

}  // namespace dcpkv

#endif  // DCPKV_CORE_STRIDED_H_

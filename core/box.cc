#include "dcpkv/core/box.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <vector>

namespace dcpkv {
namespace {

// Per-dimension scratch for CopyBox: on the stack up to 64 dimensions, on the heap beyond.
class Scratch {
 public:
  explicit Scratch(size_t n) {
    if (n > inline_.size()) heap_.resize(n);
  }
  uint64_t* data() { return heap_.empty() ? inline_.data() : heap_.data(); }

 private:
  std::array<uint64_t, 3 * 64> inline_;
  std::vector<uint64_t> heap_;
};

// Row-major byte strides of a buffer holding a box of `sizes`.
void ByteStrides(const Shape& sizes, size_t element_size, uint64_t* strides) {
  uint64_t stride = element_size;
  for (size_t d = sizes.size(); d-- > 0;) {
    strides[d] = stride;
    stride *= sizes[d];
  }
}

// Byte offset, in a buffer holding `box`, of the element at global coordinates `point`.
uint64_t ByteOffset(const Box& box, const Shape& point, const uint64_t* strides) {
  uint64_t offset = 0;
  for (size_t d = 0; d < point.size(); ++d) offset += (point[d] - box.offsets[d]) * strides[d];
  return offset;
}

// memcpy of `n` bytes, with the common element sizes as fixed-size moves.
inline void CopyRun(uint8_t* dst, const uint8_t* src, uint64_t n) {
  switch (n) {
    case 1: std::memcpy(dst, src, 1); return;
    case 2: std::memcpy(dst, src, 2); return;
    case 4: std::memcpy(dst, src, 4); return;
    case 8: std::memcpy(dst, src, 8); return;
    default: std::memcpy(dst, src, n); return;
  }
}

// The number of leading dimensions of `region` that CopyBox walks one index at a time: the
// dimensions after them are whole in `region`, `src` and `dst` (except the first of them), so
// each combination of outer indices is one contiguous run in both buffers.
size_t OuterDims(const Box& src, const Box& dst, const Box& region) {
  size_t k = region.sizes.size();
  while (k > 0) {
    --k;
    const uint64_t n = region.sizes[k];
    if (n != src.sizes[k] || n != dst.sizes[k]) break;
  }
  return k;
}

}  // namespace

std::string BoxToString(const Box& box) {
  return "offsets " + ShapeToString(box.offsets) + " sizes " + ShapeToString(box.sizes);
}

bool Intersect(const Box& a, const Box& b, Box* out) {
  const size_t ndim = a.offsets.size();
  if (b.offsets.size() != ndim) return false;
  Box result{Shape(ndim), Shape(ndim)};
  for (size_t d = 0; d < ndim; ++d) {
    const uint64_t lo = std::max(a.offsets[d], b.offsets[d]);
    // lo >= both offsets, so these differences cannot wrap; comparing them with the sizes
    // avoids computing offsets + sizes.
    const uint64_t into_a = lo - a.offsets[d];
    const uint64_t into_b = lo - b.offsets[d];
    if (into_a >= a.sizes[d] || into_b >= b.sizes[d]) return false;
    result.offsets[d] = lo;
    result.sizes[d] = std::min(a.sizes[d] - into_a, b.sizes[d] - into_b);
  }
  if (out != nullptr) *out = std::move(result);
  return true;
}

bool Contains(const Box& outer, const Box& inner) {
  const size_t ndim = outer.offsets.size();
  if (inner.offsets.size() != ndim) return false;
  for (size_t d = 0; d < ndim; ++d) {
    if (inner.offsets[d] < outer.offsets[d]) return false;
    const uint64_t into = inner.offsets[d] - outer.offsets[d];
    if (into > outer.sizes[d] || inner.sizes[d] > outer.sizes[d] - into) return false;
  }
  return true;
}

uint64_t Volume(const Box& box) {
  uint64_t volume = 1;
  for (uint64_t size : box.sizes) volume *= size;
  return volume;
}

StatusOr<uint64_t> CheckedVolume(const Box& box) {
  if (std::find(box.sizes.begin(), box.sizes.end(), 0) != box.sizes.end()) return uint64_t{0};
  uint64_t volume = 1;
  for (uint64_t size : box.sizes) {
    if (__builtin_mul_overflow(volume, size, &volume)) {
      return InvalidArgumentError("box at " + BoxToString(box) +
                                  " has more than 2^64 - 1 elements");
    }
  }
  return volume;
}

void CopyBox(const void* src, const Box& src_box, void* dst, const Box& dst_box, const Box& region,
             size_t element_size) {
  if (Volume(region) == 0) return;
  const size_t ndim = region.sizes.size();
  Scratch scratch(3 * ndim);
  uint64_t* src_strides = scratch.data();
  uint64_t* dst_strides = src_strides + ndim;
  uint64_t* index = dst_strides + ndim;
  ByteStrides(src_box.sizes, element_size, src_strides);
  ByteStrides(dst_box.sizes, element_size, dst_strides);
  const size_t outer = OuterDims(src_box, dst_box, region);
  uint64_t run = element_size;
  for (size_t d = outer; d < ndim; ++d) run *= region.sizes[d];

  const uint8_t* from =
      static_cast<const uint8_t*>(src) + ByteOffset(src_box, region.offsets, src_strides);
  uint8_t* to = static_cast<uint8_t*>(dst) + ByteOffset(dst_box, region.offsets, dst_strides);
  if (outer == 0) {
    std::memcpy(to, from, run);
    return;
  }
  std::fill(index, index + outer, uint64_t{0});
  for (;;) {
    CopyRun(to, from, run);
    // Advance the odometer over dimensions [0, outer), innermost first.
    size_t d = outer - 1;
    while (++index[d] == region.sizes[d]) {
      index[d] = 0;
      from -= (region.sizes[d] - 1) * src_strides[d];
      to -= (region.sizes[d] - 1) * dst_strides[d];
      if (d == 0) return;
      --d;
    }
    from += src_strides[d];
    to += dst_strides[d];
  }
}

StatusOr<std::pair<uint64_t, uint64_t>> ByteRange(const Box& shard, const Box& region,
                                                  size_t element_size) {
  if (element_size == 0) return InvalidArgumentError("ByteRange with element size 0");
  if (!Contains(shard, region)) {
    return InvalidArgumentError("region at " + BoxToString(region) +
                                " is not within the shard at " + BoxToString(shard));
  }
  DCPKV_ASSIGN_OR_RETURN(const uint64_t volume, CheckedVolume(shard));
  uint64_t bytes;
  if (__builtin_mul_overflow(volume, element_size, &bytes)) {
    return InvalidArgumentError("shard at " + BoxToString(shard) + " with element size " +
                                std::to_string(element_size) + " has more than 2^64 - 1 bytes");
  }
  if (Volume(region) == 0) return std::pair<uint64_t, uint64_t>{0, 0};
  // The first and last elements of the region are its lexicographically smallest and largest
  // coordinates, and row-major order is lexicographic order.
  std::vector<uint64_t> strides(shard.sizes.size());
  ByteStrides(shard.sizes, element_size, strides.data());
  Shape last = region.offsets;
  for (size_t d = 0; d < last.size(); ++d) last[d] += region.sizes[d] - 1;
  return std::pair<uint64_t, uint64_t>{ByteOffset(shard, region.offsets, strides.data()),
                                       ByteOffset(shard, last, strides.data()) + element_size};
}

}  // namespace dcpkv

#include "dcpkv/core/strided.h"

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <string>

namespace dcpkv {
namespace {

// Walks the runs of [offset, offset + size): calls copy(memory_offset, logical_offset, n) for
// each contiguous piece, in order.
template <typename Copy>
void WalkRuns(const StridedLayout& layout, uint64_t offset, uint64_t size, Copy copy) {
  if (size == 0) return;
  if (layout.contiguous()) {
    copy(offset, offset, size);
    return;
  }
  const size_t ndim = layout.outer_sizes.size();
  // The odometer of the first run touched, and the byte offset of that run in memory.
  std::vector<uint64_t> index(ndim);
  uint64_t run = offset / layout.run_bytes;
  uint64_t within = offset % layout.run_bytes;
  uint64_t address = 0;
  for (size_t d = ndim; d-- > 0;) {
    index[d] = run % layout.outer_sizes[d];
    run /= layout.outer_sizes[d];
    address += index[d] * layout.outer_byte_strides[d];
  }
  uint64_t logical = offset;
  while (size > 0) {
    const uint64_t n = std::min(layout.run_bytes - within, size);
    copy(address + within, logical, n);
    logical += n;
    size -= n;
    within = 0;
    // Next run: advance the odometer, innermost outer dimension first.
    for (size_t d = ndim; d-- > 0;) {
      address += layout.outer_byte_strides[d];
      if (++index[d] < layout.outer_sizes[d]) break;
      address -= index[d] * layout.outer_byte_strides[d];
      index[d] = 0;
    }
  }
}

}  // namespace

StridedLayout MakeStridedLayout(const Shape& shape, const std::vector<uint64_t>& strides,
                                uint64_t element_size) {
  StridedLayout layout;
  uint64_t numel = 1;
  for (uint64_t s : shape) numel *= s;
  layout.total_bytes = numel * element_size;
  layout.run_bytes = layout.total_bytes;
  if (strides.empty() || numel == 0) return layout;
  // Dimensions that matter (size > 1), outermost first, with their strides in bytes.
  std::vector<std::pair<uint64_t, uint64_t>> dims;
  for (size_t d = 0; d < shape.size(); ++d) {
    if (shape[d] != 1) dims.push_back({shape[d], strides[d] * element_size});
  }
  // The innermost run: dimensions from the innermost out while each continues the next.
  uint64_t run = element_size;
  while (!dims.empty() && dims.back().second == run) {
    run *= dims.back().first;
    dims.pop_back();
  }
  layout.run_bytes = run;
  // Merge outer dimensions that continue one another (d's stride is d+1's size * stride).
  for (const auto& [size, stride] : dims) {
    if (!layout.outer_sizes.empty() && layout.outer_byte_strides.back() == size * stride) {
      layout.outer_sizes.back() *= size;
      layout.outer_byte_strides.back() = stride;
    } else {
      layout.outer_sizes.push_back(size);
      layout.outer_byte_strides.push_back(stride);
    }
  }
  return layout;
}

StridedLayout LayoutOf(const Tensor& t) {
  return MakeStridedLayout(t.shape(), t.is_contiguous() ? std::vector<uint64_t>() : t.strides(),
                           ElementSize(t.dtype()));
}

bool StridedLayout::MayOverlap() const {
  // Sufficient for no overlap: taking the outer dimensions by increasing stride, each stride is
  // at least the extent of the run and the dimensions before it (so a transposed layout passes).
  std::vector<std::pair<uint64_t, uint64_t>> dims;  // (stride, size)
  for (size_t d = 0; d < outer_sizes.size(); ++d) {
    dims.push_back({outer_byte_strides[d], outer_sizes[d]});
  }
  std::sort(dims.begin(), dims.end());
  uint64_t extent = run_bytes;
  for (const auto& [stride, size] : dims) {
    if (stride < extent) return true;
    extent += stride * (size - 1);
  }
  return false;
}

void GatherBytes(const void* base, const StridedLayout& layout, uint64_t offset, uint64_t size,
                 void* dst) {
  const auto* from = static_cast<const uint8_t*>(base);
  auto* to = static_cast<uint8_t*>(dst);
  WalkRuns(layout, offset, size, [&](uint64_t memory, uint64_t logical, uint64_t n) {
    std::memcpy(to + (logical - offset), from + memory, n);
  });
}

void ScatterBytes(void* base, const StridedLayout& layout, uint64_t offset, uint64_t size,
                  const void* src) {
  auto* to = static_cast<uint8_t*>(base);
  const auto* from = static_cast<const uint8_t*>(src);
  WalkRuns(layout, offset, size, [&](uint64_t memory, uint64_t logical, uint64_t n) {
    std::memcpy(to + memory, from + (logical - offset), n);
  });
}

void CopyBoxToStrided(const void* src, const Box& src_box, void* dst, const Box& dst_box,
                      const std::vector<uint64_t>& dst_byte_strides, const Box& region,
                      size_t element_size) {
  if (Volume(region) == 0) return;
  const size_t ndim = region.sizes.size();
  const auto* from = static_cast<const uint8_t*>(src);
  auto* to = static_cast<uint8_t*>(dst);
  if (ndim == 0) {
    std::memcpy(to, from, element_size);
    return;
  }
  // Row-major byte strides of the source, and where the region starts in each buffer.
  std::vector<uint64_t> src_strides(ndim);
  src_strides[ndim - 1] = element_size;
  for (size_t d = ndim - 1; d > 0; --d) src_strides[d - 1] = src_strides[d] * src_box.sizes[d];
  for (size_t d = 0; d < ndim; ++d) {
    from += (region.offsets[d] - src_box.offsets[d]) * src_strides[d];
    to += (region.offsets[d] - dst_box.offsets[d]) * dst_byte_strides[d];
  }
  // Rows of the innermost dimension: contiguous in the source; in the destination too when its
  // innermost stride is one element.
  const uint64_t row = region.sizes[ndim - 1];
  const uint64_t dst_step = dst_byte_strides[ndim - 1];
  std::vector<uint64_t> index(ndim - 1, 0);
  for (;;) {
    if (dst_step == element_size) {
      std::memcpy(to, from, row * element_size);
    } else {
      for (uint64_t k = 0; k < row; ++k) {
        std::memcpy(to + k * dst_step, from + k * element_size, element_size);
      }
    }
    // Next row: the odometer over dimensions [0, ndim - 1), innermost first.
    size_t d = ndim - 1;
    for (;;) {
      if (d == 0) return;
      --d;
      from += src_strides[d];
      to += dst_byte_strides[d];
      if (++index[d] < region.sizes[d]) break;
      from -= region.sizes[d] * src_strides[d];
      to -= region.sizes[d] * dst_byte_strides[d];
      index[d] = 0;
    }
  }
}

std::vector<uint64_t> RowMajorByteStrides(const Shape& shape, uint64_t element_size) {
  std::vector<uint64_t> strides(shape.size());
  uint64_t step = element_size;
  for (size_t d = shape.size(); d-- > 0;) {
    strides[d] = step;
    step *= shape[d];
  }
  return strides;
}

std::vector<uint64_t> ByteStridesOf(const Tensor& t) {
  std::vector<uint64_t> strides = t.strides();  // row-major ones when contiguous
  for (uint64_t& s : strides) s *= ElementSize(t.dtype());
  return strides;
}

Status CheckDistinctElements(const Tensor& t, std::string_view what) {
  if (t.is_contiguous() || !LayoutOf(t).MayOverlap()) return Status::Ok();
  return InvalidArgumentError(std::string(what) + " (shape " + ShapeToString(t.shape()) +
                              ", strides " + ShapeToString(t.strides()) +
                              ") has elements that share memory: a strided destination of a "
                              "load needs distinct elements");
}

std::vector<PitchedCopy> PlanPackingCopies(const Tensor& t) {
  const uint64_t element = ElementSize(t.dtype());
  return PlanPitchedCopies(t.shape(), ByteStridesOf(t), RowMajorByteStrides(t.shape(), element),
                           element);
}

std::vector<PitchedCopy> PlanPitchedCopies(const Shape& shape,
                                           const std::vector<uint64_t>& src_byte_strides,
                                           const std::vector<uint64_t>& dst_byte_strides,
                                           uint64_t element_size) {
  struct Dim {
    uint64_t size, src, dst;
  };
  // Dimensions that matter (size > 1), outermost first.
  std::vector<Dim> dims;
  for (size_t d = 0; d < shape.size(); ++d) {
    if (shape[d] == 0) return {};
    if (shape[d] != 1) dims.push_back({shape[d], src_byte_strides[d], dst_byte_strides[d]});
  }
  // The width: innermost dimensions contiguous on both sides.
  uint64_t width = element_size;
  while (!dims.empty() && dims.back().src == width && dims.back().dst == width) {
    width *= dims.back().size;
    dims.pop_back();
  }
  // Merge dimensions that continue one another on both sides.
  std::vector<Dim> outer;
  for (const Dim& d : dims) {
    if (!outer.empty() && outer.back().src == d.size * d.src &&
        outer.back().dst == d.size * d.dst) {
      outer.back() = {outer.back().size * d.size, d.src, d.dst};
    } else {
      outer.push_back(d);
    }
  }
  // The rows: the longest dimension whose pitches are at least the width on both sides.
  PitchedCopy copy;
  copy.width = width;
  size_t rows_dim = outer.size();
  for (size_t d = 0; d < outer.size(); ++d) {
    if (outer[d].src < width || outer[d].dst < width) continue;
    if (rows_dim == outer.size() || outer[d].size > outer[rows_dim].size) rows_dim = d;
  }
  if (rows_dim < outer.size()) {
    copy.rows = outer[rows_dim].size;
    copy.src_pitch = outer[rows_dim].src;
    copy.dst_pitch = outer[rows_dim].dst;
    outer.erase(outer.begin() + static_cast<std::ptrdiff_t>(rows_dim));
  }
  // One copy per index of the other dimensions, the innermost varying fastest.
  uint64_t count = 1;
  for (const Dim& d : outer) count *= d.size;
  std::vector<PitchedCopy> copies;
  copies.reserve(count);
  std::vector<uint64_t> index(outer.size(), 0);
  for (;;) {
    copies.push_back(copy);
    size_t d = outer.size();
    for (;;) {
      if (d == 0) return copies;
      --d;
      copy.src_offset += outer[d].src;
      copy.dst_offset += outer[d].dst;
      if (++index[d] < outer[d].size) break;
      copy.src_offset -= outer[d].size * outer[d].src;
      copy.dst_offset -= outer[d].size * outer[d].dst;
      index[d] = 0;
    }
  }
}

}  // namespace dcpkv

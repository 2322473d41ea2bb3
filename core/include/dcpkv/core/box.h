// N-d boxes: the geometry of resharding.
//
// A Box is an axis-aligned block of a global tensor: `offsets` is its first element and `sizes`
// its extent, one entry per dimension (both empty for a 0-d scalar, which is one element). A
// buffer "holding" a box stores exactly its Volume() elements in row-major order (the last
// dimension varies fastest), as saved shards and local tensors do.
//
// Load plans intersect saved shards with requested shards (Intersect), read the smallest byte
// range of a saved shard that contains an overlap (ByteRange), and copy the overlap from the
// saved shard's buffer into the requested one (CopyBox).
//
// Unless stated otherwise, functions taking two boxes require them to have the same number of
// dimensions, with offsets.size() == sizes.size(). Arithmetic on box ends never overflows: a box
// whose offsets + sizes exceeds 2^64 - 1 is handled as if its end were exactly offsets + sizes.
//
// Thread safety: pure functions of their arguments.
#ifndef DCPKV_CORE_BOX_H_
#define DCPKV_CORE_BOX_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>

#include "dcpkv/status.h"
#include "dcpkv/tensor.h"

namespace dcpkv {

struct Box {
  Shape offsets;  // global coordinates of the first element
  Shape sizes;    // extent in each dimension; a zero anywhere makes the box empty

  bool operator==(const Box&) const = default;
};

// "offsets [1, 0] sizes [2, 3]"
std::string BoxToString(const Box& box);

// Sets *out to the intersection of `a` and `b` and returns true if it holds at least one
// element; returns false (leaving *out unspecified) if the boxes are disjoint, merely touch, or
// either is empty. Two 0-d boxes intersect in the scalar. Boxes of different rank never
// intersect. `out` may be null when only the answer is needed, and may alias `a` or `b`.
bool Intersect(const Box& a, const Box& b, Box* out);

// True if every coordinate range of `inner` lies within that of `outer`, i.e. for each
// dimension outer.offsets <= inner.offsets and inner's end <= outer's end. This is geometric
// containment: an empty `inner` is contained when its ranges are, so a zero-size box at the
// edge of `outer` is contained but one beyond it is not. False for boxes of different rank.
bool Contains(const Box& outer, const Box& inner);

// Number of elements of `box` (1 for a 0-d box, 0 if any size is 0).
// REQUIRES: the product does not overflow 64 bits (e.g. the box lies within a global shape
// whose NumElements() succeeded). Use CheckedVolume() on untrusted boxes.
uint64_t Volume(const Box& box);

// Like Volume(), but INVALID_ARGUMENT if the product of the sizes overflows 64 bits. A box with
// a zero size has volume 0 even if the product of its other sizes would overflow.
StatusOr<uint64_t> CheckedVolume(const Box& box);

// Copies the elements of `region` (global coordinates) from `src`, a row-major buffer holding
// `src_box`, to `dst`, a row-major buffer holding `dst_box`, leaving every other byte of `dst`
// untouched. Trailing dimensions that are contiguous in both buffers are copied as one memcpy
// run (so a region spanning whole rows of both boxes is a single memcpy); the remaining outer
// dimensions are walked with an index odometer. An empty region copies nothing; a 0-d region
// copies one element.
// REQUIRES: src_box, dst_box and region have the same rank; Contains(src_box, region) and
// Contains(dst_box, region); src and dst hold Volume(box) * element_size bytes each and do not
// overlap; element_size > 0.
void CopyBox(const void* src, const Box& src_box, void* dst, const Box& dst_box, const Box& region,
             size_t element_size);

// The smallest byte range [first, second) of a row-major buffer holding `shard` that contains
// every byte of `region`: from the region's first element to just past its last. An empty
// region gives {0, 0}. INVALID_ARGUMENT if the ranks differ, `region` is not contained in
// `shard`, element_size is 0, or the shard's size in bytes overflows 64 bits.
StatusOr<std::pair<uint64_t, uint64_t>> ByteRange(const Box& shard, const Box& region,
                                                  size_t element_size);

}  // namespace dcpkv

#endif  // DCPKV_CORE_BOX_H_

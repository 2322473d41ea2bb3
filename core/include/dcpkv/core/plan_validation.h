// Validation of the global save plan: do the shards saved for one tensor tile it exactly?
//
// The coordinator gathers every rank's write items into the checkpoint's Metadata; before it
// commits, each tensor's saved shards must cover the global tensor exactly once, or a later
// load would read garbage (a gap) or ambiguous data (an overlap).
//
// Thread safety: pure functions of their arguments.
#ifndef DCPKV_CORE_PLAN_VALIDATION_H_
#define DCPKV_CORE_PLAN_VALIDATION_H_

#include <string>
#include <vector>

#include "dcpkv/dtype.h"
#include "dcpkv/metadata.h"
#include "dcpkv/status.h"
#include "dcpkv/tensor.h"

namespace dcpkv {

// Returns OK if `shards` tile the tensor `fqn` of `dtype` and `global_shape` exactly:
//   - dtype is a valid DType and the global tensor's size in bytes fits in 64 bits;
//   - every shard has offsets and sizes of global_shape.size() entries;
//   - every shard lies within global_shape (offsets + sizes, computed without overflow);
//   - no two shards share an element (shards with a zero size hold no elements and so overlap
//     nothing; two identical non-empty shards do overlap);
//   - together the shards hold every element: with no overlap, the sum of their volumes equals
//     the global volume. A tensor with no elements is valid with any zero-size shards within
//     bounds, including none; a 0-d tensor needs exactly one (0-d) shard.
// Otherwise INVALID_ARGUMENT for the first violation in that order, naming the fqn and, for the
// shards at fault, their index in `shards`, offsets, sizes and rank; for an overlap also the
// region they share, for a gap (where it can be located, which it always can for the layouts
// listed below) one element that no shard holds. SavedShard::bytes and ::chunks are not checked.
//
// Complexity, for n shards of a D-dimensional tensor: O(D^2 n log n + K) time, O(D n) memory.
// The overlap check recursively partitions the shards: within a set of shards, dimensions on
// which they all have the same range are dropped; of the rest, it picks the dimension d whose
// ranges make the fewest pairs of shards with different but overlapping ranges along d (counted
// in O(n log n) per dimension), sorts along d, groups shards with identical ranges along d and
// sweeps the groups in start order keeping an active set ordered by end. Each new group is
// compared shard by shard only with the active groups (those overlapping it along d), and each
// group is checked recursively on the remaining dimensions. K is the total number of such
// cross-group shard pairs compared, summed over the recursion. K = 0 — so O(D^2 n log n) — for
// the layouts of practice: 1-D splits along any dimension (even or uneven), N-d grids with any
// per-dimension split points, and hierarchical splits where every slab of one split is split
// again along another dimension at its own points. It is positive only when no dimension
// separates the shards into groups that are disjoint or identical along it (e.g. a slab that is
// further split along the slab dimension next to one that is not); K <= n (n - 1) / 2 in the
// worst case.
Status ValidateSavedShards(const std::string& fqn, DType dtype, const Shape& global_shape,
                           const std::vector<SavedShard>& shards);

}  // namespace dcpkv

#endif  // DCPKV_CORE_PLAN_VALIDATION_H_

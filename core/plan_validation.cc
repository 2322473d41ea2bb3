#include "dcpkv/core/plan_validation.h"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <tuple>
#include <utility>

#include "dcpkv/core/box.h"

namespace dcpkv {
namespace {

// "shard 3 (offsets [4, 0], sizes [4, 8], rank 1)"
std::string Describe(const std::vector<SavedShard>& shards, size_t i) {
  const SavedShard& s = shards[i];
  return "shard " + std::to_string(i) + " (offsets " + ShapeToString(s.offsets) + ", sizes " +
         ShapeToString(s.sizes) + ", rank " + std::to_string(s.rank) + ")";
}

// The number of elements of the global tensor, checking that its bytes fit in 64 bits.
StatusOr<uint64_t> GlobalVolume(DType dtype, const Shape& global_shape) {
  const size_t element_size = ElementSize(dtype);
  if (element_size == 0) {
    return InvalidArgumentError("invalid dtype " + std::to_string(static_cast<int>(dtype)));
  }
  StatusOr<uint64_t> volume = CheckedVolume(Box{Shape(global_shape.size(), 0), global_shape});
  uint64_t bytes;
  if (!volume.ok() || __builtin_mul_overflow(*volume, element_size, &bytes)) {
    return InvalidArgumentError("global shape " + ShapeToString(global_shape) + " of " +
                                std::string(DTypeName(dtype)) + " has more than 2^64 - 1 bytes");
  }
  return *volume;
}

// Checks that shard i has the rank of the global shape and lies within it.
Status CheckShardBounds(const Shape& global_shape, const std::vector<SavedShard>& shards,
                        size_t i) {
  const SavedShard& s = shards[i];
  const size_t ndim = global_shape.size();
  if (s.offsets.size() != ndim || s.sizes.size() != ndim) {
    return InvalidArgumentError(Describe(shards, i) + " has " + std::to_string(s.offsets.size()) +
                                " offsets and " + std::to_string(s.sizes.size()) +
                                " sizes but global shape " + ShapeToString(global_shape) + " has " +
                                std::to_string(ndim) + " dimensions");
  }
  for (size_t d = 0; d < ndim; ++d) {
    uint64_t end;
    const bool overflow = __builtin_add_overflow(s.offsets[d], s.sizes[d], &end);
    if (!overflow && end <= global_shape[d]) continue;
    const std::string sum = std::to_string(s.offsets[d]) + " + " + std::to_string(s.sizes[d]);
    if (overflow) {
      return InvalidArgumentError(Describe(shards, i) + " overflows in dimension " +
                                  std::to_string(d) + ": " + sum + " > 2^64 - 1");
    }
    return InvalidArgumentError(Describe(shards, i) + " exceeds global shape " +
                                ShapeToString(global_shape) + " in dimension " + std::to_string(d) +
                                ": " + sum + " > " + std::to_string(global_shape[d]));
  }
  return Status::Ok();
}

// REQUIRES: the shard is within bounds of a global shape whose volume fits in 64 bits.
uint64_t ShardVolume(const SavedShard& s) {
  uint64_t volume = 1;
  for (uint64_t size : s.sizes) volume *= size;
  return volume;
}

// REQUIRES: both shards within bounds (so offsets + sizes does not overflow).
bool ShardsOverlap(const SavedShard& a, const SavedShard& b) {
  for (size_t d = 0; d < a.offsets.size(); ++d) {
    if (a.offsets[d] >= b.offsets[d] + b.sizes[d] || b.offsets[d] >= a.offsets[d] + a.sizes[d]) {
      return false;
    }
  }
  return true;
}

// A shard's range [start, end) along one dimension.
struct Interval {
  uint64_t start;
  uint64_t end;
  size_t shard;

  bool operator<(const Interval& o) const {
    return std::tie(start, end, shard) < std::tie(o.start, o.end, o.shard);
  }
};

// A run of shards with the same range along the axis: sorted[first, last).
struct Group {
  uint64_t start;
  uint64_t end;
  size_t first;
  size_t last;

  size_t count() const { return last - first; }
};

// A set of shards sorted and grouped along one dimension.
struct Axis {
  size_t dim = 0;
  std::vector<Interval> sorted;
  std::vector<Group> groups;
  // Pairs of shards in different groups whose ranges along `dim` overlap: the comparisons a
  // sweep along this axis makes.
  uint64_t cross_pairs = 0;

  // Fewer comparisons first, then finer groups (less left for the recursion).
  bool BetterThan(const Axis& o) const {
    return cross_pairs != o.cross_pairs ? cross_pairs < o.cross_pairs
                                        : groups.size() > o.groups.size();
  }
};

// Finds overlaps between non-empty, in-bounds shards, and where it can, an element none holds.
class TilingChecker {
 public:
  explicit TilingChecker(const std::vector<SavedShard>& shards) : shards_(shards) {}

  // Checks that no two of `members` overlap. They agree on every dimension not in `dims`.
  // `target` is the box they lie in; when `exact`, no other shard holds an element of it, so
  // any element of `target` no member holds is recorded as the gap.
  Status Check(const std::vector<size_t>& members, std::vector<size_t> dims, Box target,
               bool exact);

  // An element of the global tensor that no shard holds, if one was found.
  const std::optional<Shape>& gap() const { return gap_; }

 private:
  Axis BuildAxis(const std::vector<size_t>& members, size_t dim) const;
  Status Sweep(const Axis& axis, const std::vector<size_t>& dims, Box& target, bool exact);
  Status CompareGroups(const Axis& axis, const Group& a, const Group& b) const;
  // Records the gap if members agreeing with `target` on `d` leave part of it uncovered.
  void CheckRange(uint64_t start, uint64_t end, const Box& target, size_t d);
  void CheckLeaf(size_t shard, const Box& target);
  void RecordGap(const Box& target, size_t d, uint64_t coordinate);
  Status OverlapError(size_t a, size_t b) const;

  const std::vector<SavedShard>& shards_;
  std::optional<Shape> gap_;
};

Status TilingChecker::Check(const std::vector<size_t>& members, std::vector<size_t> dims,
                            Box target, bool exact) {
  if (members.size() == 1) {
    if (exact) CheckLeaf(members[0], target);
    return Status::Ok();
  }
  // Drop the dimensions on which every member has the same range.
  const SavedShard& first = shards_[members[0]];
  std::vector<size_t> varying;
  for (size_t d : dims) {
    const bool same = std::all_of(members.begin(), members.end(), [&](size_t i) {
      return shards_[i].offsets[d] == first.offsets[d] && shards_[i].sizes[d] == first.sizes[d];
    });
    if (!same) {
      varying.push_back(d);
      continue;
    }
    if (exact) CheckRange(first.offsets[d], first.offsets[d] + first.sizes[d], target, d);
    target.offsets[d] = first.offsets[d];
    target.sizes[d] = first.sizes[d];
  }
  if (varying.empty()) return OverlapError(members[0], members[1]);  // identical shards

  // Sweep along the first dimension that needs no comparisons, else the one needing fewest.
  Axis best = BuildAxis(members, varying[0]);
  for (size_t k = 1; k < varying.size() && best.cross_pairs > 0; ++k) {
    Axis axis = BuildAxis(members, varying[k]);
    if (axis.BetterThan(best)) best = std::move(axis);
  }
  varying.erase(std::find(varying.begin(), varying.end(), best.dim));
  return Sweep(best, varying, target, exact);
}

Axis TilingChecker::BuildAxis(const std::vector<size_t>& members, size_t dim) const {
  Axis axis;
  axis.dim = dim;
  axis.sorted.reserve(members.size());
  for (size_t i : members) {
    const SavedShard& s = shards_[i];
    axis.sorted.push_back(Interval{s.offsets[dim], s.offsets[dim] + s.sizes[dim], i});
  }
  std::sort(axis.sorted.begin(), axis.sorted.end());
  for (size_t i = 0; i < axis.sorted.size(); ++i) {
    const Interval& v = axis.sorted[i];
    if (axis.groups.empty() || axis.groups.back().start != v.start ||
        axis.groups.back().end != v.end) {
      axis.groups.push_back(Group{v.start, v.end, i, i});
    }
    axis.groups.back().last = i + 1;
  }
  // Groups are sorted by start, so those overlapping group g from later on are the run after
  // it that starts before g ends.
  for (auto g = axis.groups.begin(); g != axis.groups.end(); ++g) {
    auto stop = std::partition_point(g + 1, axis.groups.end(),
                                     [&](const Group& h) { return h.start < g->end; });
    const size_t overlapping =
        (stop == axis.groups.end() ? axis.sorted.size() : stop->first) - g->last;
    axis.cross_pairs += static_cast<uint64_t>(g->count()) * overlapping;
  }
  return axis;
}

Status TilingChecker::Sweep(const Axis& axis, const std::vector<size_t>& dims, Box& target,
                            bool exact) {
  const size_t d = axis.dim;
  const std::vector<Group>& groups = axis.groups;
  const uint64_t target_start = target.offsets[d];
  const uint64_t target_end = target_start + target.sizes[d];
  // Active groups (started, not yet ended), as a min-heap by end.
  std::vector<size_t> active;
  const auto ends_later = [&](size_t a, size_t b) { return groups[a].end > groups[b].end; };
  uint64_t reach = target_start;  // the largest end so far
  std::vector<size_t> members;
  for (size_t g = 0; g < groups.size(); ++g) {
    const Group& group = groups[g];
    while (!active.empty() && groups[active.front()].end <= group.start) {
      std::pop_heap(active.begin(), active.end(), ends_later);
      active.pop_back();
    }
    for (size_t a : active) DCPKV_RETURN_IF_ERROR(CompareGroups(axis, groups[a], group));
    if (exact && group.start > reach) RecordGap(target, d, reach);
    // A group that overlaps no other along d is the only one holding elements of its slab.
    const bool isolated =
        reach <= group.start && (g + 1 == groups.size() || group.end <= groups[g + 1].start);
    reach = std::max(reach, group.end);

    target.offsets[d] = group.start;
    target.sizes[d] = group.end - group.start;
    if (group.count() == 1) {
      if (exact && isolated) CheckLeaf(axis.sorted[group.first].shard, target);
    } else {
      members.clear();
      for (size_t i = group.first; i < group.last; ++i) members.push_back(axis.sorted[i].shard);
      DCPKV_RETURN_IF_ERROR(Check(members, dims, target, exact && isolated));
    }
    active.push_back(g);
    std::push_heap(active.begin(), active.end(), ends_later);
  }
  target.offsets[d] = target_start;
  target.sizes[d] = target_end - target_start;
  if (exact && reach < target_end) RecordGap(target, d, reach);
  return Status::Ok();
}

Status TilingChecker::CompareGroups(const Axis& axis, const Group& a, const Group& b) const {
  for (size_t i = a.first; i < a.last; ++i) {
    for (size_t j = b.first; j < b.last; ++j) {
      const size_t x = axis.sorted[i].shard, y = axis.sorted[j].shard;
      if (ShardsOverlap(shards_[x], shards_[y])) return OverlapError(x, y);
    }
  }
  return Status::Ok();
}

void TilingChecker::CheckRange(uint64_t start, uint64_t end, const Box& target, size_t d) {
  if (start > target.offsets[d]) {
    RecordGap(target, d, target.offsets[d]);
  } else if (end < target.offsets[d] + target.sizes[d]) {
    RecordGap(target, d, end);
  }
}

void TilingChecker::CheckLeaf(size_t shard, const Box& target) {
  const SavedShard& s = shards_[shard];
  for (size_t d = 0; d < s.offsets.size() && !gap_; ++d) {
    CheckRange(s.offsets[d], s.offsets[d] + s.sizes[d], target, d);
  }
}

void TilingChecker::RecordGap(const Box& target, size_t d, uint64_t coordinate) {
  if (gap_) return;
  gap_ = target.offsets;
  (*gap_)[d] = coordinate;
}

Status TilingChecker::OverlapError(size_t a, size_t b) const {
  if (a > b) std::swap(a, b);
  Box overlap;
  Intersect(Box{shards_[a].offsets, shards_[a].sizes}, Box{shards_[b].offsets, shards_[b].sizes},
            &overlap);
  return InvalidArgumentError(Describe(shards_, a) + " and " + Describe(shards_, b) +
                              " overlap in the region at " + BoxToString(overlap));
}

Status ValidateTiling(DType dtype, const Shape& global_shape,
                      const std::vector<SavedShard>& shards) {
  DCPKV_ASSIGN_OR_RETURN(const uint64_t volume, GlobalVolume(dtype, global_shape));
  for (size_t i = 0; i < shards.size(); ++i) {
    DCPKV_RETURN_IF_ERROR(CheckShardBounds(global_shape, shards, i));
  }
  std::vector<size_t> members;
  for (size_t i = 0; i < shards.size(); ++i) {
    if (ShardVolume(shards[i]) > 0) members.push_back(i);
  }
  const size_t ndim = global_shape.size();
  const Box global{Shape(ndim, 0), global_shape};
  TilingChecker checker(shards);
  if (!members.empty()) {
    std::vector<size_t> dims(ndim);
    for (size_t d = 0; d < ndim; ++d) dims[d] = d;
    DCPKV_RETURN_IF_ERROR(checker.Check(members, std::move(dims), global, /*exact=*/true));
  }
  // Within bounds and without overlaps, the volumes sum to at most `volume`: no overflow.
  uint64_t covered = 0;
  for (const SavedShard& s : shards) covered += ShardVolume(s);
  if (covered == volume) return Status::Ok();
  std::string message = "the shards hold " + std::to_string(covered) + " of the " +
                        std::to_string(volume) + " elements of global shape " +
                        ShapeToString(global_shape);
  const std::optional<Shape> gap = members.empty() ? global.offsets : checker.gap();
  if (gap) message += "; no shard holds the element at " + ShapeToString(*gap);
  return InvalidArgumentError(message);
}

}  // namespace

Status ValidateSavedShards(const std::string& fqn, DType dtype, const Shape& global_shape,
                           const std::vector<SavedShard>& shards) {
  Status status = ValidateTiling(dtype, global_shape, shards);
  if (!status.ok()) return status.WithContext("fqn \"" + fqn + "\"");
  return status;
}

}  // namespace dcpkv

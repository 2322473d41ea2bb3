// Comparison of two committed checkpoints, for `dcpkv diff`: by fqn, over the global tensors, so
// checkpoints saved with different shardings or world sizes compare by their values.
#ifndef DCPKV_INSPECT_DIFF_H_
#define DCPKV_INSPECT_DIFF_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "dcpkv/inspect/store_view.h"
#include "dcpkv/inspect/verify.h"
#include "dcpkv/status.h"

namespace dcpkv::inspect {

enum class DiffKind { kAdded, kRemoved, kChanged, kUnchanged };

// "added", "removed", "changed", "unchanged"
std::string_view DiffKindName(DiffKind kind);

struct TensorDiff {
  std::string fqn;
  DiffKind kind = DiffKind::kUnchanged;
  // kChanged: "dtype float32 -> bfloat16", "shape [4, 2] -> [8, 2]" or "values"; else empty.
  std::string detail;
  // Present in B if added, A if removed, both otherwise (A's when they differ).
  DType dtype = DType::kFloat32;
  Shape shape;
  // kChanged with equal dtype and shape: elements whose bytes differ, and the largest
  // |b - a| over them where both are numbers (NaN if none such: bytes entries, or every
  // difference involves a NaN; +inf where one side is infinite).
  uint64_t elements_changed = 0;
  double max_abs_diff = 0;
};

struct DiffReport {
  std::string a;  // resolved ids
  std::string b;
  std::vector<TensorDiff> tensors;  // by fqn
};

// Compares checkpoint `a` with `b` (ids or "latest").
StatusOr<DiffReport> DiffCheckpoints(StoreView& view, const std::string& a, const std::string& b,
                                     const ProgressCallback& progress = nullptr);

}  // namespace dcpkv::inspect

#endif  // DCPKV_INSPECT_DIFF_H_

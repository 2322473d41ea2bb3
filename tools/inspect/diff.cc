#include "dcpkv/inspect/diff.h"

#include <cmath>
#include <cstring>
#include <limits>

#include "dcpkv/inspect/tensor_stream.h"
#include "dcpkv/inspect/values.h"

namespace dcpkv::inspect {
namespace {

uint64_t EntryBytes(const EntryMetadata& e) {
  uint64_t n = ElementSize(e.dtype);
  for (uint64_t d : e.global_shape) n *= d;
  return n;
}

// Streams both tensors in lockstep (same shape and dtype give the same slabs).
Status CompareValues(StoreView& view, const std::string& a, const std::string& b,
                     const EntryMetadata& ea, const EntryMetadata& eb, TensorDiff* diff,
                     const std::function<void(uint64_t)>& advance) {
  TensorStream sa(&view, a, diff->fqn, ea);
  TensorStream sb(&view, b, diff->fqn, eb);
  const size_t element = ElementSize(ea.dtype);
  const bool numeric = !ea.is_bytes();
  double max_diff = -1;
  while (!sa.done()) {
    DCPKV_ASSIGN_OR_RETURN(std::span<const uint8_t> da, sa.Next());
    DCPKV_ASSIGN_OR_RETURN(std::span<const uint8_t> db, sb.Next());
    if (da.size() != db.size()) return InternalError("diff of \"" + diff->fqn + "\": slab sizes");
    advance(2 * da.size());
    if (std::memcmp(da.data(), db.data(), da.size()) == 0) continue;
    for (size_t i = 0; i < da.size(); i += element) {
      if (std::memcmp(da.data() + i, db.data() + i, element) == 0) continue;
      ++diff->elements_changed;
      if (!numeric) continue;
      const double x = ElementToDouble(ea.dtype, da.data() + i);
      const double y = ElementToDouble(ea.dtype, db.data() + i);
      if (std::isnan(x) || std::isnan(y)) continue;
      const double d =
          x == y ? 0.0 : (std::isinf(x) || std::isinf(y) ? INFINITY : std::fabs(y - x));
      max_diff = std::max(max_diff, d);
    }
  }
  if (diff->elements_changed > 0) {
    diff->kind = DiffKind::kChanged;
    diff->detail = "values";
  }
  diff->max_abs_diff = max_diff >= 0 ? max_diff : std::numeric_limits<double>::quiet_NaN();
  if (diff->elements_changed == 0) diff->max_abs_diff = 0;
  return Status::Ok();
}

}  // namespace

std::string_view DiffKindName(DiffKind kind) {
  switch (kind) {
    case DiffKind::kAdded: return "added";
    case DiffKind::kRemoved: return "removed";
    case DiffKind::kChanged: return "changed";
    case DiffKind::kUnchanged: return "unchanged";
  }
  return "unknown";
}

StatusOr<DiffReport> DiffCheckpoints(StoreView& view, const std::string& a, const std::string& b,
                                     const ProgressCallback& progress) {
  DiffReport report;
  DCPKV_ASSIGN_OR_RETURN(const CheckpointListing* la, view.Resolve(a));
  DCPKV_ASSIGN_OR_RETURN(const CheckpointListing* lb, view.Resolve(b));
  report.a = la->checkpoint_id;
  report.b = lb->checkpoint_id;
  DCPKV_ASSIGN_OR_RETURN(Metadata ma, view.ReadMetadata(report.a));
  DCPKV_ASSIGN_OR_RETURN(Metadata mb, view.ReadMetadata(report.b));
  uint64_t total = 0;
  for (const auto& [fqn, ea] : ma.entries) {
    auto it = mb.entries.find(fqn);
    if (it != mb.entries.end() && it->second.dtype == ea.dtype &&
        it->second.global_shape == ea.global_shape) {
      total += 2 * EntryBytes(ea);
    }
  }
  uint64_t done = 0;
  auto advance = [&](uint64_t bytes) {
    done += bytes;
    if (progress) progress(done, total);
  };
  auto ia = ma.entries.begin();
  auto ib = mb.entries.begin();
  while (ia != ma.entries.end() || ib != mb.entries.end()) {
    TensorDiff diff;
    if (ib == mb.entries.end() || (ia != ma.entries.end() && ia->first < ib->first)) {
      diff = {ia->first, DiffKind::kRemoved, "", ia->second.dtype, ia->second.global_shape};
      ++ia;
    } else if (ia == ma.entries.end() || ib->first < ia->first) {
      diff = {ib->first, DiffKind::kAdded, "", ib->second.dtype, ib->second.global_shape};
      ++ib;
    } else {
      const EntryMetadata& ea = ia->second;
      const EntryMetadata& eb = ib->second;
      diff = {ia->first, DiffKind::kUnchanged, "", ea.dtype, ea.global_shape};
      if (ea.dtype != eb.dtype) {
        diff.kind = DiffKind::kChanged;
        diff.detail =
            "dtype " + std::string(DTypeName(ea.dtype)) + " -> " + std::string(DTypeName(eb.dtype));
      } else if (ea.global_shape != eb.global_shape) {
        diff.kind = DiffKind::kChanged;
        diff.detail =
            "shape " + ShapeToString(ea.global_shape) + " -> " + ShapeToString(eb.global_shape);
      } else {
        DCPKV_RETURN_IF_ERROR(CompareValues(view, report.a, report.b, ea, eb, &diff, advance));
      }
      if (diff.kind == DiffKind::kChanged && diff.detail != "values") {
        diff.max_abs_diff = std::numeric_limits<double>::quiet_NaN();
      }
      ++ia;
      ++ib;
    }
    report.tensors.push_back(std::move(diff));
  }
  return report;
}

}  // namespace dcpkv::inspect

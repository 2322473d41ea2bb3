#include "dcpkv/maintenance.h"

#include <memory>

#include "dcpkv/inspect/diff.h"
#include "dcpkv/inspect/safetensors_io.h"
#include "dcpkv/inspect/store_view.h"
#include "dcpkv/inspect/verify.h"
#include "dcpkv/store/gc.h"
#include "dcpkv/store/writer_lease.h"

namespace dcpkv {
namespace {

StoreCleanup CleanupOf(const GcReport& gc) {
  StoreCleanup out;
  out.reclaimed_ids = gc.reclaimed_ids;
  out.pending_ids = gc.pending_ids;
  out.orphan_ids = gc.orphan_ids;
  out.payload_bytes_deleted = gc.payload_bytes_deleted;
  out.disk_bytes_freed = gc.disk_bytes_freed();
  return out;
}

}  // namespace

StatusOr<StoreVerification> VerifyStore(const std::string& root,
                                        const std::vector<std::string>& ids) {
  DCPKV_ASSIGN_OR_RETURN(std::unique_ptr<inspect::StoreView> view, inspect::StoreView::Open(root));
  DCPKV_ASSIGN_OR_RETURN(inspect::VerifyReport report, inspect::VerifyCheckpoints(*view, ids));
  StoreVerification out{report.checkpoints, report.tensors, report.shards,
                        report.chunks,      report.bytes,   {}};
  for (const inspect::VerifyProblem& p : report.problems) {
    out.problems.push_back({p.checkpoint_id, p.fqn, p.shard_offsets, p.rank, p.byte_offset,
                            p.byte_end, inspect::DescribeProblem(p)});
  }
  out.deleted_meanwhile = report.deleted_meanwhile;
  return out;
}

StatusOr<CheckpointDifference> DiffStoredCheckpoints(const std::string& root, const std::string& a,
                                                     const std::string& b) {
  DCPKV_ASSIGN_OR_RETURN(std::unique_ptr<inspect::StoreView> view, inspect::StoreView::Open(root));
  DCPKV_ASSIGN_OR_RETURN(inspect::DiffReport report, inspect::DiffCheckpoints(*view, a, b));
  CheckpointDifference out{report.a, report.b, {}};
  for (const inspect::TensorDiff& t : report.tensors) {
    out.entries.push_back({t.fqn, std::string(inspect::DiffKindName(t.kind)), t.detail, t.dtype,
                           t.shape, t.elements_changed, t.max_abs_diff});
  }
  return out;
}

StatusOr<SafetensorsExport> ExportCheckpointToSafetensors(const std::string& root,
                                                          const std::string& checkpoint_id,
                                                          const std::string& path) {
  DCPKV_ASSIGN_OR_RETURN(std::unique_ptr<inspect::StoreView> view, inspect::StoreView::Open(root));
  DCPKV_ASSIGN_OR_RETURN(inspect::ExportSummary summary,
                         inspect::ExportSafetensors(*view, checkpoint_id, path));
  return SafetensorsExport{summary.checkpoint_id, summary.tensors, summary.file_bytes};
}

std::string WriterJobId() { return ProcessJobId(); }

StatusOr<StoreCleanup> RemoveStoredCheckpoints(const std::string& root,
                                               const std::vector<std::string>& ids) {
  if (ids.empty()) return InvalidArgumentError("no checkpoint ids to remove");
  DCPKV_ASSIGN_OR_RETURN(RemoveReport report, RemoveCheckpoints(root, ids));
  StoreCleanup out = CleanupOf(report.gc);
  out.removed_ids = report.removed_ids;
  return out;
}

StatusOr<StoreCleanup> CollectStoreGarbage(const std::string& root) {
  DCPKV_ASSIGN_OR_RETURN(GcReport report, CollectGarbage(root));
  return CleanupOf(report);
}

}  // namespace dcpkv

// StorageWriter and StorageReader: where checkpoint bytes go (DCP's storage layer).
//
// Save calls on every rank: Reset(checkpoint_id), SetUpStorageWriter, PrepareLocalPlan; on the
// coordinator: PrepareGlobalPlan(all plans); on every rank: WriteData(final plan) and waits for
// it; on the coordinator, after every rank's WriteData succeeded: Finish(metadata, results),
// which commits. Load calls Reset, ReadMetadata, SetUpStorageReader, PrepareLocalPlan,
// PrepareGlobalPlan (coordinator) and ReadData.
//
// Futures carry results (a Status or the write results), never bare values. Implementations
// return futures made from a std::promise: dropping one neither blocks nor cancels the work,
// and the save or load protocol always waits for them. The KV implementations finish the work
// before returning the future. A writer or reader may be reused for many saves or loads but
// serves one at a time.
#ifndef DCPKV_STORAGE_H_
#define DCPKV_STORAGE_H_

#include <future>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "dcpkv/diagnostics.h"
#include "dcpkv/export.h"
#include "dcpkv/manifest_replication.h"
#include "dcpkv/metadata.h"
#include "dcpkv/plan.h"
#include "dcpkv/planner.h"
#include "dcpkv/status.h"

namespace dcpkv {

// What a save asks of its storage writer beyond the plan; given before each save.
struct DCPKV_EXPORT StorageSaveOptions {
  // Store a chunk only if it differs from the chunk at the same place (fqn, shard offsets, byte
  // offset, same shard geometry) of the base checkpoint; otherwise refer to that one's storage.
  bool incremental = true;
  // The base: a committed checkpoint id, or empty for the newest committed checkpoint whose
  // manifest the coordinator's database holds.
  std::string incremental_base;
  // Retention after the commit: keep the newest `keep_last` checkpoints (plus any tagged
  // "keep"); older ones are deleted, their data reclaimed unless newer ones refer to it.
  // 0 keeps everything.
  int keep_last = 0;
  // Where committed manifests and deletions are copied. Default: null.
  std::shared_ptr<ManifestReplication> replication;
  // Where the writer reports what does not fail the save (dcpkv/diagnostics.h). Default: null,
  // meaning StderrDiagnostics().
  DiagnosticSink* diagnostics = nullptr;
};

class DCPKV_EXPORT StorageWriter {
 public:
  virtual ~StorageWriter() = default;
  // Options of the next save (before Reset). Writers without these features ignore them.
  virtual void ConfigureSave(const StorageSaveOptions& options) {}
  // Starts a new checkpoint.
  virtual Status Reset(std::string_view checkpoint_id) = 0;
  // `rank` and `world_size` are those of the saving process group.
  virtual Status SetUpStorageWriter(bool is_coordinator, int rank, int world_size,
                                    bool use_collectives) = 0;
  virtual StatusOr<SavePlan> PrepareLocalPlan(SavePlan plan) = 0;
  // Coordinator only. When every rank's plan came from the plan cache, `plans` are the final
  // plans of the previous save (what this returned then), not fresh ones from the planner.
  virtual StatusOr<std::vector<SavePlan>> PrepareGlobalPlan(std::vector<SavePlan> plans) = 0;
  // True if PrepareGlobalPlan changes nothing but the plans' storage_data. A save whose every
  // rank's plan came from the plan cache then skips hashing the final plans to find those the
  // writer changed (at thousands of ranks, most of a cache hit's cost). Default: false.
  virtual bool PrepareGlobalPlanChangesOnlyStorageData() const { return false; }
  // Writes every item of `plan` (bytes from planner.ResolveData) and makes them durable.
  virtual std::future<StatusOr<std::vector<WriteResult>>> WriteData(const SavePlan& plan,
                                                                    SavePlanner& planner) = 0;
  // Coordinator only: commits the checkpoint (its manifest). results[r] are rank r's results.
  virtual Status Finish(const Metadata& metadata,
                        const std::vector<std::vector<WriteResult>>& results) = 0;
  // Coordinator only, before Finish: fills what only the writer knows (the incremental base).
  virtual void AmendMetadata(Metadata* metadata) {}
  // Coordinator only, right after a successful Finish: replication of the commit. An error
  // does not undo the commit; Save returns it on every rank, saying the checkpoint is committed.
  virtual Status AfterFinish(const Metadata& metadata) { return Status::Ok(); }
  // Every rank, once the commit succeeded: housekeeping such as retention. An error here does
  // not undo the commit; Save reports it to the caller as a warning on stderr.
  virtual Status AfterCommit(const Metadata& metadata) { return Status::Ok(); }
};

class DCPKV_EXPORT StorageReader {
 public:
  virtual ~StorageReader() = default;
  virtual Status Reset(std::string_view checkpoint_id) = 0;
  // The committed Metadata of the checkpoint; NOT_FOUND if it was never committed.
  virtual StatusOr<Metadata> ReadMetadata() = 0;
  virtual Status SetUpStorageReader(const Metadata& metadata, bool is_coordinator, int rank) = 0;
  virtual StatusOr<LoadPlan> PrepareLocalPlan(LoadPlan plan) = 0;
  // Coordinator only.
  virtual StatusOr<std::vector<LoadPlan>> PrepareGlobalPlan(std::vector<LoadPlan> plans) = 0;
  // Reads every item of `plan` and hands it to the planner.
  virtual std::future<Status> ReadData(const LoadPlan& plan, LoadPlanner& planner) = 0;
};

}  // namespace dcpkv

#endif  // DCPKV_STORAGE_H_

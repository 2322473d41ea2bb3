// save() and load(): DCP's SPMD checkpoint protocol over dcpkv's store.
//
// Every rank of the process group calls Save (or Load) with its own state dict. Save runs:
// local plan on every rank -> gather at the coordinator -> global plan and Metadata (replicated
// items deduplicated, plan validated) -> scatter of final plans -> every rank writes and makes
// its chunks durable -> gather of write results -> the coordinator commits the manifest ->
// Metadata to every rank. Failure anywhere (bad input on one rank, a write error, a failing
// Stateful, a rank that never arrives) makes every rank return an error naming the failing ranks
// and their messages, and nothing is committed. Collectives wait at most the process group's
// timeout, so no rank hangs.
//
// DCP names: save -> Save, load -> Load, save_state_dict -> SaveStateDict (deprecated).
#ifndef DCPKV_CHECKPOINT_H_
#define DCPKV_CHECKPOINT_H_

#include <map>
#include <memory>
#include <string>

#include "dcpkv/diagnostics.h"
#include "dcpkv/export.h"
#include "dcpkv/manifest_replication.h"
#include "dcpkv/metadata.h"
#include "dcpkv/planner.h"
#include "dcpkv/process_group.h"
#include "dcpkv/state_dict.h"
#include "dcpkv/status.h"
#include "dcpkv/storage.h"

namespace dcpkv {

struct DCPKV_EXPORT SaveOptions {
  // Id of the checkpoint to create. Required; see names.h for the rules.
  std::string checkpoint_id;
  // Store root of the default storage writer (a KvStorageWriter over <root>/rank-NNNNN).
  // Used when storage_writer is null. Default: empty.
  std::string store_root;
  // Where to write. Default: null, meaning a KvStorageWriter on store_root (one of the two is
  // required).
  std::shared_ptr<StorageWriter> storage_writer;
  // Payload bytes per stored chunk of the KvStorageWriter on store_root (not used with a
  // storage_writer). Default: 0, meaning 4 MiB.
  uint64_t chunk_size = 0;
  // How to plan. Default: null, meaning a DefaultSavePlanner.
  std::shared_ptr<SavePlanner> planner;
  // Ranks that save together; not owned. Default: null, meaning a single process (no_dist).
  ProcessGroup* process_group = nullptr;
  // Rank (in process_group) that merges plans and commits. Default: 0.
  int coordinator_rank = 0;
  // Save as a single process even if a process group is given. Default: false.
  bool no_dist = false;
  // false: no cross-rank plan exchange; each rank plans and commits its own part, a barrier ends
  // the save, and replicated items are not deduplicated. Default: true.
  bool use_collectives = true;
  // Incremental save: chunks equal to those at the same place in the base checkpoint are not
  // stored again (the manifest refers to where they are). Default: true.
  bool incremental = true;
  // The base of an incremental save; empty: the newest committed checkpoint. Default: empty.
  std::string incremental_base;
  // User tags stored with the manifest ("step" -> "1000", "note" -> "..."). A "keep" tag
  // protects the checkpoint from retention. Default: none.
  std::map<std::string, std::string> tags;
  // Retention, applied by the coordinator after the commit: keep the newest `keep_last`
  // checkpoints saved with collectives plus those tagged "keep"; delete the others (their data
  // is reclaimed unless a kept checkpoint refers to it). 0: keep everything. Default: 0.
  int keep_last = 0;
  // Copies each committed manifest (and each deletion) elsewhere, e.g. to gRPC replicas
  // (dcpkv/replication/replicator.h). If it reports an error (a synchronous replication that
  // did not reach its quorum), Save returns that error on every rank although the checkpoint is
  // committed and loadable. Default: null, no replication.
  std::shared_ptr<ManifestReplication> replication;
  // Where outcomes that do not fail the save go (dcpkv/diagnostics.h): the retention, garbage
  // collection or replica deletions after a commit that failed, while the save returns the
  // committed Metadata. Not owned; must outlive the save (and an AsyncSave's upload).
  // Default: null, meaning StderrDiagnostics().
  DiagnosticSink* diagnostics = nullptr;
};

// Saves `state_dict` (Stateful values have state_dict() called first). Returns the committed
// Metadata on every rank.
DCPKV_EXPORT StatusOr<Metadata> Save(StateDict& state_dict, const SaveOptions& options);

// The older name of Save.
[[deprecated("use dcpkv::Save")]] DCPKV_EXPORT StatusOr<Metadata> SaveStateDict(
    StateDict& state_dict, const SaveOptions& options);

struct DCPKV_EXPORT LoadOptions {
  // Id of the committed checkpoint to load. Required.
  std::string checkpoint_id;
  // Store root of the default storage reader. Used when storage_reader is null.
  std::string store_root;
  // Where to read from. Default: null, meaning a KvStorageReader on store_root.
  std::shared_ptr<StorageReader> storage_reader;
  // How to plan. Default: null, meaning a DefaultLoadPlanner.
  std::shared_ptr<LoadPlanner> planner;
  // Ranks that load together; not owned. Default: null (a single process).
  ProcessGroup* process_group = nullptr;
  // Default: 0.
  int coordinator_rank = 0;
  // Load as a single process even if a process group is given. Default: false.
  bool no_dist = false;
};

// Fills the tensors and bytes entries of `state_dict` in place from the checkpoint, resharding
// as needed (each rank asks for what it holds now), then calls load_state_dict() on Stateful
// values. Missing fqns, dtype or global-shape mismatches are errors (unless the planner allows
// partial loads).
DCPKV_EXPORT Status Load(StateDict& state_dict, const LoadOptions& options);

}  // namespace dcpkv

#endif  // DCPKV_CHECKPOINT_H_

// Removal of checkpoints and garbage collection of a store root, crash-safe.
//
// Incremental checkpoints refer to chunks stored under older checkpoints' keys (Metadata's
// chunk_list), so removing a checkpoint must keep its chunks that committed checkpoints still
// refer to. Removal has two steps:
//
//  1. Trash: in one synchronous atomic write per database, the checkpoint's manifest ('M' id) is
//     deleted and the same record stored as its trash record ('T' id). The checkpoint is no
//     longer committed after the first such write (a use_collectives=false save has one part
//     per rank: once one part is trashed the rest no longer make it committed).
//  2. Reclaim: the live references are computed from every manifest of every database (committed
//     or a part of an incomplete save: being conservative is safe). In each database, every key
//     under the trashed checkpoint's id that no manifest refers to is range-deleted (synchronous),
//     then the deleted ranges are compacted with forced blob garbage collection so that the
//     space is returned. A reclaim marker ('R' id, the hash of the ranges deleted) then saves a
//     later pass from deleting and compacting the same ranges again. The trash record is deleted
//     LAST, and only once no manifest refers to any chunk stored under the id any more: until
//     then it records that those chunks are garbage as soon as their referrers go.
//
// A crash (SIGKILL) at any moment leaves every checkpoint that is still committed loadable, since
// nothing a manifest refers to is ever deleted, and a later CollectGarbage (or RemoveCheckpoints)
// finishes the job: each step is idempotent and the trash record outlives the work it stands for.
//
// Callers must not save under an id that has a trash record in any database: a new save first
// range-deletes every chunk under its id, which may hold chunks that other checkpoints refer to.
//
// RemoveCheckpoints and CollectGarbage run offline: they open every rank database read-write,
// which RocksDB's lock refuses while a job has the store open (FAILED_PRECONDITION "store is in
// use by a running job"). ApplyRetention and CollectRankGarbage run inside a job, after a commit.
#ifndef DCPKV_STORE_GC_H_
#define DCPKV_STORE_GC_H_

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "dcpkv/status.h"
#include "dcpkv/store/chunk_store.h"

namespace dcpkv {

struct GcOptions {
  // Compact the deleted ranges so that disk space is returned at once (else RocksDB's own
  // compactions return it in time). Default: true.
  bool compact = true;
  // Called at named points of the protocol; for crash tests. Default: none. Points:
  //   "after_trash_first"         the first manifest moved to trash (RemoveCheckpoints)
  //   "after_trash"               every manifest of the removed ids moved to trash
  //   "after_delete_first"        the first range deletion of chunks written
  //   "after_compact_first"       the first compaction of deleted ranges done
  //   "before_trash_delete"       all chunks reclaimed, no trash record deleted yet
  //   "after_trash_delete_first"  the first trash record deleted
  std::function<void(std::string_view point)> on_step;
  // The RocksDB environment of the databases opened (ChunkStoreOptions::env); for fault-injection
  // tests. Default: none (RocksDB's).
  rocksdb::Env* env = nullptr;
};

// What a garbage collection did.
struct GcReport {
  // Trashed checkpoints reclaimed completely: no chunk left, trash records deleted.
  std::vector<std::string> reclaimed_ids;
  // Trashed checkpoints that still hold chunks other checkpoints refer to; everything else of
  // theirs is reclaimed and their trash records stay until the referrers go.
  std::vector<std::string> pending_ids;
  // Chunk data of saves that never committed (no manifest or trash record anywhere), deleted.
  std::vector<std::string> orphan_ids;
  // Saves without collectives with some ranks' parts committed and others missing: neither
  // committed nor garbage; left alone (RemoveCheckpoints removes them).
  std::vector<std::string> incomplete_ids;
  // Chunks of trashed checkpoints deleted by this run and their payload bytes, as the trash
  // records list them (orphans' chunks are range-deleted without being counted).
  uint64_t chunks_deleted = 0;
  uint64_t payload_bytes_deleted = 0;
  // Chunks of trashed checkpoints kept because a manifest refers to them.
  uint64_t chunks_kept = 0;
  // Size of the files under the store root before and after the run.
  uint64_t disk_bytes_before = 0;
  uint64_t disk_bytes_after = 0;

  uint64_t disk_bytes_freed() const {
    return disk_bytes_before > disk_bytes_after ? disk_bytes_before - disk_bytes_after : 0;
  }
};

struct RemoveReport {
  // The ids asked for: none of them is committed any more.
  std::vector<std::string> removed_ids;
  // The garbage collection that followed (of the whole root).
  GcReport gc;
};

// Removes checkpoints: moves the manifests of every id to trash (in every database that has one),
// then collects the garbage of the whole root as CollectGarbage. Every id must have a manifest
// (committed, or a part of an incomplete save without collectives) or a trash record somewhere;
// else NOT_FOUND and nothing is changed. INVALID_ARGUMENT for an invalid id. A damaged manifest
// of another checkpoint is DATA_LOSS before anything is changed (its references are unknown).
StatusOr<RemoveReport> RemoveCheckpoints(const std::string& root,
                                         const std::vector<std::string>& ids,
                                         const GcOptions& options = {});

// Collects the garbage of a store root: finishes interrupted removals (a save without
// collectives with some parts trashed has its other parts trashed), reclaims trashed
// checkpoints, and deletes the chunks of checkpoints that have neither a manifest nor a trash
// record in any database (saves that crashed before committing), keeping whatever a manifest
// refers to. DATA_LOSS, before anything is deleted, if a manifest cannot be decoded.
StatusOr<GcReport> CollectGarbage(const std::string& root, const GcOptions& options = {});

// Inside a running job, after a commit: reclaims, in this rank's database only, the chunks of
// trashed checkpoints that no manifest refers to. The manifests of the other ranks' databases
// are read through read-only opens (own_db's through own_db). Touches nothing but keys under
// trashed ids, so a save in progress is safe unless it saves under a trashed id; never deletes
// trash records (CollectGarbage does). REQUIRES: own_db open read-write, the database of `rank`
// under `root`.
Status CollectRankGarbage(ChunkStore* own_db, int rank, const std::string& root,
                          const GcOptions& options = {});

// Retention, by the coordinator right after a commit: among the checkpoints whose manifest is in
// coordinator_db and that were saved with collectives, ordered by commit time, keeps the newest
// `keep_last` (tagged or not) and every one tagged "keep" (Metadata::tags has the key), and moves
// the others' manifests to trash (one atomic write each). Returns the trashed ids, oldest first.
// Their chunks stay until CollectRankGarbage or CollectGarbage runs.
// keep_last <= 0 keeps everything. Damaged manifests are kept. `root` names the store in errors.
StatusOr<std::vector<std::string>> ApplyRetention(ChunkStore* coordinator_db,
                                                  const std::string& root, int keep_last);

}  // namespace dcpkv

#endif  // DCPKV_STORE_GC_H_

// StoreView: a read-only look at a store root, as the dcpkv CLI sees it.
//
// Opening a view lists the checkpoints first (read-only opens of every rank database, closed
// again), then opens the databases anew for reading data. A job may be writing to the store the
// whole time: read-only opens never take RocksDB's lock, so they neither block nor disturb it.
// A read-only open sees what was durable when it was made, and a writer makes a checkpoint's
// chunks durable before it writes the manifest; opening the data after the listing therefore
// sees every chunk of every checkpoint the listing calls committed.
//
// Thread safety: not thread-safe; use one view per thread.
#ifndef DCPKV_INSPECT_STORE_VIEW_H_
#define DCPKV_INSPECT_STORE_VIEW_H_

#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "dcpkv/catalog.h"
#include "dcpkv/metadata.h"
#include "dcpkv/status.h"
#include "dcpkv/store/chunk_store.h"

namespace dcpkv::inspect {

enum class CheckpointState {
  // A manifest (or, saved without collectives, every rank's part) is committed.
  kCommitted,
  // Chunk data without a committed manifest: a save in progress, or one that failed or crashed
  // before its commit. `dcpkv gc` reclaims it once no save is running.
  kUncommitted,
  // A manifest exists but cannot be read or decoded (`problem` says why). Not loadable.
  kDamaged,
  // Deleted (rm or retention); its data stays while newer checkpoints refer to it, or until
  // gc reclaims it. Not loadable.
  kDeleted,
};

// "committed", "uncommitted", "damaged", "deleted"
std::string_view CheckpointStateName(CheckpointState state);

// One line of `dcpkv ls`.
struct CheckpointListing {
  std::string checkpoint_id;
  CheckpointState state = CheckpointState::kCommitted;
  // Committed only (0 otherwise): commit time, ranks that saved it, fqns (bytes entries
  // included), bytes of every saved shard.
  int64_t committed_unix_micros = 0;
  int32_t world_size = 0;
  uint64_t num_tensors = 0;
  uint64_t logical_bytes = 0;
  // Payload bytes stored under this checkpoint's own keys (committed only). Equals
  // logical_bytes for a full checkpoint; an incremental one refers to its base for the rest.
  uint64_t stored_bytes = 0;
  std::string base_checkpoint_id;           // committed incremental checkpoints: the base
  std::map<std::string, std::string> tags;  // committed only: user tags
  // Committed only: the replication state the saving job recorded ("2/2 replicas", ...); empty
  // if the checkpoint was not replicated.
  std::string replication;
  // Rank databases holding chunk data of this checkpoint.
  std::vector<int> ranks_with_data;
  // kDamaged: what is wrong (a damaged manifest, or a rank database that cannot be opened).
  std::string problem;
};

class StoreView {
 public:
  // NOT_FOUND if `root` does not exist or holds no rank database. Damaged manifests are listed
  // as such, not errors.
  static StatusOr<std::unique_ptr<StoreView>> Open(const std::string& root);
  ~StoreView();
  StoreView(const StoreView&) = delete;
  StoreView& operator=(const StoreView&) = delete;

  const std::string& root() const { return root_; }
  // Every checkpoint found: committed ones by commit time, then damaged and uncommitted ones by
  // id.
  const std::vector<CheckpointListing>& checkpoints() const { return checkpoints_; }
  // Rank databases that exist but cannot be opened. The checkpoints they break are listed as
  // damaged: the committed ones saved on a world that includes such a rank, and those with data
  // but no manifest found while a damaged rank may hold it.
  const std::vector<DamagedRank>& damaged_ranks() const { return damaged_ranks_; }

  // The committed checkpoint named `id_or_latest`: an id, or "latest" for the newest commit.
  // NOT_FOUND naming the root (and saying when the id has only uncommitted data); DATA_LOSS for
  // a damaged manifest.
  StatusOr<const CheckpointListing*> Resolve(std::string_view id_or_latest) const;

  // The Metadata of a committed checkpoint (every rank's part merged for one saved without
  // collectives).
  StatusOr<Metadata> ReadMetadata(const std::string& checkpoint_id);

  // The database of `rank`, opened read-only after the listing. Owned by the view.
  StatusOr<ChunkStore*> RankStore(int rank);

  // Closes the database of `rank` (invalidating pointers to it) and opens it again. For reads
  // that failed on a file a live writer's compaction has replaced since the open.
  Status ReopenRankStore(int rank);

 private:
  StoreView(std::string root, std::vector<int> ranks);
  Status List();
  // Lists as damaged the checkpoints damaged_ranks_ break.
  void MarkBrokenByDamagedRanks();

  std::string root_;
  std::vector<int> ranks_;
  std::vector<CheckpointListing> checkpoints_;
  std::vector<DamagedRank> damaged_ranks_;
  std::map<int, std::unique_ptr<ChunkStore>> stores_;
};

}  // namespace dcpkv::inspect

#endif  // DCPKV_INSPECT_STORE_VIEW_H_

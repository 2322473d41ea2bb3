#include "dcpkv/inspect/store_view.h"

#include <algorithm>
#include <set>

#include "dcpkv/api/kv_storage.h"
#include "dcpkv/catalog.h"
#include "dcpkv/store/store_layout.h"

namespace dcpkv::inspect {

std::string_view CheckpointStateName(CheckpointState state) {
  switch (state) {
    case CheckpointState::kCommitted: return "committed";
    case CheckpointState::kUncommitted: return "uncommitted";
    case CheckpointState::kDamaged: return "damaged";
    case CheckpointState::kDeleted: return "deleted";
  }
  return "unknown";
}

StoreView::StoreView(std::string root, std::vector<int> ranks)
    : root_(std::move(root)), ranks_(std::move(ranks)) {}
StoreView::~StoreView() = default;

StatusOr<std::unique_ptr<StoreView>> StoreView::Open(const std::string& root) {
  StatusOr<std::vector<int>> ranks = ListRankDirectories(root);
  if (ranks.status().code() == StatusCode::kNotFound) {
    return NotFoundError("no store at " + root + ": the directory does not exist");
  }
  DCPKV_RETURN_IF_ERROR(ranks.status());
  if (ranks->empty()) {
    return NotFoundError("no store at " + root + ": it holds no rank-NNNNN database");
  }
  std::unique_ptr<StoreView> view(new StoreView(root, std::move(ranks).value()));
  DCPKV_RETURN_IF_ERROR(view->List());
  return view;
}

Status StoreView::List() {
  // Manifests first, then chunk data: a save that commits in between shows as uncommitted,
  // never the other way round.
  std::vector<DamagedManifest> damaged;
  DCPKV_ASSIGN_OR_RETURN(std::vector<CheckpointSummary> committed,
                         ListCommittedCheckpoints(root_, &damaged, &damaged_ranks_));
  auto is_damaged = [&](int rank) {
    return std::any_of(damaged_ranks_.begin(), damaged_ranks_.end(),
                       [&](const DamagedRank& d) { return d.rank == rank; });
  };
  std::map<std::string, std::vector<int>> data_ranks;
  std::set<std::string> trashed;
  std::map<std::string, std::string> replication;
  for (int rank : ranks_) {
    std::unique_ptr<ChunkStore> store;
    Status opened =
        ChunkStore::Open(RankDirectory(root_, rank), {.mode = OpenMode::kReadOnly}, &store);
    if (opened.code() == StatusCode::kNotFound) continue;  // a directory without a database yet
    if (!opened.ok() && is_damaged(rank)) continue;        // listed in damaged_ranks_
    DCPKV_RETURN_IF_ERROR(opened);
    for (const CheckpointSummary& s : committed) {
      if (s.coordinator_rank != rank) continue;
      StatusOr<std::string> state = store->GetStoreValue(ReplicationStateKey(s.checkpoint_id));
      if (state.ok()) replication[s.checkpoint_id] = *state;
    }
    DCPKV_ASSIGN_OR_RETURN(std::vector<std::string> trash, store->ListTrashIds());
    trashed.insert(trash.begin(), trash.end());
    StatusOr<std::vector<std::string>> ids = store->ListChunkCheckpointIds();
    if (ids.status().code() == StatusCode::kDataLoss ||
        ids.status().code() == StatusCode::kIOError) {
      // A damaged or missing SST or blob file stops the listing at the first entry RocksDB
      // cannot read. Rather than failing the whole view (and with it `verify`, which reports such
      // damage shard by shard), look up the checkpoints that have manifests one by one; an entry
      // that is there but unreadable still counts as data. Uncommitted data of this rank is then
      // not listed.
      ids = std::vector<std::string>();
      std::vector<std::string> known;
      for (const CheckpointSummary& s : committed) known.push_back(s.checkpoint_id);
      for (const DamagedManifest& d : damaged) known.push_back(d.checkpoint_id);
      std::sort(known.begin(), known.end());
      known.erase(std::unique(known.begin(), known.end()), known.end());
      for (const std::string& id : known) {
        StatusOr<std::unique_ptr<ChunkIterator>> it = store->NewChunkIterator(id);
        if (it.ok() && ((*it)->Valid() || !(*it)->status().ok())) ids->push_back(id);
      }
    }
    DCPKV_RETURN_IF_ERROR(ids.status());
    for (std::string& id : *ids) data_ranks[std::move(id)].push_back(rank);
  }
  for (const CheckpointSummary& s : committed) {
    CheckpointListing l;
    l.checkpoint_id = s.checkpoint_id;
    l.committed_unix_micros = s.committed_unix_micros;
    l.world_size = s.world_size;
    l.num_tensors = s.num_tensors;
    l.logical_bytes = s.logical_bytes;
    l.stored_bytes = s.stored_bytes;
    l.base_checkpoint_id = s.base_checkpoint_id;
    l.tags = s.tags;
    if (auto it = replication.find(s.checkpoint_id); it != replication.end()) {
      l.replication = it->second;
    }
    if (auto it = data_ranks.find(s.checkpoint_id); it != data_ranks.end()) {
      l.ranks_with_data = std::move(it->second);
      data_ranks.erase(it);
    }
    checkpoints_.push_back(std::move(l));
  }
  std::map<std::string, std::string> damaged_ids;
  for (const DamagedManifest& d : damaged) {
    std::string& problem = damaged_ids[d.checkpoint_id];
    problem += (problem.empty() ? "damaged manifest: " : "; ") + d.status.ToString();
  }
  for (auto& [id, problem] : damaged_ids) {
    CheckpointListing l;
    l.checkpoint_id = id;
    l.state = CheckpointState::kDamaged;
    l.problem = problem;
    if (auto it = data_ranks.find(id); it != data_ranks.end()) {
      l.ranks_with_data = std::move(it->second);
      data_ranks.erase(it);
    }
    checkpoints_.push_back(std::move(l));
  }
  for (const std::string& id : trashed) {
    if (damaged_ids.count(id)) continue;
    CheckpointListing l;
    l.checkpoint_id = id;
    l.state = CheckpointState::kDeleted;
    if (auto it = data_ranks.find(id); it != data_ranks.end()) {
      l.ranks_with_data = std::move(it->second);
      data_ranks.erase(it);
    }
    checkpoints_.push_back(std::move(l));
  }
  for (auto& [id, ranks] : data_ranks) {
    CheckpointListing l;
    l.checkpoint_id = id;
    l.state = CheckpointState::kUncommitted;
    l.ranks_with_data = std::move(ranks);
    checkpoints_.push_back(std::move(l));
  }
  MarkBrokenByDamagedRanks();
  // Damaged and uncommitted ones together by id, after the committed ones.
  std::sort(checkpoints_.begin() + static_cast<std::ptrdiff_t>(committed.size()),
            checkpoints_.end(), [](const CheckpointListing& a, const CheckpointListing& b) {
              return a.checkpoint_id < b.checkpoint_id;
            });
  return Status::Ok();
}

void StoreView::MarkBrokenByDamagedRanks() {
  for (CheckpointListing& l : checkpoints_) {
    std::string problem;
    for (const DamagedRank& d : damaged_ranks_) {
      const std::string what = "rank " + std::to_string(d.rank) + "'s database cannot be opened";
      if (l.state == CheckpointState::kCommitted && d.rank < l.world_size) {
        problem += (problem.empty() ? "" : "; ") + what + " (it holds that rank's share)";
      } else if (l.state == CheckpointState::kUncommitted) {
        problem +=
            (problem.empty() ? "no manifest found; " : "; ") + what + " (it may hold the manifest)";
      }
    }
    if (problem.empty()) continue;
    l.state = CheckpointState::kDamaged;
    l.problem = std::move(problem);
  }
}

StatusOr<const CheckpointListing*> StoreView::Resolve(std::string_view id_or_latest) const {
  const CheckpointListing* found = nullptr;
  bool uncommitted = false;
  for (const CheckpointListing& l : checkpoints_) {
    if (l.state == CheckpointState::kDamaged && l.checkpoint_id == id_or_latest) {
      std::string why;
      for (const DamagedRank& d : damaged_ranks_) {
        why += "; rank " + std::to_string(d.rank) + ": " + d.status.ToString();
      }
      return DataLossError("checkpoint \"" + l.checkpoint_id + "\" in " + root_ +
                           " is damaged: " + l.problem + why);
    }
    if (l.state == CheckpointState::kDeleted && l.checkpoint_id == id_or_latest) {
      return NotFoundError("checkpoint \"" + l.checkpoint_id + "\" in " + root_ + " was deleted");
    }
    if (l.state != CheckpointState::kCommitted) {
      uncommitted = uncommitted || l.checkpoint_id == id_or_latest;
      continue;
    }
    if (id_or_latest == "latest" || l.checkpoint_id == id_or_latest) found = &l;
  }
  if (found != nullptr) return found;
  if (id_or_latest == "latest") {
    return NotFoundError("no committed checkpoint in " + root_ +
                         " (\"latest\" has nothing to name)");
  }
  if (uncommitted) {
    return NotFoundError("checkpoint \"" + std::string(id_or_latest) + "\" in " + root_ +
                         " is not committed: it has chunk data but no manifest (a save in "
                         "progress, or one that failed)");
  }
  return NotFoundError("no checkpoint \"" + std::string(id_or_latest) + "\" in " + root_);
}

StatusOr<Metadata> StoreView::ReadMetadata(const std::string& checkpoint_id) {
  KvStorageReader reader(KvStorageOptions{.root = root_});
  for (int rank : ranks_) {
    StatusOr<ChunkStore*> store = RankStore(rank);
    if (store.ok()) reader.ShareStore(rank, *store);
  }
  DCPKV_RETURN_IF_ERROR(reader.Reset(checkpoint_id));
  return reader.ReadMetadata();
}

Status StoreView::ReopenRankStore(int rank) {
  stores_.erase(rank);
  return RankStore(rank).status();
}

StatusOr<ChunkStore*> StoreView::RankStore(int rank) {
  if (auto it = stores_.find(rank); it != stores_.end()) return it->second.get();
  std::unique_ptr<ChunkStore> store;
  DCPKV_RETURN_IF_ERROR(
      ChunkStore::Open(RankDirectory(root_, rank), {.mode = OpenMode::kReadOnly}, &store));
  ChunkStore* raw = store.get();
  stores_[rank] = std::move(store);
  return raw;
}

}  // namespace dcpkv::inspect

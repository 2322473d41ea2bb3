// Removal, retention and garbage collection of checkpoints (gc.h has the protocol).
#include "dcpkv/store/gc.h"

#include <algorithm>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <system_error>
#include <tuple>
#include <utility>

#include "dcpkv/core/hash.h"
#include "dcpkv/core/metadata_codec.h"
#include "dcpkv/core/names.h"
#include "dcpkv/store/crash_points.h"
#include "dcpkv/store/key_encoding.h"
#include "dcpkv/store/store_layout.h"
#include "dcpkv/store/writer_lease.h"

namespace dcpkv {
namespace {

using Range = ChunkKeyRange;

// Calls the test hook at named points, and makes them crash points (crash_points.h) under the
// same names; First() only the first time a point is reached.
class Steps {
 public:
  explicit Steps(const GcOptions& options) : options_(options) {}
  void At(std::string_view point) {
    if (options_.on_step) options_.on_step(point);
    MaybeCrashAt(point);
  }
  void First(std::string_view point) {
    if (fired_.insert(std::string(point)).second) At(point);
  }

 private:
  const GcOptions& options_;
  std::set<std::string> fired_;
};

uint64_t DirectorySize(const std::string& root) {
  namespace fs = std::filesystem;
  uint64_t total = 0;
  std::error_code ec;
  fs::recursive_directory_iterator it(root, fs::directory_options::skip_permission_denied, ec);
  for (; !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    std::error_code e;
    if (!it->is_regular_file(e)) continue;
    uint64_t size = it->file_size(e);
    if (!e) total += size;
  }
  return total;
}

// The databases a collection works on, by rank; some owned, one perhaps borrowed.
struct Stores {
  std::map<int, ChunkStore*> by_rank;
  std::vector<std::unique_ptr<ChunkStore>> owned;

  Status CloseOwned() {
    Status result;
    for (auto& store : owned) {
      Status s = store->Close();
      if (result.ok()) result = s;
    }
    return result;
  }
};

StatusOr<Stores> OpenAll(const std::string& root, OpenMode mode, rocksdb::Env* env) {
  DCPKV_ASSIGN_OR_RETURN(std::vector<int> ranks, ListRankDirectories(root));
  Stores stores;
  for (int rank : ranks) {
    ChunkStoreOptions o;
    o.mode = mode;
    o.create_if_missing = false;
    o.env = env;
    std::unique_ptr<ChunkStore> store;
    const std::string dir = RankDirectory(root, rank);
    Status s = ChunkStore::Open(dir, o, &store);
    if (s.code() == StatusCode::kNotFound) continue;  // a directory without a database
    if (s.reason() == ErrorReason::kLockHeld) {
      stores.CloseOwned().IgnoreError();
      return FailedPreconditionError("store is in use by a running job: cannot open " + dir +
                                     " read-write (" + s.message() + ")");
    }
    if (!s.ok()) {
      stores.CloseOwned().IgnoreError();
      return s;
    }
    stores.by_rank[rank] = store.get();
    stores.owned.push_back(std::move(store));
  }
  return stores;
}

// Which databases hold a manifest, a trash record or a reclaim marker of each id.
struct StoreIndex {
  std::map<std::string, std::vector<int>> manifests;
  std::map<std::string, std::vector<int>> trash;
  std::map<std::string, std::vector<int>> markers;
};

StatusOr<StoreIndex> IndexStores(const Stores& stores) {
  StoreIndex index;
  for (const auto& [rank, store] : stores.by_rank) {
    DCPKV_ASSIGN_OR_RETURN(std::vector<std::string> m, store->ListManifestIds());
    for (std::string& id : m) index.manifests[std::move(id)].push_back(rank);
    DCPKV_ASSIGN_OR_RETURN(std::vector<std::string> t, store->ListTrashIds());
    for (std::string& id : t) index.trash[std::move(id)].push_back(rank);
    DCPKV_ASSIGN_OR_RETURN(std::vector<std::string> r, store->ListReclaimMarkerIds());
    for (std::string& id : r) index.markers[std::move(id)].push_back(rank);
  }
  return index;
}

StatusOr<Metadata> ReadMetadata(ChunkStore* store, const std::string& id, bool trash) {
  StatusOr<ManifestRecord> record = trash ? store->GetTrashRecord(id) : store->GetManifest(id);
  if (!record.ok()) return record.status();
  StatusOr<Metadata> md = DecodeMetadata(record->payload);
  if (!md.ok()) {
    return md.status().WithContext(std::string(trash ? "trash record" : "manifest") + " of \"" +
                                   id + "\" in " + store->directory());
  }
  return md;
}

// Calls visit(rank, id, metadata) for every manifest of every database. A damaged manifest is
// DATA_LOSS: its references are unknown, so nothing may be deleted.
Status ForEachManifest(
    const Stores& stores, const StoreIndex& index,
    const std::function<void(int rank, const std::string& id, const Metadata&)>& visit) {
  for (const auto& [id, ranks] : index.manifests) {
    for (int rank : ranks) {
      StatusOr<Metadata> md = ReadMetadata(stores.by_rank.at(rank), id, /*trash=*/false);
      if (!md.ok()) {
        return md.status().WithContext(
            "cannot tell which chunks are in use; remove the checkpoint with the damaged "
            "manifest first");
      }
      visit(rank, id, *md);
    }
  }
  return Status::Ok();
}

Range KeyRange(std::string key) {
  Range r{key, std::move(key)};
  r.end.push_back('\0');  // the smallest key after `key`
  return r;
}

Range PrefixRange(std::string prefix) {
  std::string end = PrefixUpperBound(prefix);
  return Range{std::move(prefix), std::move(end)};
}

// Per rank, per checkpoint id: the key ranges under that id that manifests refer to.
using LiveSet = std::map<int, std::map<std::string, std::vector<Range>>>;

// Adds the references of one manifest (of checkpoint `own_id`) into the ids of `wanted`.
void AddReferences(const Metadata& md, const std::string& own_id,
                   const std::set<std::string>& wanted, LiveSet* live) {
  for (const auto& [fqn, entry] : md.entries) {
    for (const SavedShard& shard : entry.shards) {
      if (shard.chunk_list.empty()) {  // chunks not recorded: the whole shard is in use
        if (wanted.count(own_id) != 0) {
          (*live)[shard.rank][own_id].push_back(
              PrefixRange(ChunkKeyShardPrefix(own_id, fqn, shard.offsets)));
        }
        continue;
      }
      uint64_t offset = 0;
      for (const SavedChunk& c : shard.chunk_list) {
        const std::string& source = c.source.empty() ? own_id : c.source;
        if (wanted.count(source) != 0) {
          // Valid: source is a wanted (valid) id, fqn and offsets were validated by decoding.
          StatusOr<std::string> key = EncodeChunkKey(ChunkKey{source, fqn, shard.offsets, offset});
          if (key.ok()) (*live)[c.source_rank][source].push_back(KeyRange(std::move(*key)));
        }
        offset += c.length;
      }
    }
  }
}

std::vector<Range> MergeRanges(std::vector<Range> v) {
  std::sort(v.begin(), v.end(), [](const Range& a, const Range& b) {
    return std::tie(a.begin, a.end) < std::tie(b.begin, b.end);
  });
  std::vector<Range> out;
  for (Range& r : v) {
    if (!out.empty() && r.begin <= out.back().end) {
      if (out.back().end < r.end) out.back().end = std::move(r.end);
    } else {
      out.push_back(std::move(r));
    }
  }
  return out;
}

// `whole` minus the sorted, disjoint ranges of `live`.
std::vector<Range> Gaps(const Range& whole, const std::vector<Range>& live) {
  std::vector<Range> gaps;
  std::string cur = whole.begin;
  for (const Range& r : live) {
    if (r.end <= cur) continue;
    if (r.begin >= whole.end) break;
    if (cur < r.begin) gaps.push_back(Range{cur, r.begin});
    cur = r.end;
    if (cur >= whole.end) return gaps;
  }
  if (cur < whole.end) gaps.push_back(Range{cur, whole.end});
  return gaps;
}

// What a trashed checkpoint stored under its own keys in one database, as its trash records
// list it: a chunk (a key range of one key) or a shard whose chunks were not recorded.
struct OwnItem {
  Range range;
  uint64_t chunks = 0;
  uint64_t bytes = 0;
};

struct TrashedCheckpoint {
  bool known = true;                        // every trash record of it could be decoded
  std::map<int, std::vector<OwnItem>> own;  // by rank, sorted by range
};

TrashedCheckpoint DescribeTrashed(const Stores& stores, const std::string& id,
                                  const std::vector<int>& trash_ranks) {
  TrashedCheckpoint t;
  for (int rank : trash_ranks) {
    auto it = stores.by_rank.find(rank);
    if (it == stores.by_rank.end()) continue;
    StatusOr<Metadata> md = ReadMetadata(it->second, id, /*trash=*/true);
    if (!md.ok()) {
      t.known = false;
      continue;
    }
    for (const auto& [fqn, entry] : md->entries) {
      for (const SavedShard& shard : entry.shards) {
        if (shard.chunk_list.empty()) {
          t.own[shard.rank].push_back(OwnItem{
              PrefixRange(ChunkKeyShardPrefix(id, fqn, shard.offsets)), shard.chunks, shard.bytes});
          continue;
        }
        uint64_t offset = 0;
        for (const SavedChunk& c : shard.chunk_list) {
          if (c.source.empty()) {
            StatusOr<std::string> key = EncodeChunkKey(ChunkKey{id, fqn, shard.offsets, offset});
            if (key.ok()) t.own[c.source_rank].push_back(OwnItem{KeyRange(*key), 1, c.length});
          }
          offset += c.length;
        }
      }
    }
  }
  for (auto& [rank, items] : t.own) {
    std::sort(items.begin(), items.end(), [](const OwnItem& a, const OwnItem& b) {
      return std::tie(a.range.begin, a.range.end) < std::tie(b.range.begin, b.range.end);
    });
    items.erase(std::unique(items.begin(), items.end(),
                            [](const OwnItem& a, const OwnItem& b) { return a.range == b.range; }),
                items.end());
  }
  return t;
}

bool Intersects(const Range& a, const Range& b) { return a.begin < b.end && b.begin < a.end; }

// The gap of the sorted, disjoint `gaps` that contains `r`, or null.
const Range* GapContaining(const std::vector<Range>& gaps, const Range& r) {
  auto it = std::upper_bound(gaps.begin(), gaps.end(), r.begin,
                             [](const std::string& key, const Range& g) { return key < g.begin; });
  if (it == gaps.begin()) return nullptr;
  --it;
  return r.end <= it->end ? &*it : nullptr;
}

// Whether one of the sorted items intersects `gap`.
bool AnyItemIn(const std::vector<OwnItem>& items, const Range& gap) {
  auto it = std::lower_bound(
      items.begin(), items.end(), gap.begin,
      [](const OwnItem& i, const std::string& key) { return i.range.begin < key; });
  if (it != items.end() && Intersects(it->range, gap)) return true;
  return it != items.begin() && Intersects(std::prev(it)->range, gap);
}

// The reclaim marker value of a set of deleted ranges: their hash.
std::string MarkerValue(const std::vector<Range>& gaps) {
  std::string bytes;
  for (const Range& g : gaps) {
    for (const std::string* s : {&g.begin, &g.end}) {
      uint64_t n = s->size();
      bytes.append(reinterpret_cast<const char*>(&n), sizeof(n));
      bytes += *s;
    }
  }
  return HashToHex(HashBytes(bytes.data(), bytes.size()));
}

struct Collector {
  Steps& steps;
  const GcOptions& options;
  GcReport* report;  // null: not reported

  // Deletes, in `store`, every key under `id` outside `live` (sorted, disjoint): the garbage of
  // a trashed or orphaned checkpoint there. `own` lists what trash records say is stored there
  // (null: unknown, each range is looked into first); only ranges holding some of it are
  // deleted. With `marker`, skips ranges that the store's reclaim marker says were reclaimed
  // already, and records them after. Returns whether anything was deleted.
  StatusOr<bool> Reclaim(ChunkStore* store, const std::string& id, const std::vector<Range>& live,
                         const std::vector<OwnItem>* own, bool marker) {
    std::vector<Range> gaps = Gaps(PrefixRange(ChunkKeyCheckpointPrefix(id)), live);
    uint64_t chunks = 0, bytes = 0, kept = 0;
    if (own != nullptr) {
      std::vector<Range> needed;
      for (Range& g : gaps) {
        if (AnyItemIn(*own, g)) needed.push_back(std::move(g));
      }
      gaps = std::move(needed);
      for (const OwnItem& item : *own) {
        if (GapContaining(gaps, item.range) != nullptr) {
          chunks += item.chunks;
          bytes += item.bytes;
        } else {
          kept += item.chunks;
        }
      }
    }
    if (report != nullptr) report->chunks_kept += kept;
    if (gaps.empty()) return false;
    std::string value;
    if (marker) {
      value = MarkerValue(gaps);
      StatusOr<std::string> have = store->GetReclaimMarker(id);
      if (have.ok() && *have == value) return false;  // reclaimed by an earlier pass
      if (!have.ok() && have.status().code() != StatusCode::kNotFound) return have.status();
    }
    if (own == nullptr) {
      std::vector<Range> present;
      for (Range& g : gaps) {
        DCPKV_ASSIGN_OR_RETURN(bool any, store->HasChunksInRange(g));
        if (any) present.push_back(std::move(g));
      }
      gaps = std::move(present);
    }
    if (!gaps.empty()) {
      DCPKV_RETURN_IF_ERROR(store->DeleteChunkRanges(gaps));
      steps.First("after_delete_first");
      if (report != nullptr) {
        report->chunks_deleted += chunks;
        report->payload_bytes_deleted += bytes;
      }
      if (options.compact) {
        DCPKV_RETURN_IF_ERROR(store->ReclaimChunkRanges(gaps));
        steps.First("after_compact_first");
      }
    }
    if (marker) DCPKV_RETURN_IF_ERROR(store->PutReclaimMarker(id, value));
    return !gaps.empty();
  }
};

// Moves every manifest of `id` to trash.
Status MoveToTrash(const Stores& stores, const std::string& id, const std::vector<int>& ranks,
                   Steps& steps) {
  for (int rank : ranks) {
    DCPKV_RETURN_IF_ERROR(stores.by_rank.at(rank)->MoveManifestToTrash(id));
    steps.First("after_trash_first");
  }
  return Status::Ok();
}

// The offline collection, on databases opened read-write.
// Chunk data of saves that never committed (neither manifest nor trash record anywhere), by id:
// the ranks holding it.
using Orphans = std::map<std::string, std::vector<int>>;
StatusOr<Orphans> FindOrphans(const Stores& stores, const StoreIndex& index) {
  Orphans orphans;
  for (const auto& [rank, store] : stores.by_rank) {
    DCPKV_ASSIGN_OR_RETURN(std::vector<std::string> ids, store->ListChunkCheckpointIds());
    for (const std::string& id : ids) {
      if (index.manifests.count(id) == 0 && index.trash.count(id) == 0) {
        orphans[id].push_back(rank);
      }
    }
  }
  return orphans;
}

Status CollectOpened(const Stores& stores, Steps& steps, const GcOptions& options,
                     GcReport* report) {
  DCPKV_ASSIGN_OR_RETURN(StoreIndex index, IndexStores(stores));

  // Saves without collectives: a part per rank. Some parts trashed and others not is an
  // interrupted removal: finish it. Some parts missing without trash is an incomplete save.
  struct Parts {
    bool per_rank = false;
    int world_size = 0;
  };
  std::map<std::string, Parts> parts;
  DCPKV_RETURN_IF_ERROR(
      ForEachManifest(stores, index, [&](int, const std::string& id, const Metadata& md) {
        Parts& p = parts[id];
        p.per_rank = p.per_rank || md.per_rank_commit;
        p.world_size = std::max(p.world_size, md.world_size);
      }));
  for (const auto& [id, p] : parts) {
    if (!p.per_rank) continue;
    std::vector<int>& ranks = index.manifests[id];
    if (static_cast<int>(ranks.size()) >= p.world_size) continue;
    if (index.trash.count(id) == 0) {
      report->incomplete_ids.push_back(id);
      continue;
    }
    DCPKV_RETURN_IF_ERROR(MoveToTrash(stores, id, ranks, steps));
    std::vector<int>& trash = index.trash[id];
    trash.insert(trash.end(), ranks.begin(), ranks.end());
    std::sort(trash.begin(), trash.end());
    index.manifests.erase(id);
  }

  // What may be garbage: trashed checkpoints, and chunk data with neither manifest nor trash.
  std::set<std::string> wanted;
  for (const auto& [id, ranks] : index.trash) wanted.insert(id);
  DCPKV_ASSIGN_OR_RETURN(Orphans orphans, FindOrphans(stores, index));
  for (const auto& [id, ranks] : orphans) wanted.insert(id);
  LiveSet live;
  DCPKV_RETURN_IF_ERROR(
      ForEachManifest(stores, index, [&](int, const std::string& id, const Metadata& md) {
        AddReferences(md, id, wanted, &live);
      }));
  auto live_in = [&](int rank, const std::string& id) {
    auto r = live.find(rank);
    if (r == live.end()) return std::vector<Range>();
    auto i = r->second.find(id);
    return i == r->second.end() ? std::vector<Range>() : MergeRanges(i->second);
  };

  Collector collector{steps, options, report};
  std::vector<std::string> reclaimed;
  for (const auto& [id, trash_ranks] : index.trash) {
    TrashedCheckpoint t = DescribeTrashed(stores, id, trash_ranks);
    bool referenced = false;
    for (const auto& [rank, store] : stores.by_rank) {
      std::vector<Range> in_use = live_in(rank, id);
      referenced = referenced || !in_use.empty();
      static const std::vector<OwnItem> kNothing;
      const std::vector<OwnItem>* own = nullptr;
      if (t.known) {
        auto o = t.own.find(rank);
        own = o == t.own.end() ? &kNothing : &o->second;
      }
      DCPKV_RETURN_IF_ERROR(collector.Reclaim(store, id, in_use, own, /*marker=*/true).status());
    }
    (referenced ? report->pending_ids : reclaimed).push_back(id);
  }
  for (const auto& [id, ranks] : orphans) {
    bool deleted = false;
    for (int rank : ranks) {
      DCPKV_ASSIGN_OR_RETURN(bool d, collector.Reclaim(stores.by_rank.at(rank), id,
                                                       live_in(rank, id), nullptr, false));
      deleted = deleted || d;
    }
    if (deleted) report->orphan_ids.push_back(id);
  }

  // Trash records last: a crash before leaves them for the next collection.
  steps.At("before_trash_delete");
  for (const std::string& id : reclaimed) {
    for (const auto& [rank, store] : stores.by_rank) {  // markers of this run included
      StatusOr<std::string> marker = store->GetReclaimMarker(id);
      if (marker.status().code() == StatusCode::kNotFound) continue;
      DCPKV_RETURN_IF_ERROR(marker.status());
      DCPKV_RETURN_IF_ERROR(store->DeleteReclaimMarker(id));
    }
    for (int rank : index.trash[id]) {
      DCPKV_RETURN_IF_ERROR(stores.by_rank.at(rank)->DeleteTrashRecord(id));
      steps.First("after_trash_delete_first");
    }
  }
  report->reclaimed_ids = std::move(reclaimed);
  for (const auto& [id, ranks] : index.markers) {  // left by a crash after a trash deletion
    if (index.trash.count(id) != 0) continue;
    for (int rank : ranks) {
      DCPKV_RETURN_IF_ERROR(stores.by_rank.at(rank)->DeleteReclaimMarker(id));
    }
  }
  // Data markers of checkpoints without a manifest whose chunks are all gone now (reclaimed, or
  // never durable: a save that crashed right after writing its marker).
  for (const auto& [rank, store] : stores.by_rank) {
    DCPKV_ASSIGN_OR_RETURN(std::vector<std::string> ids, store->ListChunkCheckpointIds());
    for (const std::string& id : ids) {
      if (index.manifests.count(id) != 0) continue;
      DCPKV_RETURN_IF_ERROR(store->DeleteDataMarkerIfNoChunks(id).status());
    }
  }
  return Status::Ok();
}

// Whether a collection has anything to do in `stores`: trash or reclaim records, chunk data of
// saves that never committed, or saves without collectives (whose parts it checks).
StatusOr<bool> HasWork(const Stores& stores) {
  DCPKV_ASSIGN_OR_RETURN(StoreIndex index, IndexStores(stores));
  if (!index.trash.empty() || !index.markers.empty()) return true;
  DCPKV_ASSIGN_OR_RETURN(Orphans orphans, FindOrphans(stores, index));
  if (!orphans.empty()) return true;
  bool per_rank = false;
  DCPKV_RETURN_IF_ERROR(ForEachManifest(
      stores, index,
      [&](int, const std::string&, const Metadata& md) { per_rank |= md.per_rank_commit; }));
  return per_rank;
}

Status CloseAndMeasure(Stores& stores, const std::string& root, GcReport* report) {
  DCPKV_RETURN_IF_ERROR(stores.CloseOwned());  // closing purges obsolete files
  report->disk_bytes_after = DirectorySize(root);
  return Status::Ok();
}

}  // namespace

namespace {

// OK if every id in `removing` is committed or removed, and every other checkpoint's manifest
// can be read (nothing is trashed if the collection that follows could not run).
Status CheckRemovable(Stores& stores, const std::set<std::string>& removing,
                      const std::string& root) {
  DCPKV_ASSIGN_OR_RETURN(StoreIndex index, IndexStores(stores));
  for (const std::string& id : removing) {
    if (index.manifests.count(id) == 0 && index.trash.count(id) == 0) {
      return NotFoundError("checkpoint \"" + id + "\" is neither committed nor removed in " + root);
    }
  }
  for (const auto& [id, ranks] : index.manifests) {
    if (removing.count(id) != 0) continue;
    for (int rank : ranks) {
      StatusOr<Metadata> md = ReadMetadata(stores.by_rank.at(rank), id, /*trash=*/false);
      if (!md.ok()) {
        return md.status().WithContext(
            "cannot tell which chunks are in use; remove the checkpoint with the damaged "
            "manifest too");
      }
    }
  }
  return Status::Ok();
}

}  // namespace

StatusOr<RemoveReport> RemoveCheckpoints(const std::string& root,
                                         const std::vector<std::string>& ids,
                                         const GcOptions& options) {
  for (const std::string& id : ids) DCPKV_RETURN_IF_ERROR(ValidateCheckpointId(id));
  RemoveReport report;
  report.gc.disk_bytes_before = DirectorySize(root);
  const std::set<std::string> removing(ids.begin(), ids.end());
  // What would refuse the removal is found through read-only opens first: a read-write open
  // writes into every database (a new MANIFEST, OPTIONS, log), which a refused `rm` must not.
  {
    DCPKV_ASSIGN_OR_RETURN(Stores readers, OpenAll(root, OpenMode::kReadOnly, options.env));
    Status s = CheckRemovable(readers, removing, root);
    readers.CloseOwned().IgnoreError();
    DCPKV_RETURN_IF_ERROR(s);
  }
  // The root's writer lease before any read-write open: refused while a job holds it.
  DCPKV_ASSIGN_OR_RETURN(std::unique_ptr<WriterLease> lease, WriterLease::Acquire(root));
  DCPKV_ASSIGN_OR_RETURN(Stores stores, OpenAll(root, OpenMode::kReadWrite, options.env));
  // Again under the lock: the store may have changed since.
  if (Status s = CheckRemovable(stores, removing, root); !s.ok()) {
    stores.CloseOwned().IgnoreError();
    return s;
  }
  DCPKV_ASSIGN_OR_RETURN(StoreIndex index, IndexStores(stores));
  Steps steps(options);
  for (const std::string& id : removing) {
    auto m = index.manifests.find(id);
    if (m != index.manifests.end())
      DCPKV_RETURN_IF_ERROR(MoveToTrash(stores, id, m->second, steps));
  }
  steps.At("after_trash");
  report.removed_ids.assign(removing.begin(), removing.end());
  Status collected = CollectOpened(stores, steps, options, &report.gc);
  if (!collected.ok()) {
    stores.CloseOwned().IgnoreError();
    return collected.WithContext(
        "the checkpoints are removed, but collecting their garbage failed (CollectGarbage "
        "finishes it)");
  }
  DCPKV_RETURN_IF_ERROR(CloseAndMeasure(stores, root, &report.gc));
  return report;
}

StatusOr<GcReport> CollectGarbage(const std::string& root, const GcOptions& options) {
  GcReport report;
  report.disk_bytes_before = DirectorySize(root);
  // Read-only first: a store with nothing to collect is left exactly as it was (a read-write
  // open writes a new MANIFEST, OPTIONS and log into every database).
  {
    DCPKV_ASSIGN_OR_RETURN(Stores readers, OpenAll(root, OpenMode::kReadOnly, options.env));
    StatusOr<bool> work = HasWork(readers);
    readers.CloseOwned().IgnoreError();
    DCPKV_ASSIGN_OR_RETURN(bool any, work);
    if (!any) {
      report.disk_bytes_after = report.disk_bytes_before;
      return report;
    }
  }
  DCPKV_ASSIGN_OR_RETURN(std::unique_ptr<WriterLease> lease, WriterLease::Acquire(root));
  DCPKV_ASSIGN_OR_RETURN(Stores stores, OpenAll(root, OpenMode::kReadWrite, options.env));
  Steps steps(options);
  if (Status s = CollectOpened(stores, steps, options, &report); !s.ok()) {
    stores.CloseOwned().IgnoreError();
    return s;
  }
  DCPKV_RETURN_IF_ERROR(CloseAndMeasure(stores, root, &report));
  return report;
}

Status CollectRankGarbage(ChunkStore* own_db, int rank, const std::string& root,
                          const GcOptions& options) {
  if (own_db == nullptr || own_db->mode() != OpenMode::kReadWrite) {
    return FailedPreconditionError("CollectRankGarbage needs the rank's database open read-write");
  }
  // The other ranks' databases through read-only views: their writers may be saving. A view
  // whose files a writer's compaction replaced reads as IO_ERROR: opened once more then.
  Stores stores;
  StoreIndex index;
  LiveSet live;
  auto read_view = [&]() -> Status {
    stores = Stores();
    live.clear();
    DCPKV_ASSIGN_OR_RETURN(std::vector<int> ranks, ListRankDirectories(root));
    stores.by_rank[rank] = own_db;
    for (int r : ranks) {
      if (r == rank) continue;
      std::unique_ptr<ChunkStore> store;
      Status s = ChunkStore::Open(RankDirectory(root, r), {.mode = OpenMode::kReadOnly}, &store);
      if (s.code() == StatusCode::kNotFound) continue;
      DCPKV_RETURN_IF_ERROR(s);
      stores.by_rank[r] = store.get();
      stores.owned.push_back(std::move(store));
    }
    DCPKV_ASSIGN_OR_RETURN(index, IndexStores(stores));
    std::set<std::string> wanted;
    for (const auto& [id, trash_ranks] : index.trash) wanted.insert(id);
    if (wanted.empty()) return Status::Ok();
    return ForEachManifest(stores, index, [&](int, const std::string& id, const Metadata& md) {
      AddReferences(md, id, wanted, &live);
    });
  };
  Status viewed = read_view();
  if (viewed.code() == StatusCode::kIOError) viewed = read_view();
  DCPKV_RETURN_IF_ERROR(viewed);
  if (index.trash.empty()) return stores.CloseOwned();
  Steps steps(options);
  Collector collector{steps, options, nullptr};
  for (const auto& [id, trash_ranks] : index.trash) {
    TrashedCheckpoint t = DescribeTrashed(stores, id, trash_ranks);
    std::vector<Range> in_use = MergeRanges(std::move(live[rank][id]));
    static const std::vector<OwnItem> kNothing;
    const std::vector<OwnItem>* own = nullptr;
    if (t.known) {
      auto o = t.own.find(rank);
      own = o == t.own.end() ? &kNothing : &o->second;
    }
    DCPKV_RETURN_IF_ERROR(collector.Reclaim(own_db, id, in_use, own, /*marker=*/true).status());
    if (in_use.empty()) DCPKV_RETURN_IF_ERROR(own_db->DeleteDataMarkerIfNoChunks(id).status());
  }
  return stores.CloseOwned();
}

StatusOr<std::vector<std::string>> ApplyRetention(ChunkStore* coordinator_db,
                                                  const std::string& root, int keep_last) {
  if (coordinator_db == nullptr) return InvalidArgumentError("ApplyRetention needs a database");
  if (keep_last <= 0) return std::vector<std::string>();
  DCPKV_ASSIGN_OR_RETURN(std::vector<std::string> ids, coordinator_db->ListManifestIds());
  struct Candidate {
    int64_t committed;
    std::string id;
    bool keep;
  };
  std::vector<Candidate> candidates;
  for (const std::string& id : ids) {
    StatusOr<ManifestRecord> record = coordinator_db->GetManifest(id);
    if (!record.ok()) continue;  // damaged: kept
    StatusOr<Metadata> md = DecodeMetadata(record->payload);
    if (!md.ok() || md->per_rank_commit) continue;
    candidates.push_back({record->committed_unix_micros, id, md->tags.count("keep") != 0});
  }
  std::sort(candidates.begin(), candidates.end(), [](const Candidate& a, const Candidate& b) {
    return std::tie(a.committed, a.id) < std::tie(b.committed, b.id);
  });
  std::vector<std::string> trashed;
  const size_t drop = candidates.size() > static_cast<size_t>(keep_last)
                          ? candidates.size() - static_cast<size_t>(keep_last)
                          : 0;
  for (size_t i = 0; i < drop; ++i) {
    if (candidates[i].keep) continue;
    Status s = coordinator_db->MoveManifestToTrash(candidates[i].id);
    if (!s.ok()) {
      return s.WithContext("retention in " + root +
                           " (trashed so far: " + std::to_string(trashed.size()) + ")");
    }
    trashed.push_back(candidates[i].id);
    if (trashed.size() == 1) MaybeCrashAt("retention.after_trash_first");
  }
  return trashed;
}

}  // namespace dcpkv

// KvStorageReader: reads the manifest from whichever rank database holds it, then for every
// saved shard it needs reads only the rows that overlap what this rank asked for, verifying
// every chunk, and copies each overlap into the caller's tensors. The chunks of a shard of an
// incremental checkpoint may be stored under earlier checkpoints, in other ranks' databases:
// ReadSavedShardRange reads each run of them where it is.
#include <algorithm>
#include <vector>

#include "box.h"
#include "dcpkv/store/kv_storage.h"
#include "dcpkv/store/metadata_codec.h"
#include "dcpkv/store/names.h"
#include "dcpkv/store/saved_shard_reader.h"
#include "dcpkv/store/store_layout.h"
#include "plan_validation.h"

namespace dcpkv {
namespace {

// The rows (dimension 0) of `shard` that the overlaps of `items` touch, as a sub-box of the
// shard: reading it reads one contiguous byte range. A 0-d shard is its own sub-box.
Box RowsNeeded(const SavedShard& shard, const std::vector<const ReadItem*>& items) {
  Box rows{shard.offsets, shard.sizes};
  if (shard.offsets.empty()) return rows;
  uint64_t first = UINT64_MAX, last = 0;
  for (const ReadItem* item : items) {
    first = std::min(first, item->overlap_offsets[0]);
    last = std::max(last, item->overlap_offsets[0] + item->overlap_sizes[0]);
  }
  rows.offsets[0] = first;
  rows.sizes[0] = last - first;
  return rows;
}

// Adds the entries of one rank's part to `merged`. A shard saved by several ranks (a replicated
// tensor: without collectives nothing is deduplicated) is kept once, from the lowest rank.
Status MergePart(const Metadata& part, Metadata* merged) {
  for (const auto& [fqn, entry] : part.entries) {
    auto [it, inserted] =
        merged->entries.try_emplace(fqn, EntryMetadata{entry.dtype, entry.global_shape, {}});
    EntryMetadata& into = it->second;
    if (into.dtype != entry.dtype || into.global_shape != entry.global_shape) {
      return DataLossError("fqn \"" + fqn + "\" differs between the parts of rank " +
                           std::to_string(part.coordinator_rank) + " and a lower rank");
    }
    for (const SavedShard& shard : entry.shards) {
      bool duplicate = false;
      for (const SavedShard& have : into.shards) {
        duplicate = duplicate || (have.offsets == shard.offsets && have.sizes == shard.sizes);
      }
      if (!duplicate) into.shards.push_back(shard);
    }
  }
  return Status::Ok();
}

}  // namespace

KvStorageReader::KvStorageReader(KvStorageOptions options) : options_(std::move(options)) {}
KvStorageReader::~KvStorageReader() = default;

void KvStorageReader::ShareStore(int rank, ChunkStore* store) { shared_[rank] = store; }

Status KvStorageReader::Reset(std::string_view checkpoint_id) {
  DCPKV_RETURN_IF_ERROR(ValidateCheckpointId(checkpoint_id));
  checkpoint_id_ = std::string(checkpoint_id);
  return Status::Ok();
}

StatusOr<ChunkStore*> KvStorageReader::StoreOf(int rank) {
  if (auto it = shared_.find(rank); it != shared_.end()) return it->second;
  if (auto it = opened_.find(rank); it != opened_.end()) return it->second.get();
  ChunkStoreOptions o = options_.store_options;
  o.mode = OpenMode::kReadOnly;
  std::unique_ptr<ChunkStore> store;
  DCPKV_RETURN_IF_ERROR(ChunkStore::Open(RankDirectory(options_.root, rank), o, &store));
  ChunkStore* raw = store.get();
  opened_[rank] = std::move(store);
  return raw;
}

Status KvStorageReader::ReadRetrying(int rank, const std::function<Status(ChunkStore*)>& read) {
  DCPKV_ASSIGN_OR_RETURN(ChunkStore * store, StoreOf(rank));
  Status s = read(store);
  // A database this reader opened read-only while its writer runs (an evaluation job loading
  // the latest checkpoint of a training job, say) may have had files replaced by the writer's
  // compaction since the open: RocksDB then cannot find them. Reopen once and read again.
  if (s.code() != StatusCode::kIOError || shared_.count(rank) != 0) return s;
  opened_.erase(rank);
  DCPKV_ASSIGN_OR_RETURN(store, StoreOf(rank));
  return read(store);
}

StatusOr<Metadata> KvStorageReader::ReadManifest(int rank) {
  DCPKV_ASSIGN_OR_RETURN(ChunkStore * store, StoreOf(rank));
  DCPKV_ASSIGN_OR_RETURN(ManifestRecord record, store->GetManifest(checkpoint_id_));
  StatusOr<Metadata> metadata = DecodeMetadata(record.payload);
  if (!metadata.ok()) {
    return metadata.status().WithContext("manifest of checkpoint \"" + checkpoint_id_ + "\" in " +
                                         RankDirectory(options_.root, rank));
  }
  return metadata;
}

StatusOr<Metadata> KvStorageReader::MergeParts(Metadata first) {
  Metadata merged = first;
  merged.entries.clear();
  std::string missing;
  for (int rank = 0; rank < first.world_size; ++rank) {
    StatusOr<Metadata> part = rank == first.coordinator_rank ? first : ReadManifest(rank);
    if (part.status().code() == StatusCode::kNotFound) {
      missing += (missing.empty() ? "" : ", ") + std::to_string(rank);
      continue;
    }
    DCPKV_RETURN_IF_ERROR(part.status());
    if (!part->per_rank_commit || part->world_size != first.world_size ||
        part->coordinator_rank != rank) {
      return DataLossError("checkpoint \"" + checkpoint_id_ + "\": the part in rank " +
                           std::to_string(rank) + "'s database does not belong to a save of " +
                           std::to_string(first.world_size) + " ranks without collectives");
    }
    DCPKV_RETURN_IF_ERROR(MergePart(*part, &merged));
    merged.committed_unix_micros =
        std::max(merged.committed_unix_micros, part->committed_unix_micros);
  }
  if (!missing.empty()) {
    return NotFoundError("checkpoint \"" + checkpoint_id_ +
                         "\" was saved without collectives and is "
                         "incomplete: ranks " +
                         missing + " did not commit their part");
  }
  for (auto& [fqn, entry] : merged.entries) {
    std::sort(entry.shards.begin(), entry.shards.end(),
              [](const SavedShard& a, const SavedShard& b) { return a.offsets < b.offsets; });
    if (!entry.is_bytes()) {
      DCPKV_RETURN_IF_ERROR(ValidateSavedShards(fqn, entry.dtype, entry.global_shape, entry.shards)
                                .WithContext("checkpoint \"" + checkpoint_id_ + "\""));
    }
  }
  merged.coordinator_rank = 0;
  return merged;
}

StatusOr<Metadata> KvStorageReader::ReadMetadata() {
  if (options_.root.empty()) return InvalidArgumentError("KvStorageReader needs a store root");
  opened_.clear();  // each load sees the databases as they are now
  DCPKV_ASSIGN_OR_RETURN(std::vector<int> ranks, ListRankDirectories(options_.root));
  for (int rank : ranks) {
    StatusOr<Metadata> metadata = ReadManifest(rank);
    if (metadata.status().code() == StatusCode::kNotFound) continue;
    DCPKV_RETURN_IF_ERROR(metadata.status());
    if (metadata->per_rank_commit) return MergeParts(std::move(metadata).value());
    return metadata;
  }
  return NotFoundError("checkpoint \"" + checkpoint_id_ + "\" is not committed in " +
                       options_.root + " (no manifest in any rank database)");
}

Status KvStorageReader::SetUpStorageReader(const Metadata& metadata, bool is_coordinator,
                                           int rank) {
  return Status::Ok();
}

StatusOr<LoadPlan> KvStorageReader::PrepareLocalPlan(LoadPlan plan) { return plan; }

StatusOr<std::vector<LoadPlan>> KvStorageReader::PrepareGlobalPlan(std::vector<LoadPlan> plans) {
  return plans;
}

std::future<Status> KvStorageReader::ReadData(const LoadPlan& plan, LoadPlanner& planner) {
  std::promise<Status> p;
  p.set_value(Read(plan, planner));
  return p.get_future();
}

Status KvStorageReader::Read(const LoadPlan& plan, LoadPlanner& planner) {
  // Group the items by the saved shard they read, keeping the plan's order of first use.
  using SourceKey = std::tuple<int, std::string, Shape>;
  std::map<SourceKey, std::vector<const ReadItem*>> by_source;
  std::vector<SourceKey> order;
  for (const ReadItem& item : plan.items) {
    SourceKey key{item.source.rank, item.fqn, item.source.offsets};
    auto [it, inserted] = by_source.try_emplace(key);
    if (inserted) order.push_back(key);
    it->second.push_back(&item);
  }
  // A shard's chunks may be stored in several databases (an incremental checkpoint refers to
  // earlier checkpoints' chunks): each run of them is read with the reopen-on-IO_ERROR retry.
  const RankReadRunner runner = [this](int rank, const std::function<Status(ChunkStore*)>& read) {
    return ReadRetrying(rank, read);
  };
  std::vector<uint8_t> buffer;
  for (const SourceKey& key : order) {
    const std::vector<const ReadItem*>& items = by_source[key];
    const ReadItem& first = *items.front();
    const SavedShard& shard = first.source;
    if (first.type == WriteItemType::kBytes) {
      std::string data(shard.bytes, '\0');
      DCPKV_RETURN_IF_ERROR(ReadSavedShardRange(checkpoint_id_, first.fqn, first.dtype, shard, 0,
                                                shard.bytes, data.data(), runner));
      DCPKV_RETURN_IF_ERROR(planner.LoadBytes(first, std::move(data)));
      continue;
    }
    const size_t element = ElementSize(first.dtype);
    const Box rows = RowsNeeded(shard, items);
    const uint64_t row_bytes = shard.offsets.empty()
                                   ? element
                                   : Volume(rows) / std::max<uint64_t>(rows.sizes[0], 1) * element;
    const uint64_t begin =
        shard.offsets.empty() ? 0 : (rows.offsets[0] - shard.offsets[0]) * row_bytes;
    const uint64_t size = Volume(rows) * element;
    std::vector<Tensor> dests;
    dests.reserve(items.size());
    for (const ReadItem* item : items) {
      DCPKV_ASSIGN_OR_RETURN(Tensor dest, planner.ResolveTensor(*item));
      const Box dest_box{item->dest_offsets, dest.shape()};
      const Box region{item->overlap_offsets, item->overlap_sizes};
      if (dest.dtype() != first.dtype || !Contains(dest_box, region) || !Contains(rows, region)) {
        return InternalError("read item of \"" + item->fqn + "\" at " +
                             ShapeToString(item->overlap_offsets) +
                             " does not fit its source or destination");
      }
      dests.push_back(std::move(dest));
    }
    // One item whose region is exactly the rows read and is contiguous in its destination (the
    // common case: the same sharding as at save time, or whole rows of a row-sharded tensor):
    // read straight into the destination, without the intermediate buffer.
    if (items.size() == 1) {
      const ReadItem& item = first;
      const Box region{item.overlap_offsets, item.overlap_sizes};
      const Box dest_box{item.dest_offsets, dests[0].shape()};
      StatusOr<std::pair<uint64_t, uint64_t>> range = ByteRange(dest_box, region, element);
      if (region == rows && range.ok() && range->second - range->first == size) {
        DCPKV_RETURN_IF_ERROR(ReadSavedShardRange(
            checkpoint_id_, first.fqn, first.dtype, shard, begin, begin + size,
            static_cast<uint8_t*>(dests[0].data()) + range->first, runner));
        DCPKV_RETURN_IF_ERROR(planner.CommitTensor(item, dests[0]));
        continue;
      }
    }
    buffer.resize(size);
    DCPKV_RETURN_IF_ERROR(ReadSavedShardRange(checkpoint_id_, first.fqn, first.dtype, shard, begin,
                                              begin + size, buffer.data(), runner));
    for (size_t i = 0; i < items.size(); ++i) {
      const ReadItem& item = *items[i];
      const Box dest_box{item.dest_offsets, dests[i].shape()};
      const Box region{item.overlap_offsets, item.overlap_sizes};
      CopyBox(buffer.data(), rows, dests[i].data(), dest_box, region, element);
      DCPKV_RETURN_IF_ERROR(planner.CommitTensor(item, dests[i]));
    }
  }
  return Status::Ok();
}

}  // namespace dcpkv

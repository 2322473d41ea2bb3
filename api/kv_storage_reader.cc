// KvStorageReader: reads the manifest from whichever rank database holds it, then for every
// saved shard it needs reads only the rows that overlap what this rank asked for, verifying
// every chunk, and copies each overlap into the caller's tensors. The chunks of a shard of an
// incremental checkpoint may be stored under earlier checkpoints, in other ranks' databases:
// ReadSavedShardRange reads each run of them where it is.
#include <algorithm>
#include <atomic>
#include <thread>
#include <vector>

#include "dcpkv/api/kv_storage.h"
#include "dcpkv/core/box.h"
#include "dcpkv/core/metadata_codec.h"
#include "dcpkv/core/names.h"
#include "dcpkv/core/plan_validation.h"
#include "dcpkv/core/strided.h"
#include "dcpkv/store/saved_shard_reader.h"
#include "dcpkv/store/store_layout.h"
#include "host_threads.h"

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
    EntryMetadata first = entry;  // dtype, shape and the torch fields of the lowest rank's
    first.shards.clear();
    auto [it, inserted] = merged->entries.try_emplace(fqn, std::move(first));
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

void KvStorageReader::ShareStore(int rank, ChunkStore* store) {
  std::lock_guard<std::mutex> lock(stores_mu_);
  shared_[rank] = store;
}

Status KvStorageReader::Reset(std::string_view checkpoint_id) {
  DCPKV_RETURN_IF_ERROR(ValidateCheckpointId(checkpoint_id));
  checkpoint_id_ = std::string(checkpoint_id);
  return Status::Ok();
}

StatusOr<std::shared_ptr<ChunkStore>> KvStorageReader::StoreOf(int rank) {
  std::lock_guard<std::mutex> lock(stores_mu_);
  if (auto it = shared_.find(rank); it != shared_.end()) {
    return std::shared_ptr<ChunkStore>(std::shared_ptr<ChunkStore>(), it->second);  // not owned
  }
  if (auto it = opened_.find(rank); it != opened_.end()) return it->second;
  ChunkStoreOptions o = options_.store_options;
  o.mode = OpenMode::kReadOnly;
  std::unique_ptr<ChunkStore> store;
  DCPKV_RETURN_IF_ERROR(ChunkStore::Open(RankDirectory(options_.root, rank), o, &store));
  std::shared_ptr<ChunkStore> shared = std::move(store);
  opened_[rank] = shared;
  return shared;
}

Status KvStorageReader::ReadRetrying(int rank, const std::function<Status(ChunkStore*)>& read) {
  DCPKV_ASSIGN_OR_RETURN(std::shared_ptr<ChunkStore> store, StoreOf(rank));
  Status s = read(store.get());
  // A database this reader opened read-only while its writer runs (an evaluation job loading
  // the latest checkpoint of a training job, say) may have had files replaced by the writer's
  // compaction since the open: RocksDB then cannot find them. Reopen once and read again. Of
  // several threads that failed on the same open, the first reopens and the others use its
  // database.
  if (s.code() != StatusCode::kIOError) return s;
  {
    std::lock_guard<std::mutex> lock(stores_mu_);
    if (shared_.count(rank) != 0) return s;
    auto it = opened_.find(rank);
    if (it != opened_.end() && it->second == store) opened_.erase(it);
  }
  DCPKV_ASSIGN_OR_RETURN(store, StoreOf(rank));
  return read(store.get());
}

StatusOr<Metadata> KvStorageReader::ReadManifest(int rank) {
  DCPKV_ASSIGN_OR_RETURN(std::shared_ptr<ChunkStore> store, StoreOf(rank));
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
  {
    std::lock_guard<std::mutex> lock(stores_mu_);
    opened_.clear();  // each load sees the databases as they are now
  }
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

namespace {

// Pieces a load reads in parallel are cut at chunk boundaries once they hold at least this many
// bytes (KvStorageOptions::read_piece_bytes): large enough that a piece costs one seek and a
// few chunk reads, small enough that a few threads keep the disk busy on one large shard.
constexpr uint64_t kDefaultPieceBytes = 16ull << 20;
// A load resolves, reads and commits the items of at most about this many bytes at a time, so
// a planner that stages through memory (device tensors) needs no more than that at once.
constexpr uint64_t kWindowBytes = 512ull << 20;

// One saved shard read for the items that need it: the shard's byte range [begin, end) holding
// `rows` (a sub-box of whole dimension-0 rows of the shard), copied into `dests`.
struct SourceRead {
  std::vector<const ReadItem*> items;
  std::vector<Tensor> dests;
  // Per destination: its strides in bytes when it is strided, empty when contiguous.
  std::vector<std::vector<uint64_t>> dest_byte_strides;
  Box rows;
  uint64_t row_bytes = 0;
  uint64_t begin = 0;
  uint64_t end = 0;
  uint8_t* direct = nullptr;  // read straight into this destination, without a buffer
  std::string bytes;          // a bytes entry's value
};

// A part of a SourceRead that one thread reads: bytes [begin, end) of the shard, i.e. the rows
// `band` (a sub-box of the source's rows).
struct Piece {
  SourceRead* source;
  uint64_t begin;
  uint64_t end;
  Box band;
};

// Byte offsets within the shard at which its chunks end, for cutting it into pieces; manifests
// written before chunk lists were recorded give none (the read is then cut every piece_bytes).
std::vector<uint64_t> ChunkEnds(const SavedShard& shard, uint64_t piece_bytes) {
  std::vector<uint64_t> ends;
  uint64_t at = 0;
  for (const SavedChunk& c : shard.chunk_list) ends.push_back(at += c.length);
  if (ends.empty()) {
    for (uint64_t b = piece_bytes; b < shard.bytes; b += piece_bytes) ends.push_back(b);
  }
  return ends;
}

// Cuts `source` into pieces of about `piece_bytes`, at chunk boundaries. A read into a buffer is
// cut only at whole rows; a cut between chunk boundaries makes the two pieces read the chunk
// that holds it, so those cuts are taken at the row before the boundary.
void CutIntoPieces(SourceRead& source, const SavedShard& shard, uint64_t piece_bytes,
                   std::vector<Piece>* pieces) {
  auto add = [&](uint64_t begin, uint64_t end) {
    Box band = source.rows;
    if (!band.offsets.empty() && source.row_bytes > 0) {
      band.offsets[0] = source.rows.offsets[0] + (begin - source.begin) / source.row_bytes;
      band.sizes[0] = (end - begin) / source.row_bytes;
    }
    pieces->push_back({&source, begin, end, std::move(band)});
  };
  const bool whole_rows_only = source.direct == nullptr;
  if (source.end - source.begin <= piece_bytes || !source.bytes.empty() ||
      (whole_rows_only && (source.rows.offsets.empty() || source.row_bytes == 0))) {
    add(source.begin, source.end);
    return;
  }
  uint64_t from = source.begin;
  for (uint64_t boundary : ChunkEnds(shard, piece_bytes)) {
    if (boundary <= from || boundary >= source.end) continue;
    uint64_t cut = boundary;
    if (whole_rows_only) cut -= (cut - source.begin) % source.row_bytes;
    if (cut - from < piece_bytes || source.end - cut < piece_bytes / 2) continue;
    add(from, cut);
    from = cut;
  }
  add(from, source.end);
}

}  // namespace

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
  const int max_threads = options_.read_threads > 0
                              ? options_.read_threads
                              : static_cast<int>(CoresPerLocalRank(/*ranks_here=*/1));
  const uint64_t piece_bytes =
      options_.read_piece_bytes > 0 ? options_.read_piece_bytes : kDefaultPieceBytes;

  size_t next_source = 0;
  while (next_source < order.size()) {
    // Resolve the destinations of a window of sources, in plan order.
    std::vector<SourceRead> sources;
    sources.reserve(order.size() - next_source);
    uint64_t window_bytes = 0;
    while (next_source < order.size() && (sources.empty() || window_bytes < kWindowBytes)) {
      SourceRead& source = sources.emplace_back();
      source.items = std::move(by_source[order[next_source++]]);
      const ReadItem& first = *source.items.front();
      const SavedShard& shard = first.source;
      if (first.type == WriteItemType::kBytes) {
        source.begin = 0;
        source.end = shard.bytes;
        source.bytes.assign(shard.bytes, '\0');
        source.direct = reinterpret_cast<uint8_t*>(source.bytes.data());
        window_bytes += shard.bytes;
        continue;
      }
      const size_t element = ElementSize(first.dtype);
      source.rows = RowsNeeded(shard, source.items);
      const uint64_t nrows = shard.offsets.empty() ? 1 : source.rows.sizes[0];
      source.row_bytes = nrows == 0 ? 0 : Volume(source.rows) / nrows * element;
      source.begin = shard.offsets.empty()
                         ? 0
                         : (source.rows.offsets[0] - shard.offsets[0]) * source.row_bytes;
      source.end = source.begin + Volume(source.rows) * element;
      window_bytes += source.end - source.begin;
      for (const ReadItem* item : source.items) {
        DCPKV_ASSIGN_OR_RETURN(Tensor dest, planner.ResolveTensor(*item));
        const Box dest_box{item->dest_offsets, dest.shape()};
        const Box region{item->overlap_offsets, item->overlap_sizes};
        if (dest.dtype() != first.dtype || !Contains(dest_box, region) ||
            !Contains(source.rows, region)) {
          return InternalError("read item of \"" + item->fqn + "\" at " +
                               ShapeToString(item->overlap_offsets) +
                               " does not fit its source or destination");
        }
        std::vector<uint64_t>& byte_strides = source.dest_byte_strides.emplace_back();
        if (!dest.is_contiguous()) {
          DCPKV_RETURN_IF_ERROR(
              CheckDistinctElements(dest, "the tensor to load \"" + item->fqn + "\" into"));
          byte_strides = dest.strides();
          for (uint64_t& stride : byte_strides) stride *= element;
        }
        source.dests.push_back(std::move(dest));
      }
      // One item whose region is exactly the rows read and is contiguous in its destination
      // (the common case: the same sharding as at save time, or whole rows of a row-sharded
      // tensor): read straight into the destination, without an intermediate buffer.
      if (source.items.size() == 1 && source.dests[0].is_contiguous()) {
        const Box region{first.overlap_offsets, first.overlap_sizes};
        const Box dest_box{first.dest_offsets, source.dests[0].shape()};
        StatusOr<std::pair<uint64_t, uint64_t>> range = ByteRange(dest_box, region, element);
        if (region == source.rows && range.ok() &&
            range->second - range->first == source.end - source.begin) {
          source.direct = static_cast<uint8_t*>(source.dests[0].data()) + range->first;
        }
      }
    }

    std::vector<Piece> pieces;
    for (SourceRead& source : sources) {
      CutIntoPieces(source, source.items.front()->source, piece_bytes, &pieces);
    }

    // Read the pieces on up to max_threads threads, each its own run of consecutive pieces: a
    // thread reads on through the tables (a shard's chunks are consecutive keys, mostly in one
    // file) and the kernel's readahead keeps the disk busy ahead of it, where threads taking
    // pieces in turn made every read a separate wait. Each thread keeps its own buffer. After a
    // failure no new piece starts, and the failure of the earliest piece is reported.
    std::vector<Status> results(pieces.size());
    std::atomic<bool> failed{false};
    const size_t nthreads = std::min<size_t>(max_threads, pieces.size());
    const size_t per_thread = nthreads == 0 ? 0 : (pieces.size() + nthreads - 1) / nthreads;
    auto work = [&](size_t begin) {
      std::vector<uint8_t> buffer;
      const size_t end = std::min(pieces.size(), begin + per_thread);
      for (size_t i = begin; i < end && !failed.load(); ++i) {
        const Piece& piece = pieces[i];
        SourceRead& source = *piece.source;
        const ReadItem& first = *source.items.front();
        uint8_t* into = source.direct;
        if (into != nullptr) {
          into += piece.begin - source.begin;
        } else {
          buffer.resize(piece.end - piece.begin);
          into = buffer.data();
        }
        Status s = ReadSavedShardRange(checkpoint_id_, first.fqn, first.dtype, first.source,
                                       piece.begin, piece.end, into, runner);
        if (s.ok() && source.direct == nullptr) {
          const size_t element = ElementSize(first.dtype);
          for (size_t k = 0; k < source.items.size(); ++k) {
            const ReadItem& item = *source.items[k];
            const Box dest_box{item.dest_offsets, source.dests[k].shape()};
            Box part;
            if (!Intersect(Box{item.overlap_offsets, item.overlap_sizes}, piece.band, &part)) {
              continue;
            }
            const std::vector<uint64_t>& byte_strides = source.dest_byte_strides[k];
            if (byte_strides.empty()) {
              CopyBox(buffer.data(), piece.band, source.dests[k].data(), dest_box, part, element);
            } else {
              CopyBoxToStrided(buffer.data(), piece.band, source.dests[k].data(), dest_box,
                               byte_strides, part, element);
            }
          }
        }
        if (!s.ok()) failed.store(true);
        results[i] = std::move(s);
      }
    };
    std::vector<std::thread> threads;
    for (size_t t = 1; t < nthreads; ++t) threads.emplace_back(work, t * per_thread);
    work(0);
    for (std::thread& t : threads) t.join();
    for (Status& s : results) DCPKV_RETURN_IF_ERROR(std::move(s));

    // Hand the data to the planner, in plan order.
    for (SourceRead& source : sources) {
      if (source.items.front()->type == WriteItemType::kBytes) {
        DCPKV_RETURN_IF_ERROR(planner.LoadBytes(*source.items.front(), std::move(source.bytes)));
        continue;
      }
      for (size_t k = 0; k < source.items.size(); ++k) {
        DCPKV_RETURN_IF_ERROR(planner.CommitTensor(*source.items[k], source.dests[k]));
      }
    }
  }
  return Status::Ok();
}

}  // namespace dcpkv

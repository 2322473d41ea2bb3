#include "dcpkv/store/saved_shard_reader.h"

#include <algorithm>

#include "dcpkv/tensor.h"

namespace dcpkv {

StatusOr<std::vector<ChunkRun>> SplitIntoChunkRuns(std::string_view checkpoint_id,
                                                   const SavedShard& shard, uint64_t begin,
                                                   uint64_t end) {
  if (begin > end || end > shard.bytes) {
    return InvalidArgumentError("range [" + std::to_string(begin) + ", " + std::to_string(end) +
                                ") is outside the " + std::to_string(shard.bytes) +
                                " bytes of shard " + ShapeToString(shard.offsets));
  }
  std::vector<ChunkRun> runs;
  const std::vector<SavedChunk>& chunks = shard.chunk_list;
  if (chunks.empty()) {
    runs.push_back({std::string(checkpoint_id), shard.rank, false, begin, end, 0, 0});
    return runs;
  }
  uint64_t total = 0;
  for (const SavedChunk& c : chunks) {
    if (__builtin_add_overflow(total, c.length, &total)) total = UINT64_MAX;
  }
  if (total != shard.bytes) {
    return DataLossError("checkpoint \"" + std::string(checkpoint_id) + "\" shard " +
                         ShapeToString(shard.offsets) + ": its chunk list's lengths add up to " +
                         std::to_string(total) + " bytes, not " + std::to_string(shard.bytes));
  }
  auto run_of = [&](size_t k, uint64_t run_begin, uint64_t run_end) {
    const SavedChunk& c = chunks[k];
    const bool referenced = !c.source.empty();
    return ChunkRun{referenced ? c.source : std::string(checkpoint_id),
                    referenced ? c.source_rank : shard.rank,
                    referenced,
                    run_begin,
                    run_end,
                    k,
                    k + 1};
  };
  if (begin == end) {
    // The chunk holding byte `begin`: the first that ends after it, else the last one.
    uint64_t start = 0;
    size_t k = 0;
    for (; k + 1 < chunks.size() && start + chunks[k].length <= begin; ++k) {
      start += chunks[k].length;
    }
    runs.push_back(run_of(k, begin, end));
    return runs;
  }
  uint64_t start = 0;
  for (size_t k = 0; k < chunks.size() && start < end; start += chunks[k].length, ++k) {
    const uint64_t chunk_end = start + chunks[k].length;
    if (chunk_end <= begin || chunks[k].length == 0) continue;
    ChunkRun run = run_of(k, std::max(start, begin), std::min(chunk_end, end));
    if (!runs.empty() && runs.back().checkpoint_id == run.checkpoint_id &&
        runs.back().rank == run.rank && runs.back().referenced == run.referenced) {
      runs.back().end = run.end;
      runs.back().end_chunk = run.end_chunk;
    } else {
      runs.push_back(std::move(run));
    }
  }
  return runs;
}

std::string DescribeChunkRunLocation(const ChunkRun& run) {
  std::string rank = "rank " + std::to_string(run.rank) + "'s database";
  if (!run.referenced) return rank;
  return "checkpoint \"" + run.checkpoint_id + "\" in " + rank;
}

Status ReadSavedShardRange(std::string_view checkpoint_id, std::string_view fqn, DType dtype,
                           const SavedShard& shard, uint64_t begin, uint64_t end, void* dest,
                           const RankStoreResolver& stores) {
  return ReadSavedShardRange(
      checkpoint_id, fqn, dtype, shard, begin, end, dest,
      [&stores](int rank, const std::function<Status(ChunkStore*)>& read) -> Status {
        DCPKV_ASSIGN_OR_RETURN(ChunkStore * store, stores(rank));
        return read(store);
      });
}

Status ReadSavedShardRange(std::string_view checkpoint_id, std::string_view fqn, DType dtype,
                           const SavedShard& shard, uint64_t begin, uint64_t end, void* dest,
                           const RankReadRunner& runner) {
  StatusOr<std::vector<ChunkRun>> runs = SplitIntoChunkRuns(checkpoint_id, shard, begin, end);
  if (!runs.ok()) return runs.status().WithContext("fqn \"" + std::string(fqn) + "\"");
  const ShardGeometry geometry{dtype, shard.offsets, shard.sizes};
  for (const ChunkRun& run : *runs) {
    Status s = runner(run.rank, [&](ChunkStore* store) {
      return store->ReadShardRange(run.checkpoint_id, fqn, geometry, run.begin, run.end,
                                   static_cast<char*>(dest) + (run.begin - begin));
    });
    if (s.ok() || !run.referenced) {
      DCPKV_RETURN_IF_ERROR(s);
      continue;
    }
    // The checkpoint is committed and refers to these chunks: if they (or their database) are
    // gone, its data is lost.
    const StatusCode code = s.code() == StatusCode::kNotFound ? StatusCode::kDataLoss : s.code();
    return Status(code, "checkpoint \"" + std::string(checkpoint_id) + "\" fqn \"" +
                            std::string(fqn) + "\" shard " + ShapeToString(shard.offsets) +
                            ": bytes [" + std::to_string(run.begin) + ", " +
                            std::to_string(run.end) + ") are stored under " +
                            DescribeChunkRunLocation(run) + ": " + s.message());
  }
  return Status::Ok();
}

}  // namespace dcpkv

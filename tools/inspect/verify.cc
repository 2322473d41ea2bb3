#include "dcpkv/inspect/verify.h"

#include <algorithm>
#include <functional>

#include "dcpkv/core/hash.h"
#include "dcpkv/core/plan_validation.h"
#include "dcpkv/store/saved_shard_reader.h"

namespace dcpkv::inspect {
namespace {

class Verifier {
 public:
  Verifier(StoreView& view, const ProgressCallback& progress) : view_(view), progress_(progress) {}

  void Checkpoint(const CheckpointListing& listing) {
    ++report_.checkpoints;
    const std::string& id = listing.checkpoint_id;
    if (listing.state == CheckpointState::kDamaged) {
      report_.problems.push_back({id, "", {}, -1, 0, 0, "damaged manifest: " + listing.problem});
      return;
    }
    StatusOr<Metadata> md = view_.ReadMetadata(id);
    if (!md.ok()) {
      report_.problems.push_back({id, "", {}, -1, 0, 0, md.status().ToString()});
      return;
    }
    for (const auto& [fqn, entry] : md->entries) {
      ++report_.tensors;
      if (!entry.is_bytes()) {
        Status tiled = ValidateSavedShards(fqn, entry.dtype, entry.global_shape, entry.shards);
        if (!tiled.ok()) report_.problems.push_back({id, fqn, {}, -1, 0, 0, tiled.message()});
      }
      for (const SavedShard& shard : entry.shards) Shard(id, fqn, entry, shard);
    }
    // Saved without collectives, the parts of several ranks may hold the same replicated shard;
    // the merged metadata keeps one copy, so the listing's total counts bytes not read here.
    const uint64_t merged = md->logical_bytes();
    if (listing.logical_bytes > merged) Advance(listing.logical_bytes - merged);
  }

  // Verifies one saved shard: each run of its chunks in the database and under the checkpoint
  // that stores it (an incremental checkpoint refers to earlier checkpoints' chunks), and each
  // intact chunk against the hash the manifest recorded for it.
  void Shard(const std::string& id, const std::string& fqn, const EntryMetadata& entry,
             const SavedShard& shard) {
    ++report_.shards;
    auto problem = [&](uint64_t byte, uint64_t end, std::string what) {
      report_.problems.push_back(
          {id, fqn, shard.offsets, shard.rank, byte, std::max(byte, end), std::move(what)});
    };
    StatusOr<std::vector<ChunkRun>> runs = SplitIntoChunkRuns(id, shard, 0, shard.bytes);
    if (!runs.ok()) {
      problem(0, shard.bytes, runs.status().message());
      Advance(shard.bytes);
      return;
    }
    const size_t problems_before = report_.problems.size();
    uint64_t chunks = 0;
    for (const ChunkRun& run : *runs) {
      chunks += Run(fqn, entry, shard, run, problem);
    }
    if (report_.problems.size() == problems_before && shard.chunks != 0 && chunks != shard.chunks) {
      problem(0, shard.bytes,
              "the manifest records " + std::to_string(shard.chunks) +
                  " chunks but the store holds " + std::to_string(chunks));
    }
  }

  void SetTotal(uint64_t total) { total_ = total; }
  VerifyReport Take() { return std::move(report_); }

 private:
  // Verifies one run of a shard's chunks; returns how many were intact.
  uint64_t Run(const std::string& fqn, const EntryMetadata& entry, const SavedShard& shard,
               const ChunkRun& run,
               const std::function<void(uint64_t, uint64_t, std::string)>& problem) {
    // Where the chunks are, for problems in chunks stored under another checkpoint.
    std::string where;
    if (run.referenced) {
      where = "referenced chunks, stored under " + DescribeChunkRunLocation(run);
      const bool listed = std::any_of(
          view_.checkpoints().begin(), view_.checkpoints().end(),
          [&](const CheckpointListing& l) { return l.checkpoint_id == run.checkpoint_id; });
      if (!listed) where += " (a checkpoint the store no longer holds)";
      where += ": ";
    }
    const uint64_t run_bytes = run.end - run.begin;
    uint64_t verified = 0;
    auto advance = [&](uint64_t bytes) {
      if (verified >= run_bytes) return;  // a second pass after a reopen
      verified += bytes;
      Advance(bytes);
    };
    StatusOr<ShardVerification> result = InternalError("not verified");
    // A file RocksDB cannot read may be one a live writer's compaction replaced after this view
    // opened the database: reopen once and verify again before calling it damaged.
    for (int pass = 0; pass < 2; ++pass) {
      if (pass > 0) view_.ReopenRankStore(run.rank).IgnoreError();
      StatusOr<ChunkStore*> store = view_.RankStore(run.rank);
      if (!store.ok()) {
        result = store.status().WithContext("cannot open the database of rank " +
                                            std::to_string(run.rank));
        break;
      }
      result =
          (*store)->VerifyShard(run.checkpoint_id, fqn, {entry.dtype, shard.offsets, shard.sizes},
                                run.begin, run.end, advance);
      const bool io_error =
          result.ok() &&
          std::any_of(result->problems.begin(), result->problems.end(),
                      [](const ShardProblem& p) { return p.code == StatusCode::kIOError; });
      if (!io_error) break;
    }
    Advance(run_bytes > verified ? run_bytes - verified : 0);
    if (!result.ok()) {
      problem(run.begin, run.end, where + result.status().ToString());
      return 0;
    }
    for (const ShardProblem& p : result->problems) problem(p.byte_offset, p.end, where + p.what);
    report_.chunks += result->chunks;
    report_.bytes += result->bytes;
    if (shard.chunk_list.empty()) return result->chunks;  // no hashes recorded
    // Each intact chunk must be the one the manifest recorded at its byte offset.
    uint64_t start = 0;
    for (size_t k = 0; k < run.first_chunk; ++k) start += shard.chunk_list[k].length;
    size_t k = run.first_chunk;
    for (const VerifiedChunk& c : result->intact) {
      while (k < run.end_chunk && start < c.byte_offset) start += shard.chunk_list[k++].length;
      const uint64_t end = c.byte_offset + c.length;
      if (k >= run.end_chunk || start != c.byte_offset) {
        problem(c.byte_offset, end,
                where + "stored chunk at byte " + std::to_string(c.byte_offset) + " (" +
                    std::to_string(c.length) +
                    " bytes) does not start where the manifest records a chunk");
        continue;
      }
      const SavedChunk& recorded = shard.chunk_list[k];
      const Hash128 expected{recorded.hash_low, recorded.hash_high};
      if (c.length != recorded.length || c.hash != expected) {
        problem(c.byte_offset, end,
                where + "chunk content differs from what the manifest recorded: stored " +
                    std::to_string(c.length) + " bytes with hash " + HashToHex(c.hash) +
                    ", recorded " + std::to_string(recorded.length) + " bytes with hash " +
                    HashToHex(expected));
      }
    }
    return result->chunks;
  }

  void Advance(uint64_t bytes) {
    done_ += bytes;
    if (progress_) progress_(done_, total_);
  }

  StoreView& view_;
  const ProgressCallback& progress_;
  VerifyReport report_;
  uint64_t done_ = 0;
  uint64_t total_ = 0;
};

}  // namespace

StatusOr<VerifyReport> VerifyCheckpoints(StoreView& view, const std::vector<std::string>& ids,
                                         const ProgressCallback& progress) {
  std::vector<const CheckpointListing*> selected;
  if (ids.empty()) {
    for (const CheckpointListing& l : view.checkpoints()) {
      if (l.state == CheckpointState::kCommitted || l.state == CheckpointState::kDamaged) {
        selected.push_back(&l);
      }
    }
  } else {
    for (const std::string& id : ids) {
      const CheckpointListing* damaged = nullptr;
      for (const CheckpointListing& l : view.checkpoints()) {
        if (l.state == CheckpointState::kDamaged && l.checkpoint_id == id) damaged = &l;
      }
      const CheckpointListing* l = damaged;
      if (l == nullptr) {
        DCPKV_ASSIGN_OR_RETURN(l, view.Resolve(id));
      }
      // A checkpoint named twice (e.g. by its id and as "latest") is verified once.
      if (std::find(selected.begin(), selected.end(), l) == selected.end()) selected.push_back(l);
    }
  }
  Verifier verifier(view, progress);
  uint64_t total = 0;
  for (const CheckpointListing* l : selected) total += l->logical_bytes;
  verifier.SetTotal(total);
  for (const CheckpointListing* l : selected) verifier.Checkpoint(*l);
  return verifier.Take();
}

std::string DescribeProblem(const VerifyProblem& p) {
  std::string out = "checkpoint \"" + p.checkpoint_id + "\"";
  if (!p.fqn.empty()) out += " fqn \"" + p.fqn + "\"";
  if (p.rank >= 0) {
    out += " shard " + ShapeToString(p.shard_offsets) + " rank " + std::to_string(p.rank) +
           " byte " + std::to_string(p.byte_offset) +
           (p.byte_end > p.byte_offset ? ".." + std::to_string(p.byte_end) : "");
  }
  return out + ": " + p.what;
}

}  // namespace dcpkv::inspect

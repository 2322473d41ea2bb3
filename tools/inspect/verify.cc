#include "dcpkv/inspect/verify.h"

#include <algorithm>

#include "plan_validation.h"

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

  void Shard(const std::string& id, const std::string& fqn, const EntryMetadata& entry,
             const SavedShard& shard) {
    ++report_.shards;
    auto problem = [&](uint64_t byte, uint64_t end, std::string what) {
      report_.problems.push_back(
          {id, fqn, shard.offsets, shard.rank, byte, std::max(byte, end), std::move(what)});
    };
    uint64_t verified = 0;
    auto advance = [&](uint64_t bytes) {
      if (verified >= shard.bytes) return;  // a second pass after a reopen
      verified += bytes;
      Advance(bytes);
    };
    StatusOr<ShardVerification> result = InternalError("not verified");
    // A file RocksDB cannot read may be one a live writer's compaction replaced after this view
    // opened the database: reopen once and verify again before calling it damaged.
    for (int pass = 0; pass < 2; ++pass) {
      if (pass > 0) view_.ReopenRankStore(shard.rank).IgnoreError();
      StatusOr<ChunkStore*> store = view_.RankStore(shard.rank);
      if (!store.ok()) {
        result = store.status().WithContext("cannot open the database of rank " +
                                            std::to_string(shard.rank));
        break;
      }
      result = (*store)->VerifyShard(id, fqn, {entry.dtype, shard.offsets, shard.sizes}, advance);
      const bool io_error =
          result.ok() &&
          std::any_of(result->problems.begin(), result->problems.end(),
                      [](const ShardProblem& p) { return p.code == StatusCode::kIOError; });
      if (!io_error) break;
    }
    Advance(shard.bytes > verified ? shard.bytes - verified : 0);
    if (!result.ok()) {
      problem(0, shard.bytes, result.status().ToString());
      return;
    }
    for (const ShardProblem& p : result->problems) problem(p.byte_offset, p.end, p.what);
    report_.chunks += result->chunks;
    report_.bytes += result->bytes;
    if (result->problems.empty() && shard.chunks != 0 && result->chunks != shard.chunks) {
      problem(0, shard.bytes,
              "the manifest records " + std::to_string(shard.chunks) +
                  " chunks but the store holds " + std::to_string(result->chunks));
    }
  }

  void SetTotal(uint64_t total) { total_ = total; }
  VerifyReport Take() { return std::move(report_); }

 private:
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
      if (l.state != CheckpointState::kUncommitted) selected.push_back(&l);
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

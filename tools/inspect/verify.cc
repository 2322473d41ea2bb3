#include "dcpkv/inspect/verify.h"

#include <algorithm>
#include <deque>
#include <functional>
#include <mutex>
#include <set>
#include <thread>

#include "dcpkv/core/hash.h"
#include "dcpkv/core/plan_validation.h"
#include "dcpkv/store/saved_shard_reader.h"

namespace dcpkv::inspect {
namespace {

constexpr int kDefaultThreads = 4;
constexpr uint64_t kDefaultPieceBytes = uint64_t{64} << 20;

// Verification in three steps. Walking the checkpoints, their manifests and shards (on the
// caller's thread) turns every run of a shard's chunks into pieces of about piece_bytes, cut at
// chunk boundaries. The pieces are then scanned by `threads` threads, each with its own reads
// in flight: a scan waits on the disk a chunk at a time. Last, the results are reported in the
// order of the walk, so that the report does not depend on the threads.
class Verifier {
 public:
  Verifier(StoreView& view, const VerifyOptions& options)
      : view_(view),
        progress_(options.progress),
        threads_(options.threads > 0 ? options.threads : kDefaultThreads),
        piece_bytes_(options.piece_bytes > 0 ? options.piece_bytes : kDefaultPieceBytes) {}

  void Checkpoint(const CheckpointListing& listing) {
    ++report_.checkpoints;
    const std::string& id = listing.checkpoint_id;
    if (listing.state == CheckpointState::kDamaged) {
      Problem({id, "", {}, -1, 0, 0, listing.problem});
      return;
    }
    StatusOr<Metadata> read = view_.ReadMetadata(id);
    if (!read.ok()) {
      Problem({id, "", {}, -1, 0, 0, read.status().ToString()});
      return;
    }
    const Metadata& md = metadata_.emplace_back(std::move(read).value());
    for (const auto& [fqn, entry] : md.entries) {
      ++report_.tensors;
      if (!entry.is_bytes()) {
        Status tiled = ValidateSavedShards(fqn, entry.dtype, entry.global_shape, entry.shards);
        if (!tiled.ok()) Problem({id, fqn, {}, -1, 0, 0, tiled.message()});
      }
      for (const SavedShard& shard : entry.shards) Shard(id, fqn, entry, shard);
    }
    // Saved without collectives, the parts of several ranks may hold the same replicated shard;
    // the merged metadata keeps one copy, so the listing's total counts bytes not read here.
    const uint64_t merged = md.logical_bytes();
    if (listing.logical_bytes > merged) Advance(listing.logical_bytes - merged);
  }

  // Scans every piece, then reports in the order of the walk.
  VerifyReport Finish() {
    ScanPieces();
    for (const Step& step : steps_) {
      if (step.shard < 0) {
        report_.problems.push_back(step.problem);
        continue;
      }
      const ShardJob& job = shards_[step.shard];
      const size_t problems_before = report_.problems.size();
      uint64_t chunks = 0;
      for (size_t p = job.first_piece; p < job.end_piece; ++p) chunks += Report(job, pieces_[p]);
      if (report_.problems.size() == problems_before && job.shard->chunks != 0 &&
          chunks != job.shard->chunks) {
        AddShardProblem(job, 0, job.shard->bytes,
                        "the manifest records " + std::to_string(job.shard->chunks) +
                            " chunks but the store holds " + std::to_string(chunks));
      }
    }
    return std::move(report_);
  }

  void SetTotal(uint64_t total) { total_ = total; }

 private:
  // A saved shard of a checkpoint and its pieces, pieces_[first_piece, end_piece).
  struct ShardJob {
    const std::string* id;
    const std::string* fqn;
    const EntryMetadata* entry;
    const SavedShard* shard;
    size_t first_piece = 0;
    size_t end_piece = 0;
  };
  // A part of one run of a shard's chunks (ChunkRun), scanned by one thread.
  struct Piece {
    size_t shard = 0;   // into shards_
    ChunkRun run;       // first_chunk, end_chunk, begin and end of the part
    std::string where;  // for problems in chunks stored under another checkpoint
    StatusOr<ShardVerification> result = InternalError("not verified");
    uint64_t advanced = 0;  // bytes reported to the progress callback
  };
  // What the report holds next: a problem found while walking, or a shard's scan results.
  struct Step {
    int64_t shard = -1;
    VerifyProblem problem;
  };

  void Problem(VerifyProblem problem) { steps_.push_back({-1, std::move(problem)}); }

  void AddShardProblem(const ShardJob& job, uint64_t byte, uint64_t end, std::string what) {
    report_.problems.push_back({*job.id, *job.fqn, job.shard->offsets, job.shard->rank, byte,
                                std::max(byte, end), std::move(what)});
  }

  // Plans the verification of one saved shard: each run of its chunks in the database and under
  // the checkpoint that stores it (an incremental checkpoint refers to earlier checkpoints'
  // chunks), in pieces.
  void Shard(const std::string& id, const std::string& fqn, const EntryMetadata& entry,
             const SavedShard& shard) {
    ++report_.shards;
    StatusOr<std::vector<ChunkRun>> runs = SplitIntoChunkRuns(id, shard, 0, shard.bytes);
    if (!runs.ok()) {
      Problem({id, fqn, shard.offsets, shard.rank, 0, shard.bytes, runs.status().message()});
      Advance(shard.bytes);
      return;
    }
    ShardJob job{&id, &fqn, &entry, &shard, pieces_.size(), pieces_.size()};
    for (const ChunkRun& run : *runs) {
      std::string where;
      if (run.referenced) {
        where = "referenced chunks, stored under " + DescribeChunkRunLocation(run);
        const bool listed = std::any_of(
            view_.checkpoints().begin(), view_.checkpoints().end(),
            [&](const CheckpointListing& l) { return l.checkpoint_id == run.checkpoint_id; });
        if (!listed) where += " (a checkpoint the store no longer holds)";
        where += ": ";
      }
      for (const ChunkRun& part : Cut(run, shard)) {
        Piece& piece = pieces_.emplace_back();
        piece.shard = shards_.size();
        piece.run = part;
        piece.where = where;
      }
    }
    job.end_piece = pieces_.size();
    steps_.push_back({static_cast<int64_t>(shards_.size()), {}});
    shards_.push_back(job);
  }

  // `run` in parts of at least piece_bytes_ (the last may be up to twice that), cut where a
  // chunk of the manifest's chunk list starts; a shard saved without one is not cut.
  std::vector<ChunkRun> Cut(const ChunkRun& run, const SavedShard& shard) const {
    std::vector<ChunkRun> parts;
    if (run.end_chunk <= run.first_chunk || run.end - run.begin < 2 * piece_bytes_) {
      parts.push_back(run);
      return parts;
    }
    uint64_t at = 0;  // where chunk k starts
    for (size_t k = 0; k < run.first_chunk; ++k) at += shard.chunk_list[k].length;
    ChunkRun part = run;
    for (size_t k = run.first_chunk; k < run.end_chunk; ++k) {
      if (at > part.begin && at - part.begin >= piece_bytes_ && run.end - at >= piece_bytes_) {
        part.end = at;
        part.end_chunk = k;
        parts.push_back(part);
        part.begin = at;
        part.first_chunk = k;
      }
      at += shard.chunk_list[k].length;
    }
    part.end = run.end;
    part.end_chunk = run.end_chunk;
    parts.push_back(part);
    return parts;
  }

  // Scans `piece` on `store`, counting its bytes as verified as it goes (once over both passes).
  void Scan(Piece& piece, ChunkStore* store) {
    const ShardJob& job = shards_[piece.shard];
    const uint64_t bytes = piece.run.end - piece.run.begin;
    piece.result = store->VerifyShard(piece.run.checkpoint_id, *job.fqn,
                                      {job.entry->dtype, job.shard->offsets, job.shard->sizes},
                                      piece.run.begin, piece.run.end, [&](uint64_t done) {
                                        std::lock_guard<std::mutex> lock(progress_mu_);
                                        if (piece.advanced >= bytes)
                                          return;  // a second pass after a reopen
                                        piece.advanced += done;
                                        AdvanceLocked(done);
                                      });
  }

  static bool HasIoError(const StatusOr<ShardVerification>& result) {
    return result.ok() &&
           std::any_of(result->problems.begin(), result->problems.end(),
                       [](const ShardProblem& p) { return p.code == StatusCode::kIOError; });
  }

  void ScanPieces() {
    // The databases are opened here, on this thread (the view opens them on first use).
    std::vector<StatusOr<ChunkStore*>> stores;
    stores.reserve(pieces_.size());
    for (Piece& piece : pieces_) stores.push_back(view_.RankStore(piece.run.rank));
    // Each thread scans its own run of consecutive pieces, reading on through the tables with
    // the kernel's readahead ahead of it.
    const size_t n = std::min<size_t>(threads_, pieces_.size());
    const size_t per_thread = n == 0 ? 0 : (pieces_.size() + n - 1) / n;
    auto work = [&](size_t begin) {
      const size_t end = std::min(pieces_.size(), begin + per_thread);
      for (size_t i = begin; i < end; ++i) {
        if (stores[i].ok()) Scan(pieces_[i], *stores[i]);
      }
    };
    std::vector<std::thread> threads;
    for (size_t t = 1; t < n; ++t) threads.emplace_back(work, t * per_thread);
    work(0);
    for (std::thread& t : threads) t.join();
    // A file RocksDB cannot read may be one a live writer's compaction replaced after this view
    // opened the database: reopen once and scan again before calling it damaged.
    for (size_t i = 0; i < pieces_.size(); ++i) {
      Piece& piece = pieces_[i];
      if (!stores[i].ok()) {
        piece.result = stores[i].status().WithContext("cannot open the database of rank " +
                                                      std::to_string(piece.run.rank));
      } else if (HasIoError(piece.result)) {
        view_.ReopenRankStore(piece.run.rank).IgnoreError();
        StatusOr<ChunkStore*> store = view_.RankStore(piece.run.rank);
        if (store.ok()) {
          Scan(piece, *store);
        } else {
          piece.result = store.status().WithContext("cannot open the database of rank " +
                                                    std::to_string(piece.run.rank));
        }
      }
      const uint64_t bytes = piece.run.end - piece.run.begin;
      Advance(bytes > piece.advanced ? bytes - piece.advanced : 0);
    }
  }

  // Reports what the scan of `piece` found; returns how many of its chunks were intact.
  uint64_t Report(const ShardJob& job, const Piece& piece) {
    const ChunkRun& run = piece.run;
    const std::string& where = piece.where;
    if (!piece.result.ok()) {
      AddShardProblem(job, run.begin, run.end, where + piece.result.status().ToString());
      return 0;
    }
    const ShardVerification& result = *piece.result;
    for (const ShardProblem& p : result.problems) {
      AddShardProblem(job, p.byte_offset, p.end, where + p.what);
    }
    report_.chunks += result.chunks;
    report_.bytes += result.bytes;
    const SavedShard& shard = *job.shard;
    if (shard.chunk_list.empty()) return result.chunks;  // no hashes recorded
    // Each intact chunk must be the one the manifest recorded at its byte offset.
    uint64_t start = 0;
    for (size_t k = 0; k < run.first_chunk; ++k) start += shard.chunk_list[k].length;
    size_t k = run.first_chunk;
    for (const VerifiedChunk& c : result.intact) {
      while (k < run.end_chunk && start < c.byte_offset) start += shard.chunk_list[k++].length;
      const uint64_t end = c.byte_offset + c.length;
      if (k >= run.end_chunk || start != c.byte_offset) {
        AddShardProblem(job, c.byte_offset, end,
                        where + "stored chunk at byte " + std::to_string(c.byte_offset) + " (" +
                            std::to_string(c.length) +
                            " bytes) does not start where the manifest records a chunk");
        continue;
      }
      const SavedChunk& recorded = shard.chunk_list[k];
      const Hash128 expected{recorded.hash_low, recorded.hash_high};
      if (c.length != recorded.length || c.hash != expected) {
        AddShardProblem(job, c.byte_offset, end,
                        where + "chunk content differs from what the manifest recorded: stored " +
                            std::to_string(c.length) + " bytes with hash " + HashToHex(c.hash) +
                            ", recorded " + std::to_string(recorded.length) + " bytes with hash " +
                            HashToHex(expected));
      }
    }
    return result.chunks;
  }

  void Advance(uint64_t bytes) {
    std::lock_guard<std::mutex> lock(progress_mu_);
    AdvanceLocked(bytes);
  }
  void AdvanceLocked(uint64_t bytes) {
    done_ += bytes;
    if (progress_) progress_(done_, total_);
  }

  StoreView& view_;
  const ProgressCallback& progress_;
  const int threads_;
  const uint64_t piece_bytes_;
  std::deque<Metadata> metadata_;  // of the checkpoints walked; shards_ points into them
  std::vector<ShardJob> shards_;
  std::vector<Piece> pieces_;
  std::vector<Step> steps_;
  VerifyReport report_;
  std::mutex progress_mu_;  // done_ and the progress callback, called from the scanning threads
  uint64_t done_ = 0;
  uint64_t total_ = 0;
};

// A checkpoint committed when the view was opened whose data went missing while it was verified
// may have been deleted meanwhile (a job's retention, `dcpkv rm`): if a fresh look at the store
// finds it deleted (or gone, its garbage collected too), its problems are dropped and it is
// reported as deleted meanwhile. A checkpoint still committed keeps every problem.
Status DropCheckpointsDeletedMeanwhile(const StoreView& view,
                                       const std::vector<const CheckpointListing*>& selected,
                                       VerifyReport* report) {
  std::set<std::string> suspects;
  for (const VerifyProblem& p : report->problems) {
    if (p.checkpoint_id.empty()) continue;
    for (const CheckpointListing* l : selected) {
      if (l->checkpoint_id == p.checkpoint_id && l->state == CheckpointState::kCommitted) {
        suspects.insert(p.checkpoint_id);
      }
    }
  }
  if (suspects.empty()) return Status::Ok();
  DCPKV_ASSIGN_OR_RETURN(std::unique_ptr<StoreView> now, StoreView::Open(view.root()));
  std::set<std::string> deleted;
  for (const std::string& id : suspects) {
    bool listed = false, gone = true;
    for (const CheckpointListing& l : now->checkpoints()) {
      if (l.checkpoint_id != id) continue;
      listed = true;
      gone = gone && l.state == CheckpointState::kDeleted;
    }
    if (!listed || gone) deleted.insert(id);
  }
  auto dropped = [&](const VerifyProblem& p) { return deleted.count(p.checkpoint_id) > 0; };
  report->problems.erase(std::remove_if(report->problems.begin(), report->problems.end(), dropped),
                         report->problems.end());
  report->deleted_meanwhile.assign(deleted.begin(), deleted.end());
  return Status::Ok();
}

}  // namespace

StatusOr<VerifyReport> VerifyCheckpoints(StoreView& view, const std::vector<std::string>& ids,
                                         const ProgressCallback& progress) {
  VerifyOptions options;
  options.progress = progress;
  return VerifyCheckpoints(view, ids, options);
}

StatusOr<VerifyReport> VerifyCheckpoints(StoreView& view, const std::vector<std::string>& ids,
                                         const VerifyOptions& options) {
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
  Verifier verifier(view, options);
  uint64_t total = 0;
  for (const CheckpointListing* l : selected) total += l->logical_bytes;
  verifier.SetTotal(total);
  for (const CheckpointListing* l : selected) verifier.Checkpoint(*l);
  VerifyReport report = verifier.Finish();
  DCPKV_RETURN_IF_ERROR(DropCheckpointsDeletedMeanwhile(view, selected, &report));
  // A rank database that cannot be opened is a problem of the store, whichever checkpoints
  // were asked for.
  std::vector<VerifyProblem> ranks;
  for (const DamagedRank& d : view.damaged_ranks()) {
    ranks.push_back(
        {"", "", {}, d.rank, 0, 0, "database cannot be opened: " + d.status.ToString()});
  }
  report.problems.insert(report.problems.begin(), ranks.begin(), ranks.end());
  return report;
}

std::string DescribeProblem(const VerifyProblem& p) {
  if (p.checkpoint_id.empty()) return "rank " + std::to_string(p.rank) + ": " + p.what;
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

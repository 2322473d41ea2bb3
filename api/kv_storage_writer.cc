// KvStorageWriter: every rank writes its items into its own database and flushes; the
// coordinator commits by writing the Metadata as its database's manifest (one synchronous
// RocksDB write), after every rank's chunks are durable.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <functional>
#include <map>
#include <optional>
#include <thread>
#include <utility>

#include "dcpkv/api/kv_storage.h"
#include "dcpkv/core/manifest_record_codec.h"
#include "dcpkv/core/metadata_codec.h"
#include "dcpkv/core/names.h"
#include "dcpkv/core/strided.h"
#include "dcpkv/store/crash_points.h"
#include "dcpkv/store/gc.h"
#include "dcpkv/store/key_encoding.h"
#include "dcpkv/store/store_layout.h"
#include "host_threads.h"

namespace dcpkv {
namespace {

template <typename T>
std::future<T> Ready(T value) {
  std::promise<T> p;
  p.set_value(std::move(value));
  return p.get_future();
}

// KvStorageOptions::min_bytes_per_writer = 0.
constexpr uint64_t kDefaultMinBytesPerWriter = uint64_t{128} << 20;

using ItemWriter = std::function<StatusOr<WriteResult>(ChunkBatchWriter&, const WriteItem&,
                                                       const ConstStridedBytes&)>;

// Resolves every item of `plan` (in plan order), cuts them in key order into up to `threads`
// groups of about equal bytes, and writes each group with its own batch writer on its own
// thread: the groups' keys do not interleave, so each writer's table files overlap no other's.
// Results are in plan order. After a failure the other groups stop at their next item.
StatusOr<std::vector<WriteResult>> WriteInParallel(ChunkStore* store,
                                                   std::string_view checkpoint_id,
                                                   const SavePlan& plan, SavePlanner& planner,
                                                   size_t threads, uint64_t min_bytes_per_writer,
                                                   const ItemWriter& write_item) {
  const size_t n = plan.items.size();
  std::vector<ConstStridedBytes> bytes(n);
  std::vector<std::pair<std::string, size_t>> order;  // (shard key prefix, item)
  order.reserve(n);
  uint64_t total = 0;
  for (size_t i = 0; i < n; ++i) {
    const WriteItem& item = plan.items[i];
    DCPKV_ASSIGN_OR_RETURN(bytes[i], planner.ResolveStridedData(item));
    DCPKV_RETURN_IF_ERROR(ValidateFqn(item.fqn));
    order.emplace_back(ChunkKeyShardPrefix(checkpoint_id, item.fqn, item.offsets), i);
    total += bytes[i].size;
  }
  // A writer more only where each gets min_bytes_per_writer (KvStorageOptions).
  threads = std::clamp<size_t>(total / min_bytes_per_writer, 1, threads);
  std::sort(order.begin(), order.end());
  std::vector<std::vector<size_t>> groups(1);
  uint64_t group_bytes = 0;
  for (const auto& [prefix, i] : order) {
    if (group_bytes > 0 && group_bytes + bytes[i].size / 2 > total / threads &&
        groups.size() < threads) {
      groups.emplace_back();
      group_bytes = 0;
    }
    groups.back().push_back(i);
    group_bytes += bytes[i].size;
  }
  std::vector<WriteResult> results(n);
  std::vector<Status> status(groups.size());
  std::atomic<bool> failed{false};
  auto run = [&](size_t g) {
    ChunkBatchWriter writer(store);
    for (size_t i : groups[g]) {
      if (failed.load()) return;
      StatusOr<WriteResult> r = write_item(writer, plan.items[i], bytes[i]);
      if (!r.ok()) {
        status[g] = r.status();
        failed = true;
        return;
      }
      results[i] = std::move(r).value();
    }
    status[g] = writer.Finish();
    if (!status[g].ok()) failed = true;
  };
  std::vector<std::thread> workers;
  for (size_t g = 1; g < groups.size(); ++g) workers.emplace_back(run, g);
  run(0);
  for (std::thread& t : workers) t.join();
  for (const Status& s : status) DCPKV_RETURN_IF_ERROR(s);
  return results;
}

}  // namespace

KvStorageWriter::KvStorageWriter(KvStorageOptions options) : options_(std::move(options)) {}

Status KvStorageWriter::Reset(std::string_view checkpoint_id) {
  DCPKV_RETURN_IF_ERROR(ValidateCheckpointId(checkpoint_id));
  checkpoint_id_ = std::string(checkpoint_id);
  return Status::Ok();
}

Status KvStorageWriter::SetUpStorageWriter(bool is_coordinator, int rank, int world_size,
                                           bool use_collectives) {
  if (options_.root.empty()) return InvalidArgumentError("KvStorageWriter needs a store root");
  if (rank < 0 || rank >= world_size) {
    return InvalidArgumentError("rank " + std::to_string(rank) + " outside world of size " +
                                std::to_string(world_size));
  }
  if (store_ != nullptr && rank_ == rank) {  // kept open between saves
    DCPKV_RETURN_IF_ERROR(lease_->Check());
    // RocksDB refuses every write after one failed until the database is reopened.
    if (!write_failed_) return Status::Ok();
    Status recovered = store_->Recover();
    write_failed_ = !recovered.ok();
    return recovered;
  }
  write_failed_ = false;
  store_.reset();
  // The root's writer lease first: a second job is refused here, naming the owner, before it
  // opens (or creates) anything.
  if (lease_ == nullptr) {
    DCPKV_ASSIGN_OR_RETURN(lease_, WriterLease::Acquire(options_.root));
  }
  ChunkStoreOptions store_options = options_.store_options;
  store_options.mode = OpenMode::kReadWrite;
  if (Status opened = ChunkStore::Open(RankDirectory(options_.root, rank), store_options, &store_);
      !opened.ok()) {
    lease_.reset();
    return opened;
  }
  rank_ = rank;
  world_size_ = world_size;
  return Status::Ok();
}

StatusOr<SavePlan> KvStorageWriter::PrepareLocalPlan(SavePlan plan) { return plan; }

StatusOr<std::vector<SavePlan>> KvStorageWriter::PrepareGlobalPlan(std::vector<SavePlan> plans) {
  if (store_ == nullptr) return FailedPreconditionError("PrepareGlobalPlan before set-up");
  StatusOr<ManifestRecord> existing = store_->GetManifest(checkpoint_id_);
  if (existing.ok()) {
    return AlreadyExistsError("checkpoint \"" + checkpoint_id_ + "\" is already committed in " +
                              options_.root + "; save under a new id or delete it first");
  }
  if (existing.status().code() != StatusCode::kNotFound) return existing.status();
  // An id being deleted may still hold chunks that committed checkpoints refer to; the write
  // step clears a save's old chunks under its id, so reusing the id must wait for gc.
  StatusOr<ManifestRecord> trashed = store_->GetTrashRecord(checkpoint_id_);
  if (trashed.ok()) {
    return AlreadyExistsError("checkpoint \"" + checkpoint_id_ + "\" in " + options_.root +
                              " was deleted but still holds data other checkpoints use; save "
                              "under a new id");
  }
  if (trashed.status().code() != StatusCode::kNotFound) return trashed.status();
  base_id_.clear();
  DCPKV_ASSIGN_OR_RETURN(std::optional<Metadata> base, FindBase());
  if (!base.has_value()) return plans;
  base_id_ = base->checkpoint_id;
  base_ = std::move(base);
  // Every rank learns the base's id through its final plan and reads the base's chunk lists
  // itself (usually it has them: the base is the checkpoint it committed last).
  for (SavePlan& plan : plans) plan.storage_data = base_id_;
  return plans;
}

StatusOr<const Metadata*> KvStorageWriter::BaseMetadata(const std::string& id) {
  if (base_.has_value() && base_->checkpoint_id == id) return &*base_;
  if (last_committed_.has_value() && last_committed_->checkpoint_id == id) {
    return &*last_committed_;
  }
  KvStorageReader reader(KvStorageOptions{options_.root, options_.store_options});
  reader.ShareStore(rank_, store_.get());
  DCPKV_RETURN_IF_ERROR(reader.Reset(id));
  StatusOr<Metadata> md = reader.ReadMetadata();
  if (!md.ok()) return md.status().WithContext("incremental base \"" + id + "\"");
  base_ = std::move(md).value();
  return &*base_;
}

StatusOr<std::optional<Metadata>> KvStorageWriter::FindBase() {
  if (!save_options_.incremental) return std::optional<Metadata>();
  std::string id = save_options_.incremental_base;
  if (id.empty()) {  // the newest manifest of this database
    DCPKV_ASSIGN_OR_RETURN(std::vector<std::string> ids, store_->ListManifestIds());
    int64_t newest = 0;
    for (const std::string& candidate : ids) {
      DCPKV_ASSIGN_OR_RETURN(ManifestRecord record, store_->GetManifest(candidate));
      if (id.empty() || record.committed_unix_micros >= newest) {
        id = candidate;
        newest = record.committed_unix_micros;
      }
    }
    if (id.empty()) return std::optional<Metadata>();  // the first checkpoint: a full save
  }
  StatusOr<ManifestRecord> record = store_->GetManifest(id);
  if (record.status().code() == StatusCode::kNotFound) {
    return NotFoundError("incremental base \"" + id + "\" is not committed in " +
                         RankDirectory(options_.root, rank_));
  }
  DCPKV_RETURN_IF_ERROR(record.status());
  StatusOr<Metadata> md = DecodeMetadata(record->payload);
  if (!md.ok()) return md.status().WithContext("incremental base \"" + id + "\"");
  return std::optional<Metadata>(std::move(md).value());
}

void KvStorageWriter::ConfigureSave(const StorageSaveOptions& options) { save_options_ = options; }

void KvStorageWriter::AmendMetadata(Metadata* metadata) { metadata->base_checkpoint_id = base_id_; }

std::future<StatusOr<std::vector<WriteResult>>> KvStorageWriter::WriteData(const SavePlan& plan,
                                                                           SavePlanner& planner) {
  StatusOr<std::vector<WriteResult>> written = Write(plan, planner);
  if (!written.ok()) write_failed_ = true;
  return Ready(std::move(written));
}

StatusOr<std::vector<WriteResult>> KvStorageWriter::Write(const SavePlan& plan,
                                                          SavePlanner& planner) {
  if (store_ == nullptr) return FailedPreconditionError("WriteData before set-up");
  // Chunks left by an earlier attempt at this id that never committed are garbage: the
  // coordinator checked that no manifest exists, so clear them before writing afresh.
  DCPKV_RETURN_IF_ERROR(store_->DeleteCheckpointChunks(checkpoint_id_));
  // Incremental: the base's chunks of every shard this rank writes that the base holds with the
  // same dtype and geometry, each source resolved to where the chunk is stored.
  std::map<std::pair<std::string, Shape>, std::vector<SavedChunk>> base;
  if (!plan.storage_data.empty()) {
    DCPKV_ASSIGN_OR_RETURN(const Metadata* md, BaseMetadata(plan.storage_data));
    for (const WriteItem& item : plan.items) {
      auto entry = md->entries.find(item.fqn);
      if (entry == md->entries.end() || entry->second.dtype != item.dtype) continue;
      for (const SavedShard& shard : entry->second.shards) {
        if (shard.offsets != item.offsets || shard.sizes != item.sizes ||
            shard.chunk_list.empty()) {
          continue;
        }
        std::vector<SavedChunk>& chunks = base[{item.fqn, item.offsets}];
        chunks = shard.chunk_list;
        for (SavedChunk& c : chunks) {
          if (c.source.empty()) c.source = md->checkpoint_id;
        }
        break;
      }
    }
  }
  auto base_of = [&](const WriteItem& item) -> const std::vector<SavedChunk>* {
    auto b = base.find({item.fqn, item.offsets});
    return b == base.end() ? nullptr : &b->second;
  };
  // Writes one item with `writer`; its result records the chunks the writer added for it.
  auto write_item = [&](ChunkBatchWriter& writer, const WriteItem& item,
                        const ConstStridedBytes& bytes) -> StatusOr<WriteResult> {
    const size_t chunks_before = writer.written().size();
    const ShardGeometry geometry{item.dtype, item.offsets, item.sizes};
    if (bytes.strides.empty()) {
      DCPKV_RETURN_IF_ERROR(writer.AddShard(checkpoint_id_, item.fqn, geometry, bytes.data,
                                            bytes.size, base_of(item)));
    } else {
      // A strided view (ResolveStridedData): each chunk gathers its runs from where they lie.
      const StridedLayout layout =
          MakeStridedLayout(bytes.shape, bytes.strides, bytes.element_size);
      if (layout.total_bytes != bytes.size) {
        return InternalError("strided bytes of \"" + item.fqn + "\" at " +
                             ShapeToString(item.offsets) + ": " + std::to_string(bytes.size) +
                             " bytes but shape " + ShapeToString(bytes.shape) + " holds " +
                             std::to_string(layout.total_bytes));
      }
      DCPKV_RETURN_IF_ERROR(
          writer.AddShard(checkpoint_id_, item.fqn, geometry, bytes.data, layout, base_of(item)));
    }
    WriteResult result{item.fqn, item.offsets, rank_, bytes.size,
                       static_cast<uint32_t>(writer.written().size() - chunks_before)};
    for (size_t k = chunks_before; k < writer.written().size(); ++k) {
      const WrittenChunk& w = writer.written()[k];
      result.chunk_list.push_back(SavedChunk{w.payload_len, w.payload_hash.lo, w.payload_hash.hi,
                                             w.stored ? std::string() : w.source,
                                             w.stored ? rank_ : w.source_rank});
    }
    return result;
  };
  const size_t threads = options_.write_threads > 0 ? static_cast<size_t>(options_.write_threads)
                                                    : CoresPerLocalRank(world_size_);
  std::vector<WriteResult> results;
  results.reserve(plan.items.size());
  if (threads <= 1 || plan.items.size() <= 1 || !planner.ResolvedDataOutlivesNextResolve()) {
    ChunkBatchWriter writer(store_.get());
    for (const WriteItem& item : plan.items) {
      DCPKV_ASSIGN_OR_RETURN(ConstStridedBytes bytes, planner.ResolveStridedData(item));
      DCPKV_ASSIGN_OR_RETURN(WriteResult result, write_item(writer, item, bytes));
      results.push_back(std::move(result));
    }
    DCPKV_RETURN_IF_ERROR(writer.Finish());
  } else {
    const uint64_t min_bytes = options_.min_bytes_per_writer > 0 ? options_.min_bytes_per_writer
                                                                 : kDefaultMinBytesPerWriter;
    DCPKV_ASSIGN_OR_RETURN(results, WriteInParallel(store_.get(), checkpoint_id_, plan, planner,
                                                    threads, min_bytes, write_item));
  }
  DCPKV_RETURN_IF_ERROR(store_->Flush());
  MaybeCrashAt("save.after_flush");
  return results;
}

Status KvStorageWriter::Finish(const Metadata& metadata,
                               const std::vector<std::vector<WriteResult>>& results) {
  if (store_ == nullptr) return FailedPreconditionError("Finish before set-up");
  if (metadata.checkpoint_id != checkpoint_id_) {
    return InvalidArgumentError("Finish: metadata is for checkpoint \"" + metadata.checkpoint_id +
                                "\" but the writer is saving \"" + checkpoint_id_ + "\"");
  }
  ManifestRecord record{checkpoint_id_, metadata.committed_unix_micros, EncodeMetadata(metadata)};
  // The fence: a job that lost the root's lease (stalled past its expiry) does not commit.
  DCPKV_RETURN_IF_ERROR(
      lease_->Check().WithContext("commit of checkpoint \"" + checkpoint_id_ + "\""));
  MaybeCrashAt("save.before_manifest");
  if (Status s = store_->PutManifest(record); !s.ok()) {
    write_failed_ = true;
    return s;
  }
  MaybeCrashAt("save.after_manifest");
  committed_record_ = EncodeManifestRecord(record);
  retired_.clear();
  // Retention right after the commit, before any rank hears of it: every rank's AfterCommit
  // then sees the trashed checkpoints and reclaims its own share of their data.
  if (save_options_.keep_last > 0 && !metadata.per_rank_commit) {
    StatusOr<std::vector<std::string>> trashed =
        ApplyRetention(store_.get(), options_.root, save_options_.keep_last);
    if (!trashed.ok()) {
      retention_status_ = trashed.status().WithContext("retention");
      write_failed_ = true;
    }
    if (trashed.ok()) retired_ = std::move(trashed).value();
    if (!retired_.empty()) MaybeCrashAt("save.after_retention");
  }
  return Status::Ok();
}

std::string ReplicationStateKey(std::string_view checkpoint_id) {
  return "dcpkv.replication." + std::string(checkpoint_id);
}

KvStorageWriter::~KvStorageWriter() {
  if (listening_to_ != nullptr) listening_to_->SetStateListener(nullptr);
}

Status KvStorageWriter::AfterFinish(const Metadata& metadata) {
  ManifestReplication* replication = save_options_.replication.get();
  // A save without collectives commits one part per rank under the same id: not replicated.
  if (replication == nullptr || store_ == nullptr || metadata.per_rank_commit) {
    return Status::Ok();
  }
  if (listening_to_ != replication) {
    if (listening_to_ != nullptr) listening_to_->SetStateListener(nullptr);
    // The replication state of each checkpoint, as the replicator reports it, is recorded in
    // this database for `dcpkv ls` (best effort: a failed write only loses the display).
    ChunkStore* store = store_.get();
    replication->SetStateListener([store](const std::string& id, const std::string& state) {
      store->PutStoreValue(ReplicationStateKey(id), state).IgnoreError();
    });
    listening_to_ = replication;
  }
  Status committed = replication->OnCommit(checkpoint_id_, committed_record_);
  if (!retired_.empty()) {
    Status deleted = replication->OnDelete(retired_);
    ReportDiagnostic(save_options_.diagnostics, DiagnosticSeverity::kWarning,
                     "save of checkpoint \"" + checkpoint_id_ +
                         "\" (committed): deleting retired checkpoints' manifests on replicas",
                     deleted);
  }
  return committed;
}

Status KvStorageWriter::AfterCommit(const Metadata& metadata) {
  last_committed_ = metadata;  // the likely base of the next save
  base_.reset();
  Status retention = std::exchange(retention_status_, Status::Ok());
  if (save_options_.keep_last <= 0 || metadata.per_rank_commit) return retention;
  DCPKV_RETURN_IF_ERROR(retention);
  Status collected = CollectRankGarbage(store_.get(), rank_, options_.root);
  if (!collected.ok()) write_failed_ = true;
  return collected;
}

}  // namespace dcpkv

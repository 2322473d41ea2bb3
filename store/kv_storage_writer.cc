// KvStorageWriter: every rank writes its items into its own database and flushes; the
// coordinator commits by writing the Metadata as its database's manifest (one synchronous
// RocksDB write), after every rank's chunks are durable.
#include <chrono>

#include "dcpkv/store/kv_storage.h"
#include "dcpkv/store/metadata_codec.h"
#include "dcpkv/store/names.h"
#include "dcpkv/store/store_layout.h"

namespace dcpkv {
namespace {

template <typename T>
std::future<T> Ready(T value) {
  std::promise<T> p;
  p.set_value(std::move(value));
  return p.get_future();
}

}  // namespace

KvStorageWriter::KvStorageWriter(KvStorageOptions options) : options_(std::move(options)) {}
KvStorageWriter::~KvStorageWriter() = default;

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
  if (store_ != nullptr && rank_ == rank) return Status::Ok();  // kept open between saves
  store_.reset();
  ChunkStoreOptions store_options = options_.store_options;
  store_options.mode = OpenMode::kReadWrite;
  DCPKV_RETURN_IF_ERROR(
      ChunkStore::Open(RankDirectory(options_.root, rank), store_options, &store_));
  rank_ = rank;
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
  return plans;
}

std::future<StatusOr<std::vector<WriteResult>>> KvStorageWriter::WriteData(const SavePlan& plan,
                                                                           SavePlanner& planner) {
  return Ready(Write(plan, planner));
}

StatusOr<std::vector<WriteResult>> KvStorageWriter::Write(const SavePlan& plan,
                                                          SavePlanner& planner) {
  if (store_ == nullptr) return FailedPreconditionError("WriteData before set-up");
  // Chunks left by an earlier attempt at this id that never committed are garbage: the
  // coordinator checked that no manifest exists, so clear them before writing afresh.
  DCPKV_RETURN_IF_ERROR(store_->DeleteCheckpointChunks(checkpoint_id_));
  ChunkBatchWriter writer(store_.get());
  std::vector<WriteResult> results;
  results.reserve(plan.items.size());
  for (const WriteItem& item : plan.items) {
    DCPKV_ASSIGN_OR_RETURN(ConstBytes bytes, planner.ResolveData(item));
    const size_t chunks_before = writer.written().size();
    DCPKV_RETURN_IF_ERROR(writer.AddShard(checkpoint_id_, item.fqn,
                                          ShardGeometry{item.dtype, item.offsets, item.sizes},
                                          bytes.data, bytes.size));
    results.push_back(WriteResult{item.fqn, item.offsets, rank_, bytes.size,
                                  static_cast<uint32_t>(writer.written().size() - chunks_before)});
  }
  DCPKV_RETURN_IF_ERROR(writer.Finish());
  DCPKV_RETURN_IF_ERROR(store_->Flush());
  return results;
}

Status KvStorageWriter::Finish(const Metadata& metadata,
                               const std::vector<std::vector<WriteResult>>& results) {
  if (store_ == nullptr) return FailedPreconditionError("Finish before set-up");
  if (metadata.checkpoint_id != checkpoint_id_) {
    return InvalidArgumentError("Finish: metadata is for checkpoint \"" + metadata.checkpoint_id +
                                "\" but the writer is saving \"" + checkpoint_id_ + "\"");
  }
  return store_->PutManifest(
      ManifestRecord{checkpoint_id_, metadata.committed_unix_micros, EncodeMetadata(metadata)});
}

}  // namespace dcpkv

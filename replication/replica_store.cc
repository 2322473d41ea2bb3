#include "dcpkv/replication/internal/replica_store.h"

#include <cstdio>
#include <filesystem>
#include <system_error>
#include <utility>

#include "dcpkv/core/manifest_record_codec.h"
#include "dcpkv/core/metadata_codec.h"
#include "dcpkv/core/names.h"
#include "dcpkv/replication/internal/record_hash.h"
#include "dcpkv/replication/replica.h"
#include "namespaces.h"

namespace dcpkv::replication {
namespace {

// A replica writes only manifests: keep the (unused) chunks memtable small.
constexpr uint64_t kReplicaWriteBufferSize = uint64_t{1} << 20;

Status ValidateNames(std::string_view ns, std::string_view checkpoint_id) {
  DCPKV_RETURN_IF_ERROR(ValidateNamespace(ns));
  return ValidateCheckpointId(checkpoint_id);
}

std::string Quoted(std::string_view s) { return "\"" + std::string(s) + "\""; }

// Checks that `record` is a manifest record of `checkpoint_id` whose Metadata decodes, and that
// it arrived as sent; returns it decoded.
StatusOr<ManifestRecord> ValidateRecord(std::string_view checkpoint_id, std::string_view record,
                                        std::string_view record_hash_hex) {
  const std::string what = "record of checkpoint " + Quoted(checkpoint_id);
  if (record.empty()) return InvalidArgumentError(what + " is empty");
  if (record_hash_hex != RecordHashHex(record)) {
    return InvalidArgumentError(what + ": its XXH3-128 does not match the request's " +
                                "record_xxh3_128 (" + std::to_string(record.size()) + " bytes)");
  }
  StatusOr<ManifestRecord> decoded = DecodeManifestRecord(record);
  if (!decoded.ok()) return InvalidArgumentError(what + ": " + decoded.status().message());
  if (decoded->checkpoint_id != checkpoint_id) {
    return InvalidArgumentError(what + " names checkpoint " + Quoted(decoded->checkpoint_id));
  }
  StatusOr<Metadata> metadata = DecodeMetadata(decoded->payload);
  if (!metadata.ok()) {
    return InvalidArgumentError(what + ": metadata: " + metadata.status().message());
  }
  if (metadata->checkpoint_id != checkpoint_id) {
    return InvalidArgumentError(what + ": its metadata names checkpoint " +
                                Quoted(metadata->checkpoint_id));
  }
  return decoded;
}

}  // namespace

ReplicaStore::ReplicaStore(std::string root, DiagnosticSink* diagnostics)
    : root_(std::move(root)), diagnostics_(diagnostics) {}

ReplicaStore::~ReplicaStore() { Close(); }

StatusOr<std::shared_ptr<ChunkStore>> ReplicaStore::FindStore(std::string_view ns, bool create) {
  std::lock_guard<std::mutex> lock(mu_);
  if (closed_) return UnavailableError("the replica is shutting down");
  auto it = stores_.find(std::string(ns));
  if (it != stores_.end()) {
    it->second.last_used = ++uses_;
    return it->second.store;
  }

  const std::filesystem::path dir = std::filesystem::path(root_) / NamespaceDirectory(ns);
  std::error_code ec;
  if (!create) {
    const bool exists = std::filesystem::exists(dir, ec);
    if (ec) return IOError("checking " + dir.string() + ": " + ec.message());
    if (!exists) return std::shared_ptr<ChunkStore>();
  }
  // The parent is the root, or for a long namespace a directory below it.
  std::filesystem::create_directories(dir.parent_path(), ec);
  if (ec) return IOError("creating " + dir.parent_path().string() + ": " + ec.message());
  MakeRoomLocked();
  ChunkStoreOptions options;
  options.mode = OpenMode::kReadWrite;
  options.create_if_missing = true;
  options.write_buffer_size = kReplicaWriteBufferSize;
  options.max_open_files = kStoreMaxOpenFiles;
  std::unique_ptr<ChunkStore> store;
  Status opened = ChunkStore::Open(dir.string(), options, &store);
  if (!opened.ok()) return opened.WithContext("opening the store of namespace " + Quoted(ns));
  std::shared_ptr<ChunkStore> shared(std::move(store));
  stores_.emplace(std::string(ns), OpenStore{shared, ++uses_});
  return shared;
}

void ReplicaStore::MakeRoomLocked() {
  if (stores_.size() < kMaxOpenStores) return;
  auto oldest = stores_.end();
  for (auto it = stores_.begin(); it != stores_.end(); ++it) {
    // Only the map holds it: no call is using it, and none can take it while mu_ is held.
    if (it->second.store.use_count() == 1 &&
        (oldest == stores_.end() || it->second.last_used < oldest->second.last_used)) {
      oldest = it;
    }
  }
  if (oldest == stores_.end()) return;  // every one is in use: one more, for a while
  // Closed with mu_ held, so that the namespace is not opened again before its LOCK is free.
  CloseStore(oldest->first, *oldest->second.store);
  stores_.erase(oldest);
}

void ReplicaStore::CloseStore(const std::string& ns, ChunkStore& store) {
  ReportDiagnostic(diagnostics_, DiagnosticSeverity::kWarning,
                   "replica " + root_ + ": closing the store of namespace \"" + ns + "\"",
                   store.Close());
}

Status ReplicaStore::Put(std::string_view ns, std::string_view checkpoint_id,
                         std::string_view record, std::string_view record_hash_hex) {
  DCPKV_RETURN_IF_ERROR(ValidateNames(ns, checkpoint_id));
  DCPKV_ASSIGN_OR_RETURN(ManifestRecord decoded,
                         ValidateRecord(checkpoint_id, record, record_hash_hex));
  DCPKV_ASSIGN_OR_RETURN(std::shared_ptr<ChunkStore> store, FindStore(ns, /*create=*/true));
  return store->PutManifest(decoded);
}

StatusOr<std::string> ReplicaStore::Get(std::string_view ns, std::string_view checkpoint_id) {
  DCPKV_RETURN_IF_ERROR(ValidateNames(ns, checkpoint_id));
  DCPKV_ASSIGN_OR_RETURN(std::shared_ptr<ChunkStore> store, FindStore(ns, /*create=*/false));
  const std::string missing =
      "namespace " + Quoted(ns) + " has no record of checkpoint " + Quoted(checkpoint_id);
  if (store == nullptr) return NotFoundError(missing);
  StatusOr<ManifestRecord> record = store->GetManifest(checkpoint_id);
  if (!record.ok()) {
    if (record.status().code() == StatusCode::kNotFound) return NotFoundError(missing);
    return record.status();
  }
  return EncodeManifestRecord(*record);
}

StatusOr<std::vector<std::string>> ReplicaStore::List(std::string_view ns) {
  DCPKV_RETURN_IF_ERROR(ValidateNamespace(ns));
  DCPKV_ASSIGN_OR_RETURN(std::shared_ptr<ChunkStore> store, FindStore(ns, /*create=*/false));
  if (store == nullptr) return std::vector<std::string>();
  return store->ListManifestIds();
}

Status ReplicaStore::Delete(std::string_view ns, std::string_view checkpoint_id) {
  DCPKV_RETURN_IF_ERROR(ValidateNames(ns, checkpoint_id));
  DCPKV_ASSIGN_OR_RETURN(std::shared_ptr<ChunkStore> store, FindStore(ns, /*create=*/false));
  if (store == nullptr) return Status::Ok();
  return store->DeleteManifest(checkpoint_id);
}

void ReplicaStore::Close() {
  std::map<std::string, OpenStore> stores;
  {
    std::lock_guard<std::mutex> lock(mu_);
    closed_ = true;
    stores.swap(stores_);
  }
  for (auto& [ns, open] : stores) CloseStore(ns, *open.store);
}

}  // namespace dcpkv::replication

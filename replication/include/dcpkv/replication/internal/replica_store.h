// ReplicaStore: the transport-neutral logic of a replica server. Validates each request in full
// before it touches storage, and keeps one ChunkStore per namespace (namespaces.h), opened on
// first use. At most kMaxOpenStores stay open (the least recently used one no call is using is
// closed to open another), each with at most kStoreMaxOpenFiles files, so that the replica's
// descriptors stay bounded however many namespaces and manifests it holds.
//
// Thread safety: safe for concurrent use, except that Close() must not race with other calls
// (the server calls it once gRPC has finished every call).
#ifndef DCPKV_REPLICATION_INTERNAL_REPLICA_STORE_H_
#define DCPKV_REPLICATION_INTERNAL_REPLICA_STORE_H_

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "dcpkv/diagnostics.h"
#include "dcpkv/status.h"
#include "dcpkv/store/chunk_store.h"

namespace dcpkv::replication {

class ReplicaStore {
 public:
  // Namespace stores open at once (more only while that many calls use them).
  static constexpr size_t kMaxOpenStores = 8;
  // ChunkStoreOptions::max_open_files of each: RocksDB's least (its LOCK, LOG, WAL, MANIFEST and
  // directory, and up to 10 table files).
  static constexpr int kStoreMaxOpenFiles = 20;

  // REQUIRES: `root` is an existing directory. Failures that no call returns (closing a store)
  // go to `diagnostics` (null: StderrDiagnostics()), which must outlive the ReplicaStore.
  explicit ReplicaStore(std::string root, DiagnosticSink* diagnostics = nullptr);
  ~ReplicaStore();  // Close()
  ReplicaStore(const ReplicaStore&) = delete;
  ReplicaStore& operator=(const ReplicaStore&) = delete;

  // Stores `record` (EncodeManifestRecord output) as the record of `checkpoint_id`, replacing
  // one that is there. INVALID_ARGUMENT, with nothing written, unless: the namespace and id are
  // valid, `record_hash_hex` is RecordHashHex(record) (record_hash.h), the record decodes and names
  // `checkpoint_id`, and its payload is a Metadata that decodes and names it too.
  Status Put(std::string_view ns, std::string_view checkpoint_id, std::string_view record,
             std::string_view record_hash_hex);
  // The stored record, encoded. NOT_FOUND if there is none.
  StatusOr<std::string> Get(std::string_view ns, std::string_view checkpoint_id);
  // Ids of every record in the namespace, sorted; empty for a namespace never written.
  StatusOr<std::vector<std::string>> List(std::string_view ns);
  // OK also if there is no such record.
  Status Delete(std::string_view ns, std::string_view checkpoint_id);

  // Closes every store (errors go to the diagnostics sink). Later calls fail with UNAVAILABLE.
  // Idempotent.
  void Close();

 private:
  // The store of `ns`, opened if need be; the caller holds it open while it uses it. With
  // !create, nullptr for a namespace that has no directory yet (and none is created).
  // REQUIRES: ValidateNamespace(ns).ok()
  StatusOr<std::shared_ptr<ChunkStore>> FindStore(std::string_view ns, bool create);
  // Closes the least recently used store that no call holds, if kMaxOpenStores are open.
  void MakeRoomLocked();
  void CloseStore(const std::string& ns, ChunkStore& store);

  struct OpenStore {
    std::shared_ptr<ChunkStore> store;
    uint64_t last_used = 0;  // a tick of uses_
  };

  const std::string root_;
  DiagnosticSink* const diagnostics_;
  std::mutex mu_;
  bool closed_ = false;                      // GUARDED_BY(mu_)
  std::map<std::string, OpenStore> stores_;  // GUARDED_BY(mu_), by namespace
  uint64_t uses_ = 0;                        // GUARDED_BY(mu_)
};

}  // namespace dcpkv::replication

#endif  // DCPKV_REPLICATION_INTERNAL_REPLICA_STORE_H_

// KvStorageWriter and KvStorageReader: the StorageWriter/StorageReader of dcpkv's embedded store.
//
// A store root holds one ChunkStore per rank (<root>/rank-NNNNN, by the rank in the saving
// process group). On save each rank writes its items as chunks into its own database, flushes,
// and the coordinator commits by writing the checkpoint's Metadata as the manifest of its own
// database. On load each rank reads the manifest (from whichever rank database holds it) and the
// chunks it needs from the databases of the ranks that wrote them, opened read-only; a rank's own
// database is read through the writer's handle when one is shared with the reader.
//
// Thread safety: one save (writer) or load (reader) at a time per object.
#ifndef DCPKV_API_KV_STORAGE_H_
#define DCPKV_API_KV_STORAGE_H_

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "dcpkv/storage.h"
#include "dcpkv/store/chunk_store.h"
#include "dcpkv/store/writer_lease.h"

namespace dcpkv {

struct KvStorageOptions {
  // Directory that holds the rank databases. Required.
  std::string root;
  // Options of the rank databases this writer opens (chunk size, batch size, ...).
  // Default: ChunkStoreOptions defaults.
  ChunkStoreOptions store_options;
  // Threads a save writes with: the items of the rank's plan are cut, in key order, into up to
  // this many groups of about equal bytes, each written by its own batch writer into its own
  // table files, so that the copies into the page cache run in parallel; each group gets at
  // least min_bytes_per_writer bytes (a save smaller than twice that is written by one thread).
  // One thread (in plan order) when the planner's bytes do not outlive the next ResolveData
  // (CUDA tensors). 0 or -1: the default, the host's cores divided among its ranks
  // (LOCAL_WORLD_SIZE, else the world size), between 1 and 2. Measured on 2 cores: 2 threads
  // save 1 GiB ~25-35% faster at world 1 (a save's peak resident memory above the memory before
  // it: up to 56 MiB, against 32 MiB with one); at world 2 one thread per rank.
  int write_threads = 0;
  // Bytes each of a save's writer threads gets at the least. 0: the default, 128 MiB: a small
  // save gains nothing from a second writer, whose buffers stay in a malloc arena of its own
  // after it ends (50 async saves of 16 MiB grew resident memory by 20 MiB with two writers,
  // by 1 MiB with one).
  uint64_t min_bytes_per_writer = 0;
  // Threads a load reads with, each its own run of consecutive pieces of the plan. 0 or -1: the
  // default, the host's cores divided among its ranks (LOCAL_WORLD_SIZE, else one rank), between
  // 1 and 2. Cold table files are read with O_DIRECT (ChunkStoreOptions::table_read_io), one
  // block at a time per thread, so a second thread keeps the disk busy while the first checks
  // and copies: 1 GiB loaded cold in 0.60 s with 2 threads against 0.96 s with one (4 threads:
  // 0.61 s). Files in the page cache are read from there, where a second thread halves the
  // CPU time's share (0.46 s against 0.7 s for a checkpoint loaded again and again at world 2).
  int read_threads = 0;
  // A shard larger than this is read in pieces of about this size (cut at chunk boundaries),
  // which threads read in parallel. 0: the default, 16 MiB.
  uint64_t read_piece_bytes = 0;
};

// Key of the store value (ChunkStore::PutStoreValue) holding a checkpoint's replication state.
std::string ReplicationStateKey(std::string_view checkpoint_id);

class KvStorageWriter : public StorageWriter {
 public:
  explicit KvStorageWriter(KvStorageOptions options);
  ~KvStorageWriter() override;

  Status Reset(std::string_view checkpoint_id) override;
  // Opens this rank's database, or keeps the one the last save used, after reopening it if that
  // save failed to write (ChunkStore::Recover), e.g. on a full disk.
  Status SetUpStorageWriter(bool is_coordinator, int rank, int world_size,
                            bool use_collectives) override;
  StatusOr<SavePlan> PrepareLocalPlan(SavePlan plan) override;
  // Fails with ALREADY_EXISTS if the checkpoint id is already committed.
  StatusOr<std::vector<SavePlan>> PrepareGlobalPlan(std::vector<SavePlan> plans) override;
  // It only sets every plan's storage_data to the incremental base's id.
  bool PrepareGlobalPlanChangesOnlyStorageData() const override { return true; }
  std::future<StatusOr<std::vector<WriteResult>>> WriteData(const SavePlan& plan,
                                                            SavePlanner& planner) override;
  Status Finish(const Metadata& metadata,
                const std::vector<std::vector<WriteResult>>& results) override;
  void ConfigureSave(const StorageSaveOptions& options) override;
  void AmendMetadata(Metadata* metadata) override;
  Status AfterFinish(const Metadata& metadata) override;
  Status AfterCommit(const Metadata& metadata) override;

  // This rank's database once SetUpStorageWriter succeeded, else nullptr. Owned by the writer.
  ChunkStore* store() const { return store_.get(); }
  int rank() const { return rank_; }
  const std::string& options_root() const { return options_.root; }

 private:
  StatusOr<std::vector<WriteResult>> Write(const SavePlan& plan, SavePlanner& planner);
  // Coordinator: the Metadata of the incremental base, or nullopt for a full save.
  StatusOr<std::optional<Metadata>> FindBase();
  // Any rank: the Metadata of committed checkpoint `id` (cached, or read from the store).
  StatusOr<const Metadata*> BaseMetadata(const std::string& id);

  KvStorageOptions options_;
  StorageSaveOptions save_options_;
  std::string checkpoint_id_;
  std::string base_id_;                     // coordinator: the base of the save in progress, if any
  std::optional<Metadata> base_;            // the base's Metadata, once read
  std::optional<Metadata> last_committed_;  // what this writer's last save committed
  Status retention_status_;                 // coordinator: how retention after Finish went
  std::string committed_record_;            // coordinator: the manifest record just written
  std::vector<std::string> retired_;        // coordinator: checkpoints retention just deleted
  ManifestReplication* listening_to_ = nullptr;  // whose state listener writes to store_
  int rank_ = -1;
  int world_size_ = 1;
  // This job's hold on the root's writer lease while store_ is open (declared first: released
  // after store_ is closed).
  std::unique_ptr<WriterLease> lease_;
  std::unique_ptr<ChunkStore> store_;
  // A write to store_ failed (a full disk): it is reopened before the next save.
  bool write_failed_ = false;
};

class KvStorageReader : public StorageReader {
 public:
  explicit KvStorageReader(KvStorageOptions options);
  ~KvStorageReader() override;

  // Reads rank `rank`'s chunks through `store` (e.g. a writer's open read-write database)
  // instead of opening it read-only. `store` must outlive the reader.
  void ShareStore(int rank, ChunkStore* store);

  Status Reset(std::string_view checkpoint_id) override;
  StatusOr<Metadata> ReadMetadata() override;
  Status SetUpStorageReader(const Metadata& metadata, bool is_coordinator, int rank) override;
  StatusOr<LoadPlan> PrepareLocalPlan(LoadPlan plan) override;
  StatusOr<std::vector<LoadPlan>> PrepareGlobalPlan(std::vector<LoadPlan> plans) override;
  std::future<Status> ReadData(const LoadPlan& plan, LoadPlanner& planner) override;

 private:
  // Rank `rank`'s database: shared, or opened read-only on first use. Thread-safe; the store
  // stays alive while the caller holds it, even if another thread reopens it.
  StatusOr<std::shared_ptr<ChunkStore>> StoreOf(int rank);
  // Runs `read` on rank `rank`'s database; on IO_ERROR from a database this reader opened,
  // reopens it (once per failed open) and runs `read` once more. Thread-safe.
  Status ReadRetrying(int rank, const std::function<Status(ChunkStore*)>& read);
  // The decoded manifest of the checkpoint in `rank`'s database.
  StatusOr<Metadata> ReadManifest(int rank);
  // A checkpoint saved without collectives: the union of every rank's part.
  StatusOr<Metadata> MergeParts(Metadata first);
  Status Read(const LoadPlan& plan, LoadPlanner& planner);

  KvStorageOptions options_;
  std::string checkpoint_id_;
  std::mutex stores_mu_;
  std::map<int, ChunkStore*> shared_;
  std::map<int, std::shared_ptr<ChunkStore>> opened_;  // read-only, reused across loads
};

}  // namespace dcpkv

#endif  // DCPKV_API_KV_STORAGE_H_

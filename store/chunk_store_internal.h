// Private state of ChunkStore shared by its implementation files. Internal to store/.
#ifndef DCPKV_STORE_CHUNK_STORE_INTERNAL_H_
#define DCPKV_STORE_CHUNK_STORE_INTERNAL_H_

#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include <rocksdb/db.h>
#include <rocksdb/options.h>

#include "dcpkv/store/chunk_store.h"
#include "dcpkv/store/rocksdb_config.h"
#include "dcpkv/store/store_format.h"

namespace dcpkv {

struct ChunkStore::Impl {
  std::string dir;
  ChunkStoreOptions options;
  // The environment of a database opened with its MANIFEST's torn tail hidden
  // (manifest_tail.h); declared before `db`, so that it outlives it.
  std::unique_ptr<rocksdb::Env> torn_tail_env;
  rocksdb::DB* db = nullptr;                          // owned; deleted by Close()
  std::vector<rocksdb::ColumnFamilyHandle*> handles;  // owned; same order as column_families
  rocksdb::ColumnFamilyHandle* default_cf = nullptr;
  rocksdb::ColumnFamilyHandle* chunks_cf = nullptr;
  rocksdb::ColumnFamilyHandle* manifests_cf = nullptr;
  // Table files of the chunks column family whose every block's checksum has been verified
  // (VerifyChunkTables), by file number.
  std::mutex verified_tables_mu;
  std::set<uint64_t> verified_tables;

  // Held around every write to `db`: dcpkv's writes to one database never share a RocksDB write
  // group, whose leader writes its followers' batches with synchronization ThreadSanitizer
  // cannot see in the uninstrumented library (and whose stacks lose the library's frames, so
  // tests/tsan.supp cannot match them). Writes to one store are few (manifests, trash and
  // reclaim records, batches of one writer), so nothing waits long.
  std::mutex write_mu;

  // Held by ConsolidateSmallFiles: one at a time.
  std::mutex consolidate_mu;

  // The store format version its marker holds (store_format.h), once opened.
  std::mutex format_mu;
  int format_version = 0;  // guarded by format_mu after open
  // Read-write: raises the marker to `version` (synced) unless it is there already.
  Status RequireFormatVersion(int version);

  // Data markers (key_encoding.h) this open has written or found written, by key.
  std::mutex marked_mu;  // taken before write_mu
  std::set<std::string> marked_ids;
  // Read-write: writes the checkpoint's data marker (synced) unless this open has done so.
  // Batch writers call it before they write the checkpoint's first chunk.
  Status MarkChunkData(std::string_view checkpoint_id);
  // Writes `batch`, which deletes the data marker `marker` (and maybe chunks), synced, and
  // forgets that this open wrote the marker. `what` says what the write does, for errors.
  Status WriteUnmarking(rocksdb::WriteBatch* batch, const std::string& marker,
                        const std::string& what);

  // FAILED_PRECONDITION unless opened read-write and not closed.
  Status CheckWritable(std::string_view operation) const;
  // RESOURCE_EXHAUSTED if writing `bytes` more would leave less free space than the reserve
  // (ChunkStoreOptions::free_space_reserve_bytes).
  Status CheckFreeSpace(uint64_t bytes) const;
  // FAILED_PRECONDITION if closed.
  Status CheckOpen() const;
  // Opens `db` and the column family handles according to options.mode.
  Status OpenDB();
  // Opens every table file of the manifests and default column families (small: a seek to each
  // file's first key), so that RocksDB's table cache holds them open: one a live writer's
  // compaction deletes afterwards stays readable through the open descriptor. (Chunk table files
  // are opened as reads need them: reading one that a compaction replaced is IO_ERROR, and a
  // reopened view reads its replacement.)
  Status OpenTableFiles();
  // Read-only and secondary modes: OpenDB, OpenTableFiles and the format check, retried (with a
  // short backoff, under a second in all) while the open fails or may have raced a live writer's
  // flush. The view it gives holds everything that was durable before it started.
  Status OpenReadOnlyStable();
  // Releases the handles and the database without flushing.
  Status CloseDB();
  // Read-write: merges runs of small table files (manifest flushes, small saves) that are
  // neighbours in a level >= 1 of any column family, which RocksDB's leveled compaction leaves
  // alone (it moves a file that overlaps nothing down a level as it is). Best effort.
  void ConsolidateSmallFiles();
  // Flushes (read-write), waits for the compactions that calls for, consolidates, and closes.
  Status CloseInternal();
  // Verifies the block checksums of every table file of the chunks column family that an
  // iterator over [lower, upper) may read (all of level 0), once per file: bulk reads can then skip
  // RocksDB's checksums (whose CRC32c would cover the blob values, which every chunk's XXH3 covers
  // already) without ever parsing an unchecked table block.
  // Returns whether it did: false, having verified nothing, if one of those files holds chunk
  // values inline (no blob references: an ingested table file), whose reads must then check
  // RocksDB's block checksums (XXH3) as they go.
  StatusOr<bool> VerifyChunkTables(std::string_view lower, std::string_view upper);
};

// Where batch writers build table files before ingesting them (kIngestTableFiles): <dir>/ingest.
// Anything left there belongs to no ingested file; a read-write open removes it.
inline std::string IngestDirectory(const std::string& dir) { return dir + "/ingest"; }

// Zeroed memory of a given size, mapped anonymously: pages never written are never allocated.
class ZeroWindow {
 public:
  ZeroWindow() = default;
  ~ZeroWindow();
  ZeroWindow(const ZeroWindow&) = delete;
  ZeroWindow& operator=(const ZeroWindow&) = delete;
  // Makes the window at least `bytes` long (page-aligned); false if the memory cannot be mapped.
  bool Reserve(size_t bytes);
  uint8_t* data() const { return data_; }

 private:
  uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

// Decodes stored chunk values, which FlatBuffers reads in place at 8-byte alignment and which a
// RocksDB block rarely holds aligned. An aligned value is decoded where it is. Of a large
// misaligned one only the head (its metadata; the payload vector comes last in every value
// ChunkEncoder writes) is copied into a window whose other bytes stay zero, and the payload is
// hashed and viewed in place (DecodeChunkHead); anything else is copied whole into `scratch`,
// reused from value to value (a scan copies every chunk into the same buffer instead of
// faulting in a fresh one each time).
class ChunkValueDecoder {
 public:
  // Decodes `value`, stored under `key`, and checks that it belongs there; errors name the key.
  // The view refers to `value` or to this decoder's buffers until the next Decode.
  StatusOr<ChunkView> Decode(const ChunkKey& key, std::string_view value);

 private:
  ZeroWindow head_window_;
  std::unique_ptr<uint64_t[]> scratch_;
  size_t scratch_words_ = 0;
};

// Decodes a stored chunk value (8-byte aligned) and checks that it belongs under `key`. Errors
// name the key.
StatusOr<ChunkView> DecodeStoredChunk(const ChunkKey& key, std::string_view aligned_value);

}  // namespace dcpkv

#endif  // DCPKV_STORE_CHUNK_STORE_INTERNAL_H_

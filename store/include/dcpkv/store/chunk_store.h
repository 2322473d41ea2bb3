// ChunkStore: one rank's embedded RocksDB database of checkpoint chunks and manifests.
//
// A store root holds one database per rank, `<root>/rank-00003/` (see store_layout.h). Each
// database has three column families:
//   "chunks"    chunk key -> Chunk FlatBuffer: in ingested table files (the default write path),
//               or written with the WAL off and flushed (large values in blob files);
//   "manifests" manifest key -> ManifestRecord FlatBuffer; written synchronously with the WAL on;
//   "default"   store metadata (the store format version, data markers, trash and reclaim
//               records), written synchronously.
// docs/format.md describes every byte.
//
// Durability contract: PutShard/ChunkBatchWriter data may be lost by a crash until Flush()
// returns OK (ingested table files are durable when ChunkBatchWriter::Finish returns; Flush()
// is then cheap). PutManifest returns only once the manifest is on disk. A checkpoint is
// committed exactly when its manifest exists; callers flush every rank's chunks before writing
// it. Close() flushes everything, waits for the compactions that calls for and merges small
// table files, so that a store's files follow its live data.
//
// Thread safety: a ChunkStore is safe for concurrent use from multiple threads without external
// synchronization, except Close() and TryCatchUpWithPrimary(), which must not race with any
// other call. Iterators, batch
// writers and chunk handles are not thread-safe and must not outlive the store.
#ifndef DCPKV_STORE_CHUNK_STORE_H_
#define DCPKV_STORE_CHUNK_STORE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "dcpkv/core/manifest_record_codec.h"
#include "dcpkv/core/strided.h"
#include "dcpkv/diagnostics.h"
#include "dcpkv/metadata.h"
#include "dcpkv/status.h"
#include "dcpkv/store/chunk_codec.h"
#include "dcpkv/store/key_encoding.h"

namespace rocksdb {
class Env;
}  // namespace rocksdb

namespace dcpkv {

enum class OpenMode {
  // The single writer of this database. Takes RocksDB's lock: one per directory.
  kReadWrite,
  // A snapshot of what was durable when opened; never blocks or disturbs a writer.
  kReadOnly,
  // Follows a live writer in another process: like kReadOnly, and TryCatchUpWithPrimary()
  // refreshes the view. (Implemented as a reopen of a read-only instance: RocksDB's own
  // secondary instances do not support blob files, facebook/rocksdb#13296.)
  kSecondary,
};

// How a ChunkBatchWriter makes its chunks part of the database.
enum class ChunkWritePath : uint8_t {
  // WriteBatches (WAL off) into the memtable, flushed into table and blob files; durable after
  // ChunkStore::Flush(). The store's first layout.
  kWriteBatch = 0,
  // Table files built directly (rocksdb::SstFileWriter, chunk values inline, XXH3 block
  // checksums) in <dir>/ingest/ and ingested with IngestExternalFile (moved, not copied): no
  // memtable, no second copy; each file is durable (synced, linked, directory and MANIFEST
  // synced) when its ingestion returns.
  kIngestTableFiles = 1,
};

// How read-only and secondary opens read table files.
enum class TableReadIo : uint8_t {
  // Through the page cache.
  kBuffered = 0,
  // Table files of 1 MiB or more with O_DIRECT (where the file system takes it), straight into
  // RocksDB's block buffers: no page-cache page per 4 KiB and no copy out of it.
  kDirect = 1,
  // Per table file, when it is opened: O_DIRECT for one less than half of which is in the page
  // cache (a cold load), else through the page cache (a checkpoint just saved or read before).
  kAuto = 2,
};

struct ChunkStoreOptions {
  // How to open. Default: kReadWrite.
  OpenMode mode = OpenMode::kReadWrite;

  // Read-write only: create the database if it does not exist. Default: true.
  bool create_if_missing = true;

  // Payload bytes per chunk when a shard is split; rounded down to a whole number of elements.
  // Allowed range 1 KiB .. 1 GiB. Default: 4 MiB.
  uint64_t chunk_size = uint64_t{4} << 20;

  // A batch writer writes its WriteBatch once it holds this many payload bytes (RocksDB copies
  // it into the memtable: both count against a save's memory). Default: 16 MiB.
  uint64_t write_batch_bytes = uint64_t{16} << 20;

  // Chunk values of at least this many bytes are stored in blob files. Default: 64 KiB.
  uint64_t min_blob_size = uint64_t{64} << 10;

  // RocksDB memtable size of the chunks column family. Default: 64 MiB.
  uint64_t write_buffer_size = uint64_t{64} << 20;

  // How batch writers write chunks. Default: kIngestTableFiles, which saves about twice as fast
  // as kWriteBatch (the store's first layout, kept for stores written that way and for
  // comparison) on this project's machines, its cold loads as fast at world 1 and ~15% slower
  // at world 2 (README, "Performance").
  ChunkWritePath write_path = ChunkWritePath::kIngestTableFiles;

  // kIngestTableFiles: a table file is finished and ingested once it holds this many payload
  // bytes (damage to one file then costs at most this much). Default: 256 MiB.
  uint64_t table_file_bytes = uint64_t{256} << 20;

  // kIngestTableFiles: a batch writer holds back its first chunks until they total this many
  // payload bytes; one that finishes with less (a small save) writes them as one batch into the
  // memtable and flushes it, adding no table file of its own, so that compaction merges small
  // saves' data instead of each leaving a file. 0: every chunk goes into table files.
  // Default: 8 MiB.
  uint64_t small_write_bytes = uint64_t{8} << 20;

  // Free space on the store's file system that saves leave alone, for `dcpkv rm` and `gc` to
  // reclaim space on a full disk: a chunk that would leave less free fails the save with
  // RESOURCE_EXHAUSTED before it is written. 0: no reserve. Default: kAutoFreeSpaceReserve, 2%
  // of the file system, at least 4 MiB and at most 256 MiB.
  static constexpr uint64_t kAutoFreeSpaceReserve = ~uint64_t{0};
  uint64_t free_space_reserve_bytes = kAutoFreeSpaceReserve;

  // kReadOnly and kSecondary: how table files are read (see TableReadIo). kAuto loads 1 GiB
  // that is not in the page cache in 0.7 s with 0.1 s of system time here, against 1.5-2.1 s
  // and 1.7 s through the page cache; one that is, as fast as kBuffered. Read-write opens (a
  // writer's base lookups, compactions) always read through the page cache. Ignored when `env`
  // is set. Default: kAuto.
  TableReadIo table_read_io = TableReadIo::kAuto;

  // Files RocksDB keeps open at most (its max_open_files: table files in its table cache, and
  // about 10 others; at least 20), so that a store's descriptors do not grow with its files.
  // Default: kMaxOpenFiles (256).
  static constexpr int kMaxOpenFiles = 256;
  int max_open_files = kMaxOpenFiles;

  // File system access, for fault injection in tests. Default: nullptr (rocksdb::Env::Default()).
  rocksdb::Env* env = nullptr;

  // Where failures that no call returns go (a close in the destructor). Not owned; must outlive
  // the store. Default: nullptr, meaning StderrDiagnostics().
  DiagnosticSink* diagnostics = nullptr;
};

// A verified chunk read from the store. Owns the bytes that payload() points into.
// Move-only; must not outlive the store it came from.
class ChunkHandle {
 public:
  ChunkHandle();
  ~ChunkHandle();
  ChunkHandle(ChunkHandle&&) noexcept;
  ChunkHandle& operator=(ChunkHandle&&) noexcept;

  const ChunkInfo& info() const { return view_.info; }
  const uint8_t* payload() const { return view_.payload; }
  size_t payload_size() const { return view_.payload_size; }

 private:
  friend class ChunkStore;
  struct Storage;
  std::unique_ptr<Storage> storage_;
  ChunkView view_;
};

// What a batch writer stored for one chunk, or found already stored in a base checkpoint.
struct WrittenChunk {
  ChunkKey key;
  uint64_t payload_len = 0;
  Hash128 payload_hash;
  // False: equal to the base's chunk, not written; `source` (checkpoint id) and `source_rank`
  // say where that one is stored.
  bool stored = true;
  std::string source;
  int32_t source_rank = -1;
};

// Iterates over the chunks of one checkpoint in key order (fqn, shard offsets, byte offset),
// verifying each. Stops at the first damaged chunk with a DATA_LOSS status naming it.
class ChunkIterator {
 public:
  ~ChunkIterator();
  ChunkIterator(const ChunkIterator&) = delete;
  ChunkIterator& operator=(const ChunkIterator&) = delete;

  bool Valid() const;
  // REQUIRES: Valid()
  void Next();
  // REQUIRES: Valid(). Views are valid until Next() or destruction.
  const ChunkKey& key() const;
  const ChunkView& chunk() const;
  // OK unless iteration stopped on an error.
  Status status() const;

  struct Impl;  // implementation detail (store/chunk_read.cc)

 private:
  friend class ChunkStore;
  explicit ChunkIterator(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// A problem VerifyShard found in bytes [byte_offset, end) of a shard.
struct ShardProblem {
  uint64_t byte_offset = 0;
  uint64_t end = 0;
  std::string what;
  // DATA_LOSS for damaged or missing data; IO_ERROR when RocksDB could not read a file (which,
  // on a read-only open of a live store, may be one the writer's compaction has since replaced:
  // reopening and verifying again tells the two apart).
  StatusCode code = StatusCode::kDataLoss;
};

// A chunk VerifyShard read and found intact.
struct VerifiedChunk {
  uint64_t byte_offset = 0;  // of the chunk within the shard
  uint64_t length = 0;       // payload bytes
  Hash128 hash;              // XXH3-128 of the payload (as stored, and checked)
};

// What VerifyShard found.
struct ShardVerification {
  uint64_t chunks = 0;  // chunks read and found intact
  uint64_t bytes = 0;   // their payload bytes
  std::vector<ShardProblem> problems;
  std::vector<VerifiedChunk> intact;  // every intact chunk, in byte order (`chunks` of them)
};

class ChunkBatchWriter;

class ChunkStore {
 public:
  // Opens the database in directory `dir`. In kReadOnly and kSecondary modes a missing
  // database is NOT_FOUND.
  static Status Open(const std::string& dir, const ChunkStoreOptions& options,
                     std::unique_ptr<ChunkStore>* store);

  ~ChunkStore();  // Closes if Close() was not called; errors are then logged, not returned.
  ChunkStore(const ChunkStore&) = delete;
  ChunkStore& operator=(const ChunkStore&) = delete;

  const std::string& directory() const;
  OpenMode mode() const;
  const ChunkStoreOptions& options() const;

  // Splits `size` bytes of the shard (row-major) into chunks and writes them.
  // Equivalent to one ChunkBatchWriter::AddShard followed by Finish.
  Status PutShard(std::string_view checkpoint_id, std::string_view fqn,
                  const ShardGeometry& geometry, const void* data, size_t size);

  // Makes every chunk written so far durable (flushes the chunks column family and waits).
  Status Flush();

  // Reads and verifies one chunk. NOT_FOUND if absent, DATA_LOSS (naming the key) if damaged.
  StatusOr<ChunkHandle> GetChunk(const ChunkKey& key);

  // Reassembles one whole shard into `dest` (`size` bytes): reads every chunk under
  // (checkpoint_id, fqn, geometry.offsets), checks each against `geometry` and that together
  // they cover [0, size) exactly. NOT_FOUND if the shard has no chunks; DATA_LOSS on a damaged,
  // missing or mismatched chunk.
  Status ReadShard(std::string_view checkpoint_id, std::string_view fqn,
                   const ShardGeometry& geometry, void* dest, size_t size);

  // Reads bytes [begin, end) of one shard into `dest` (end - begin bytes), reading and verifying
  // only the chunks that hold them. Errors as ReadShard.
  Status ReadShardRange(std::string_view checkpoint_id, std::string_view fqn,
                        const ShardGeometry& geometry, uint64_t begin, uint64_t end, void* dest);

  // Reads and verifies every chunk of one shard and checks that together they tile the shard's
  // bytes exactly. Unlike ReadShard it does not stop at the first problem: damaged values,
  // entries RocksDB cannot read (a damaged or missing SST or blob file), gaps, overlaps and chunks
  // of another geometry are each reported and the scan goes on past them. `progress`, if set, is
  // called with the payload bytes of each chunk verified. Fails only for invalid arguments or a
  // closed store.
  StatusOr<ShardVerification> VerifyShard(
      std::string_view checkpoint_id, std::string_view fqn, const ShardGeometry& geometry,
      const std::function<void(uint64_t bytes)>& progress = nullptr);

  // As VerifyShard, for bytes [begin, end) of the shard only: reads the chunks stored at byte
  // offsets in [begin, end) and checks that together they tile it exactly (a chunk at `begin`,
  // none extending past `end`). For an incremental checkpoint's source, which holds only some
  // chunks of a shard. [0, shard bytes) is the whole shard, exactly as VerifyShard; an empty
  // range in a non-empty shard is INVALID_ARGUMENT, as is one outside the shard.
  StatusOr<ShardVerification> VerifyShard(
      std::string_view checkpoint_id, std::string_view fqn, const ShardGeometry& geometry,
      uint64_t begin, uint64_t end, const std::function<void(uint64_t bytes)>& progress = nullptr);

  // Iterates over the chunks of one checkpoint.
  StatusOr<std::unique_ptr<ChunkIterator>> NewChunkIterator(std::string_view checkpoint_id);

  // Range-deletes every chunk of the checkpoint and its data marker, in one synchronous write
  // (its manifest is left alone).
  Status DeleteCheckpointChunks(std::string_view checkpoint_id);

  // Ids of checkpoints that have chunk data in this database, in byte order: those with a data
  // marker (store format 3; reads no chunk), or, in a store of an older format opened read-only,
  // those found by reading the first chunk of each. Also an id whose save wrote its marker and
  // crashed before any chunk was durable, until the garbage collection drops the marker.
  StatusOr<std::vector<std::string>> ListChunkCheckpointIds();

  // Deletes the checkpoint's data marker if none of its chunks is left in this database (reads
  // one chunk if some is). Returns whether it did. For the garbage collection, once it has
  // deleted what it could.
  StatusOr<bool> DeleteDataMarkerIfNoChunks(std::string_view checkpoint_id);

  // Writes a manifest synchronously (WAL on, fsync) in one atomic write.
  Status PutManifest(const ManifestRecord& record);
  // NOT_FOUND if absent; DATA_LOSS if damaged.
  StatusOr<ManifestRecord> GetManifest(std::string_view checkpoint_id);
  // Ids of checkpoints that have a manifest, in byte order.
  StatusOr<std::vector<std::string>> ListManifestIds();
  Status DeleteManifest(std::string_view checkpoint_id);

  // Removal and garbage collection (the protocol is in gc.h). A removed checkpoint's manifest
  // record is kept as its trash record until its chunks are reclaimed; a reclaim marker records
  // which key ranges of a trashed checkpoint this database has already deleted and compacted.
  // Both live in the "default" column family, written synchronously. Writes need kReadWrite.

  // In one synchronous atomic write, deletes the checkpoint's manifest and stores the same
  // record, byte for byte, as its trash record (replacing one that exists): from then on the
  // checkpoint is not committed. NOT_FOUND if it has no manifest here.
  Status MoveManifestToTrash(std::string_view checkpoint_id);
  // Ids that have a trash record, in byte order.
  StatusOr<std::vector<std::string>> ListTrashIds();
  // NOT_FOUND if absent; DATA_LOSS if damaged.
  StatusOr<ManifestRecord> GetTrashRecord(std::string_view checkpoint_id);
  Status DeleteTrashRecord(std::string_view checkpoint_id);

  // NOT_FOUND if absent.
  StatusOr<std::string> GetReclaimMarker(std::string_view checkpoint_id);
  Status PutReclaimMarker(std::string_view checkpoint_id, std::string_view value);
  Status DeleteReclaimMarker(std::string_view checkpoint_id);
  // Ids that have a reclaim marker, in byte order.
  StatusOr<std::vector<std::string>> ListReclaimMarkerIds();

  // Deletes every chunk whose key lies in one of the ranges, in one synchronous atomic write.
  Status DeleteChunkRanges(const std::vector<ChunkKeyRange>& ranges);
  // True if a chunk key lies in the range. Reads no chunk value when none does, one if one does.
  StatusOr<bool> HasChunksInRange(const ChunkKeyRange& range);
  // Flushes the chunks, then compacts the range down to the bottom level with forced blob
  // garbage collection, so that the files of deleted chunks are rewritten or deleted and their
  // space returned to the file system. Live chunks in the compacted files are rewritten too.
  // Other compactions go on meanwhile.
  Status CompactChunks(const ChunkKeyRange& range);
  // Reclaims the space of the chunk ranges `dead` (deleted, referred to by nothing): first drops
  // the table files that hold nothing else, which writes nothing (so it works on a full disk),
  // then compacts the span of the ranges.
  Status ReclaimChunkRanges(const std::vector<ChunkKeyRange>& dead);

  // Small named values of the store itself (default column family, synchronous writes), e.g.
  // "dcpkv.replication.<checkpoint id>": the replication state of a checkpoint. Keys must start
  // with "dcpkv." (and are not "dcpkv.store_format", which the store owns).
  Status PutStoreValue(std::string_view key, std::string_view value);
  // NOT_FOUND if absent.
  StatusOr<std::string> GetStoreValue(std::string_view key);

  // kSecondary only: catches up with what the writer has made durable since. Chunk handles and
  // iterators obtained before must be destroyed first.
  // RocksDB reads the writer's MANIFEST before its WAL, so a manifest that becomes visible in
  // one catch-up may have chunks (flushed just before it) that become visible only in the next:
  // a reader that follows a live writer lists manifests, catches up again, then reads them.
  // The same holds for a read-only open: the newest manifest may need a reopen.
  Status TryCatchUpWithPrimary();

  // Read-write only. After a write failed (a full disk, an I/O error) RocksDB refuses every
  // further write: closes the database without flushing and opens it again, as after a crash,
  // which clears the error. Chunks written since the last successful Flush() are lost; they belong
  // to no committed checkpoint. If the open fails (the disk is still full) the store stays closed
  // (calls fail with FAILED_PRECONDITION) and a later Recover() tries again. Must not race with
  // any other call, like Close().
  Status Recover();

  // Flushes (read-write), closes the database and releases resources. Idempotent.
  Status Close();

  struct Impl;  // implementation detail (store/chunk_store_internal.h)

 private:
  friend class ChunkBatchWriter;
  explicit ChunkStore(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Writes chunks of many shards: into large WriteBatches (WAL off), or into table files that it
// ingests (ChunkStoreOptions::write_path). Not thread-safe; one per writing thread. Must not
// outlive its store.
class ChunkBatchWriter {
 public:
  explicit ChunkBatchWriter(ChunkStore* store);
  ~ChunkBatchWriter();  // Discards chunks not yet written by Finish().
  ChunkBatchWriter(const ChunkBatchWriter&) = delete;
  ChunkBatchWriter& operator=(const ChunkBatchWriter&) = delete;

  // Validates names and geometry, then splits the shard into chunks of the store's chunk_size.
  // `size` must equal geometry.ByteSize(). May write full batches before returning.
  Status AddShard(std::string_view checkpoint_id, std::string_view fqn,
                  const ShardGeometry& geometry, const void* data, size_t size);

  // As above, for an incremental save: `base` lists the chunks of the same shard (same dtype,
  // offsets and sizes) in a base checkpoint, with `source` naming the checkpoint whose keys
  // hold each. A chunk with the same byte range and payload hash (XXH3-128) as the base's is
  // not written; written() records where it is stored instead.
  Status AddShard(std::string_view checkpoint_id, std::string_view fqn,
                  const ShardGeometry& geometry, const void* data, size_t size,
                  const std::vector<SavedChunk>* base);

  // As above, for a shard whose bytes lie strided in memory at `data` (core/strided.h): each
  // chunk's payload is copied straight from there into its value, run by run. An unchanged
  // chunk of an incremental save is copied and hashed, then not written.
  Status AddShard(std::string_view checkpoint_id, std::string_view fqn,
                  const ShardGeometry& geometry, const void* data, const StridedLayout& layout,
                  const std::vector<SavedChunk>* base);

  // Writes what is still buffered. kWriteBatch: the chunks are durable after ChunkStore::Flush();
  // kIngestTableFiles: they are durable when Finish returns.
  Status Finish();

  // Every chunk added so far, in the order added.
  const std::vector<WrittenChunk>& written() const;
  uint64_t payload_bytes() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace dcpkv

#endif  // DCPKV_STORE_CHUNK_STORE_H_

// ChunkBatchWriter: splits shards into chunks and writes them, by one of two paths
// (ChunkStoreOptions::write_path):
// - kWriteBatch: large WriteBatches with the WAL off, made durable by ChunkStore::Flush(), which
//   the commit protocol waits on;
// - kIngestTableFiles: table files built with SstFileWriter under <dir>/ingest/ (the database's
//   file system, so that ingestion links instead of copying), each ingested with
//   IngestExternalFile(move_files) once it holds table_file_bytes, when the next key does not
//   sort after the file's last one (a file's keys must ascend), and at Finish. The ingestion is
//   the durability point: SstFileWriter::Finish syncs the file, the ingestion links it into the
//   database, syncs the directory and the MANIFEST edit. A file that was never ingested (a failed
//   write, a crash) is removed by the writer, or by the next read-write open.
//   A writer's first small_write_bytes of chunks are held back: if Finish comes before it has
//   more, they go into the memtable as one batch and are flushed there (a small save then adds
//   no table file of its own: its data is merged with others' by compaction).
#include <rocksdb/sst_file_writer.h>
#include <rocksdb/write_batch.h>

#include <atomic>
#include <cstring>
#include <filesystem>

#include "chunk_store_internal.h"
#include "dcpkv/core/names.h"
#include "dcpkv/store/crash_points.h"
#include "dcpkv/store/file_ops.h"
#include "rocksdb_status.h"

namespace dcpkv {
namespace {

// Table files being built, process-wide unique names: "<pid>-<n>.sst" under <dir>/ingest/.
std::string NewIngestFileName(const std::string& dir) {
  static std::atomic<uint64_t> next{0};
  return IngestDirectory(dir) + "/" + std::to_string(::getpid()) + "-" +
         std::to_string(next.fetch_add(1)) + ".sst";
}

}  // namespace

// Where a shard's bytes come from: contiguous at `base`, or strided there per `layout`.
struct ShardBytes {
  const void* base = nullptr;
  const StridedLayout* layout = nullptr;  // null: contiguous
};

struct ChunkBatchWriter::Impl {
  // ChunkBatchWriter::AddShard of `size` bytes from `data`.
  Status AddShard(std::string_view checkpoint_id, std::string_view fqn,
                  const ShardGeometry& geometry, const ShardBytes& data, size_t size,
                  const std::vector<SavedChunk>* base);

  ChunkStore::Impl* store = nullptr;
  ChunkEncoder encoder;
  uint64_t total_payload = 0;
  std::vector<WrittenChunk> written;
  std::string marked_id;  // the checkpoint whose data marker this writer saw written last

  // kWriteBatch; kIngestTableFiles: the chunks held back, while `holding`.
  rocksdb::WriteBatch batch;
  uint64_t batch_payload = 0;
  bool holding = true;

  // kIngestTableFiles: the file being built, its payload bytes and last key.
  std::unique_ptr<rocksdb::SstFileWriter> table;
  std::string table_path;
  uint64_t table_payload = 0;
  std::string last_key;

  ~Impl() { AbandonTable(); }

  bool ingesting() const { return store->options.write_path == ChunkWritePath::kIngestTableFiles; }

  Status Add(const std::string& key, std::string_view value, uint64_t payload) {
    DCPKV_RETURN_IF_ERROR(store->CheckFreeSpace(value.size()));
    const bool batched = !ingesting() || holding;
    if (batched) {
      DCPKV_RETURN_IF_ERROR(
          FromRocksDB(batch.Put(store->chunks_cf, key, rocksdb::Slice(value.data(), value.size())),
                      "adding a chunk to a batch for " + store->dir));
      batch_payload += payload;
    }
    if (!ingesting()) {
      if (batch_payload >= store->options.write_batch_bytes) return WriteBatch();
      return Status::Ok();
    }
    if (holding) {
      if (batch_payload < store->options.small_write_bytes) return Status::Ok();
      holding = false;  // not a small write: what was held goes into table files
      return AddHeldToTables();
    }
    return AddToTable(key, value, payload);
  }

  Status AddToTable(std::string_view key, std::string_view value, uint64_t payload) {
    if (table != nullptr && key <= last_key) DCPKV_RETURN_IF_ERROR(IngestTable());
    if (table == nullptr) DCPKV_RETURN_IF_ERROR(OpenTable());
    Status added = FromRocksDB(table->Put(rocksdb::Slice(key.data(), key.size()),
                                          rocksdb::Slice(value.data(), value.size())),
                               "writing table file " + table_path);
    if (!added.ok()) {
      AbandonTable();
      return added;
    }
    last_key = key;
    table_payload += payload;
    if (table_payload >= store->options.table_file_bytes) return IngestTable();
    return Status::Ok();
  }

  // Moves the chunks held back in `batch` into table files, in the order they were added.
  Status AddHeldToTables() {
    struct Mover : rocksdb::WriteBatch::Handler {
      Impl* writer = nullptr;
      Status status;
      rocksdb::Status PutCF(uint32_t, const rocksdb::Slice& key,
                            const rocksdb::Slice& value) override {
        if (status.ok()) {
          // Every held value is a chunk: its payload is what counts against the file size.
          status = writer->AddToTable(std::string_view(key.data(), key.size()),
                                      std::string_view(value.data(), value.size()), value.size());
        }
        return rocksdb::Status::OK();
      }
    } mover;
    mover.writer = this;
    DCPKV_RETURN_IF_ERROR(FromRocksDB(batch.Iterate(&mover), "reading back held chunks"));
    batch.Clear();
    batch_payload = 0;
    return mover.status;
  }

  Status Flush() {
    if (!ingesting()) return WriteBatch();
    if (holding && batch.Count() > 0) {
      // A small write: into the memtable, and durable once flushed from there.
      DCPKV_RETURN_IF_ERROR(WriteBatch());
      rocksdb::FlushOptions fo;
      fo.wait = true;
      fo.allow_write_stall = true;
      return FromRocksDB(store->db->Flush(fo, store->chunks_cf),
                         "flushing chunks of " + store->dir);
    }
    return IngestTable();
  }

  Status WriteBatch() {
    if (batch.Count() == 0) return Status::Ok();
    rocksdb::WriteOptions wo;
    wo.disableWAL = true;
    Status s;
    {
      std::lock_guard<std::mutex> write_lock(store->write_mu);
      s = FromRocksDB(store->db->Write(wo, &batch), "writing chunks to " + store->dir);
    }
    batch.Clear();
    batch_payload = 0;
    if (s.ok()) MaybeCrashAt("save.after_chunk_batch");
    return s;
  }

  Status OpenTable() {
    // A store of the first layout says it has ingested tables before it gets one.
    DCPKV_RETURN_IF_ERROR(store->RequireFormatVersion(kIngestStoreFormatVersion));
    if (const int rc = MakeDirectories(IngestDirectory(store->dir)); rc != 0) {
      return IOError("cannot create " + IngestDirectory(store->dir) + ": " + std::strerror(rc));
    }
    const rocksdb::Options options(store->db->GetDBOptions(),
                                   store->db->GetOptions(store->chunks_cf));
    table = std::make_unique<rocksdb::SstFileWriter>(rocksdb::EnvOptions(options), options,
                                                     store->chunks_cf);
    table_path = NewIngestFileName(store->dir);
    table_payload = 0;
    Status opened = FromRocksDB(table->Open(table_path), "creating table file " + table_path);
    if (!opened.ok()) AbandonTable();
    return opened;
  }

  Status IngestTable() {
    if (table == nullptr) return Status::Ok();
    Status s = FromRocksDB(table->Finish(), "finishing table file " + table_path);
    if (s.ok()) MaybeCrashAt("save.after_table_file");
    if (s.ok()) {
      rocksdb::IngestExternalFileOptions o;
      o.move_files = true;           // a hard link into the database: no copy
      o.write_global_seqno = false;  // the sequence number goes to the MANIFEST, the file
                                     // stays as synced
      o.verify_checksums_before_ingest = false;  // just written; every read checks blocks
      s = FromRocksDB(store->db->IngestExternalFile(store->chunks_cf, {table_path}, o),
                      "ingesting table file " + table_path + " into " + store->dir);
    }
    if (s.ok()) MaybeCrashAt("save.after_ingest");
    AbandonTable();  // the ingested file was moved; what is left is removed
    return s;
  }

  // Drops the file being built, if any (after an ingestion: the link left behind).
  void AbandonTable() {
    table.reset();
    if (!table_path.empty()) {
      CurrentFileOps().Unlink(table_path);
      table_path.clear();
    }
    table_payload = 0;
    last_key.clear();
  }
};

ChunkBatchWriter::ChunkBatchWriter(ChunkStore* store) : impl_(std::make_unique<Impl>()) {
  impl_->store = store->impl_.get();
}

ChunkBatchWriter::~ChunkBatchWriter() = default;

const std::vector<WrittenChunk>& ChunkBatchWriter::written() const { return impl_->written; }
uint64_t ChunkBatchWriter::payload_bytes() const { return impl_->total_payload; }

Status ChunkBatchWriter::AddShard(std::string_view checkpoint_id, std::string_view fqn,
                                  const ShardGeometry& geometry, const void* data, size_t size) {
  return AddShard(checkpoint_id, fqn, geometry, data, size, nullptr);
}

Status ChunkBatchWriter::AddShard(std::string_view checkpoint_id, std::string_view fqn,
                                  const ShardGeometry& geometry, const void* data, size_t size,
                                  const std::vector<SavedChunk>* base) {
  return impl_->AddShard(checkpoint_id, fqn, geometry, ShardBytes{data, nullptr}, size, base);
}

Status ChunkBatchWriter::AddShard(std::string_view checkpoint_id, std::string_view fqn,
                                  const ShardGeometry& geometry, const void* data,
                                  const StridedLayout& layout,
                                  const std::vector<SavedChunk>* base) {
  return impl_->AddShard(checkpoint_id, fqn, geometry,
                         ShardBytes{data, layout.contiguous() ? nullptr : &layout},
                         layout.total_bytes, base);
}

Status ChunkBatchWriter::Impl::AddShard(std::string_view checkpoint_id, std::string_view fqn,
                                        const ShardGeometry& geometry, const ShardBytes& data,
                                        size_t size, const std::vector<SavedChunk>* base) {
  DCPKV_RETURN_IF_ERROR(store->CheckWritable("writing chunks"));
  DCPKV_RETURN_IF_ERROR(ValidateCheckpointId(checkpoint_id));
  DCPKV_RETURN_IF_ERROR(ValidateFqn(fqn));
  StatusOr<uint64_t> shard_bytes = geometry.ByteSize();
  if (!shard_bytes.ok()) {
    return shard_bytes.status().WithContext("tensor \"" + std::string(fqn) + "\"");
  }
  if (*shard_bytes != size) {
    return InvalidArgumentError("tensor \"" + std::string(fqn) + "\": shard geometry needs " +
                                std::to_string(*shard_bytes) + " bytes but " +
                                std::to_string(size) + " were given");
  }
  if (size > 0 && data.base == nullptr) {
    return InvalidArgumentError("tensor \"" + std::string(fqn) + "\": data is null");
  }
  const ChunkStoreOptions& options = store->options;
  const uint64_t element = ElementSize(geometry.dtype);
  const uint64_t chunk = std::max<uint64_t>(element, options.chunk_size / element * element);
  ChunkKey key{std::string(checkpoint_id), std::string(fqn), geometry.offsets, 0};
  const auto* bytes = static_cast<const uint8_t*>(data.base);  // when contiguous
  uint64_t offset = 0;
  size_t index = 0;
  uint64_t base_offset = 0;  // where base chunk `index` starts
  do {                       // at least one chunk, so that an empty shard is still recorded
    const uint64_t n = std::min<uint64_t>(chunk, size - offset);
    key.byte_offset = offset;
    // The base's chunk at this byte range, if the base has one of this length.
    const SavedChunk* same_range = nullptr;
    if (base != nullptr && index < base->size()) {
      const SavedChunk& b = (*base)[index];
      if (base_offset == offset && b.length == n) same_range = &b;
      base_offset += b.length;
      ++index;
    }
    auto unchanged = [&](const Hash128& hash) {
      return same_range != nullptr && hash.lo == same_range->hash_low &&
             hash.hi == same_range->hash_high;
    };
    auto keep_base = [&](const Hash128& hash) {
      written.push_back(
          WrittenChunk{key, n, hash, false, same_range->source, same_range->source_rank});
      offset += n;
    };
    Hash128 hash;
    std::string_view value;
    if (data.layout == nullptr) {
      // Contiguous: an unchanged chunk is hashed in place and never copied.
      if (same_range != nullptr && unchanged(hash = HashBytes(bytes + offset, n))) {
        keep_base(hash);
        continue;
      }
    } else {
      // Strided: gathered into the value, then hashed there.
      value = encoder.Encode(
          geometry, offset, n,
          [&](uint8_t* dst) { GatherBytes(data.base, *data.layout, offset, n, dst); }, &hash);
      if (unchanged(hash)) {
        keep_base(hash);
        continue;
      }
    }
    StatusOr<std::string> encoded_key = EncodeChunkKey(key);
    if (!encoded_key.ok()) return encoded_key.status();
    if (marked_id != checkpoint_id) {  // the marker is durable before the first chunk
      DCPKV_RETURN_IF_ERROR(store->MarkChunkData(checkpoint_id));
      marked_id = std::string(checkpoint_id);
    }
    if (data.layout == nullptr) value = encoder.Encode(geometry, offset, bytes + offset, n, &hash);
    DCPKV_RETURN_IF_ERROR(Add(*encoded_key, value, n));
    written.push_back(WrittenChunk{key, n, hash});
    total_payload += n;
    offset += n;
  } while (offset < size);
  return Status::Ok();
}

Status ChunkBatchWriter::Finish() {
  DCPKV_RETURN_IF_ERROR(impl_->store->CheckWritable("writing chunks"));
  return impl_->Flush();
}

}  // namespace dcpkv

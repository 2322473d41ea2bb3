// ChunkBatchWriter: splits shards into chunks and writes them in large WriteBatches with the WAL
// off. Durability comes from ChunkStore::Flush(), which the commit protocol waits on.
#include <rocksdb/write_batch.h>

#include "chunk_store_internal.h"
#include "dcpkv/core/names.h"
#include "dcpkv/store/crash_points.h"
#include "rocksdb_status.h"

namespace dcpkv {

struct ChunkBatchWriter::Impl {
  ChunkStore::Impl* store = nullptr;
  ChunkEncoder encoder;
  rocksdb::WriteBatch batch;
  uint64_t batch_payload = 0;
  uint64_t total_payload = 0;
  std::vector<WrittenChunk> written;
  std::string key_buffer;

  Status WriteBatch() {
    if (batch.Count() == 0) return Status::Ok();
    rocksdb::WriteOptions wo;
    wo.disableWAL = true;
    Status s = FromRocksDB(store->db->Write(wo, &batch), "writing chunks to " + store->dir);
    batch.Clear();
    batch_payload = 0;
    if (s.ok()) MaybeCrashAt("save.after_chunk_batch");
    return s;
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
  DCPKV_RETURN_IF_ERROR(impl_->store->CheckWritable("writing chunks"));
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
  if (size > 0 && data == nullptr) {
    return InvalidArgumentError("tensor \"" + std::string(fqn) + "\": data is null");
  }
  const ChunkStoreOptions& options = impl_->store->options;
  const uint64_t element = ElementSize(geometry.dtype);
  const uint64_t chunk = std::max<uint64_t>(element, options.chunk_size / element * element);
  ChunkKey key{std::string(checkpoint_id), std::string(fqn), geometry.offsets, 0};
  const auto* bytes = static_cast<const uint8_t*>(data);
  uint64_t offset = 0;
  size_t index = 0;
  uint64_t base_offset = 0;  // where base chunk `index` starts
  do {                       // at least one chunk, so that an empty shard is still recorded
    const uint64_t n = std::min<uint64_t>(chunk, size - offset);
    key.byte_offset = offset;
    if (base != nullptr && index < base->size()) {
      const SavedChunk& b = (*base)[index];
      if (base_offset == offset && b.length == n) {
        const Hash128 hash = HashBytes(bytes + offset, n);
        if (hash.lo == b.hash_low && hash.hi == b.hash_high) {
          impl_->written.push_back(WrittenChunk{key, n, hash, false, b.source, b.source_rank});
          base_offset += b.length;
          ++index;
          offset += n;
          continue;
        }
      }
      base_offset += b.length;
      ++index;
    }
    StatusOr<std::string> encoded_key = EncodeChunkKey(key);
    if (!encoded_key.ok()) return encoded_key.status();
    Hash128 hash;
    std::string_view value = impl_->encoder.Encode(geometry, offset, bytes + offset, n, &hash);
    DCPKV_RETURN_IF_ERROR(FromRocksDB(impl_->batch.Put(impl_->store->chunks_cf, *encoded_key,
                                                       rocksdb::Slice(value.data(), value.size())),
                                      "adding chunk " + DescribeChunkKey(key)));
    impl_->written.push_back(WrittenChunk{key, n, hash});
    impl_->batch_payload += n;
    impl_->total_payload += n;
    offset += n;
    if (impl_->batch_payload >= options.write_batch_bytes) {
      DCPKV_RETURN_IF_ERROR(impl_->WriteBatch());
    }
  } while (offset < size);
  return Status::Ok();
}

Status ChunkBatchWriter::Finish() {
  DCPKV_RETURN_IF_ERROR(impl_->store->CheckWritable("writing chunks"));
  return impl_->WriteBatch();
}

}  // namespace dcpkv

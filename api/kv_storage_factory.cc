// The exported constructors of the store's StorageWriter and StorageReader (kv_storage.h).
#include "dcpkv/kv_storage_factory.h"

#include "dcpkv/api/kv_storage.h"
#include "dcpkv/store/gc.h"

namespace dcpkv {
namespace {

KvStorageOptions OptionsOf(const KvStorageConfig& config) {
  KvStorageOptions o;
  o.root = config.root;
  if (config.chunk_size != 0) o.store_options.chunk_size = config.chunk_size;
  o.write_threads = config.write_threads;
  o.read_threads = config.read_threads;
  switch (config.read_io) {
    case KvStorageConfig::ReadIo::kAuto: o.store_options.table_read_io = TableReadIo::kAuto; break;
    case KvStorageConfig::ReadIo::kBuffered:
      o.store_options.table_read_io = TableReadIo::kBuffered;
      break;
    case KvStorageConfig::ReadIo::kDirect:
      o.store_options.table_read_io = TableReadIo::kDirect;
      break;
  }
  return o;
}

}  // namespace

std::unique_ptr<StorageWriter> CreateKvStorageWriter(const KvStorageConfig& config) {
  return std::make_unique<KvStorageWriter>(OptionsOf(config));
}

std::unique_ptr<StorageReader> CreateKvStorageReader(const KvStorageConfig& config) {
  return std::make_unique<KvStorageReader>(OptionsOf(config));
}

void FillCommitMetadata(StorageWriter& writer, Metadata* metadata) {
  metadata->stored_bytes = 0;
  for (const auto& [fqn, entry] : metadata->entries) {
    for (const SavedShard& shard : entry.shards) {
      if (shard.chunk_list.empty()) metadata->stored_bytes += shard.bytes;
      for (const SavedChunk& c : shard.chunk_list) {
        if (c.source.empty()) metadata->stored_bytes += c.length;
      }
    }
  }
  writer.AmendMetadata(metadata);
}

Status ReclaimKvRankGarbage(StorageWriter& writer) {
  auto* kv = dynamic_cast<KvStorageWriter*>(&writer);
  if (kv == nullptr || kv->store() == nullptr) {
    return FailedPreconditionError(
        "ReclaimKvRankGarbage needs a writer of CreateKvStorageWriter that has been set up");
  }
  return CollectRankGarbage(kv->store(), kv->rank(), kv->options_root());
}

}  // namespace dcpkv

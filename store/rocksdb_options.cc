// RocksDB tuning of a chunk store. Chunk values are large and incompressible (tensor bytes), are
// written once and read rarely, and must reach disk at full sequential speed; manifests are small
// and must be durable at once.
#include <rocksdb/cache.h>
#include <rocksdb/table.h>

#include "block_buffer_pool.h"
#include "chunk_store_internal.h"
#include "table_read_io.h"

namespace dcpkv {

RocksDBConfig MakeRocksDBConfig(const ChunkStoreOptions& options) {
  RocksDBConfig config;
  rocksdb::DBOptions& db = config.db;
  db.create_if_missing = options.mode == OpenMode::kReadWrite && options.create_if_missing;
  db.create_missing_column_families = options.mode == OpenMode::kReadWrite;
  db.max_background_jobs = 4;
  // Table files held open (RocksDB's table cache): a bound, so that a store's descriptors do not
  // grow with its files. Read-only opens need a finite limit anyway: with -1 RocksDB 7.8 may open
  // a "compacted" read-only DB whose blob reads fail (facebook/rocksdb#12503).
  db.max_open_files = options.max_open_files;
  db.info_log_level = rocksdb::InfoLogLevel::WARN_LEVEL;
  db.keep_log_file_num = 4;
  db.bytes_per_sync = uint64_t{8} << 20;   // smooth write-back of large flushes
  db.avoid_flush_during_shutdown = false;  // unflushed (WAL-less) chunks are flushed on close
  // No fallocate: RocksDB preallocates the WAL, the MANIFEST (4 MiB) and table files ahead of
  // what they hold; on a 64 MiB ext4 file system the first database made took 50 MiB of it for a
  // 41-byte WAL, and the write that then failed aborted the process inside Debian's librocksdb
  // (built with assertions: WritableFileWriter's `sync_without_flush_called_`).
  db.allow_fallocate = false;
  db.manifest_preallocation_size = 0;
  if (options.env != nullptr) {
    db.env = options.env;
  } else if (options.mode != OpenMode::kReadWrite &&
             options.table_read_io != TableReadIo::kBuffered) {
    db.env = TableReadIoEnv(options.table_read_io);
  }
  // Table files are read in long runs of megabyte blocks (loads, verify, compactions), not by
  // point lookups: the kernel's readahead, which RocksDB's default POSIX_FADV_RANDOM turns off,
  // keeps the disk busy ahead of a reader. Measured here on loads right after a save: 1 GiB in
  // 0.6 s read on with readahead against 1.1 s in random 4 MiB reads from 8 threads.
  db.advise_random_on_open = false;

  rocksdb::BlockBasedTableOptions table;
  // A data block closes once it holds this much: every chunk value (1 KiB at the least) of an
  // ingested table file gets a block of its own, with its own XXH3 checksum, so that damage is
  // found, and costs, one chunk at a time.
  table.block_size = 1 << 10;
  table.checksum = rocksdb::kXXH3;
  table.cache_index_and_filter_blocks = true;
  // No implicit readahead (RocksDB's own, after a few sequential reads of one file): a chunk
  // block is megabytes, read whole by one read; reading it through a prefetch buffer only adds a
  // copy.
  table.max_auto_readahead_size = 0;
  // RocksDB allocates every block it reads (cached or not) with the block cache's allocator:
  // large ones are reused (block_buffer_pool.h).
  rocksdb::LRUCacheOptions cache;
  cache.capacity = size_t{8} << 20;  // RocksDB's default
  cache.memory_allocator = BlockBufferPool::Shared();
  table.block_cache = rocksdb::NewLRUCache(cache);

  rocksdb::ColumnFamilyOptions chunks;
  chunks.write_buffer_size = options.write_buffer_size;
  // Two memtables: one filling while the other flushes. More would only add memory (up to
  // 64 MiB each) to a save without making the flush to disk any faster.
  chunks.max_write_buffer_number = 2;
  chunks.min_write_buffer_number_to_merge = 1;
  chunks.compression = rocksdb::kNoCompression;
  // The first layout's writers (kWriteBatch) put large values in blob files; ingested table
  // files hold them inline (and compactions of them keep them so).
  chunks.enable_blob_files = options.write_path == ChunkWritePath::kWriteBatch;
  chunks.min_blob_size = options.min_blob_size;
  chunks.blob_file_size = uint64_t{256} << 20;
  chunks.blob_compression_type = rocksdb::kNoCompression;
  chunks.enable_blob_garbage_collection = true;
  chunks.level_compaction_dynamic_level_bytes = true;
  chunks.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));

  rocksdb::ColumnFamilyOptions manifests;
  manifests.compression = rocksdb::kNoCompression;
  manifests.write_buffer_size = uint64_t{8} << 20;
  manifests.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));

  rocksdb::ColumnFamilyOptions defaults;
  defaults.write_buffer_size = uint64_t{1} << 20;

  config.column_families = {
      {rocksdb::kDefaultColumnFamilyName, defaults},
      {kChunksColumnFamily, chunks},
      {kManifestsColumnFamily, manifests},
  };
  return config;
}

}  // namespace dcpkv

// The RocksDB options a chunk store opens its database with, for the store's own opens and for
// tools and tests that open a rank database directly (with the same column families).
#ifndef DCPKV_STORE_ROCKSDB_CONFIG_H_
#define DCPKV_STORE_ROCKSDB_CONFIG_H_

#include <vector>

#include <rocksdb/db.h>
#include <rocksdb/options.h>

#include "dcpkv/store/chunk_store.h"

namespace dcpkv {

// RocksDB options for every column family of a chunk store, derived from ChunkStoreOptions.
struct RocksDBConfig {
  rocksdb::DBOptions db;
  std::vector<rocksdb::ColumnFamilyDescriptor> column_families;  // default, chunks, manifests
};
RocksDBConfig MakeRocksDBConfig(const ChunkStoreOptions& options);

}  // namespace dcpkv

#endif  // DCPKV_STORE_ROCKSDB_CONFIG_H_

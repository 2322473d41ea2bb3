// Direct RocksDB access to a chunk store's database, bypassing ChunkStore, for tests that damage
// a store or do what a concurrent writer would (delete a chunk, overwrite a value, compact).
// The database must not be open read-write elsewhere (read-only opens are fine).
#ifndef DCPKV_TESTS_UTIL_RAW_DB_H_
#define DCPKV_TESTS_UTIL_RAW_DB_H_

#include <gtest/gtest.h>
#include <rocksdb/db.h>

#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "dcpkv/store/rocksdb_config.h"
#include "dcpkv/store/store_format.h"

namespace dcpkv::testing {

// Column families, in the order MakeRocksDBConfig lists them.
inline constexpr int kRawDefaultCf = 0;
inline constexpr int kRawChunksCf = 1;
inline constexpr int kRawManifestsCf = 2;

class RawDB {
 public:
  explicit RawDB(const std::string& dir) {
    RocksDBConfig config = MakeRocksDBConfig(ChunkStoreOptions());
    rocksdb::DB* db = nullptr;
    rocksdb::Status s = rocksdb::DB::Open(config.db, dir, config.column_families, &handles_, &db);
    EXPECT_TRUE(s.ok()) << dir << ": " << s.ToString();
    db_.reset(db);
  }
  ~RawDB() {
    if (db_ == nullptr) return;
    for (auto* h : handles_) db_->DestroyColumnFamilyHandle(h).PermitUncheckedError();
  }
  RawDB(const RawDB&) = delete;
  RawDB& operator=(const RawDB&) = delete;

  bool ok() const { return db_ != nullptr; }

  std::string Get(int cf, const std::string& key) {
    std::string v;
    rocksdb::Status s = db_->Get({}, handles_[cf], key, &v);
    EXPECT_TRUE(s.ok()) << s.ToString();
    return v;
  }
  void Put(int cf, const std::string& key, const std::string& value) {
    rocksdb::Status s = db_->Put({}, handles_[cf], key, value);
    EXPECT_TRUE(s.ok()) << s.ToString();
  }
  void Delete(int cf, const std::string& key) {
    rocksdb::Status s = db_->Delete({}, handles_[cf], key);
    EXPECT_TRUE(s.ok()) << s.ToString();
  }
  // The chunks column family.
  std::string Get(const std::string& key) { return Get(kRawChunksCf, key); }
  void Put(const std::string& key, const std::string& value) { Put(kRawChunksCf, key, value); }
  void Delete(const std::string& key) { Delete(kRawChunksCf, key); }

  // What a live writer's compaction does, all at once: rewrites every SST and blob file of the
  // column family and deletes the old ones.
  void CompactEverything(int cf = kRawChunksCf) {
    rocksdb::CompactRangeOptions o;
    o.bottommost_level_compaction = rocksdb::BottommostLevelCompaction::kForce;
    o.blob_garbage_collection_policy = rocksdb::BlobGarbageCollectionPolicy::kForce;
    o.blob_garbage_collection_age_cutoff = 1.0;
    rocksdb::Status s = db_->CompactRange(o, handles_[cf], nullptr, nullptr);
    EXPECT_TRUE(s.ok()) << s.ToString();
  }

  // Table files of a column family at one level of the LSM tree.
  int FilesAtLevel(int cf, int level) {
    std::string v;
    EXPECT_TRUE(
        db_->GetProperty(handles_[cf], "rocksdb.num-files-at-level" + std::to_string(level), &v));
    return std::atoi(v.c_str());
  }

 private:
  std::vector<rocksdb::ColumnFamilyHandle*> handles_;
  std::unique_ptr<rocksdb::DB> db_;
};

// Makes, at `dir`, another program's RocksDB database (its default column family only, one
// key): what dcpkv must refuse to open as a rank database.
inline void MakeForeignRocksDB(const std::string& dir) {
  rocksdb::Options o;
  o.create_if_missing = true;
  rocksdb::DB* db = nullptr;
  ASSERT_TRUE(rocksdb::DB::Open(o, dir, &db).ok()) << dir;
  std::unique_ptr<rocksdb::DB> owned(db);
  ASSERT_TRUE(db->Put(rocksdb::WriteOptions(), "their key", "their value").ok());
  ASSERT_TRUE(db->Close().ok());
}

}  // namespace dcpkv::testing

#endif  // DCPKV_TESTS_UTIL_RAW_DB_H_

#include "dcpkv/store/chunk_store.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>

#include <rocksdb/db.h>

#include "dcpkv/store/store_layout.h"
#include "tests/util/raw_db.h"
#include "tests/util/store_files.h"
#include "tests/util/temp_dir.h"
#include "tests/util/test_data.h"

namespace dcpkv {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

// The write path of the test being run (ChunkStoreTest runs every test on both).
ChunkWritePath current_write_path = ChunkWritePath::kWriteBatch;

std::unique_ptr<ChunkStore> OpenStore(const std::string& dir, ChunkStoreOptions options = {}) {
  if (options.mode == OpenMode::kReadWrite) options.write_path = current_write_path;
  std::unique_ptr<ChunkStore> store;
  Status s = ChunkStore::Open(dir, options, &store);
  EXPECT_TRUE(s.ok()) << s;
  return store;
}

std::vector<uint8_t> ReadAll(ChunkStore* store, const std::string& ckpt, const std::string& fqn,
                             const ShardGeometry& g) {
  std::vector<uint8_t> out(*g.ByteSize());
  Status s = store->ReadShard(ckpt, fqn, g, out.data(), out.size());
  EXPECT_TRUE(s.ok()) << s;
  return out;
}

class ChunkStoreTest : public ::testing::TestWithParam<ChunkWritePath> {
 protected:
  void SetUp() override { current_write_path = GetParam(); }
  void TearDown() override { current_write_path = ChunkWritePath::kWriteBatch; }

  testing::TempDir tmp_;
  std::string dir_ = RankDirectory(tmp_.path(), 0);
};

TEST_P(ChunkStoreTest, RoundTripEveryDType) {
  ChunkStoreOptions options;
  options.chunk_size = 1024;  // several chunks per tensor
  auto store = OpenStore(dir_, options);
  std::vector<std::vector<uint8_t>> data;
  for (DType d : kAllDTypes) {
    ShardGeometry g{d, {0, 64}, {33, 64}};
    data.push_back(testing::RandomBytes(*g.ByteSize(), static_cast<uint64_t>(d)));
    ASSERT_TRUE(store
                    ->PutShard("ck", std::string("t.") + std::string(DTypeName(d)), g,
                               data.back().data(), data.back().size())
                    .ok());
  }
  ASSERT_TRUE(store->Flush().ok());
  size_t i = 0;
  for (DType d : kAllDTypes) {
    ShardGeometry g{d, {0, 64}, {33, 64}};
    EXPECT_EQ(ReadAll(store.get(), "ck", "t." + std::string(DTypeName(d)), g), data[i++])
        << DTypeName(d);
    StatusOr<ChunkHandle> h = store->GetChunk({"ck", "t." + std::string(DTypeName(d)), {0, 64}, 0});
    ASSERT_TRUE(h.ok()) << h.status();
    EXPECT_EQ(h->info().geometry.dtype, d);
    EXPECT_LE(h->payload_size(), 1024u);
    EXPECT_EQ(h->payload_size() % ElementSize(d), 0u) << "chunk not element-aligned";
  }
}

TEST_P(ChunkStoreTest, LargeShardIsSplitAndReassembledBitExactly) {
  // 256 MiB float32 shard [16384, 4096] at global offset [16384, 0], 4 MiB chunks.
  ShardGeometry g{DType::kFloat32, {16384, 0}, {16384, 4096}};
  const size_t bytes = *g.ByteSize();
  ASSERT_EQ(bytes, size_t{256} << 20);
  std::vector<uint8_t> data = testing::RandomBytes(bytes, 7);
  {
    auto store = OpenStore(dir_);
    ChunkBatchWriter writer(store.get());
    ASSERT_TRUE(writer.AddShard("big", "model.embed", g, data.data(), data.size()).ok());
    ASSERT_TRUE(writer.Finish().ok());
    ASSERT_EQ(writer.written().size(), 64u);
    EXPECT_EQ(writer.payload_bytes(), bytes);
    EXPECT_EQ(writer.written()[1].key.byte_offset, uint64_t{4} << 20);
    EXPECT_EQ(writer.written()[5].payload_hash, HashBytes(data.data() + (20 << 20), 4 << 20));
    ASSERT_TRUE(store->Flush().ok());
    ASSERT_TRUE(store->Close().ok());
  }
  auto store = OpenStore(dir_, {.mode = OpenMode::kReadOnly});
  std::vector<uint8_t> back(bytes, 0);
  Status s = store->ReadShard("big", "model.embed", g, back.data(), back.size());
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_TRUE(back == data) << "reassembled shard differs";
  auto it = store->NewChunkIterator("big");
  ASSERT_TRUE(it.ok());
  size_t n = 0;
  uint64_t expected_offset = 0;
  for (; (*it)->Valid(); (*it)->Next(), ++n) {
    EXPECT_EQ((*it)->key().byte_offset, expected_offset);
    expected_offset += (*it)->chunk().payload_size;
  }
  EXPECT_TRUE((*it)->status().ok()) << (*it)->status();
  EXPECT_EQ(n, 64u);
}

TEST_P(ChunkStoreTest, ReopenAfterCloseKeepsEverything) {
  std::vector<uint8_t> a = testing::RandomBytes(100000, 1);
  ShardGeometry g{DType::kUInt8, {0}, {a.size()}};
  {
    auto store = OpenStore(dir_);
    ASSERT_TRUE(store->PutShard("c1", "w", g, a.data(), a.size()).ok());
    ASSERT_TRUE(store->PutManifest({"c1", 17, "manifest-bytes"}).ok());
    // No explicit Flush: Close must make the chunks durable.
    ASSERT_TRUE(store->Close().ok());
    EXPECT_EQ(store->PutShard("c1", "w", g, a.data(), a.size()).code(),
              StatusCode::kFailedPrecondition);
    EXPECT_TRUE(store->Close().ok());  // idempotent
  }
  for (int round = 0; round < 2; ++round) {
    auto store = OpenStore(dir_);
    EXPECT_EQ(ReadAll(store.get(), "c1", "w", g), a);
    StatusOr<ManifestRecord> m = store->GetManifest("c1");
    ASSERT_TRUE(m.ok()) << m.status();
    EXPECT_EQ(m->payload, "manifest-bytes");
    EXPECT_EQ(m->committed_unix_micros, 17);
  }
}

TEST_P(ChunkStoreTest, ListsAndDeletesCheckpointsWithoutTouchingNeighbours) {
  auto store = OpenStore(dir_);
  std::vector<uint8_t> d = testing::RandomBytes(5000, 2);
  ShardGeometry g{DType::kInt8, {0}, {d.size()}};
  for (const char* id : {"ab", "a", "a.1", "b"}) {
    ASSERT_TRUE(store->PutShard(id, "w", g, d.data(), d.size()).ok());
    ASSERT_TRUE(store->PutShard(id, "w2", g, d.data(), d.size()).ok());
  }
  ASSERT_TRUE(store->PutManifest({"b", 1, "m"}).ok());
  ASSERT_TRUE(store->PutManifest({"a", 2, "m"}).ok());
  EXPECT_THAT(*store->ListChunkCheckpointIds(), ElementsAre("a", "a.1", "ab", "b"));
  EXPECT_THAT(*store->ListManifestIds(), ElementsAre("a", "b"));

  ASSERT_TRUE(store->DeleteCheckpointChunks("a").ok());
  EXPECT_THAT(*store->ListChunkCheckpointIds(), ElementsAre("a.1", "ab", "b"));
  EXPECT_EQ(ReadAll(store.get(), "ab", "w2", g), d);
  EXPECT_EQ(ReadAll(store.get(), "a.1", "w", g), d);
  std::vector<uint8_t> buf(d.size());
  EXPECT_EQ(store->ReadShard("a", "w", g, buf.data(), buf.size()).code(), StatusCode::kNotFound);
  EXPECT_TRUE(store->GetManifest("a").ok()) << "deleting chunks must leave the manifest";

  ASSERT_TRUE(store->DeleteManifest("a").ok());
  EXPECT_EQ(store->GetManifest("a").status().code(), StatusCode::kNotFound);
  EXPECT_THAT(*store->ListManifestIds(), ElementsAre("b"));
}

// A checkpoint is listed by its data marker while any of its chunks is left; the marker goes with
// the last of them.
TEST_P(ChunkStoreTest, DataMarkerListsACheckpointUntilItsLastChunkIsGone) {
  auto store = OpenStore(dir_);
  ShardGeometry g{DType::kUInt8, {0}, {3000}};
  std::vector<uint8_t> data = testing::RandomBytes(3000, 9);
  ASSERT_TRUE(store->PutShard("a", "w", g, data.data(), data.size()).ok());
  ASSERT_TRUE(store->PutShard("b", "w", g, data.data(), data.size()).ok());
  StatusOr<bool> dropped = store->DeleteDataMarkerIfNoChunks("a");
  ASSERT_TRUE(dropped.ok()) << dropped.status();
  EXPECT_FALSE(*dropped) << "a still has chunks";
  const std::string prefix = ChunkKeyCheckpointPrefix("a");
  ASSERT_TRUE(store->DeleteChunkRanges({{prefix, PrefixUpperBound(prefix)}}).ok());
  StatusOr<std::vector<std::string>> ids = store->ListChunkCheckpointIds();
  ASSERT_TRUE(ids.ok()) << ids.status();
  EXPECT_THAT(*ids, ElementsAre("a", "b")) << "a's marker outlives a partial deletion";
  dropped = store->DeleteDataMarkerIfNoChunks("a");
  ASSERT_TRUE(dropped.ok()) << dropped.status();
  EXPECT_TRUE(*dropped);
  ASSERT_TRUE(store->DeleteCheckpointChunks("b").ok());
  ids = store->ListChunkCheckpointIds();
  ASSERT_TRUE(ids.ok()) << ids.status();
  EXPECT_THAT(*ids, ElementsAre());
  // A new save of an id whose marker was dropped by this open writes it again.
  ASSERT_TRUE(store->PutShard("a", "w", g, data.data(), data.size()).ok());
  ASSERT_TRUE(store->Close().ok());
  store = OpenStore(dir_, {.mode = OpenMode::kReadOnly});
  ids = store->ListChunkCheckpointIds();
  ASSERT_TRUE(ids.ok()) << ids.status();
  EXPECT_THAT(*ids, ElementsAre("a"));
}

TEST_P(ChunkStoreTest, IteratesShardsInKeyOrder) {
  auto store = OpenStore(dir_, {.chunk_size = 1024});
  std::vector<uint8_t> d = testing::RandomBytes(4096, 3);
  // Two shards of one tensor (column split), plus tensors whose names share prefixes.
  ASSERT_TRUE(
      store->PutShard("c", "w", {DType::kFloat32, {0, 512}, {2, 512}}, d.data(), 4096).ok());
  ASSERT_TRUE(store->PutShard("c", "w", {DType::kFloat32, {0, 0}, {2, 512}}, d.data(), 4096).ok());
  ASSERT_TRUE(store->PutShard("c", "w2", {DType::kUInt8, {0}, {10}}, d.data(), 10).ok());
  ASSERT_TRUE(store->PutShard("c", "v", {DType::kBytes, {0}, {3}}, "xyz", 3).ok());
  auto it = std::move(store->NewChunkIterator("c")).value();
  std::vector<std::string> seen;
  for (; it->Valid(); it->Next()) {
    const ChunkKey& k = it->key();
    seen.push_back(k.fqn + "@" + std::to_string(k.shard_offsets.back()) + "+" +
                   std::to_string(k.byte_offset));
  }
  EXPECT_TRUE(it->status().ok());
  EXPECT_THAT(seen, ElementsAre("v@0+0", "w@0+0", "w@0+1024", "w@0+2048", "w@0+3072", "w@512+0",
                                "w@512+1024", "w@512+2048", "w@512+3072", "w2@0+0"));
}

TEST_P(ChunkStoreTest, EmptyShardIsStoredAndRead) {
  auto store = OpenStore(dir_);
  ShardGeometry g{DType::kFloat16, {0, 0}, {0, 16}};
  ASSERT_TRUE(store->PutShard("c", "empty", g, nullptr, 0).ok());
  EXPECT_TRUE(store->ReadShard("c", "empty", g, nullptr, 0).ok());
}

TEST_P(ChunkStoreTest, RejectsBadInputWithoutWriting) {
  auto store = OpenStore(dir_);
  std::vector<uint8_t> d(64);
  ShardGeometry g{DType::kFloat32, {0}, {16}};
  Status s = store->PutShard("bad/id", "w", g, d.data(), d.size());
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("character '/'"));
  EXPECT_EQ(store->PutShard("latest", "w", g, d.data(), d.size()).code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(store->PutShard("c", "has space", g, d.data(), d.size()).code(),
            StatusCode::kInvalidArgument);
  s = store->PutShard("c", "w", g, d.data(), 60);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("needs 64 bytes but 60 were given"));
  EXPECT_EQ(store->PutShard("c", "w", {DType::kFloat32, {0}, {16, 1}}, d.data(), 64).code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(store->PutManifest({"no good", 0, ""}).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(store->GetChunk({"c", "w", {0}, 0}).status().code(), StatusCode::kNotFound);
  EXPECT_TRUE(store->ListChunkCheckpointIds()->empty());
}

TEST_P(ChunkStoreTest, OptionsAreChecked) {
  std::unique_ptr<ChunkStore> store;
  EXPECT_EQ(ChunkStore::Open(dir_, {.chunk_size = 10}, &store).code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(ChunkStore::Open(dir_, {.mode = OpenMode::kReadOnly}, &store).code(),
            StatusCode::kNotFound);
  EXPECT_EQ(ChunkStore::Open(dir_, {.mode = OpenMode::kSecondary}, &store).code(),
            StatusCode::kNotFound);
  EXPECT_EQ(ChunkStore::Open(dir_, {.create_if_missing = false}, &store).code(),
            StatusCode::kNotFound);
}

TEST_P(ChunkStoreTest, ReadOnlyStoreRefusesWrites) {
  { OpenStore(dir_)->PutShard("c", "w", {DType::kUInt8, {0}, {1}}, "x", 1).IgnoreError(); }
  auto store = OpenStore(dir_, {.mode = OpenMode::kReadOnly});
  Status s = store->PutShard("c", "w", {DType::kUInt8, {0}, {1}}, "y", 1);
  EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition);
  EXPECT_THAT(s.message(), HasSubstr("read-only"));
  EXPECT_EQ(store->PutManifest({"c", 0, ""}).code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(store->DeleteCheckpointChunks("c").code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(store->Flush().code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(store->TryCatchUpWithPrimary().code(), StatusCode::kFailedPrecondition);
}

TEST_P(ChunkStoreTest, StoreLayoutListsRanks) {
  EXPECT_EQ(RankDirectory("/r", 3), "/r/rank-00003");
  EXPECT_EQ(RankDirectory("/r", 123456), "/r/rank-123456");
  for (int r : {2, 0, 11}) OpenStore(RankDirectory(tmp_.path(), r));
  std::filesystem::create_directories(tmp_.Sub("rank-x1234"));
  std::filesystem::create_directories(tmp_.Sub("other"));
  EXPECT_THAT(*ListRankDirectories(tmp_.path()), ElementsAre(0, 2, 11));
  EXPECT_EQ(ListRankDirectories(tmp_.Sub("missing")).status().code(), StatusCode::kNotFound);
}

INSTANTIATE_TEST_SUITE_P(WritePaths, ChunkStoreTest,
                         ::testing::Values(ChunkWritePath::kWriteBatch,
                                           ChunkWritePath::kIngestTableFiles),
                         [](const ::testing::TestParamInfo<ChunkWritePath>& info) {
                           return info.param == ChunkWritePath::kWriteBatch ? "WriteBatch"
                                                                            : "IngestTableFiles";
                         });

// The table files of the chunks directory, by name.
std::vector<std::string> TableFiles(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    if (e.path().extension() == ".sst") out.push_back(e.path().filename().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

// A database that lost its CURRENT file is DATA_LOSS for every open: a read-only open does not
// take it for a store not made yet, and a read-write one does not make a new database over it
// (orphaning the checkpoints in its files).
TEST(ChunkStoreOpenTest, ADatabaseThatLostItsCurrentFileIsDataLossInEveryMode) {
  testing::TempDir tmp;
  const std::string dir = RankDirectory(tmp.path(), 0);
  ShardGeometry g{DType::kFloat32, {0}, {1024}};
  std::vector<uint8_t> data = testing::RandomBytes(*g.ByteSize(), 1);
  {
    std::unique_ptr<ChunkStore> store = OpenStore(dir);
    ASSERT_TRUE(store->PutShard("ck", "w", g, data.data(), data.size()).ok());
    ASSERT_TRUE(store->Close().ok());
  }
  std::filesystem::remove(dir + "/CURRENT");
  for (OpenMode mode : {OpenMode::kReadOnly, OpenMode::kSecondary, OpenMode::kReadWrite}) {
    std::unique_ptr<ChunkStore> store;
    Status s = ChunkStore::Open(dir, {.mode = mode}, &store);
    EXPECT_EQ(s.code(), StatusCode::kDataLoss) << s;
    EXPECT_THAT(s.message(), HasSubstr("no CURRENT file")) << s;
    EXPECT_THAT(s.message(), HasSubstr(dir)) << s;
  }
  EXPECT_FALSE(std::filesystem::exists(dir + "/CURRENT")) << "nothing was made over it";
  // An empty directory is still a store not made yet.
  const std::string empty = RankDirectory(tmp.path(), 1);
  std::filesystem::create_directories(empty);
  std::unique_ptr<ChunkStore> store;
  EXPECT_EQ(ChunkStore::Open(empty, {.mode = OpenMode::kReadOnly}, &store).code(),
            StatusCode::kNotFound);
  EXPECT_TRUE(ChunkStore::Open(empty, {}, &store).ok());
}

// The MANIFEST its CURRENT file names, whole.
std::string CurrentManifest(const std::string& dir) {
  std::ifstream current(dir + "/CURRENT");
  std::string name;
  std::getline(current, name);
  return dir + "/" + name;
}

// A rank database with three checkpoints, each with a shard and a manifest, closed.
void MakeThreeCheckpoints(const std::string& dir, const ShardGeometry& g,
                          std::vector<std::vector<uint8_t>>* data) {
  std::unique_ptr<ChunkStore> store = OpenStore(dir);
  for (int i = 0; i < 3; ++i) {
    const std::string id = "ck" + std::to_string(i);
    data->push_back(testing::RandomBytes(*g.ByteSize(), 10 + i));
    ASSERT_TRUE(store->PutShard(id, "w", g, data->back().data(), data->back().size()).ok());
    ASSERT_TRUE(store->Flush().ok());
    ASSERT_TRUE(store->PutManifest({id, 17 + i, "manifest " + id}).ok());
  }
  ASSERT_TRUE(store->Close().ok());
}

void ExpectThreeCheckpoints(ChunkStore* store, const ShardGeometry& g,
                            const std::vector<std::vector<uint8_t>>& data) {
  for (int i = 0; i < 3; ++i) {
    const std::string id = "ck" + std::to_string(i);
    EXPECT_EQ(ReadAll(store, id, "w", g), data[i]) << id;
    StatusOr<ManifestRecord> m = store->GetManifest(id);
    ASSERT_TRUE(m.ok()) << m.status();
    EXPECT_EQ(m->payload, "manifest " + id);
  }
}

// A rank database with three checkpoints, and its current MANIFEST, to damage.
class ChunkStoreManifestTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_NO_FATAL_FAILURE(MakeThreeCheckpoints(dir, g, &data));
    manifest = CurrentManifest(dir);
  }
  testing::TempDir tmp;
  const std::string dir = RankDirectory(tmp.path(), 0);
  const ShardGeometry g{DType::kFloat32, {0}, {4096}};
  std::vector<std::vector<uint8_t>> data;
  std::string manifest;
};

// Found by the power cuts (PowerLossTest, world of 2, a cut with unsynced tails garbled at
// save.after_manifest): RocksDB had appended a record to the MANIFEST (292 bytes) and not yet
// synced it; with those bytes garbled the open failed, "Corruption: checksum mismatch in file
// MANIFEST-000034", and rank 0's database with every committed checkpoint could not be opened.
// A torn tail is now read past: the database opens as of its last synced record, read-only
// without changing a byte, read-write with a new MANIFEST.
TEST_F(ChunkStoreManifestTest, AMANIFESTWhoseLastAppendAPowerCutGarbledOpensAsOfItsLastSync) {
  // The torn append: a record header whose length fits in what follows, and other bytes.
  std::string torn(7 + 285, '\0');
  std::vector<uint8_t> noise = testing::RandomBytes(torn.size(), 99);
  std::memcpy(torn.data(), noise.data(), noise.size());
  torn[4] = static_cast<char>(285 & 0xFF);
  torn[5] = static_cast<char>(285 >> 8);
  torn[6] = 1;  // a whole record
  std::ofstream(manifest, std::ios::app | std::ios::binary) << torn;
  const auto size = std::filesystem::file_size(manifest);
  {
    rocksdb::DB* raw = nullptr;
    rocksdb::Options o;
    std::vector<rocksdb::ColumnFamilyDescriptor> cfs;
    for (const char* cf : {"default", "chunks", "manifests"}) cfs.push_back({cf, {}});
    std::vector<rocksdb::ColumnFamilyHandle*> handles;
    rocksdb::Status plain = rocksdb::DB::OpenForReadOnly(o, dir, cfs, &handles, &raw);
    ASSERT_TRUE(plain.IsCorruption()) << "RocksDB alone was to refuse it: " << plain.ToString();
  }
  for (OpenMode mode : {OpenMode::kReadOnly, OpenMode::kSecondary}) {
    std::unique_ptr<ChunkStore> store;
    Status s = ChunkStore::Open(dir, {.mode = mode}, &store);
    ASSERT_TRUE(s.ok()) << s;
    ExpectThreeCheckpoints(store.get(), g, data);
  }
  EXPECT_EQ(std::filesystem::file_size(manifest), size) << "a read-only open changed it";
  {
    std::unique_ptr<ChunkStore> store = OpenStore(dir);
    ASSERT_NE(store, nullptr);
    ExpectThreeCheckpoints(store.get(), g, data);
    ASSERT_TRUE(store->Close().ok());
  }
  EXPECT_NE(CurrentManifest(dir), manifest);
  EXPECT_FALSE(std::filesystem::exists(manifest)) << "the torn MANIFEST outlived the open";
  std::unique_ptr<ChunkStore> store;
  ASSERT_TRUE(ChunkStore::Open(dir, {.mode = OpenMode::kReadOnly}, &store).ok());
  ExpectThreeCheckpoints(store.get(), g, data);
}

// Damage before records that read back is not a torn append: the open fails, DATA_LOSS naming
// where, in every mode, and nothing is changed.
TEST_F(ChunkStoreManifestTest, AMANIFESTDamagedBeforeItsLastRecordIsDataLoss) {
  {
    std::fstream f(manifest, std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(12);
    char c = 0;
    f.read(&c, 1);
    c = static_cast<char>(c ^ 0x5A);
    f.seekp(12);
    f.write(&c, 1);
  }
  for (OpenMode mode : {OpenMode::kReadOnly, OpenMode::kReadWrite}) {
    std::unique_ptr<ChunkStore> store;
    Status s = ChunkStore::Open(dir, {.mode = mode}, &store);
    EXPECT_EQ(s.code(), StatusCode::kDataLoss) << s;
    EXPECT_THAT(s.message(), HasSubstr("is damaged at byte")) << s;
  }
  EXPECT_EQ(CurrentManifest(dir), manifest);
}

// Another program's RocksDB database where a rank database should be: a read-write open refuses
// it before writing anything (RocksDB would add dcpkv's column families to it).
TEST(ChunkStoreOpenTest, AnotherRocksDBDatabaseIsRefusedAndLeftUntouched) {
  testing::TempDir tmp;
  const std::string dir = RankDirectory(tmp.path(), 0);
  ASSERT_NO_FATAL_FAILURE(testing::MakeForeignRocksDB(dir));
  auto listing = [&] {
    std::map<std::string, uintmax_t> files;
    for (const auto& e : std::filesystem::directory_iterator(dir)) {
      files[e.path().filename().string()] = e.is_regular_file() ? e.file_size() : 0;
    }
    return files;
  };
  const auto before = listing();
  for (OpenMode mode : {OpenMode::kReadWrite, OpenMode::kReadOnly}) {
    std::unique_ptr<ChunkStore> store;
    Status s = ChunkStore::Open(dir, {.mode = mode}, &store);
    EXPECT_FALSE(s.ok());
    if (mode == OpenMode::kReadWrite) {
      EXPECT_EQ(s.reason(), ErrorReason::kNotADcpkvStore) << s;
      EXPECT_THAT(s.message(), HasSubstr("not a dcpkv store")) << s;
    }
  }
  EXPECT_EQ(listing(), before);
  std::vector<std::string> families;
  ASSERT_TRUE(rocksdb::DB::ListColumnFamilies(rocksdb::DBOptions(), dir, &families).ok());
  EXPECT_THAT(families, ElementsAre("default"));
}

class IngestTableFilesTest : public ::testing::Test {
 protected:
  ChunkStoreOptions Options() const {
    ChunkStoreOptions o;
    o.write_path = ChunkWritePath::kIngestTableFiles;
    o.chunk_size = 16 << 10;
    o.table_file_bytes = 64 << 10;  // four chunks a file
    o.small_write_bytes = 0;        // no write here is held back as small
    return o;
  }
  testing::TempDir tmp_;
  std::string dir_ = RankDirectory(tmp_.path(), 0);
};

TEST_F(IngestTableFilesTest, ShardsInAnyOrderBecomeBoundedTablesWithNothingLeftBehind) {
  std::unique_ptr<ChunkStore> store;
  ASSERT_TRUE(ChunkStore::Open(dir_, Options(), &store).ok());
  const size_t before = TableFiles(dir_).size();
  // Keys must ascend within a table file: "w.b" then "w.a" needs a second file, and each shard
  // of 10 chunks fills files of four.
  ShardGeometry g{DType::kFloat32, {0}, {40 * 1024}};  // 160 KiB: 10 chunks
  std::vector<uint8_t> b = testing::RandomBytes(*g.ByteSize(), 1);
  std::vector<uint8_t> a = testing::RandomBytes(*g.ByteSize(), 2);
  ChunkBatchWriter writer(store.get());
  ASSERT_TRUE(writer.AddShard("ck", "w.b", g, b.data(), b.size()).ok());
  ASSERT_TRUE(writer.AddShard("ck", "w.a", g, a.data(), a.size()).ok());
  ASSERT_TRUE(writer.Finish().ok());
  // Durable without Flush(): the files were ingested, none is left in <dir>/ingest.
  EXPECT_TRUE(testing::IngestDirectoryIsEmpty(dir_));
  EXPECT_EQ(TableFiles(dir_).size() - before, 6u) << "3 + 3 files of at most 4 chunks";
  EXPECT_EQ(ReadAll(store.get(), "ck", "w.a", g), a);
  EXPECT_EQ(ReadAll(store.get(), "ck", "w.b", g), b);
  ASSERT_TRUE(store->Close().ok());
  // A read-only open sees them as a reader of a live store would.
  ASSERT_TRUE(ChunkStore::Open(dir_, {.mode = OpenMode::kReadOnly}, &store).ok());
  EXPECT_EQ(ReadAll(store.get(), "ck", "w.b", g), b);
  StatusOr<ShardVerification> v = store->VerifyShard("ck", "w.a", g);
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(v->chunks, 10u);
  EXPECT_TRUE(v->problems.empty());
}

// A writer holds its first chunks back: finished with fewer than small_write_bytes it writes them
// through the memtable (no table file of its own, durable at Finish); with more, the held chunks
// go into table files first, in order, and the rest follow.
TEST_F(IngestTableFilesTest, SmallWritesGoThroughTheMemtableLargerOnesIntoTables) {
  ChunkStoreOptions o = Options();
  o.small_write_bytes = 64 << 10;  // four chunks
  std::unique_ptr<ChunkStore> store;
  ASSERT_TRUE(ChunkStore::Open(dir_, o, &store).ok());
  const size_t before = TableFiles(dir_).size();
  ShardGeometry small{DType::kFloat32, {0}, {12 * 1024}};  // 48 KiB: three chunks
  std::vector<uint8_t> s = testing::RandomBytes(*small.ByteSize(), 7);
  {
    ChunkBatchWriter writer(store.get());
    ASSERT_TRUE(writer.AddShard("small", "w", small, s.data(), s.size()).ok());
    ASSERT_TRUE(writer.Finish().ok());
  }
  EXPECT_EQ(TableFiles(dir_).size() - before, 1u) << "one memtable flush";
  ShardGeometry g{DType::kFloat32, {0}, {40 * 1024}};  // 160 KiB: 10 chunks
  std::vector<uint8_t> b = testing::RandomBytes(*g.ByteSize(), 8);
  std::vector<uint8_t> a = testing::RandomBytes(*g.ByteSize(), 9);
  {
    ChunkBatchWriter writer(store.get());
    ASSERT_TRUE(writer.AddShard("large", "w.b", g, b.data(), b.size()).ok());
    ASSERT_TRUE(writer.AddShard("large", "w.a", g, a.data(), a.size()).ok());
    ASSERT_TRUE(writer.Finish().ok());
  }
  EXPECT_EQ(TableFiles(dir_).size() - before, 7u) << "and 3 + 3 table files of four chunks";
  EXPECT_TRUE(testing::IngestDirectoryIsEmpty(dir_));
  // Durable without Flush() or Close(): a read-only open sees them as a reader would.
  std::unique_ptr<ChunkStore> reader;
  ASSERT_TRUE(ChunkStore::Open(dir_, {.mode = OpenMode::kReadOnly}, &reader).ok());
  EXPECT_EQ(ReadAll(reader.get(), "small", "w", small), s);
  EXPECT_EQ(ReadAll(reader.get(), "large", "w.a", g), a);
  EXPECT_EQ(ReadAll(reader.get(), "large", "w.b", g), b);
}

TEST_F(IngestTableFilesTest, BothLayoutsInOneStore) {
  ShardGeometry g{DType::kBFloat16, {0, 0}, {64, 512}};
  std::vector<uint8_t> old_data = testing::RandomBytes(*g.ByteSize(), 3);
  std::vector<uint8_t> new_data = testing::RandomBytes(*g.ByteSize(), 4);
  std::unique_ptr<ChunkStore> store;
  ChunkStoreOptions batch = Options();
  batch.write_path = ChunkWritePath::kWriteBatch;
  ASSERT_TRUE(ChunkStore::Open(dir_, batch, &store).ok());
  ASSERT_TRUE(store->PutShard("old", "w", g, old_data.data(), old_data.size()).ok());
  ASSERT_TRUE(store->Close().ok());
  ASSERT_TRUE(ChunkStore::Open(dir_, Options(), &store).ok());
  ASSERT_TRUE(store->PutShard("new", "w", g, new_data.data(), new_data.size()).ok());
  EXPECT_EQ(ReadAll(store.get(), "old", "w", g), old_data);
  EXPECT_EQ(ReadAll(store.get(), "new", "w", g), new_data);
  StatusOr<std::vector<std::string>> ids = store->ListChunkCheckpointIds();
  ASSERT_TRUE(ids.ok()) << ids.status();
  EXPECT_THAT(*ids, ElementsAre("new", "old"));
}

TEST_F(IngestTableFilesTest, ATableFileNeverIngestedIsRemovedByTheNextReadWriteOpen) {
  std::unique_ptr<ChunkStore> store;
  ASSERT_TRUE(ChunkStore::Open(dir_, Options(), &store).ok());
  ASSERT_TRUE(store->Close().ok());
  // What a crash between building a table file and ingesting it leaves behind.
  std::filesystem::create_directories(dir_ + "/ingest");
  std::ofstream(dir_ + "/ingest/4242-0.sst") << "half a table file";
  ASSERT_TRUE(ChunkStore::Open(dir_, {.mode = OpenMode::kReadOnly}, &store).ok());
  ASSERT_TRUE(store->Close().ok());
  EXPECT_FALSE(testing::IngestDirectoryIsEmpty(dir_)) << "a reader must not touch a writer's files";
  ASSERT_TRUE(ChunkStore::Open(dir_, Options(), &store).ok());
  EXPECT_TRUE(testing::IngestDirectoryIsEmpty(dir_));
}

TEST_F(IngestTableFilesTest, DamageInsideAnIngestedTableIsDataLoss) {
  ChunkStoreOptions o = Options();
  o.table_file_bytes = 1 << 30;  // one file
  std::unique_ptr<ChunkStore> store;
  ASSERT_TRUE(ChunkStore::Open(dir_, o, &store).ok());
  ShardGeometry g{DType::kFloat32, {0}, {64 * 1024}};  // 256 KiB: 16 chunks
  std::vector<uint8_t> data = testing::RandomBytes(*g.ByteSize(), 5);
  ASSERT_TRUE(store->PutShard("ck", "w", g, data.data(), data.size()).ok());
  ASSERT_TRUE(store->Close().ok());
  // Flip one byte in the middle of the chunks' table file: inside some chunk's payload.
  const std::string path = testing::LargestTableFile(dir_);
  ASSERT_GT(std::filesystem::file_size(path), data.size());
  testing::FlipByteInTheMiddle(path);

  ASSERT_TRUE(ChunkStore::Open(dir_, {.mode = OpenMode::kReadOnly}, &store).ok());
  std::vector<uint8_t> out(data.size());
  Status s = store->ReadShard("ck", "w", g, out.data(), out.size());
  EXPECT_EQ(s.code(), StatusCode::kDataLoss) << s;
  StatusOr<ShardVerification> v = store->VerifyShard("ck", "w", g);
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_FALSE(v->problems.empty());
  EXPECT_LT(v->chunks, 16u);
}

// Listing the checkpoints that have data reads their markers, no chunk: damage inside the only
// chunk of a checkpoint does not hide it (reading the chunk finds the damage).
TEST_F(IngestTableFilesTest, ListingReadsNoChunk) {
  ChunkStoreOptions o = Options();
  o.chunk_size = 1 << 20;
  std::unique_ptr<ChunkStore> store;
  ASSERT_TRUE(ChunkStore::Open(dir_, o, &store).ok());
  ShardGeometry g{DType::kUInt8, {0}, {1 << 20}};  // one chunk
  std::vector<uint8_t> data = testing::RandomBytes(*g.ByteSize(), 6);
  ASSERT_TRUE(store->PutShard("ck", "w", g, data.data(), data.size()).ok());
  ASSERT_TRUE(store->Close().ok());
  const std::string path = testing::LargestTableFile(dir_);
  ASSERT_GT(std::filesystem::file_size(path), data.size()) << "the chunk's table file";
  testing::FlipByteInTheMiddle(path);
  ASSERT_TRUE(ChunkStore::Open(dir_, {.mode = OpenMode::kReadOnly}, &store).ok());
  StatusOr<std::vector<std::string>> ids = store->ListChunkCheckpointIds();
  ASSERT_TRUE(ids.ok()) << ids.status();
  EXPECT_THAT(*ids, ElementsAre("ck"));
  std::vector<uint8_t> out(data.size());
  EXPECT_EQ(store->ReadShard("ck", "w", g, out.data(), out.size()).code(), StatusCode::kDataLoss);
}

}  // namespace
}  // namespace dcpkv

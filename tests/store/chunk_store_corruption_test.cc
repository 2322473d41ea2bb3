// Damaged values written straight into the database with RocksDB (bypassing the store) must be
// reported as DATA_LOSS naming the checkpoint, fqn and offset: never a crash, never wrong data.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <rocksdb/db.h>

#include <cstring>
#include <functional>

#include "dcpkv/store/chunk_store.h"
#include "dcpkv/store/store_format.h"
#include "tests/util/raw_db.h"
#include "tests/util/temp_dir.h"
#include "tests/util/test_data.h"

namespace dcpkv {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;

class ChunkStoreCorruptionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    data_ = testing::RandomBytes(*geometry_.ByteSize(), 11);
    std::unique_ptr<ChunkStore> store;
    ASSERT_TRUE(ChunkStore::Open(tmp_.path(), {.chunk_size = 64 << 10}, &store).ok());
    ASSERT_TRUE(store->PutShard("ck-1", "layer.w", geometry_, data_.data(), data_.size()).ok());
    ASSERT_TRUE(store->Close().ok());
  }

  // Replaces the value of the chunk at `byte` with `mutate(value)`.
  void Damage(uint64_t byte, const std::function<void(std::string*)>& mutate) {
    testing::RawDB raw(tmp_.path());
    std::string key = *EncodeChunkKey({"ck-1", "layer.w", {0, 0}, byte});
    std::string value = raw.Get(key);
    mutate(&value);
    raw.Put(key, value);
  }

  // Every read path reports DATA_LOSS naming the damaged chunk.
  void ExpectDataLossEverywhere(uint64_t byte, const std::string& what) {
    std::unique_ptr<ChunkStore> store;
    ASSERT_TRUE(ChunkStore::Open(tmp_.path(), {.mode = OpenMode::kReadOnly}, &store).ok());
    auto names_chunk = AllOf(HasSubstr("checkpoint \"ck-1\""), HasSubstr("fqn \"layer.w\""),
                             HasSubstr("byte " + std::to_string(byte)), HasSubstr(what));

    StatusOr<ChunkHandle> h = store->GetChunk({"ck-1", "layer.w", {0, 0}, byte});
    EXPECT_EQ(h.status().code(), StatusCode::kDataLoss);
    EXPECT_THAT(h.status().message(), names_chunk);

    std::vector<uint8_t> out(data_.size(), 0);
    Status s = store->ReadShard("ck-1", "layer.w", geometry_, out.data(), out.size());
    EXPECT_EQ(s.code(), StatusCode::kDataLoss);
    EXPECT_THAT(s.message(), names_chunk);

    auto it = std::move(store->NewChunkIterator("ck-1")).value();
    while (it->Valid()) it->Next();
    EXPECT_EQ(it->status().code(), StatusCode::kDataLoss);
    EXPECT_THAT(it->status().message(), names_chunk);
  }

  testing::TempDir tmp_;
  ShardGeometry geometry_{DType::kFloat32, {0, 0}, {256, 1024}};  // 1 MiB in 16 chunks
  std::vector<uint8_t> data_;
};

size_t FindPayload(const std::string& value, const std::vector<uint8_t>& data, uint64_t byte) {
  size_t pos = value.find(std::string(reinterpret_cast<const char*>(data.data() + byte), 32));
  EXPECT_NE(pos, std::string::npos);
  return pos;
}

TEST_F(ChunkStoreCorruptionTest, FlippedPayloadByte) {
  const uint64_t byte = 3 * (64 << 10);
  Damage(byte, [&](std::string* v) { (*v)[FindPayload(*v, data_, byte) + 777] ^= 0x04; });
  ExpectDataLossEverywhere(byte, "checksum mismatch");
}

TEST_F(ChunkStoreCorruptionTest, TruncatedValue) {
  const uint64_t byte = 5 * (64 << 10);
  Damage(byte, [](std::string* v) { v->resize(v->size() - 100); });
  ExpectDataLossEverywhere(byte, "corrupt chunk");
}

TEST_F(ChunkStoreCorruptionTest, GarbageFlatBuffer) {
  Damage(0, [](std::string* v) {
    std::vector<uint8_t> junk = testing::RandomBytes(v->size(), 99);
    v->assign(reinterpret_cast<const char*>(junk.data()), junk.size());
  });
  ExpectDataLossEverywhere(0, "corrupt chunk");
}

TEST_F(ChunkStoreCorruptionTest, WrongChecksum) {
  const uint64_t byte = 15 * (64 << 10);
  Hash128 h = HashBytes(data_.data() + byte, 64 << 10);
  Damage(byte, [&](std::string* v) {
    size_t pos = v->find(std::string(reinterpret_cast<const char*>(&h), sizeof(h)));
    ASSERT_NE(pos, std::string::npos);
    (*v)[pos + 9] ^= 0x01;
  });
  ExpectDataLossEverywhere(byte, "checksum mismatch");
}

TEST_F(ChunkStoreCorruptionTest, ValueUnderTheWrongKey) {
  // A valid chunk copied under another chunk's key: its checksum is fine, its place is not.
  const uint64_t byte = 2 * (64 << 10);
  {
    testing::RawDB raw(tmp_.path());
    std::string other = raw.Get(*EncodeChunkKey({"ck-1", "layer.w", {0, 0}, byte * 2}));
    raw.Put(*EncodeChunkKey({"ck-1", "layer.w", {0, 0}, byte}), other);
  }
  ExpectDataLossEverywhere(byte, "value describes");
}

class MissingChunkTest : public ChunkStoreCorruptionTest,
                         public ::testing::WithParamInterface<uint64_t> {};

TEST_P(MissingChunkTest, IsDetectedByReassembly) {
  const uint64_t byte = GetParam();
  { testing::RawDB(tmp_.path()).Delete(*EncodeChunkKey({"ck-1", "layer.w", {0, 0}, byte})); }
  std::unique_ptr<ChunkStore> store;
  ASSERT_TRUE(ChunkStore::Open(tmp_.path(), {.mode = OpenMode::kReadOnly}, &store).ok());
  std::vector<uint8_t> out(data_.size());
  Status s = store->ReadShard("ck-1", "layer.w", geometry_, out.data(), out.size());
  EXPECT_EQ(s.code(), StatusCode::kDataLoss);
  EXPECT_THAT(s.message(),
              AllOf(HasSubstr("missing chunk"), HasSubstr("byte " + std::to_string(byte))));
}

INSTANTIATE_TEST_SUITE_P(FirstMiddleLast, MissingChunkTest,
                         ::testing::Values(0, 7 * (64 << 10), 15 * (64 << 10)));

TEST_F(ChunkStoreCorruptionTest, NewerStoreFormatIsRefused) {
  { testing::RawDB(tmp_.path()).Put(testing::kRawDefaultCf, kStoreFormatKey, "99"); }
  std::unique_ptr<ChunkStore> store;
  Status s = ChunkStore::Open(tmp_.path(), {}, &store);
  EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition);
  EXPECT_THAT(s.message(), HasSubstr("format version \"99\""));
}

}  // namespace
}  // namespace dcpkv

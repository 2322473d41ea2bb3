#include "dcpkv/store/chunk_codec.h"

#include <flatbuffers/flatbuffers.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <optional>

#include "tests/util/test_data.h"

namespace dcpkv {
namespace {

using ::testing::HasSubstr;

// An 8-byte aligned copy of an encoded value, as the store hands to DecodeChunk.
class Aligned {
 public:
  explicit Aligned(std::string_view bytes) : words_((bytes.size() + 7) / 8), size_(bytes.size()) {
    std::memcpy(words_.data(), bytes.data(), bytes.size());
  }
  std::string_view view() const { return {reinterpret_cast<const char*>(words_.data()), size_}; }
  uint8_t* data() { return reinterpret_cast<uint8_t*>(words_.data()); }
  size_t size() const { return size_; }
  void Truncate(size_t n) { size_ = n; }

 private:
  std::vector<uint64_t> words_;
  size_t size_;
};

ShardGeometry Geometry(DType dtype, std::vector<uint64_t> offsets, std::vector<uint64_t> sizes) {
  return ShardGeometry{dtype, std::move(offsets), std::move(sizes)};
}

TEST(ChunkCodecTest, RoundTripEveryDType) {
  for (DType dtype : kAllDTypes) {
    ShardGeometry g = Geometry(dtype, {8, 0}, {3, 5});
    size_t bytes = 15 * ElementSize(dtype);
    std::vector<uint8_t> payload = testing::RandomBytes(bytes, static_cast<uint64_t>(dtype));
    Aligned value(EncodeChunk(g, 0, payload.data(), payload.size()));
    StatusOr<ChunkView> view = DecodeChunk(value.view());
    ASSERT_TRUE(view.ok()) << DTypeName(dtype) << ": " << view.status();
    EXPECT_EQ(view->info.geometry.dtype, dtype);
    EXPECT_EQ(view->info.geometry.offsets, g.offsets);
    EXPECT_EQ(view->info.geometry.sizes, g.sizes);
    EXPECT_EQ(view->info.shard_bytes, bytes);
    EXPECT_EQ(view->info.payload_len, bytes);
    EXPECT_EQ(view->info.payload_hash, HashBytes(payload.data(), payload.size()));
    ASSERT_EQ(view->payload_size, bytes);
    EXPECT_EQ(std::memcmp(view->payload, payload.data(), bytes), 0) << DTypeName(dtype);
  }
}

TEST(ChunkCodecTest, PartialChunkAndEmptyShard) {
  std::vector<uint8_t> payload = testing::RandomBytes(400, 1);
  ShardGeometry g = Geometry(DType::kFloat32, {0}, {1000});
  Aligned value(EncodeChunk(g, 3200, payload.data(), payload.size()));
  StatusOr<ChunkView> view = DecodeChunk(value.view());
  ASSERT_TRUE(view.ok()) << view.status();
  EXPECT_EQ(view->info.byte_offset, 3200u);
  EXPECT_EQ(view->info.shard_bytes, 4000u);

  ShardGeometry empty = Geometry(DType::kInt64, {0, 0}, {0, 7});
  Aligned empty_value(EncodeChunk(empty, 0, nullptr, 0));
  StatusOr<ChunkView> empty_view = DecodeChunk(empty_value.view());
  ASSERT_TRUE(empty_view.ok()) << empty_view.status();
  EXPECT_EQ(empty_view->payload_size, 0u);
}

class ChunkCorruptionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    payload_ = testing::RandomBytes(4096, 42);
    encoded_ =
        EncodeChunk(Geometry(DType::kFloat32, {0}, {1024}), 0, payload_.data(), payload_.size());
  }
  // Offset of the payload's first byte within the encoded value.
  size_t PayloadOffset() const {
    std::string_view e(encoded_);
    size_t pos = e.find(std::string_view(reinterpret_cast<const char*>(payload_.data()), 64));
    EXPECT_NE(pos, std::string_view::npos);
    return pos;
  }
  static void ExpectDataLoss(const Aligned& value, const std::string& what) {
    StatusOr<ChunkView> view = DecodeChunk(value.view());
    ASSERT_FALSE(view.ok()) << "corruption not detected: " << what;
    EXPECT_EQ(view.status().code(), StatusCode::kDataLoss) << view.status();
    EXPECT_THAT(view.status().message(), HasSubstr(what));
  }
  std::vector<uint8_t> payload_;
  std::string encoded_;
};

TEST_F(ChunkCorruptionTest, FlippedPayloadByte) {
  for (size_t at : {size_t{0}, size_t{1000}, payload_.size() - 1}) {
    Aligned value(encoded_);
    value.data()[PayloadOffset() + at] ^= 0x01;
    ExpectDataLoss(value, "checksum mismatch");
  }
}

TEST_F(ChunkCorruptionTest, TruncatedValue) {
  for (size_t keep : {size_t{0}, size_t{4}, size_t{12}, encoded_.size() / 2, encoded_.size() - 1}) {
    Aligned value(encoded_);
    value.Truncate(keep);
    ExpectDataLoss(value, "corrupt chunk");
  }
}

TEST_F(ChunkCorruptionTest, GarbageFlatBuffer) {
  for (uint64_t seed = 0; seed < 200; ++seed) {
    std::vector<uint8_t> junk = testing::RandomBytes(64 + seed * 13, seed);
    if (seed % 2 == 0) std::memcpy(junk.data() + 4, "DKVC", 4);  // right identifier, bad body
    Aligned value(std::string_view(reinterpret_cast<const char*>(junk.data()), junk.size()));
    ExpectDataLoss(value, "corrupt chunk");
  }
  // Valid FlatBuffer of the wrong type.
  const char kWrongType[] =
      "\x08\x00\x00\x00"
      "DKVM"
      "\x00\x00\x00\x00\x00\x00\x00\x00";
  Aligned wrong(std::string_view(kWrongType, sizeof(kWrongType) - 1));
  ExpectDataLoss(wrong, "identifier");
}

TEST_F(ChunkCorruptionTest, WrongChecksum) {
  // Re-encode with a different payload but splice in the original hash: find the hash bytes
  // (lo, hi little-endian) and change one bit of each half in turn.
  Hash128 h = HashBytes(payload_.data(), payload_.size());
  std::string needle(reinterpret_cast<const char*>(&h), sizeof(h));
  size_t pos = encoded_.find(needle);
  ASSERT_NE(pos, std::string::npos);
  for (size_t bit : {size_t{0}, size_t{8}}) {
    Aligned value(encoded_);
    value.data()[pos + bit] ^= 0x80;
    ExpectDataLoss(value, "checksum mismatch");
  }
}

TEST_F(ChunkCorruptionTest, InconsistentFieldsAreRejected) {
  // A payload_len that disagrees with the payload vector.
  std::vector<uint8_t> p = testing::RandomBytes(8, 3);
  ShardGeometry g = Geometry(DType::kInt8, {0}, {4});  // shard smaller than the chunk
  Aligned value(EncodeChunk(g, 0, p.data(), p.size()));
  ExpectDataLoss(value, "exceeds the shard");
}

TEST(ChunkCodecTest, MisalignedBufferIsAProgrammingError) {
  std::string enc = EncodeChunk(Geometry(DType::kUInt8, {0}, {4}), 0, "abcd", 4);
  std::vector<uint64_t> words(enc.size() / 8 + 2);
  char* base = reinterpret_cast<char*>(words.data()) + 1;
  std::memcpy(base, enc.data(), enc.size());
  EXPECT_EQ(DecodeChunk(std::string_view(base, enc.size())).status().code(), StatusCode::kInternal);
}

// Writes `values` as a vector of 8-byte values whose elements start 4 bytes off an 8-byte
// boundary of the finished buffer: no encoder does that, but the FlatBuffers Verifier (which
// checks only the 4-byte length field) accepts it. Returns the vector's offset from the end.
// REQUIRES: the finished buffer's size is a multiple of 8 (it has an 8-byte field).
flatbuffers::Offset<flatbuffers::Vector<uint64_t>> MisalignedU64Vector(
    flatbuffers::FlatBufferBuilder& b, const std::vector<uint64_t>& values) {
  b.Align(sizeof(uint32_t));
  // Offsets count from the end: an offset that is a multiple of 8 puts the length field on an
  // 8-byte boundary and the elements after it 4 bytes off one.
  if ((b.GetSize() + 8 * values.size() + 4) % 8 != 0) b.PushElement<uint32_t>(0);
  b.StartVector(2 * values.size(), sizeof(uint32_t));
  for (size_t i = values.size(); i-- > 0;) {
    b.PushElement(static_cast<uint32_t>(values[i] >> 32));
    b.PushElement(static_cast<uint32_t>(values[i]));
  }
  return flatbuffers::Offset<flatbuffers::Vector<uint64_t>>(b.EndVector(values.size()));
}

// Found by tests/fuzz/chunk_codec_fuzzer: 8-byte reads of a misaligned vector (undefined
// behaviour) instead of DATA_LOSS.
TEST_F(ChunkCorruptionTest, MisalignedVectorIsDataLoss) {
  for (int misaligned_field : {0, 1}) {
    flatbuffers::FlatBufferBuilder b;
    const std::vector<uint64_t> dims = {4};
    auto payload = b.CreateVector(std::vector<uint8_t>{1, 2, 3, 4});
    auto offsets = misaligned_field == 0 ? MisalignedU64Vector(b, {0}) : b.CreateVector(dims);
    auto sizes = misaligned_field == 1 ? MisalignedU64Vector(b, dims) : b.CreateVector(dims);
    const flatbuffers::uoffset_t start = b.StartTable();
    // Field slots of store/schema/chunk.fbs: format_version, dtype, shard_offsets, shard_sizes,
    // shard_bytes, payload_len, payload.
    b.AddElement<uint16_t>(4, 1, 0);
    b.AddElement<uint8_t>(6, static_cast<uint8_t>(DType::kUInt8), 0);
    b.AddOffset(8, offsets);
    b.AddOffset(10, sizes);
    b.AddElement<uint64_t>(14, 4, 0);
    b.AddElement<uint64_t>(16, 4, 0);
    b.AddOffset(22, payload);
    b.Finish(flatbuffers::Offset<void>(b.EndTable(start)), "DKVC");
    const flatbuffers::uoffset_t misaligned = misaligned_field == 0 ? offsets.o : sizes.o;
    ASSERT_EQ((b.GetSize() - misaligned + 4) % 8, 4u) << "the test built an aligned vector";
    Aligned value(
        std::string_view(reinterpret_cast<const char*>(b.GetBufferPointer()), b.GetSize()));
    ExpectDataLoss(value, "misaligned shard_offsets or shard_sizes vector");
  }
}

// A value at `shift` bytes past an 8-byte boundary, as a RocksDB block holds it, and a window
// as the store gives DecodeChunkHead: 8-byte aligned, the value's size, zero past the head.
struct Misplaced {
  Misplaced(std::string_view bytes, size_t shift, size_t head)
      : words(bytes.size() / 8 + 2), window(bytes.size() / 8 + 1, 0) {
    at = reinterpret_cast<char*>(words.data()) + shift;
    std::memcpy(at, bytes.data(), bytes.size());
    std::memcpy(window.data(), bytes.data(), std::min(head, bytes.size()));
    value = std::string_view(at, bytes.size());
  }
  const uint8_t* head() const { return reinterpret_cast<const uint8_t*>(window.data()); }
  std::vector<uint64_t> words;
  std::vector<uint64_t> window;
  char* at;
  std::string_view value;
};

TEST(ChunkCodecTest, HeadDecodeReadsTheMetadataFromTheHeadAndThePayloadInPlace) {
  std::vector<uint8_t> payload = testing::RandomBytes(256 << 10, 7);
  ShardGeometry g = Geometry(DType::kFloat32, {64, 0}, {256, 1024});
  const std::string enc = EncodeChunk(g, 4096, payload.data(), payload.size());
  Aligned whole(enc);
  StatusOr<ChunkView> expected = DecodeChunk(whole.view());
  ASSERT_TRUE(expected.ok()) << expected.status();
  for (size_t shift : {1, 3, 4, 7}) {
    Misplaced m(enc, shift, 4096);
    std::optional<ChunkView> view = DecodeChunkHead(m.value, m.head(), 4096);
    ASSERT_TRUE(view.has_value()) << shift;
    EXPECT_EQ(view->info.geometry.offsets, g.offsets);
    EXPECT_EQ(view->info.geometry.sizes, g.sizes);
    EXPECT_EQ(view->info.byte_offset, 4096u);
    EXPECT_EQ(view->info.payload_hash, expected->info.payload_hash);
    ASSERT_EQ(view->payload_size, payload.size());
    // In place: in the value itself, not in the window.
    EXPECT_EQ(reinterpret_cast<const char*>(view->payload) - m.at,
              expected->payload - reinterpret_cast<const uint8_t*>(whole.view().data()));
    EXPECT_EQ(std::memcmp(view->payload, payload.data(), payload.size()), 0);
  }
}

TEST(ChunkCodecTest, HeadDecodeLeavesEverythingElseToDecodeChunk) {
  std::vector<uint8_t> payload = testing::RandomBytes(128 << 10, 8);
  ShardGeometry g = Geometry(DType::kUInt8, {0}, {1 << 20});
  const std::string enc = EncodeChunk(g, 0, payload.data(), payload.size());
  // A head too short for the metadata.
  Misplaced tiny(enc, 1, 16);
  EXPECT_FALSE(DecodeChunkHead(tiny.value, tiny.head(), 16).has_value());
  // A payload byte flipped: the hash is checked on the value itself.
  Misplaced flipped(enc, 5, 4096);
  flipped.at[enc.size() - 100] ^= 0x20;
  EXPECT_FALSE(DecodeChunkHead(flipped.value, flipped.head(), 4096).has_value());
  Aligned damaged(flipped.value);
  EXPECT_THAT(DecodeChunk(damaged.view()).status().message(), HasSubstr("checksum mismatch"));
  // The small vectors after the payload (no encoder writes that, but it is a valid chunk): they
  // lie past the head, so only a whole copy decodes the value.
  struct alignas(8) HashStruct {
    uint64_t lo, hi;
  };
  flatbuffers::FlatBufferBuilder b;
  const std::vector<uint64_t> offsets = {0}, sizes = {1 << 20};
  auto offsets_vec = b.CreateVector(offsets);
  auto sizes_vec = b.CreateVector(sizes);
  auto payload_vec = b.CreateVector(payload);
  const Hash128 hash = HashBytes(payload.data(), payload.size());
  const HashStruct hash_struct{hash.lo, hash.hi};
  const flatbuffers::uoffset_t start = b.StartTable();
  // Field slots of store/schema/chunk.fbs, in order from 4.
  b.AddElement<uint16_t>(4, 1, 0);
  b.AddElement<uint8_t>(6, static_cast<uint8_t>(DType::kUInt8), 0);
  b.AddOffset(8, offsets_vec);
  b.AddOffset(10, sizes_vec);
  b.AddElement<uint64_t>(14, 1 << 20, 0);
  b.AddElement<uint64_t>(16, payload.size(), 0);
  b.AddStruct(18, &hash_struct);
  b.AddOffset(22, payload_vec);
  b.Finish(flatbuffers::Offset<void>(b.EndTable(start)), "DKVC");
  const std::string_view reordered(reinterpret_cast<const char*>(b.GetBufferPointer()),
                                   b.GetSize());
  Aligned reordered_whole(reordered);
  StatusOr<ChunkView> decoded = DecodeChunk(reordered_whole.view());
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_EQ(decoded->info.geometry.sizes, sizes);
  Misplaced m(reordered, 3, 4096);
  EXPECT_FALSE(DecodeChunkHead(m.value, m.head(), 4096).has_value());
  Misplaced all(reordered, 3, reordered.size());  // with all of it copied, it decodes
  EXPECT_TRUE(DecodeChunkHead(all.value, all.head(), reordered.size()).has_value());
}

TEST(ShardGeometryTest, ValidatesAndSizes) {
  EXPECT_EQ(*Geometry(DType::kBFloat16, {0, 0, 0}, {2, 3, 4}).ByteSize(), 48u);
  EXPECT_EQ(*Geometry(DType::kFloat64, {}, {}).ByteSize(), 8u);  // a scalar
  EXPECT_EQ(Geometry(DType::kFloat32, {0}, {1, 2}).Validate().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(Geometry(static_cast<DType>(99), {}, {}).Validate().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(Geometry(DType::kFloat32, {~0ull}, {2}).Validate().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(Geometry(DType::kFloat64, {0, 0}, {1ull << 40, 1ull << 30}).ByteSize().status().code(),
            StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace dcpkv

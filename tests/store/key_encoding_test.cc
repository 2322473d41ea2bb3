#include "dcpkv/store/key_encoding.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>

namespace dcpkv {
namespace {

using ::testing::HasSubstr;

std::string Key(const std::string& ckpt, const std::string& fqn, std::vector<uint64_t> offsets,
                uint64_t byte) {
  StatusOr<std::string> k = EncodeChunkKey(ChunkKey{ckpt, fqn, std::move(offsets), byte});
  EXPECT_TRUE(k.ok()) << k.status();
  return k.ok() ? *k : std::string();
}

bool StartsWith(const std::string& s, const std::string& p) {
  return s.compare(0, p.size(), p) == 0;
}

TEST(KeyEncodingTest, RoundTrip) {
  ChunkKey key{"step-7", "model.w", {0, 4096, 3}, 1ull << 40};
  StatusOr<std::string> enc = EncodeChunkKey(key);
  ASSERT_TRUE(enc.ok()) << enc.status();
  StatusOr<ChunkKey> dec = DecodeChunkKey(*enc);
  ASSERT_TRUE(dec.ok()) << dec.status();
  EXPECT_EQ(*dec, key);
  ChunkKey scalar{"c", "bytes.rng", {}, 0};
  EXPECT_EQ(*DecodeChunkKey(*EncodeChunkKey(scalar)), scalar);
}

TEST(KeyEncodingTest, MatchesTheDocumentedExampleByteForByte) {
  // docs/format.md, "Keys": the on-disk grammar is frozen.
  const char expected[] =
      "C"
      "step-100"
      "\0"
      "model.w"
      "\0"
      "\x02"
      "\0\0\0\0\0\0\x04\0"
      "\0\0\0\0\0\0\0\0"
      "\0\0\0\0\0\x40\0\0";
  EXPECT_EQ(*EncodeChunkKey({"step-100", "model.w", {1024, 0}, 4194304}),
            std::string(expected, sizeof(expected) - 1));
  EXPECT_EQ(*EncodeManifestKey("step-100"), "Mstep-100");
}

TEST(KeyEncodingTest, OffsetsOrderNumerically) {
  EXPECT_LT(Key("c", "w", {2}, 0), Key("c", "w", {10}, 0));
  EXPECT_LT(Key("c", "w", {0}, 2), Key("c", "w", {0}, 10));
  EXPECT_LT(Key("c", "w", {0}, 255), Key("c", "w", {0}, 256));
  EXPECT_LT(Key("c", "w", {1, 1000}, 0), Key("c", "w", {2, 0}, 0));
  EXPECT_LT(Key("c", "w", {0}, (1ull << 32) - 1), Key("c", "w", {0}, 1ull << 32));
}

TEST(KeyEncodingTest, CheckpointKeysAreContiguous) {
  // Ids chosen so that one is a prefix of another, and byte order would interleave naive
  // concatenations ("a" + "b..." vs "ab").
  std::vector<std::string> keys = {
      Key("a", "b", {0}, 0),  Key("ab", "a", {0}, 0), Key("a", "zz", {5}, 7),
      Key("a", "a", {0}, 9),  Key("ab", "z", {0}, 0), Key("a.b", "x", {0}, 0),
      Key("a-", "w", {0}, 0),
  };
  std::sort(keys.begin(), keys.end());
  for (std::string id : {"a", "ab", "a.b", "a-"}) {
    std::string prefix = ChunkKeyCheckpointPrefix(id);
    auto first =
        std::find_if(keys.begin(), keys.end(), [&](auto& k) { return StartsWith(k, prefix); });
    auto last = std::find_if(first, keys.end(), [&](auto& k) { return !StartsWith(k, prefix); });
    EXPECT_TRUE(std::none_of(last, keys.end(), [&](auto& k) { return StartsWith(k, prefix); }))
        << "keys of checkpoint " << id << " are not contiguous";
    for (auto it = first; it != last; ++it) EXPECT_EQ(DecodeChunkKey(*it)->checkpoint_id, id);
  }
}

TEST(KeyEncodingTest, FqnPrefixesDoNotInterleave) {
  // "w" is a prefix of "w2" and "w.bias": all chunks of "w" must sort together.
  std::vector<std::string> keys = {Key("c", "w", {0}, 0),    Key("c", "w2", {0}, 0),
                                   Key("c", "w", {9}, 0),    Key("c", "w.bias", {0}, 0),
                                   Key("c", "w", {1, 0}, 0), Key("c", "w", {0}, 1ull << 60)};
  std::sort(keys.begin(), keys.end());
  std::vector<std::string> fqns;
  for (auto& k : keys) fqns.push_back(DecodeChunkKey(k)->fqn);
  EXPECT_EQ(fqns, (std::vector<std::string>{"w", "w", "w", "w", "w.bias", "w2"}));
}

TEST(KeyEncodingTest, UpperBoundCoversPrefix) {
  std::string prefix = ChunkKeyCheckpointPrefix("abc");
  std::string upper = PrefixUpperBound(prefix);
  EXPECT_LT(Key("abc", "\x7e\x7e", {~0ull}, ~0ull), upper);
  EXPECT_GT(Key("abc0", "a", {0}, 0), upper);
  EXPECT_EQ(PrefixUpperBound(std::string("a\xff\xff", 3)), "b");
}

TEST(KeyEncodingTest, RejectsInvalidNames) {
  EXPECT_EQ(EncodeChunkKey({"bad id", "w", {}, 0}).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(EncodeChunkKey({"c", "", {}, 0}).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(EncodeChunkKey({"c", "w", std::vector<uint64_t>(65, 0), 0}).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(EncodeManifestKey("latest").status().code(), StatusCode::kInvalidArgument);
}

TEST(KeyEncodingTest, MalformedKeysAreDataLoss) {
  std::string good = Key("c", "w", {1, 2}, 3);
  const std::string cases[] = {"",
                               "X",
                               std::string("Cc"),
                               std::string("Cc\0w", 4),
                               good.substr(0, good.size() - 1),
                               good + "x",
                               std::string("C\0w\0\0\0\0\0\0\0\0\0\0", 13),
                               std::string("Cc\0w\0\x41", 6)};
  for (const std::string& k : cases) {
    StatusOr<ChunkKey> d = DecodeChunkKey(k);
    EXPECT_EQ(d.status().code(), StatusCode::kDataLoss) << ::testing::PrintToString(k);
  }
  EXPECT_THAT(DecodeChunkKey("Xabc").status().message(), HasSubstr("missing tag"));
  EXPECT_EQ(DecodeManifestKey("Mbad id").status().code(), StatusCode::kDataLoss);
  EXPECT_EQ(*DecodeManifestKey(*EncodeManifestKey("step-1")), "step-1");
}

}  // namespace
}  // namespace dcpkv

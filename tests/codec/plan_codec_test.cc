#include "dcpkv/core/plan_codec.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <iterator>
#include <limits>
#include <memory>
#include <string>

#include "tests/util/test_data.h"

namespace dcpkv {
namespace {

using ::testing::HasSubstr;

constexpr uint64_t kMax64 = std::numeric_limits<uint64_t>::max();

std::string Binary(size_t size, uint64_t seed) {
  std::vector<uint8_t> b = testing::RandomBytes(size, seed);
  return std::string(b.begin(), b.end());
}

// Every WriteItemType and DType, shapes of 0..5 dimensions, offsets near 2^64-1.
SavePlan SampleSavePlan() {
  SavePlan plan;
  const WriteItemType types[] = {WriteItemType::kTensor, WriteItemType::kShard,
                                 WriteItemType::kBytes};
  size_t i = 0;
  for (DType dtype : kAllDTypes) {
    for (WriteItemType type : types) {
      WriteItem item;
      item.fqn = "model.layers." + std::to_string(i) + ".w";
      item.type = type;
      item.dtype = dtype;
      for (size_t d = 0; d < i % 6; ++d) {
        item.global_shape.push_back(kMax64 - d);
        item.offsets.push_back(d == 0 ? kMax64 - 1 : (uint64_t{1} << (7 * d)) - 1);
        item.sizes.push_back(d * 127 + 1);
      }
      plan.items.push_back(item);
      ++i;
    }
  }
  plan.planner_data = Binary(300, 1);
  plan.storage_data = std::string("\0\xff\x80 storage", 11);
  return plan;
}

LoadPlan SampleLoadPlan() {
  LoadPlan plan;
  for (int i = 0; i < 50; ++i) {
    ReadItem item;
    item.fqn = "optim.state." + std::to_string(i) + ".exp_avg";
    item.type = static_cast<WriteItemType>(i % 3);
    item.dtype = kAllDTypes[i % std::size(kAllDTypes)];
    item.dest_offsets = {static_cast<uint64_t>(i) * 4096, 0};
    item.source.offsets = {kMax64, 0};
    item.source.sizes = {1, kMax64};
    item.source.rank = i % 2 == 0 ? i : std::numeric_limits<int32_t>::min() + i;
    item.source.bytes = kMax64 - static_cast<uint64_t>(i);
    item.source.chunks = std::numeric_limits<uint32_t>::max() - static_cast<uint32_t>(i);
    item.overlap_offsets = {static_cast<uint64_t>(i), 1};
    item.overlap_sizes = {2, 3};
    plan.items.push_back(item);
  }
  plan.planner_data = Binary(17, 2);
  plan.storage_data = Binary(1000, 3);
  return plan;
}

std::vector<WriteResult> SampleWriteResults() {
  std::vector<WriteResult> results;
  for (int i = 0; i < 40; ++i) {
    results.push_back(WriteResult{"w." + std::to_string(i),
                                  {static_cast<uint64_t>(i) << 50, kMax64},
                                  i == 39 ? std::numeric_limits<int32_t>::max() : -i,
                                  kMax64 >> i,
                                  static_cast<uint32_t>(i * 1000)});
  }
  results.push_back(WriteResult{"scalar", {}, 0, 0, 0});
  return results;
}

void ExpectDataLoss(const Status& status, const std::string& what) {
  EXPECT_EQ(status.code(), StatusCode::kDataLoss) << status;
  EXPECT_THAT(status.message(), HasSubstr(what));
}

TEST(PlanCodecTest, SavePlanRoundTrip) {
  for (const SavePlan& plan : {SavePlan{}, SampleSavePlan()}) {
    std::string enc = EncodeSavePlan(plan);
    StatusOr<SavePlan> d = DecodeSavePlan(enc);
    ASSERT_TRUE(d.ok()) << d.status();
    EXPECT_TRUE(*d == plan);
    EXPECT_EQ(EncodeSavePlan(*d), enc);
  }
  EXPECT_EQ(EncodeSavePlan(SavePlan{}).size(), 6u);  // header, count, two empty strings
}

TEST(PlanCodecTest, SavePlanWithManyItems) {
  SavePlan plan;
  for (int i = 0; i < 20000; ++i) {
    plan.items.push_back(WriteItem{"model.layers." + std::to_string(i) + ".w",
                                   WriteItemType::kShard,
                                   DType::kBFloat16,
                                   {4096, 4096},
                                   {static_cast<uint64_t>(i % 16) * 256, 0},
                                   {256, 4096}});
  }
  StatusOr<SavePlan> d = DecodeSavePlan(EncodeSavePlan(plan));
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_TRUE(*d == plan);
}

TEST(PlanCodecTest, LoadPlanRoundTrip) {
  for (const LoadPlan& plan : {LoadPlan{}, SampleLoadPlan()}) {
    std::string enc = EncodeLoadPlan(plan);
    StatusOr<LoadPlan> d = DecodeLoadPlan(enc);
    ASSERT_TRUE(d.ok()) << d.status();
    EXPECT_TRUE(*d == plan);
    EXPECT_EQ(EncodeLoadPlan(*d), enc);
  }
}

TEST(PlanCodecTest, WriteResultsRoundTrip) {
  for (const std::vector<WriteResult>& results :
       {std::vector<WriteResult>{}, SampleWriteResults()}) {
    std::string enc = EncodeWriteResults(results);
    StatusOr<std::vector<WriteResult>> d = DecodeWriteResults(enc);
    ASSERT_TRUE(d.ok()) << d.status();
    EXPECT_TRUE(*d == results);
  }
}

TEST(PlanCodecTest, StatusRoundTrip) {
  std::vector<Status> statuses = {Status::Ok(), DataLossError(std::string("bad\0bytes", 9)),
                                  InvalidArgumentError("")};
  for (uint8_t code = 1; code <= static_cast<uint8_t>(StatusCode::kInternal); ++code) {
    statuses.emplace_back(static_cast<StatusCode>(code), "rank 3: " + std::to_string(code));
  }
  for (const Status& status : statuses) {
    Status decoded = InternalError("unset");
    Status s = DecodeStatus(EncodeStatus(status), &decoded);
    ASSERT_TRUE(s.ok()) << s;
    EXPECT_EQ(decoded, status);
  }
}

// A copy of a prefix of `bytes` in an allocation of exactly its size, so that AddressSanitizer
// reports a read even one byte past it.
class ExactPrefix {
 public:
  ExactPrefix(std::string_view bytes, size_t keep) : data_(new char[keep]), size_(keep) {
    std::memcpy(data_.get(), bytes.data(), keep);
  }
  std::string_view view() const { return {data_.get(), size_}; }

 private:
  std::unique_ptr<char[]> data_;
  size_t size_;
};

// Every proper prefix of every encoding is DATA_LOSS, and no decoder reads past its input.
TEST(PlanCodecTest, EveryTruncationIsDataLoss) {
  const std::string save = EncodeSavePlan(SampleSavePlan());
  const std::string load = EncodeLoadPlan(SampleLoadPlan());
  const std::string results = EncodeWriteResults(SampleWriteResults());
  const std::string status = EncodeStatus(AbortedError("rank 7 failed"));
  for (size_t keep = 0; keep < save.size(); ++keep) {
    const ExactPrefix prefix(save, keep);
    ASSERT_EQ(DecodeSavePlan(prefix.view()).status().code(), StatusCode::kDataLoss) << keep;
  }
  for (size_t keep = 0; keep < load.size(); ++keep) {
    const ExactPrefix prefix(load, keep);
    ASSERT_EQ(DecodeLoadPlan(prefix.view()).status().code(), StatusCode::kDataLoss) << keep;
  }
  for (size_t keep = 0; keep < results.size(); ++keep) {
    const ExactPrefix prefix(results, keep);
    ASSERT_EQ(DecodeWriteResults(prefix.view()).status().code(), StatusCode::kDataLoss) << keep;
  }
  for (size_t keep = 0; keep < status.size(); ++keep) {
    const ExactPrefix prefix(status, keep);
    Status out;
    ASSERT_EQ(DecodeStatus(prefix.view(), &out).code(), StatusCode::kDataLoss) << keep;
  }
  ExpectDataLoss(DecodeSavePlan(save.substr(0, save.size() - 1)).status(),
                 "corrupt SavePlan encoding: storage_data");
}

TEST(PlanCodecTest, TrailingBytesAreDataLoss) {
  ExpectDataLoss(DecodeSavePlan(EncodeSavePlan(SampleSavePlan()) + "x").status(),
                 "1 trailing bytes");
  ExpectDataLoss(DecodeLoadPlan(EncodeLoadPlan(LoadPlan{}) + "xy").status(), "2 trailing bytes");
  ExpectDataLoss(DecodeWriteResults(EncodeWriteResults({}) + std::string(1, '\0')).status(),
                 "trailing bytes");
  Status out;
  ExpectDataLoss(DecodeStatus(EncodeStatus(Status::Ok()) + "!", &out), "trailing bytes");
}

TEST(PlanCodecTest, HeaderIsChecked) {
  std::string enc = EncodeSavePlan(SampleSavePlan());
  std::string bad_magic = enc;
  bad_magic[0] = 'x';
  ExpectDataLoss(DecodeSavePlan(bad_magic).status(), "bad magic byte");
  std::string bad_version = enc;
  bad_version[2] = 3;
  ExpectDataLoss(DecodeSavePlan(bad_version).status(), "unsupported version 3");
  // A LoadPlan is not a SavePlan.
  ExpectDataLoss(DecodeSavePlan(EncodeLoadPlan(LoadPlan{})).status(),
                 "message kind LoadPlan, expected SavePlan");
  Status out;
  ExpectDataLoss(DecodeStatus(EncodeWriteResults({}), &out), "expected Status");
}

// A header followed by `body` bytes.
std::string Message(char kind, std::string_view body) {
  std::string m = {static_cast<char>(kPlanWireMagic), kind, static_cast<char>(kPlanWireVersion)};
  m.append(body);
  return m;
}

TEST(PlanCodecTest, HostileCountsFailFastWithoutAllocating) {
  // Item count 2^60 (varint 80 80 ... 80 10) followed by a few bytes.
  const std::string huge("\x80\x80\x80\x80\x80\x80\x80\x80\x10", 9);
  const auto start = std::chrono::steady_clock::now();
  ExpectDataLoss(DecodeSavePlan(Message('S', huge + "abc")).status(),
                 "item count: count 1152921504606846976 cannot fit in the 3 remaining bytes");
  ExpectDataLoss(DecodeLoadPlan(Message('L', huge)).status(), "item count");
  ExpectDataLoss(DecodeWriteResults(Message('W', huge)).status(), "result count");
  // A string length of 2^60.
  ExpectDataLoss(DecodeSavePlan(Message('S', std::string("\x01", 1) + huge)).status(),
                 "write item 0: fqn: length 1152921504606846976 exceeds the 0 remaining bytes");
  Status out;
  ExpectDataLoss(DecodeStatus(Message('E', std::string("\x05", 1) + huge + "xx"), &out),
                 "message: length");
  // A dimension count of 2^60, and one over the limit.
  ExpectDataLoss(DecodeSavePlan(Message('S', std::string("\x01\x01w\x00\x01", 5) + huge)).status(),
                 "global_shape: 1152921504606846976 dimensions; the limit is 64");
  // Count 1 of a 6-byte minimum item with only 5 bytes left.
  ExpectDataLoss(DecodeSavePlan(Message('S', std::string("\x01\x00\x00\x01\x00\x00", 6))).status(),
                 "count 1 cannot fit");
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(1));
}

TEST(PlanCodecTest, MalformedVarintsAreDataLoss) {
  // 11 continuation bytes; a 10th byte above 1; a non-minimal encoding of 0.
  ExpectDataLoss(DecodeSavePlan(Message('S', std::string(11, '\xff'))).status(),
                 "varint overflows 64 bits");
  ExpectDataLoss(
      DecodeSavePlan(Message('S', std::string("\xff\xff\xff\xff\xff\xff\xff\xff\xff\x02", 10)))
          .status(),
      "varint overflows 64 bits");
  ExpectDataLoss(DecodeSavePlan(Message('S', std::string("\x80\x00\x00\x00", 4))).status(),
                 "not minimally encoded");
  // The largest value is accepted: an offset of 2^64-1 as a WriteResult offset.
  WriteResult r{"x", {kMax64}, 0, kMax64, 0};
  std::string enc = EncodeWriteResults({r});
  EXPECT_NE(enc.find(std::string("\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", 10)),
            std::string::npos);
  ASSERT_TRUE(DecodeWriteResults(enc).ok());
  // chunks and rank must fit 32 bits.
  std::string big_chunks =
      Message('W', std::string("\x01\x01x\x00\x00\x00\x80\x80\x80\x80\x10", 11));
  ExpectDataLoss(DecodeWriteResults(big_chunks).status(),
                 "write result 0: chunks: value 4294967296 exceeds 32 bits");
  std::string big_rank = Message('W', std::string("\x01\x01x\x00\x80\x80\x80\x80\x10\x00\x00", 11));
  ExpectDataLoss(DecodeWriteResults(big_rank).status(), "rank: value 4294967296 exceeds 32 bits");
}

TEST(PlanCodecTest, BadEnumsAreDataLoss) {
  SavePlan plan;
  plan.items.push_back(WriteItem{"w", WriteItemType::kShard, DType::kInt8, {4}, {0}, {4}});
  std::string enc = EncodeSavePlan(plan);
  // Layout: header(3) count(1) fqn_len(1) 'w' type dtype ...
  ASSERT_EQ(enc[6], 1);
  ASSERT_EQ(enc[7], static_cast<char>(DType::kInt8));
  std::string bad_type = enc;
  bad_type[6] = 3;
  ExpectDataLoss(DecodeSavePlan(bad_type).status(), "write item 0: type: invalid WriteItemType 3");
  for (uint8_t dtype : {uint8_t{0}, uint8_t{23}, uint8_t{255}}) {
    std::string bad_dtype = enc;
    bad_dtype[7] = static_cast<char>(dtype);
    ExpectDataLoss(DecodeSavePlan(bad_dtype).status(),
                   "write item 0: dtype: invalid dtype " + std::to_string(dtype));
  }
  LoadPlan load;
  load.items.emplace_back();
  std::string lenc = EncodeLoadPlan(load);
  lenc[5] = 7;  // header(3) count(1) fqn_len(1) type
  ExpectDataLoss(DecodeLoadPlan(lenc).status(), "read item 0: type: invalid WriteItemType 7");

  Status out = Status::Ok();
  std::string status = EncodeStatus(InternalError("x"));
  status[3] = 14;
  ExpectDataLoss(DecodeStatus(status, &out), "code: invalid StatusCode 14");
  EXPECT_TRUE(out.ok());  // unchanged
  // An OK status with a message has no encoding of its own.
  ExpectDataLoss(DecodeStatus(Message('E', std::string("\x00\x01m", 3)), &out),
                 "an OK status carries no message");
}

TEST(PlanCodecTest, RandomGarbageNeverCrashes) {
  for (uint64_t seed = 0; seed < 2000; ++seed) {
    std::string junk = Binary(seed % 64, seed);
    const char kinds[] = {'S', 'L', 'W', 'E'};
    if (seed % 2 == 0) junk = Message(kinds[seed % 4], junk);
    for (StatusCode code :
         {DecodeSavePlan(junk).status().code(), DecodeLoadPlan(junk).status().code(),
          DecodeWriteResults(junk).status().code()}) {
      EXPECT_TRUE(code == StatusCode::kOk || code == StatusCode::kDataLoss);
    }
    Status out;
    StatusCode code = DecodeStatus(junk, &out).code();
    EXPECT_TRUE(code == StatusCode::kOk || code == StatusCode::kDataLoss);
  }
  // Flipping each byte of a real encoding: DATA_LOSS, or a decode that re-encodes to the
  // flipped bytes (every accepted input is canonical).
  const std::string enc = EncodeLoadPlan(SampleLoadPlan());
  for (size_t at = 0; at < enc.size(); ++at) {
    std::string bad = enc;
    bad[at] = static_cast<char>(bad[at] ^ 0x41);
    StatusOr<LoadPlan> d = DecodeLoadPlan(bad);
    if (d.ok()) {
      EXPECT_EQ(EncodeLoadPlan(*d), bad) << at;
    } else {
      ASSERT_EQ(d.status().code(), StatusCode::kDataLoss) << at;
    }
  }
}

TEST(PlanCodecTest, HashSavePlan) {
  const SavePlan plan = SampleSavePlan();
  SavePlan copy = plan;
  EXPECT_EQ(HashSavePlan(plan), HashSavePlan(copy));
  EXPECT_NE(HashSavePlan(plan), HashSavePlan(SavePlan{}));
  std::vector<SavePlan> variants;
  variants.push_back(copy);
  variants.back().items[3].fqn += "x";
  variants.push_back(copy);
  variants.back().items[4].type = WriteItemType::kTensor;
  variants.push_back(copy);
  variants.back().items[5].dtype = DType::kFloat64;
  variants.push_back(copy);
  variants.back().items[5].global_shape.push_back(0);
  variants.push_back(copy);
  variants.back().items[7].offsets[0] ^= 1;
  variants.push_back(copy);
  variants.back().items[8].sizes[1] += 1;
  variants.push_back(copy);
  variants.back().planner_data.back() ^= 1;
  variants.push_back(copy);
  variants.back().storage_data += '\0';
  variants.push_back(copy);
  std::swap(variants.back().items[0], variants.back().items[1]);
  variants.push_back(copy);
  variants.back().items.pop_back();
  // Moving a byte from planner_data to storage_data must change the hash too.
  SavePlan moved;
  moved.planner_data = "ab";
  SavePlan moved2;
  moved2.planner_data = "a";
  moved2.storage_data = "b";
  EXPECT_NE(HashSavePlan(moved), HashSavePlan(moved2));
  for (size_t i = 0; i < variants.size(); ++i) {
    EXPECT_NE(HashSavePlan(variants[i]), HashSavePlan(plan)) << "variant " << i;
  }
}

}  // namespace
}  // namespace dcpkv

#include "dcpkv/core/manifest_record_codec.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace dcpkv {
namespace {

TEST(ManifestRecordTest, RoundTripAtAnyAlignment) {
  ManifestRecord r{"step-42", 1764331200123456, std::string("meta\0data", 9)};
  std::string enc = EncodeManifestRecord(r);
  for (size_t shift = 0; shift < 8; ++shift) {
    std::string buf(shift, 'x');
    buf += enc;
    StatusOr<ManifestRecord> d = DecodeManifestRecord(std::string_view(buf).substr(shift));
    ASSERT_TRUE(d.ok()) << d.status();
    EXPECT_EQ(d->checkpoint_id, r.checkpoint_id);
    EXPECT_EQ(d->committed_unix_micros, r.committed_unix_micros);
    EXPECT_EQ(d->payload, r.payload);
  }
}

TEST(ManifestRecordTest, CorruptionIsDataLoss) {
  std::string payload(1000, 'p');
  std::string enc = EncodeManifestRecord({"c1", 5, payload});
  size_t at = enc.find(payload);
  ASSERT_NE(at, std::string::npos);
  std::string flipped = enc;
  flipped[at + 500] ^= 0x10;
  EXPECT_THAT(DecodeManifestRecord(flipped).status().message(),
              ::testing::HasSubstr("checksum mismatch"));
  for (size_t keep : {size_t{0}, size_t{7}, size_t{20}, enc.size() - 1}) {
    EXPECT_EQ(DecodeManifestRecord(enc.substr(0, keep)).status().code(), StatusCode::kDataLoss);
  }
  EXPECT_EQ(DecodeManifestRecord(std::string(64, '\x5a')).status().code(), StatusCode::kDataLoss);
}

}  // namespace
}  // namespace dcpkv

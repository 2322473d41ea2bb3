#include "dcpkv/status.h"

#include <gtest/gtest.h>

#include "dcpkv/dtype.h"

namespace dcpkv {
namespace {

TEST(StatusTest, OkIsDefaultAndCheap) {
  Status s;
  EXPECT_TRUE(s.ok());
  EXPECT_EQ(s.code(), StatusCode::kOk);
  EXPECT_EQ(s.ToString(), "OK");
  EXPECT_EQ(s.message(), "");
}

TEST(StatusTest, ErrorCarriesCodeAndMessage) {
  Status s = DataLossError("checksum mismatch");
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(s.code(), StatusCode::kDataLoss);
  EXPECT_EQ(s.ToString(), "DATA_LOSS: checksum mismatch");
  EXPECT_EQ(s.WithContext("chunk x").ToString(), "DATA_LOSS: chunk x: checksum mismatch");
  EXPECT_TRUE(Status().WithContext("ignored").ok());
}

StatusOr<int> Half(int x) {
  if (x % 2) return InvalidArgumentError("odd");
  return x / 2;
}

Status UseHalf(int x, int* out) {
  DCPKV_ASSIGN_OR_RETURN(*out, Half(x));
  return Status::Ok();
}

TEST(StatusTest, StatusOrAndMacros) {
  int v = 0;
  EXPECT_TRUE(UseHalf(8, &v).ok());
  EXPECT_EQ(v, 4);
  Status s = UseHalf(3, &v);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  StatusOr<int> from_ok = Status::Ok();
  EXPECT_EQ(from_ok.status().code(), StatusCode::kInternal);
}

TEST(DTypeTest, SizesAndNamesRoundTrip) {
  EXPECT_EQ(ElementSize(DType::kFloat64), 8u);
  EXPECT_EQ(ElementSize(DType::kBFloat16), 2u);
  EXPECT_EQ(ElementSize(DType::kFloat8E5M2), 1u);
  for (DType d : kAllDTypes) {
    EXPECT_GT(ElementSize(d), 0u);
    EXPECT_TRUE(IsValidDType(static_cast<uint8_t>(d)));
    auto back = DTypeFromName(DTypeName(d));
    ASSERT_TRUE(back.has_value()) << DTypeName(d);
    EXPECT_EQ(*back, d);
  }
  EXPECT_FALSE(IsValidDType(0));
  EXPECT_FALSE(IsValidDType(23));
  EXPECT_FALSE(DTypeFromName("float128").has_value());
}

}  // namespace
}  // namespace dcpkv

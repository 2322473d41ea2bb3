// NewSingleProcessGroup: a world of one.
#include <gtest/gtest.h>

#include "dcpkv/process_group.h"

namespace dcpkv {
namespace {

TEST(SingleProcessGroupTest, CollectivesReturnTheirInput) {
  std::unique_ptr<ProcessGroup> pg = NewSingleProcessGroup();
  EXPECT_EQ(pg->rank(), 0);
  EXPECT_EQ(pg->size(), 1);
  EXPECT_EQ(pg->backend(), "single");
  EXPECT_TRUE(pg->supports_cpu());

  const std::string data("a\0b", 3);
  auto gathered = pg->Gather(data, 0);
  ASSERT_TRUE(gathered.ok()) << gathered.status();
  EXPECT_EQ(*gathered, std::vector<std::string>{data});
  auto all = pg->AllGather("");
  ASSERT_TRUE(all.ok()) << all.status();
  EXPECT_EQ(*all, std::vector<std::string>{""});
  auto part = pg->Scatter({data}, 0);
  ASSERT_TRUE(part.ok()) << part.status();
  EXPECT_EQ(*part, data);
  auto bcast = pg->Broadcast(data, 0);
  ASSERT_TRUE(bcast.ok()) << bcast.status();
  EXPECT_EQ(*bcast, data);
  EXPECT_TRUE(pg->Barrier().ok());
  EXPECT_EQ(pg->bytes_sent(), 0u);
}

TEST(SingleProcessGroupTest, Timeout) {
  std::unique_ptr<ProcessGroup> pg = NewSingleProcessGroup();
  pg->set_timeout(std::chrono::milliseconds(1234));
  EXPECT_EQ(pg->timeout(), std::chrono::milliseconds(1234));
}

TEST(SingleProcessGroupTest, BadArguments) {
  std::unique_ptr<ProcessGroup> pg = NewSingleProcessGroup();
  EXPECT_EQ(pg->Gather("x", 1).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(pg->Gather("x", -1).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(pg->Broadcast("x", 1).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(pg->Scatter({"x"}, 1).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(pg->Scatter({}, 0).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(pg->Scatter({"x", "y"}, 0).status().code(), StatusCode::kInvalidArgument);
  // Bad arguments do not break the group.
  EXPECT_TRUE(pg->Barrier().ok());
  EXPECT_EQ(pg->bytes_sent(), 0u);
}

}  // namespace
}  // namespace dcpkv

// CreateGlooSubgroup: groups of some of the parent's ranks.
#include <gtest/gtest.h>

#include "dcpkv/gloo_process_group.h"
#include "tests/util/gloo_threads.h"

namespace dcpkv {
namespace {

using std::chrono::milliseconds;
using testing::RunOnGlooRanks;

// Ranks 1 and 3 work in their subgroup while ranks 0 and 2 work in theirs (listed in reverse
// order, so parent rank 2 is rank 0 there); then the whole world works again.
TEST(GlooSubgroupTest, DisjointSubgroupsWorkSideBySide) {
  RunOnGlooRanks(4, [&](ProcessGroup& pg) {
    const int rank = pg.rank();
    const bool odd = rank % 2 == 1;
    const std::vector<int> members = odd ? std::vector<int>{1, 3} : std::vector<int>{2, 0};
    auto sub = CreateGlooSubgroup(pg, members);
    ASSERT_TRUE(sub.ok()) << sub.status();
    ProcessGroup& g = **sub;
    EXPECT_EQ(g.size(), 2);
    EXPECT_EQ(g.backend(), "gloo");
    const int expected_rank = odd ? (rank == 1 ? 0 : 1) : (rank == 2 ? 0 : 1);
    EXPECT_EQ(g.rank(), expected_rank);
    EXPECT_EQ(g.timeout(), pg.timeout());

    const std::string mine = "parent rank " + std::to_string(rank);
    auto all = g.AllGather(mine);
    ASSERT_TRUE(all.ok()) << all.status();
    std::vector<std::string> expected;
    for (int m : members) expected.push_back("parent rank " + std::to_string(m));
    EXPECT_EQ(*all, expected);
    if (odd) {
      auto gathered = g.Gather(std::string(100000 + rank, char('a' + rank)), 1);
      ASSERT_TRUE(gathered.ok()) << gathered.status();
      if (g.rank() == 1) {
        ASSERT_EQ(gathered->size(), 2u);
        EXPECT_EQ((*gathered)[0], std::string(100001, 'b'));
        EXPECT_EQ((*gathered)[1], std::string(100003, 'd'));
      }
    } else {
      auto bcast = g.Broadcast(rank == 2 ? "from parent rank 2" : "", 0);
      ASSERT_TRUE(bcast.ok()) << bcast.status();
      EXPECT_EQ(*bcast, "from parent rank 2");
    }
    EXPECT_TRUE(g.Barrier().ok());

    // A second subgroup of the same ranks gets its own rendezvous keys.
    auto again = CreateGlooSubgroup(pg, members);
    ASSERT_TRUE(again.ok()) << again.status();
    auto b = (*again)->Broadcast(std::to_string(rank), 1);
    ASSERT_TRUE(b.ok()) << b.status();
    EXPECT_EQ(*b, std::to_string(members[1]));

    // The parent still works, and its slots were not used by the subgroups.
    auto world = pg.AllGather(mine);
    ASSERT_TRUE(world.ok()) << world.status();
    EXPECT_EQ((*world)[3], "parent rank 3");
    EXPECT_TRUE(pg.Barrier().ok());
  });
}

// A subgroup of subgroups, and a subgroup outliving its parent object.
TEST(GlooSubgroupTest, NestedSubgroupOutlivesParent) {
  RunOnGlooRanks(4, [&](ProcessGroup& pg) {
    if (pg.rank() == 0) return;
    auto sub = CreateGlooSubgroup(pg, {1, 2, 3});
    ASSERT_TRUE(sub.ok()) << sub.status();
    EXPECT_EQ((*sub)->rank(), pg.rank() - 1);
    if (pg.rank() == 1) return;
    auto nested = CreateGlooSubgroup(**sub, {2, 1});  // parent ranks 3 and 2
    ASSERT_TRUE(nested.ok()) << nested.status();
    sub->reset();
    auto all = (*nested)->AllGather(std::to_string(pg.rank()));
    ASSERT_TRUE(all.ok()) << all.status();
    EXPECT_EQ(*all, (std::vector<std::string>{"3", "2"}));
  });
}

TEST(GlooSubgroupTest, BadRankListsAreInvalid) {
  RunOnGlooRanks(4, [&](ProcessGroup& pg) {
    auto code = [&](const std::vector<int>& ranks) {
      return CreateGlooSubgroup(pg, ranks).status().code();
    };
    if (pg.rank() == 0 || pg.rank() == 2) {
      EXPECT_EQ(code({1, 3}), StatusCode::kInvalidArgument);  // not a member
    }
    EXPECT_EQ(code({}), StatusCode::kInvalidArgument);
    EXPECT_EQ(code({0, 1, 2, 3, 3}), StatusCode::kInvalidArgument);
    EXPECT_EQ(code({0, 1, 2, 4}), StatusCode::kInvalidArgument);
    EXPECT_EQ(code({-1, 0, 1, 2, 3}), StatusCode::kInvalidArgument);
    // A subgroup of one needs no peers.
    auto alone = CreateGlooSubgroup(pg, {pg.rank()});
    ASSERT_TRUE(alone.ok()) << alone.status();
    EXPECT_EQ((*alone)->size(), 1);
    auto all = (*alone)->AllGather("me");
    ASSERT_TRUE(all.ok()) << all.status();
    EXPECT_EQ(*all, std::vector<std::string>{"me"});
    EXPECT_TRUE(pg.Barrier().ok());
  });
  std::unique_ptr<ProcessGroup> single = NewSingleProcessGroup();
  Status s = CreateGlooSubgroup(*single, {0}).status();
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s;
  EXPECT_NE(s.message().find("single"), std::string::npos) << s;
}

}  // namespace
}  // namespace dcpkv

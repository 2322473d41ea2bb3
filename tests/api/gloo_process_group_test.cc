// The gloo ProcessGroup's collectives, with the ranks as threads of this process.
#include <gtest/gtest.h>

#include <thread>

#include "dcpkv/gloo_process_group.h"
#include "tests/util/gloo_threads.h"
#include "tests/util/multiprocess.h"
#include "tests/util/test_data.h"

namespace dcpkv {
namespace {

using std::chrono::milliseconds;
using testing::RunOnGlooRanks;

std::string Bytes(size_t size, uint64_t seed) {
  std::vector<uint8_t> b = testing::RandomBytes(size, seed);
  return std::string(b.begin(), b.end());
}

// payloads[step][rank]: in each step one rank has an empty buffer, one about 8 MiB.
std::vector<std::vector<std::string>> MakePayloads(int world, int steps) {
  static const size_t kSizes[] = {0, (size_t{8} << 20) + 5, 1, 65537};
  std::vector<std::vector<std::string>> p(steps);
  for (int s = 0; s < steps; ++s) {
    for (int r = 0; r < world; ++r) p[s].push_back(Bytes(kSizes[(r + s) % 4], s * 64 + r));
  }
  return p;
}

class GlooCollectivesTest : public ::testing::TestWithParam<int> {};

TEST_P(GlooCollectivesTest, EveryCollectiveIsExact) {
  const int world = GetParam();
  const int steps = 4;
  const auto payloads = MakePayloads(world, steps);
  RunOnGlooRanks(world, [&](ProcessGroup& pg) {
    const int rank = pg.rank();
    EXPECT_EQ(pg.size(), world);
    EXPECT_EQ(pg.backend(), "gloo");
    EXPECT_TRUE(pg.supports_cpu());
    for (int s = 0; s < steps; ++s) {
      const int root = s % world;
      SCOPED_TRACE("rank " + std::to_string(rank) + " step " + std::to_string(s));
      const std::string& mine = payloads[s][rank];

      auto all = pg.AllGather(mine);
      ASSERT_TRUE(all.ok()) << all.status();
      EXPECT_TRUE(*all == payloads[s]);

      auto gathered = pg.Gather(mine, root);
      ASSERT_TRUE(gathered.ok()) << gathered.status();
      if (rank == root) {
        EXPECT_TRUE(*gathered == payloads[s]);
      } else {
        EXPECT_TRUE(gathered->empty());
      }

      auto part = pg.Scatter(rank == root ? payloads[s] : std::vector<std::string>(), root);
      ASSERT_TRUE(part.ok()) << part.status();
      EXPECT_TRUE(*part == mine);

      auto bcast = pg.Broadcast(rank == root ? payloads[s][root] : "not root", root);
      ASSERT_TRUE(bcast.ok()) << bcast.status();
      EXPECT_TRUE(*bcast == payloads[s][root]);

      ASSERT_TRUE(pg.Barrier().ok());
    }
  });
}

INSTANTIATE_TEST_SUITE_P(Worlds, GlooCollectivesTest, ::testing::Values(1, 2, 4),
                         [](const auto& info) { return "World" + std::to_string(info.param); });

// Ranks run ahead of each other (nothing waits for a receiver to finish reading), so only the
// per-call slots keep successive calls apart.
TEST(GlooProcessGroupTest, ManySuccessiveCollectivesDoNotMix) {
  const int world = 4;
  RunOnGlooRanks(world, [&](ProcessGroup& pg) {
    const int rank = pg.rank();
    std::this_thread::sleep_for(milliseconds(30 * rank));  // arrive at different times
    for (int i = 0; i < 150; ++i) {
      const int root = (i * 3) % world;
      auto data = [&](int r) { return Bytes((i * 7 + r * 13) % 50, i * 16 + r); };
      switch (i % 4) {
        case 0: {
          auto all = pg.AllGather(data(rank));
          ASSERT_TRUE(all.ok()) << all.status();
          for (int r = 0; r < world; ++r) ASSERT_EQ((*all)[r], data(r)) << "call " << i;
          break;
        }
        case 1: {
          auto bcast = pg.Broadcast(data(rank), root);
          ASSERT_TRUE(bcast.ok()) << bcast.status();
          ASSERT_EQ(*bcast, data(root)) << "call " << i;
          break;
        }
        case 2: {
          auto gathered = pg.Gather(data(rank), root);
          ASSERT_TRUE(gathered.ok()) << gathered.status();
          if (rank == root) {
            for (int r = 0; r < world; ++r) ASSERT_EQ((*gathered)[r], data(r)) << "call " << i;
          }
          break;
        }
        case 3: {
          std::vector<std::string> parts;
          for (int r = 0; rank == root && r < world; ++r) parts.push_back(data(r));
          auto part = pg.Scatter(parts, root);
          ASSERT_TRUE(part.ok()) << part.status();
          ASSERT_EQ(*part, data(rank)) << "call " << i;
          break;
        }
      }
    }
    EXPECT_TRUE(pg.Barrier().ok());
  });
}

TEST(GlooProcessGroupTest, BytesSentCountsPayloadAndHeaders) {
  constexpr size_t kN = 100000;
  const std::string big = Bytes(kN, 1);
  RunOnGlooRanks(2, [&](ProcessGroup& pg) {
    const int rank = pg.rank();
    EXPECT_EQ(pg.bytes_sent(), 0u);
    uint64_t before = pg.bytes_sent();
    ASSERT_TRUE(pg.Gather(rank == 1 ? big : std::string(), 0).ok());
    uint64_t sent = pg.bytes_sent() - before;
    if (rank == 1) {
      EXPECT_GE(sent, kN);
      EXPECT_LE(sent, kN + 16);
    } else {
      EXPECT_EQ(sent, 0u);  // root only receives
    }

    before = pg.bytes_sent();
    ASSERT_TRUE(pg.Broadcast(big, 0).ok());
    sent = pg.bytes_sent() - before;
    if (rank == 0) {
      EXPECT_GE(sent, kN);
      EXPECT_LE(sent, kN + 16);
    } else {
      EXPECT_EQ(sent, 0u);
    }

    before = pg.bytes_sent();
    ASSERT_TRUE(pg.Barrier().ok());
    EXPECT_LE(pg.bytes_sent() - before, 16u);
  });
}

TEST(GlooProcessGroupTest, BytesSentGrowsWithWorldForAllGather) {
  constexpr size_t kN = 10000;
  RunOnGlooRanks(4, [&](ProcessGroup& pg) {
    const uint64_t before = pg.bytes_sent();
    ASSERT_TRUE(pg.AllGather(Bytes(kN, pg.rank())).ok());
    const uint64_t sent = pg.bytes_sent() - before;
    EXPECT_GE(sent, 3 * kN);
    EXPECT_LE(sent, 3 * (kN + 16));
  });
}

TEST(GlooProcessGroupTest, WorldOfOneNeedsNoServer) {
  GlooProcessGroupOptions options;
  options.master_port = 1;  // never contacted
  auto pg = CreateGlooProcessGroup(options);
  ASSERT_TRUE(pg.ok()) << pg.status();
  auto all = (*pg)->AllGather("x");
  ASSERT_TRUE(all.ok()) << all.status();
  EXPECT_EQ(*all, std::vector<std::string>{"x"});
  EXPECT_EQ((*pg)->Gather("x", 1).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ((*pg)->bytes_sent(), 0u);
}

// The plain torchrun path: rank 0 starts the server on master_port; rank 1 starts first and
// keeps retrying until it can connect.
TEST(GlooProcessGroupTest, RankZeroStartsTheServerAndLateStartIsFine) {
  const int port = testing::FindFreePort();
  ASSERT_NE(port, 0);
  auto options = [&](int rank) {
    GlooProcessGroupOptions o;
    o.rank = rank;
    o.world_size = 2;
    o.master_port = port;
    o.timeout = milliseconds(20000);
    return o;
  };
  std::thread rank1([&] {
    auto pg = CreateGlooProcessGroup(options(1));
    ASSERT_TRUE(pg.ok()) << pg.status();
    auto got = (*pg)->Broadcast("", 0);
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_EQ(*got, "from rank 0");
    EXPECT_TRUE((*pg)->Barrier().ok());
  });
  std::this_thread::sleep_for(milliseconds(300));
  auto pg = CreateGlooProcessGroup(options(0));
  ASSERT_TRUE(pg.ok()) << pg.status();
  auto got = (*pg)->Broadcast("from rank 0", 0);
  EXPECT_TRUE(got.ok()) << got.status();
  EXPECT_TRUE((*pg)->Barrier().ok());
  rank1.join();
}

// Two groups rendezvous at one server under different prefixes, at the same time.
TEST(GlooProcessGroupTest, GroupsShareAServerUnderPrefixes) {
  auto server = TcpStoreServer::Start("127.0.0.1", 0);
  ASSERT_TRUE(server.ok()) << server.status();
  EXPECT_GT((*server)->port(), 0);
  EXPECT_EQ((*server)->host(), "127.0.0.1");
  auto run = [&](const std::string& prefix) {
    testing::RunOnGlooRanksWithServer(
        *server, 2,
        [&](ProcessGroup& pg) {
          auto all = pg.AllGather(prefix + std::to_string(pg.rank()));
          ASSERT_TRUE(all.ok()) << all.status();
          EXPECT_EQ(*all, (std::vector<std::string>{prefix + "0", prefix + "1"}));
        },
        milliseconds(20000), prefix);
  };
  std::thread a([&] { run("a"); });
  std::thread b([&] { run("b"); });
  a.join();
  b.join();
}

}  // namespace
}  // namespace dcpkv

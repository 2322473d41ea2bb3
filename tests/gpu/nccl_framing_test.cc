// The NCCL group's framing (sizes, padding, chunking into rounds, failures) over a CPU fake of
// its transport: runs without a GPU.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>

#include "dcpkv/async_save.h"
#include "dcpkv/checkpoint.h"
#include "tests/gpu/fake_device_collectives.h"
#include "tests/util/sharding.h"
#include "tests/util/temp_dir.h"

namespace dcpkv {
namespace {

using ::testing::HasSubstr;
using testing::RunOnFakeNcclRanks;
using namespace std::chrono_literals;

// Rank r's payload of collective `tag`: `size` bytes that say who sent them.
std::string Payload(int rank, size_t size, int tag) {
  std::string s(size, '\0');
  for (size_t i = 0; i < size; ++i) s[i] = static_cast<char>((rank * 131 + tag * 7 + i) % 251);
  return s;
}

// Sizes that vary by rank: empty, smaller than a round, and many rounds of a 64-byte transport.
size_t SizeOf(int rank, int tag) {
  static const size_t kSizes[] = {0, 1, 7, 63, 64, 65, 1000, 5003};
  return kSizes[(rank + tag) % 8];
}

TEST(NcclFramingTest, GroupReportsTheNcclBackendWithoutCpuSupport) {
  RunOnFakeNcclRanks(2, {4096}, 10s, [](StatusOr<std::unique_ptr<ProcessGroup>>& g, int rank) {
    ASSERT_TRUE(g.ok()) << g.status();
    EXPECT_EQ((*g)->backend(), "nccl");
    EXPECT_FALSE((*g)->supports_cpu());
    EXPECT_EQ((*g)->rank(), rank);
    EXPECT_EQ((*g)->size(), 2);
    EXPECT_EQ((*g)->bytes_sent(), 0u) << "the creation handshake is not counted";
  });
}

TEST(NcclFramingTest, VariableSizeCollectivesChunkedThroughASmallTransport) {
  for (int world : {1, 2, 3, 4}) {
    RunOnFakeNcclRanks(world, {64}, 20s, [&](StatusOr<std::unique_ptr<ProcessGroup>>& g, int rank) {
      ASSERT_TRUE(g.ok()) << g.status();
      ProcessGroup& pg = **g;
      for (int tag = 0; tag < 8; ++tag) {
        const int root = tag % world;
        const std::string mine = Payload(rank, SizeOf(rank, tag), tag);

        StatusOr<std::vector<std::string>> gathered = pg.Gather(mine, root);
        ASSERT_TRUE(gathered.ok()) << gathered.status();
        if (rank == root) {
          ASSERT_EQ(gathered->size(), static_cast<size_t>(world));
          for (int r = 0; r < world; ++r) {
            EXPECT_EQ((*gathered)[r], Payload(r, SizeOf(r, tag), tag)) << "from " << r;
          }
        } else {
          EXPECT_TRUE(gathered->empty());
        }

        std::vector<std::string> pieces;
        if (rank == root) {
          for (int r = 0; r < world; ++r) pieces.push_back(Payload(r, SizeOf(r, tag + 3), tag));
        }
        StatusOr<std::string> piece = pg.Scatter(pieces, root);
        ASSERT_TRUE(piece.ok()) << piece.status();
        EXPECT_EQ(*piece, Payload(rank, SizeOf(rank, tag + 3), tag));

        StatusOr<std::string> all = pg.Broadcast(rank == root ? mine : "ignored", root);
        ASSERT_TRUE(all.ok()) << all.status();
        EXPECT_EQ(*all, Payload(root, SizeOf(root, tag), tag));

        StatusOr<std::vector<std::string>> everyone = pg.AllGather(mine);
        ASSERT_TRUE(everyone.ok()) << everyone.status();
        ASSERT_EQ(everyone->size(), static_cast<size_t>(world));
        for (int r = 0; r < world; ++r) {
          EXPECT_EQ((*everyone)[r], Payload(r, SizeOf(r, tag), tag)) << "from " << r;
        }
        ASSERT_TRUE(pg.Barrier().ok());
      }
    });
  }
}

TEST(NcclFramingTest, BytesSentCountsHeadersPayloadsAndPadding) {
  RunOnFakeNcclRanks(2, {4096}, 10s, [](StatusOr<std::unique_ptr<ProcessGroup>>& g, int rank) {
    ASSERT_TRUE(g.ok()) << g.status();
    ProcessGroup& pg = **g;
    ASSERT_TRUE(pg.Gather(std::string(100, 'x'), 0).ok());
    EXPECT_EQ(pg.bytes_sent(), rank == 1 ? 8u + 100u : 0u);
    const uint64_t before = pg.bytes_sent();
    // Payloads of 10 and 30 bytes: each rank contributes a header and 30 padded bytes.
    ASSERT_TRUE(pg.AllGather(std::string(rank == 0 ? 10 : 30, 'y')).ok());
    EXPECT_EQ(pg.bytes_sent() - before, 8u + 30u);
    const uint64_t mid = pg.bytes_sent();
    ASSERT_TRUE(pg.Broadcast(std::string(50, 'z'), 1).ok());
    EXPECT_EQ(pg.bytes_sent() - mid, rank == 1 ? 8u + 50u : 0u);
  });
}

TEST(NcclFramingTest, LargePayloadsNeverExceedTheTransportLimit) {
  // The fake fails any call above its limit: these succeed only if every round fits.
  RunOnFakeNcclRanks(3, {96}, 20s, [](StatusOr<std::unique_ptr<ProcessGroup>>& g, int rank) {
    ASSERT_TRUE(g.ok()) << g.status();
    const std::string big = Payload(rank, 100000 + rank * 17, 1);
    StatusOr<std::vector<std::string>> all = (*g)->AllGather(big);
    ASSERT_TRUE(all.ok()) << all.status();
    for (int r = 0; r < 3; ++r) EXPECT_EQ((*all)[r], Payload(r, 100000 + r * 17, 1));
    StatusOr<std::vector<std::string>> at_root = (*g)->Gather(big, 2);
    ASSERT_TRUE(at_root.ok()) << at_root.status();
    if (rank == 2) {
      EXPECT_EQ((*at_root)[0], Payload(0, 100000, 1));
    }
  });
}

TEST(NcclFramingTest, AbsentPeerTimesOutAndBreaksTheGroup) {
  std::atomic<bool> rank0_done{false};
  RunOnFakeNcclRanks(2, {4096}, 5s, [&](StatusOr<std::unique_ptr<ProcessGroup>>& g, int rank) {
    ASSERT_TRUE(g.ok()) << g.status();
    ProcessGroup& pg = **g;
    pg.set_timeout(200ms);
    if (rank == 0) {
      const auto start = std::chrono::steady_clock::now();
      Status s = pg.Barrier();
      EXPECT_EQ(s.code(), StatusCode::kDeadlineExceeded) << s;
      EXPECT_LT(std::chrono::steady_clock::now() - start, 3s);
      Status again = pg.Barrier();
      EXPECT_EQ(again.code(), StatusCode::kAborted) << again;
      EXPECT_THAT(std::string(again.message()), HasSubstr("broken by an earlier failure"));
      rank0_done = true;
    } else {
      // Rank 1 skips the barrier (and stays until rank 0 has given up).
      while (!rank0_done) std::this_thread::sleep_for(10ms);
    }
  });
}

TEST(NcclFramingTest, RanksMustAgreeOnTheTransferLimit) {
  RunOnFakeNcclRanks(2, {128, 256}, 5s, [](StatusOr<std::unique_ptr<ProcessGroup>>& g, int) {
    ASSERT_FALSE(g.ok());
    EXPECT_EQ(g.status().code(), StatusCode::kInvalidArgument) << g.status();
    EXPECT_THAT(std::string(g.status().message()), HasSubstr("max_transfer_bytes differs"));
  });
}

TEST(NcclFramingTest, BadArgumentsFailWithoutBreakingTheGroup) {
  RunOnFakeNcclRanks(2, {4096}, 10s, [](StatusOr<std::unique_ptr<ProcessGroup>>& g, int rank) {
    ASSERT_TRUE(g.ok()) << g.status();
    ProcessGroup& pg = **g;
    EXPECT_EQ(pg.Gather("x", 2).status().code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(pg.Broadcast("x", -1).status().code(), StatusCode::kInvalidArgument);
    if (rank == 0) {
      EXPECT_EQ(pg.Scatter({"only one"}, 0).status().code(), StatusCode::kInvalidArgument);
    }
    EXPECT_TRUE(pg.Barrier().ok());
  });
}

TEST(NcclFramingTest, SaveAndReshardedLoadExchangePlansOverTheGroup) {
  testing::TempDir tmp;
  const Tensor global = testing::MakeGlobal({37, 12}, 3);
  RunOnFakeNcclRanks(2, {256}, 30s, [&](StatusOr<std::unique_ptr<ProcessGroup>>& g, int rank) {
    ASSERT_TRUE(g.ok()) << g.status();
    ProcessGroup& pg = **g;
    Bytes step{"step 7"};
    StateDict state;
    state.Set("w", testing::ShardOf(global, 0, 2, rank));
    state.Set("step", step);
    SaveOptions save;
    save.checkpoint_id = "fake-nccl";
    save.store_root = tmp.path();
    save.process_group = &pg;
    StatusOr<Metadata> md = Save(state, save);
    ASSERT_TRUE(md.ok()) << md.status();
    EXPECT_GT(pg.bytes_sent(), 0u);

    StateDict target;
    ShardedTensor columns = testing::EmptyShardOf(global, 1, 2, rank);
    target.Set("w", columns);
    LoadOptions load;
    load.checkpoint_id = "fake-nccl";
    load.store_root = tmp.path();
    load.process_group = &pg;
    Status loaded = Load(target, load);
    ASSERT_TRUE(loaded.ok()) << loaded;
    const Box box = testing::SplitBox(global.shape(), 1, 2, rank);
    EXPECT_TRUE(testing::SameBytes(columns.local_shards[0].tensor, testing::Slice(global, box)));
  });
}

TEST(NcclFramingTest, AsyncSaveRefusesAGroupWithoutCpuSupport) {
  testing::TempDir tmp;
  RunOnFakeNcclRanks(1, {4096}, 10s, [&](StatusOr<std::unique_ptr<ProcessGroup>>& g, int) {
    ASSERT_TRUE(g.ok()) << g.status();
    StateDict state;
    state.Set("w", testing::MakeGlobal({4, 4}, 1));
    AsyncSaveOptions o;
    o.save.checkpoint_id = "refused";
    o.save.store_root = tmp.path();
    o.save.process_group = g->get();
    StatusOr<AsyncSaveResponse> r = AsyncSave(state, o);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), StatusCode::kFailedPrecondition);
    EXPECT_THAT(std::string(r.status().message()),
                HasSubstr("async save needs a CPU-capable process group"));
    EXPECT_THAT(std::string(r.status().message()), HasSubstr("nccl"));
  });
}

}  // namespace
}  // namespace dcpkv

// The NCCL process group on real devices: a world of one (any GPU machine) running save and
// load's plan exchange, a world of two threads when there are two devices, timeouts. Without a
// GPU (or NCCL) only the creation error is checked.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <latch>
#include <thread>

#include "dcpkv/async_save.h"
#include "dcpkv/checkpoint.h"
#include "dcpkv/nccl_process_group.h"
#include "tests/gpu/gpu_test_util.h"
#include "tests/util/sharding.h"
#include "tests/util/temp_dir.h"

namespace dcpkv {
namespace {

using ::testing::AnyOf;
using testing::DeviceTensor;
using ::testing::HasSubstr;
using namespace std::chrono_literals;

#define DCPKV_REQUIRE_NCCL()                                                   \
  do {                                                                         \
    if (!NcclBackendBuilt()) GTEST_SKIP() << "this build has no NCCL backend"; \
  } while (0)

TEST(NcclProcessGroupTest, CreationWithoutNcclOrGpuIsAClearError) {
  if (NcclBackendBuilt() && testing::GpuCount() > 0) {
    GTEST_SKIP() << "NCCL and a CUDA device are present: creation succeeds here";
  }
  NcclProcessGroupOptions o;
  StatusOr<std::unique_ptr<ProcessGroup>> g = CreateNcclProcessGroup(o);
  ASSERT_FALSE(g.ok());
  EXPECT_EQ(g.status().code(), StatusCode::kFailedPrecondition) << g.status();
  EXPECT_THAT(std::string(g.status().message()),
              AnyOf(HasSubstr("no NCCL backend"), HasSubstr("no CUDA device is available")));
}

TEST(NcclProcessGroupTest, BadOptionsAreRejectedBeforeAnythingElse) {
  NcclProcessGroupOptions o;
  o.rank = 2;
  o.world_size = 2;
  EXPECT_EQ(CreateNcclProcessGroup(o).status().code(), StatusCode::kInvalidArgument);
  o.rank = 0;
  o.max_transfer_bytes = 16;
  EXPECT_EQ(CreateNcclProcessGroup(o).status().code(), StatusCode::kInvalidArgument);
}

std::unique_ptr<ProcessGroup> WorldOfOne() {
  NcclProcessGroupOptions o;
  o.device = 0;
  o.timeout = 60s;
  StatusOr<std::unique_ptr<ProcessGroup>> g = CreateNcclProcessGroup(o);
  EXPECT_TRUE(g.ok()) << g.status();
  return g.ok() ? std::move(g).value() : nullptr;
}

TEST(NcclProcessGroupTest, WorldOfOneExchangesSaveAndLoadPlans) {
  DCPKV_REQUIRE_NCCL();
  DCPKV_REQUIRE_GPUS(1);
  std::unique_ptr<ProcessGroup> group = WorldOfOne();
  ASSERT_NE(group, nullptr);
  EXPECT_EQ(group->backend(), "nccl");
  EXPECT_FALSE(group->supports_cpu());
  StatusOr<std::vector<std::string>> all = group->AllGather("hello");
  ASSERT_TRUE(all.ok()) << all.status();
  EXPECT_EQ(*all, std::vector<std::string>{"hello"});
  StatusOr<std::string> b = group->Broadcast(std::string(100000, 'q'), 0);
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(*b, std::string(100000, 'q'));
  ASSERT_TRUE(group->Barrier().ok());

  testing::TempDir tmp;
  const Tensor global = testing::MakeGlobal({300, 40}, 5);
  DeviceTensor w = DeviceTensor::Copy(global, 0);
  StateDict state;
  state.Set("w", w.view());
  state.Set("step", Bytes{"12"});
  SaveOptions save;
  save.checkpoint_id = "nccl1";
  save.store_root = tmp.path();
  save.process_group = group.get();
  const uint64_t before = group->bytes_sent();
  StatusOr<Metadata> md = Save(state, save);
  ASSERT_TRUE(md.ok()) << md.status();
  EXPECT_GT(group->bytes_sent(), before) << "the outcome broadcast went through NCCL";

  DeviceTensor back = DeviceTensor::Filled(DType::kFloat32, {300, 40}, 0);
  StateDict into;
  into.Set("w", back.view());
  into.Set("step", Bytes{});
  LoadOptions load;
  load.checkpoint_id = "nccl1";
  load.store_root = tmp.path();
  load.process_group = group.get();
  Status loaded = Load(into, load);
  ASSERT_TRUE(loaded.ok()) << loaded;
  EXPECT_TRUE(testing::SameBytes(back.ToHost(), global));
}

TEST(NcclProcessGroupTest, AsyncSaveRefusesAnNcclGroup) {
  DCPKV_REQUIRE_NCCL();
  DCPKV_REQUIRE_GPUS(1);
  std::unique_ptr<ProcessGroup> group = WorldOfOne();
  ASSERT_NE(group, nullptr);
  testing::TempDir tmp;
  StateDict state;
  state.Set("w", testing::MakeGlobal({4}, 1));
  AsyncSaveOptions o;
  o.save.checkpoint_id = "refused";
  o.save.store_root = tmp.path();
  o.save.process_group = group.get();
  StatusOr<AsyncSaveResponse> r = AsyncSave(state, o);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("CPU-capable process group"));
}

TEST(NcclProcessGroupTest, RankThatNeverJoinsIsADeadlineNotAHang) {
  DCPKV_REQUIRE_NCCL();
  DCPKV_REQUIRE_GPUS(1);
  StatusOr<std::shared_ptr<TcpStoreServer>> server = TcpStoreServer::Start("127.0.0.1", 0);
  ASSERT_TRUE(server.ok()) << server.status();
  NcclProcessGroupOptions o;
  o.world_size = 2;  // rank 1 never comes
  o.server = *server;
  o.device = 0;
  o.timeout = 3s;
  const auto start = std::chrono::steady_clock::now();
  StatusOr<std::unique_ptr<ProcessGroup>> g = CreateNcclProcessGroup(o);
  ASSERT_FALSE(g.ok());
  EXPECT_EQ(g.status().code(), StatusCode::kDeadlineExceeded) << g.status();
  EXPECT_LT(std::chrono::steady_clock::now() - start, 30s);
}

// Runs body(group, rank) on two threads, rank r on device r.
void RunOnTwoDevices(const std::function<void(ProcessGroup&, int)>& body,
                     uint64_t max_transfer_bytes = uint64_t{16} << 20) {
  StatusOr<std::shared_ptr<TcpStoreServer>> server = TcpStoreServer::Start("127.0.0.1", 0);
  ASSERT_TRUE(server.ok()) << server.status();
  std::latch done(2);
  std::vector<std::thread> threads;
  for (int rank = 0; rank < 2; ++rank) {
    threads.emplace_back([&, rank] {
      NcclProcessGroupOptions o;
      o.rank = rank;
      o.world_size = 2;
      o.server = *server;
      o.device = rank;
      o.timeout = 60s;
      o.max_transfer_bytes = max_transfer_bytes;
      StatusOr<std::unique_ptr<ProcessGroup>> g = CreateNcclProcessGroup(o);
      if (!g.ok()) {
        ADD_FAILURE() << "rank " << rank << ": " << g.status();
      } else {
        body(**g, rank);
      }
      done.arrive_and_wait();
    });
  }
  for (std::thread& t : threads) t.join();
}

TEST(NcclProcessGroupTest, WorldOfTwoCollectivesAndResharding) {
  DCPKV_REQUIRE_NCCL();
  DCPKV_REQUIRE_GPUS(2);
  testing::TempDir tmp;
  const Tensor global = testing::MakeGlobal({123, 64}, 7);
  RunOnTwoDevices(
      [&](ProcessGroup& pg, int rank) {
        // Payloads of several rounds of a 4 KiB transfer limit.
        const std::string mine(10000 + rank * 3333, static_cast<char>('a' + rank));
        StatusOr<std::vector<std::string>> g = pg.Gather(mine, 1);
        ASSERT_TRUE(g.ok()) << g.status();
        if (rank == 1) {
          EXPECT_EQ((*g)[0], std::string(10000, 'a'));
        }
        StatusOr<std::string> s = pg.Scatter({std::string(5000, 'x'), std::string(7, 'y')}, 0);
        ASSERT_TRUE(s.ok()) << s.status();
        EXPECT_EQ(*s, rank == 0 ? std::string(5000, 'x') : std::string(7, 'y'));
        StatusOr<std::vector<std::string>> all = pg.AllGather(mine);
        ASSERT_TRUE(all.ok()) << all.status();
        EXPECT_EQ((*all)[1], std::string(13333, 'b'));
        ASSERT_TRUE(pg.Barrier().ok());

        std::vector<DeviceTensor> memory;
        memory.push_back(DeviceTensor::Copy(
            testing::Slice(global, testing::SplitBox(global.shape(), 0, 2, rank)), rank));
        ShardedTensor rows{
            DType::kFloat32,
            global.shape(),
            {Shard{testing::SplitBox(global.shape(), 0, 2, rank).offsets, memory[0].view()}}};
        StateDict state;
        state.Set("w", rows);
        SaveOptions save;
        save.checkpoint_id = "nccl2";
        save.store_root = tmp.path();
        save.process_group = &pg;
        StatusOr<Metadata> md = Save(state, save);
        ASSERT_TRUE(md.ok()) << md.status();

        const Box cols = testing::SplitBox(global.shape(), 1, 2, rank);
        DeviceTensor back = DeviceTensor::Filled(DType::kFloat32, cols.sizes, rank);
        StateDict into;
        into.Set("w", ShardedTensor{
                          DType::kFloat32, global.shape(), {Shard{cols.offsets, back.view()}}});
        LoadOptions load;
        load.checkpoint_id = "nccl2";
        load.store_root = tmp.path();
        load.process_group = &pg;
        Status loaded = Load(into, load);
        ASSERT_TRUE(loaded.ok()) << loaded;
        EXPECT_TRUE(testing::SameBytes(back.ToHost(), testing::Slice(global, cols)));
      },
      4096);
}

TEST(NcclProcessGroupTest, CollectiveWithAnAbsentPeerTimesOutThenAborts) {
  DCPKV_REQUIRE_NCCL();
  DCPKV_REQUIRE_GPUS(2);
  std::atomic<bool> rank0_done{false};
  RunOnTwoDevices([&](ProcessGroup& pg, int rank) {
    pg.set_timeout(2s);
    if (rank == 0) {
      Status s = pg.Barrier();
      EXPECT_EQ(s.code(), StatusCode::kDeadlineExceeded) << s;
      EXPECT_EQ(pg.Barrier().code(), StatusCode::kAborted);
      rank0_done = true;
    } else {
      while (!rank0_done) std::this_thread::sleep_for(10ms);
    }
  });
}

}  // namespace
}  // namespace dcpkv

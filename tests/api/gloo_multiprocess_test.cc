// The gloo ProcessGroup between real processes (dcpkv_gloo_worker), started as torchrun would.
#include <gtest/gtest.h>
#include <signal.h>

#include "tests/util/multiprocess.h"

namespace dcpkv {
namespace {

using std::chrono::milliseconds;

const std::string kWorker = DCPKV_GLOO_WORKER_PATH;

// The launcher runs the rendezvous server (torchrun's agent store).
TEST(GlooMultiProcessTest, CollectivesWithAgentStore) {
  testing::MultiProcessOptions options;
  options.timeout = milliseconds(60000);
  auto result = testing::RunProcesses(kWorker, {"collectives"}, 2, options);
  ASSERT_EQ(result.error, "");
  EXPECT_FALSE(result.timed_out);
  EXPECT_EQ(result.exit_codes, (std::vector<int>{0, 0}));
}

// Rank 0 runs the rendezvous server itself, on MASTER_PORT.
TEST(GlooMultiProcessTest, CollectivesWithRankZeroServer) {
  testing::MultiProcessOptions options;
  options.parent_runs_store = false;
  auto result = testing::RunProcesses(kWorker, {"collectives"}, 3, options);
  ASSERT_EQ(result.error, "");
  EXPECT_FALSE(result.timed_out);
  EXPECT_EQ(result.exit_codes, (std::vector<int>{0, 0, 0}));
}

// Rank 1 is SIGKILLed mid-run; rank 0 gets UNAVAILABLE promptly (checked by the worker).
TEST(GlooMultiProcessTest, KilledPeerIsAnErrorNotAHang) {
  auto result = testing::RunProcesses(kWorker, {"peer-dies"}, 2);
  ASSERT_EQ(result.error, "");
  EXPECT_FALSE(result.timed_out);
  EXPECT_EQ(result.exit_codes, (std::vector<int>{0, -SIGKILL}));
}

// The launcher's timeout: a world that cannot finish is killed, not waited for.
TEST(GlooMultiProcessTest, LauncherKillsAtTimeout) {
  testing::MultiProcessOptions options;
  options.timeout = milliseconds(500);
  options.env = {{"WORLD_SIZE", "3"}};  // a third rank that never comes: rendezvous waits
  const auto start = std::chrono::steady_clock::now();
  auto result = testing::RunProcesses(kWorker, {"collectives"}, 2, options);
  EXPECT_TRUE(result.timed_out);
  EXPECT_EQ(result.exit_codes, (std::vector<int>{-SIGKILL, -SIGKILL}));
  EXPECT_LT(std::chrono::steady_clock::now() - start, milliseconds(5000));
}

}  // namespace
}  // namespace dcpkv

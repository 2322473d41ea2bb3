// The crash harness: a job (dcpkv_crash_child, one process per rank) saves checkpoints of the
// crash model in a loop, full and incremental, with retention, into one store root; the harness
// kills it with SIGKILL, at random moments and at named crash points of the save path (chunks
// written, flush done, just before / in the middle of / just after the manifest write, retention
// and its reclaim), and now and then kills an offline gc too. After every kill it checks the store
// as the crash left it:
//
//  - every checkpoint listed as committed was attempted by the job (the job logs each step,
//    fsync'd, before its save starts): nothing is invented;
//  - every checkpoint whose save returned OK is still committed unless retention removed it (of
//    everything ever committed, the newest keep_last are always still there);
//  - `dcpkv verify` (VerifyCheckpoints) finds every committed checkpoint intact, and each loads
//    bit-exactly the values its step must hold (regenerated from the step and seed);
//  - after CollectGarbage no data of uncommitted saves is left, and every checkpoint still loads.
//
// Then the job starts again on the same store (sometimes retrying the step that did not commit),
// so later kills hit a store with history, incremental bases and retention at work.
//
// The CI run makes at least 30 kills in about a minute; DCPKV_CRASH_LONG=1 in the environment
// (or --long on the command line) makes about 1,000. DCPKV_CRASH_SEED picks another seed;
// DCPKV_CRASH_CHILD_PATH and DCPKV_GC_CRASH_PATH name other copies of the programs it starts.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <thread>

#include "dcpkv/catalog.h"
#include "tests/crash/child_world.h"
#include "tests/crash/crash_harness.h"
#include "tests/crash/crash_model.h"
#include "tests/util/temp_dir.h"

namespace dcpkv {
namespace {

TEST(CrashHarnessTest, WorldOfOneKilledAtRandomAndAtEveryCrashPoint) {
  HarnessOptions o;
  o.world = 1;
  o.keep_last = 3;
  o.seed = 11;
  o.rounds = LongMode() ? 650 : 60;
  RunHarness(o, LongMode() ? 550 : 45);
}

TEST(CrashHarnessTest, WorldOfTwoProcessesKilledAtRandomAndAtEveryCrashPoint) {
  HarnessOptions o;
  o.world = 2;
  o.keep_last = 4;
  o.seed = 22;
  o.rounds = LongMode() ? 350 : 36;
  RunHarness(o, LongMode() ? 300 : 27);
}

// Chunks written as ingested table files (ChunkWritePath::kIngestTableFiles), killed also at
// the table file's two points.
TEST(CrashHarnessTest, IngestedTableFilesKilledAtRandomAndAtEveryCrashPoint) {
  for (const int world : {1, 2}) {
    HarnessOptions o;
    o.world = world;
    o.keep_last = 3;
    o.seed = 33 + world;
    o.ingest = true;
    o.rounds = LongMode() ? 300 : 20;
    RunHarness(o, LongMode() ? 250 : 15);
    if (::testing::Test::HasFailure()) return;
  }
}

// A rank process killed in the middle of a save of two processes: the survivor's save fails
// within the process group's timeout (no hang) and nothing of that save is committed.
TEST(CrashHarnessTest, ARankKilledMidSaveFailsItsPeerWithinTheTimeoutAndCommitsNothing) {
  testing::TempDir tmp;
  const std::string root = tmp.Sub("store"), log = tmp.Sub("log");
  const auto timeout = std::chrono::milliseconds(3000);
  uint64_t first = 1;
  const std::pair<const char*, const char*> kills[] = {{"save.after_ingest:3", "ingest"},
                                                       {"save.after_chunk_batch:3", "batch"},
                                                       {"save.after_flush:2", "ingest"}};
  for (const auto& [point, write_path] : kills) {
    SCOPED_TRACE(point);
    testing::ChildWorld job;
    ASSERT_EQ(job.Start(ChildPath(),
                        {"--root", root, "--log", log, "--first", std::to_string(first), "--count",
                         "4", "--seed", "1", "--timeout-ms", std::to_string(timeout.count()),
                         "--crash-at", point, "--crash-rank", "1", "--write-path", write_path},
                        2, {}, tmp.Sub("out")),
              "");
    while (job.running(1)) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    const auto died = std::chrono::steady_clock::now();
    ASSERT_TRUE(job.WaitAll(timeout * 4));
    const auto waited = std::chrono::steady_clock::now() - died;
    EXPECT_LE(waited, timeout + std::chrono::seconds(2));
    EXPECT_EQ(job.exit_code(1), -SIGKILL) << job.output(1);
    EXPECT_EQ(job.exit_code(0), 1) << job.output(0);
    std::ifstream in(log);
    std::string what;
    uint64_t step = 0, last_attempt = 0;
    std::set<uint64_t> ok;
    while (in >> what >> step) {
      if (what == "attempt") last_attempt = step;
      if (what == "ok") ok.insert(step);
    }
    const std::string failed = testing::ModelCheckpointId(last_attempt);
    EXPECT_THAT(job.output(0), ::testing::HasSubstr("save of checkpoint \"" + failed + "\""));
    StatusOr<std::vector<CheckpointSummary>> committed = ListCommittedCheckpoints(root);
    ASSERT_TRUE(committed.ok()) << committed.status();
    std::set<std::string> ids;
    for (const CheckpointSummary& c : *committed) ids.insert(c.checkpoint_id);
    EXPECT_FALSE(ids.count(failed)) << failed << " was committed without rank 1's data";
    for (uint64_t s : ok) EXPECT_TRUE(ids.count(testing::ModelCheckpointId(s)));
    first = last_attempt + 1;
  }
}

// A job killed right after its second commit, whose write-ahead logs are then wiped: every
// committed checkpoint is still listed and loads (manifests are flushed into a table file after
// the synced write; RocksDB's recovery would silently drop them with a damaged log).
TEST(CrashHarnessTest, CommittedManifestsSurviveADamagedWriteAheadLog) {
  testing::TempDir tmp;
  const std::string root = tmp.Sub("store"), log = tmp.Sub("log");
  const uint64_t seed = 11;
  const std::string command = ChildPath() + " --root " + root + " --log " + log +
                              " --first 1 --count 3 --seed " + std::to_string(seed) +
                              " --crash-at save.after_manifest:2 > " + tmp.Sub("out") + " 2>&1";
  const int status = std::system(command.c_str());
  // The shell reports its child's SIGKILL as exit status 128 + 9.
  const bool killed = (WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) ||
                      (WIFEXITED(status) && WEXITSTATUS(status) == 128 + SIGKILL);
  ASSERT_TRUE(killed) << "the child was to die at its second commit; status " << status;
  int wiped = 0;
  for (const auto& e : std::filesystem::directory_iterator(RankDirectory(root, 0))) {
    if (e.path().extension() != ".log") continue;
    const std::string zeros(std::filesystem::file_size(e.path()), '\0');
    std::ofstream(e.path(), std::ios::binary | std::ios::in | std::ios::out)
        .write(zeros.data(), static_cast<std::streamsize>(zeros.size()));
    ++wiped;
  }
  ASSERT_GT(wiped, 0);
  for (uint64_t step : {1, 2}) {
    SCOPED_TRACE("step " + std::to_string(step));
    EXPECT_TRUE(
        testing::LoadAndCompareModel(root, testing::ModelCheckpointId(step), step, seed).ok());
  }
}

}  // namespace
}  // namespace dcpkv

int main(int argc, char** argv) { return dcpkv::CrashHarnessMain(argc, argv); }

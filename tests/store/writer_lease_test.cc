// The writer lease of a store root (writer_lease.h): one job writes to a root at a time, with
// real processes racing for it.
#include "dcpkv/store/writer_lease.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <thread>

#include "tests/util/racers.h"
#include "tests/util/temp_dir.h"

namespace dcpkv {
namespace {

using ::testing::HasSubstr;

constexpr int kDone = 0;
constexpr int kRefused = 10;

std::string LeaseFile(const std::string& root) { return root + "/" + kWriterLeaseFileName; }

class WriterLeaseTest : public ::testing::Test {
 protected:
  void TearDown() override { ::unsetenv("DCPKV_LEASE_EXPIRY_SECONDS"); }

  // A dcpkv_store_racer taking root_'s lease for `job`, holding it `hold_ms` (< 0: until killed).
  testing::Racer StartLeaser(const std::string& job, int hold_ms, const std::string& go,
                             bool maintenance = false,
                             std::map<std::string, std::string> env = {}) {
    env["DCPKV_JOB_ID"] = job;
    if (maintenance) env["DCPKV_RACER_MAINTENANCE"] = "1";
    return testing::StartRacer(DCPKV_STORE_RACER_PATH,
                               {"lease", root_.path(), go, std::to_string(hold_ms)}, env,
                               scratch_.path() + "/racer-" + std::to_string(racers_++) + ".out");
  }

  // Waits until `racer` printed "acquired".
  void WaitAcquired(const testing::Racer& racer) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (racer.Output().find("acquired") == std::string::npos) {
      ASSERT_LT(std::chrono::steady_clock::now(), deadline) << racer.Output();
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }

  std::string Go() {
    const std::string go = scratch_.path() + "/go-" + std::to_string(racers_++);
    testing::Go(go);
    return go;
  }

  // A lease file as another machine's job would leave it, last touched `age` ago.
  void WriteForeignLease(const std::string& job, std::chrono::seconds age) {
    std::ofstream(LeaseFile(root_.path())) << "dcpkv writer lease 1\njob=" << job
                                           << "\nmaintenance=0\nhost=other-host\nboot_id=another-"
                                              "machine\npid=4242\npid_start=1\nsince=1700000000\n"
                                              "nonce=00000000000000aa\n";
    const auto when = std::chrono::system_clock::now() - age;
    const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(when.time_since_epoch());
    timespec times[2];
    times[0].tv_sec = times[1].tv_sec = ns.count() / 1000000000;
    times[0].tv_nsec = times[1].tv_nsec = ns.count() % 1000000000;
    ASSERT_EQ(::utimensat(AT_FDCWD, LeaseFile(root_.path()).c_str(), times, 0), 0);
  }

  testing::TempDir root_;
  testing::TempDir scratch_;
  int racers_ = 0;
};

TEST_F(WriterLeaseTest, ASecondJobIsRefusedAtOnceNamingTheOwner) {
  const testing::Racer first = StartLeaser("job-a", -1, Go());
  WaitAcquired(first);
  const auto started = std::chrono::steady_clock::now();
  const testing::Racer second = StartLeaser("job-b", 0, Go());
  EXPECT_EQ(testing::WaitRacer(second), kRefused) << second.Output();
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(5)) << "at once";
  const std::string said = second.Output();
  EXPECT_THAT(said, HasSubstr("job \"job-a\""));
  EXPECT_THAT(said, HasSubstr("pid " + std::to_string(first.pid)));
  EXPECT_THAT(said, HasSubstr("since 20"));
  EXPECT_THAT(said, HasSubstr(root_.path()));
  // The owner dies without letting go (SIGKILL): the next job on this machine takes over at once.
  ::kill(first.pid, SIGKILL);
  testing::WaitRacer(first);
  ASSERT_TRUE(std::filesystem::exists(LeaseFile(root_.path())));
  const testing::Racer third = StartLeaser("job-b", 0, Go());
  EXPECT_EQ(testing::WaitRacer(third), kDone) << third.Output();
  EXPECT_FALSE(std::filesystem::exists(LeaseFile(root_.path()))) << "let go at its exit";
}

TEST_F(WriterLeaseTest, ProcessesOfOneJobShareItAndARestartTakesItBack) {
  const testing::Racer rank0 = StartLeaser("torchelastic:run-7", 1500, Go());
  WaitAcquired(rank0);
  const testing::Racer rank1 = StartLeaser("torchelastic:run-7", 0, Go());
  EXPECT_EQ(testing::WaitRacer(rank1), kDone) << rank1.Output();
  EXPECT_EQ(testing::WaitRacer(rank0), kDone) << rank0.Output();
  // A lease of the same job left by another machine's process that still looks alive (an elastic
  // restart on other hosts): taken back.
  WriteForeignLease("torchelastic:run-7", std::chrono::seconds(0));
  const testing::Racer restarted = StartLeaser("torchelastic:run-7", 0, Go());
  EXPECT_EQ(testing::WaitRacer(restarted), kDone) << restarted.Output();
}

// A restart of a job on this machine (the same job id) whose earlier run died holding the lease
// makes the lease its own: another job does not take it for abandoned while the restart holds
// it.
TEST_F(WriterLeaseTest, ARestartOfADeadRunHoldsTheLeaseAgainstOtherJobs) {
  const testing::Racer first_run = StartLeaser("torchelastic:run-9", -1, Go());
  WaitAcquired(first_run);
  ::kill(first_run.pid, SIGKILL);
  testing::WaitRacer(first_run);
  const testing::Racer restart = StartLeaser("torchelastic:run-9", -1, Go());
  WaitAcquired(restart);
  const testing::Racer other = StartLeaser("job-other", 0, Go());
  EXPECT_EQ(testing::WaitRacer(other), kRefused) << other.Output();
  EXPECT_THAT(other.Output(), HasSubstr("pid " + std::to_string(restart.pid)));
  ::kill(restart.pid, SIGKILL);
  testing::WaitRacer(restart);
}

TEST_F(WriterLeaseTest, OfJobsStartingTogetherExactlyOneGetsIt) {
  for (int round = 0; round < 3; ++round) {
    const std::string go = scratch_.path() + "/go-round-" + std::to_string(round);
    std::vector<testing::Racer> racers;
    for (int i = 0; i < 8; ++i) racers.push_back(StartLeaser("job-" + std::to_string(i), 1500, go));
    testing::Go(go);
    int done = 0, refused = 0;
    for (const testing::Racer& r : racers) {
      const int code = testing::WaitRacer(r);
      EXPECT_TRUE(code == kDone || code == kRefused) << code << ": " << r.Output();
      done += code == kDone;
      refused += code == kRefused;
    }
    EXPECT_EQ(done, 1) << "round " << round;
    EXPECT_EQ(refused, 7) << "round " << round;
  }
}

TEST_F(WriterLeaseTest, AnotherMachinesLeaseIsTakenOverOnlyOnceItExpired) {
  ::setenv("DCPKV_LEASE_EXPIRY_SECONDS", "5", 1);
  WriteForeignLease("job-elsewhere", std::chrono::seconds(1));
  {
    auto lease = WriterLease::Acquire(root_.path(), {.job_id = "job-here"});
    ASSERT_FALSE(lease.ok());
    EXPECT_EQ(lease.status().reason(), ErrorReason::kLeaseHeld) << lease.status();
    EXPECT_THAT(lease.status().message(), HasSubstr("host other-host, pid 4242"));
    EXPECT_THAT(lease.status().message(), HasSubstr("its lease expires in"));
  }
  WriteForeignLease("job-elsewhere", std::chrono::seconds(10));
  auto lease = WriterLease::Acquire(root_.path(), {.job_id = "job-here"});
  ASSERT_TRUE(lease.ok()) << lease.status();
  StatusOr<WriterLeaseInfo> info = ReadWriterLease(root_.path());
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->job_id, "job-here");
  EXPECT_EQ(info->pid, static_cast<int>(::getpid()));
}

TEST_F(WriterLeaseTest, OfManyTakersOfAnExpiredLeaseExactlyOneGetsIt) {
  for (int round = 0; round < 3; ++round) {
    WriteForeignLease("job-dead", std::chrono::seconds(60));
    const std::string go = scratch_.path() + "/go-round-" + std::to_string(round);
    std::vector<testing::Racer> racers;
    for (int i = 0; i < 8; ++i) {
      racers.push_back(StartLeaser("taker-" + std::to_string(i), 1500, go, false,
                                   {{"DCPKV_LEASE_EXPIRY_SECONDS", "5"}}));
    }
    testing::Go(go);
    int done = 0;
    for (const testing::Racer& r : racers) {
      const int code = testing::WaitRacer(r);
      EXPECT_TRUE(code == kDone || code == kRefused) << code << ": " << r.Output();
      done += code == kDone;
    }
    EXPECT_EQ(done, 1) << "round " << round;
    EXPECT_FALSE(std::filesystem::exists(LeaseFile(root_.path())));
    for (const auto& e : std::filesystem::directory_iterator(root_.path())) {
      ADD_FAILURE() << "left behind: " << e.path();
    }
  }
}

TEST_F(WriterLeaseTest, TheHeartbeatKeepsItFreshAndTheFenceSeesItTakenOver) {
  ::setenv("DCPKV_LEASE_EXPIRY_SECONDS", "1.2", 1);
  auto lease = WriterLease::Acquire(root_.path(), {.job_id = "job-live"});
  ASSERT_TRUE(lease.ok()) << lease.status();
  std::this_thread::sleep_for(std::chrono::milliseconds(2000));
  StatusOr<WriterLeaseInfo> info = ReadWriterLease(root_.path());
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_LT(info->heartbeat_age_seconds, 1.2);
  const testing::Racer other =
      StartLeaser("job-other", 0, Go(), false, {{"DCPKV_LEASE_EXPIRY_SECONDS", "1.2"}});
  EXPECT_EQ(testing::WaitRacer(other), kRefused) << other.Output();
  EXPECT_TRUE((*lease)->Check().ok());
  // Its file removed (another process of the job let go of it): made again.
  std::filesystem::remove(LeaseFile(root_.path()));
  EXPECT_TRUE((*lease)->Check().ok());
  EXPECT_TRUE(std::filesystem::exists(LeaseFile(root_.path())));
  // Taken over by another job (as after a stall past the expiry): the fence fails.
  std::filesystem::remove(LeaseFile(root_.path()));
  WriteForeignLease("job-new-owner", std::chrono::seconds(0));
  Status fenced = (*lease)->Check();
  EXPECT_EQ(fenced.reason(), ErrorReason::kLeaseHeld) << fenced;
  EXPECT_THAT(fenced.message(), HasSubstr("taken over"));
  EXPECT_THAT(fenced.message(), HasSubstr("job-new-owner"));
}

TEST_F(WriterLeaseTest, HoldsInOneProcessShareItAndTheLastLetsGo) {
  auto a = WriterLease::Acquire(root_.path(), {.job_id = "job-1"});
  ASSERT_TRUE(a.ok()) << a.status();
  auto b = WriterLease::Acquire(root_.path(), {.job_id = "job-1"});
  ASSERT_TRUE(b.ok()) << b.status();
  auto other = WriterLease::Acquire(root_.path(), {.job_id = "job-2"});
  EXPECT_EQ(other.status().reason(), ErrorReason::kLeaseHeld);
  a->reset();
  EXPECT_TRUE(std::filesystem::exists(LeaseFile(root_.path())));
  b->reset();
  EXPECT_FALSE(std::filesystem::exists(LeaseFile(root_.path())));
}

TEST_F(WriterLeaseTest, MaintenanceIsRefusedWhileAJobHoldsTheRootAndJobsWaitForIt) {
  const testing::Racer job = StartLeaser("job-a", -1, Go());
  WaitAcquired(job);
  const testing::Racer gc = StartLeaser("ignored", 0, Go(), /*maintenance=*/true);
  EXPECT_EQ(testing::WaitRacer(gc), kRefused) << gc.Output();
  EXPECT_THAT(gc.Output(), HasSubstr("stop the job first"));
  ::kill(job.pid, SIGKILL);
  testing::WaitRacer(job);

  const testing::Racer running_gc = StartLeaser("ignored", 1500, Go(), /*maintenance=*/true);
  WaitAcquired(running_gc);
  const auto started = std::chrono::steady_clock::now();
  const testing::Racer next_job = StartLeaser("job-b", 0, Go());
  EXPECT_EQ(testing::WaitRacer(next_job), kDone) << next_job.Output();
  EXPECT_GT(std::chrono::steady_clock::now() - started, std::chrono::milliseconds(700))
      << "it waited for the command";
  EXPECT_EQ(testing::WaitRacer(running_gc), kDone) << running_gc.Output();
}

}  // namespace
}  // namespace dcpkv

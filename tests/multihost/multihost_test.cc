// Several hosts on a real network: a network of namespaces (network.h), ranks launched on each
// host the torchrun way (MASTER_ADDR on host 0, each rank's gloo bound to its host's address),
// the store on a directory all hosts share, a `dcpkv serve` replica on a host of its own.
//   hosts 0-3: one rank each (world 4; a world of 3 uses hosts 0-2), 10.99.0.1-4
//   host 4:    the replica, 10.99.0.5:7070
// Faults: a host's cable pulled mid-save, the replica's pulled during async replication and
// during a synchronous save, rate-limited and lossy links. Needs root; without it (or without
// iproute2 and nftables) the tests fail with the reason.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "tests/multihost/network.h"
#include "tests/util/temp_dir.h"

namespace dcpkv::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr int kRankHosts = 4;
constexpr int kReplicaHost = 4;
constexpr milliseconds kGroupTimeout(8000);

long Ms(Clock::duration d) { return std::chrono::duration_cast<milliseconds>(d).count(); }

class MultiHostTest : public ::testing::Test {
 protected:
  void SetUp() override {
    StatusOr<std::unique_ptr<Network>> net = Network::Create(kRankHosts + 1);
    ASSERT_TRUE(net.ok()) << "cannot make the test's network of namespaces (this test needs root, "
                             "iproute2 and nftables; scripts/install_deps.sh installs them): "
                          << net.status();
    net_ = std::move(net).value();
    root_ = tmp_.Sub("store");
    signals_ = tmp_.Sub("signals");
    ::mkdir(signals_.c_str(), 0755);
  }

  void TearDown() override {
    replica_.reset();  // killed before its namespace goes
  }

  // The ranks of one job: rank r on host r, launched as torchrun's agents would (one rank per
  // node, rank 0's host serving the rendezvous), each running the worker with `args`.
  struct Job {
    std::vector<std::unique_ptr<HostProcess>> ranks;
    Clock::time_point started;
  };

  Job Start(int world, const std::vector<std::string>& args) {
    Job job;
    job.started = Clock::now();
    const int port = 29500 + jobs_++;
    for (int r = 0; r < world; ++r) {
      std::vector<std::string> argv = {DCPKV_MULTIHOST_WORKER};
      argv.insert(argv.end(), args.begin(), args.end());
      argv.push_back("--timeout-ms=" + std::to_string(group_timeout_.count()));
      argv.push_back("--signal-dir=" + signals_);
      const std::map<std::string, std::string> env = {{"RANK", std::to_string(r)},
                                                      {"WORLD_SIZE", std::to_string(world)},
                                                      {"LOCAL_RANK", "0"},
                                                      {"LOCAL_WORLD_SIZE", "1"},
                                                      {"GROUP_RANK", std::to_string(r)},
                                                      {"MASTER_ADDR", net_->addr(0)},
                                                      {"MASTER_PORT", std::to_string(port)},
                                                      {"DCPKV_GLOO_HOSTNAME", net_->addr(r)},
                                                      {"TORCHELASTIC_USE_AGENT_STORE", "False"}};
      const std::string log =
          tmp_.Sub("job" + std::to_string(jobs_) + ".rank" + std::to_string(r) + ".log");
      StatusOr<std::unique_ptr<HostProcess>> p = HostProcess::Start(net_->ns(r), argv, env, log);
      EXPECT_TRUE(p.ok()) << p.status();
      if (p.ok()) job.ranks.push_back(std::move(p).value());
    }
    return job;
  }

  // Waits for every rank (at most `limit`); true if all exited 0. Logs every rank's output.
  bool Finish(Job& job, milliseconds limit = milliseconds(120000)) {
    const auto deadline = job.started + limit;
    bool ok = true;
    for (size_t r = 0; r < job.ranks.size(); ++r) {
      std::optional<int> code = job.ranks[r]->WaitUntil(deadline);
      if (!code.has_value()) {
        ADD_FAILURE() << "rank " << r << " still running after " << limit.count()
                      << " ms; its threads:\n"
                      << job.ranks[r]->Stacks();
        job.ranks[r]->Kill();
      }
      if (code != 0) ok = false;
    }
    if (!ok) {
      for (size_t r = 0; r < job.ranks.size(); ++r) {
        std::printf("rank %zu:\n%s", r, job.ranks[r]->Output().c_str());
      }
    }
    return ok;
  }

  // Runs a job to its end; its wall time in ms, or -1 if a rank failed.
  long RunJob(int world, const std::vector<std::string>& args) {
    Job job = Start(world, args);
    const bool ok = Finish(job);
    return ok ? Ms(Clock::now() - job.started) : -1;
  }

  std::string Cli(const std::string& args) {
    std::string out;
    const int rc = RunShell(std::string(DCPKV_CLI) + " " + args, &out);
    return "exit " + std::to_string(rc) + "\n" + out;
  }

  // What `dcpkv ls` says: a line per checkpoint, with its state.
  std::string Listing() { return Cli("ls " + root_); }
  // `dcpkv ls --json`, which has each checkpoint's replication state.
  std::string JsonListing() { return Cli("ls --json " + root_); }
  // The line `dcpkv ls` prints for checkpoint `id` (empty if none).
  std::string ListingOf(const std::string& id) {
    const std::string listing = Listing();
    const size_t at = listing.find("\n" + id + " ");
    if (at == std::string::npos) return "";
    return listing.substr(at + 1, listing.find('\n', at + 1) - at - 1);
  }

  void StartReplica() {
    replica_root_ = tmp_.Sub("replica");
    StatusOr<std::unique_ptr<HostProcess>> p = HostProcess::Start(
        net_->ns(kReplicaHost),
        {DCPKV_CLI, "serve", "--root", replica_root_, "--listen", ReplicaAddress()}, {},
        tmp_.Sub("replica.log"));
    ASSERT_TRUE(p.ok()) << p.status();
    replica_ = std::move(p).value();
    const auto deadline = Clock::now() + seconds(30);
    while (replica_->Output().find("listening on") == std::string::npos) {
      ASSERT_LT(Clock::now(), deadline) << "the replica did not start: " << replica_->Output();
      ASSERT_FALSE(replica_->WaitUntil(Clock::now()).has_value()) << replica_->Output();
      std::this_thread::sleep_for(milliseconds(20));
    }
  }
  std::string ReplicaAddress() const { return net_->addr(kReplicaHost) + ":7070"; }

  // Waits until `path` exists (at most `limit`).
  static bool AwaitFile(const std::string& path, milliseconds limit) {
    const auto deadline = Clock::now() + limit;
    struct stat st;
    while (::stat(path.c_str(), &st) != 0) {
      if (Clock::now() >= deadline) return false;
      std::this_thread::sleep_for(milliseconds(5));
    }
    return true;
  }

  TempDir tmp_;
  std::unique_ptr<Network> net_;
  std::string root_;
  std::string signals_;
  std::string replica_root_;
  std::unique_ptr<HostProcess> replica_;
  int jobs_ = 0;
  // The gloo timeout of the ranks of the jobs started from now on.
  milliseconds group_timeout_ = kGroupTimeout;
};

std::vector<std::string> SaveArgs(const std::string& root, const std::string& id, int seed) {
  return {"save", root, id, "--seed=" + std::to_string(seed)};
}
std::vector<std::string> LoadArgs(const std::string& root, const std::string& id, int seed) {
  return {"load", root, id, "--seed=" + std::to_string(seed)};
}
std::vector<std::string> With(std::vector<std::string> args, std::vector<std::string> more) {
  args.insert(args.end(), more.begin(), more.end());
  return args;
}

TEST_F(MultiHostTest, SaveAtWorld4AcrossHostsLoadsReshardedAtWorld3) {
  ASSERT_GE(RunJob(4, SaveArgs(root_, "step-1", 1)), 0);
  ASSERT_GE(RunJob(3, LoadArgs(root_, "step-1", 1)), 0);
  ASSERT_GE(RunJob(4, LoadArgs(root_, "step-1", 1)), 0);
  // A second save on the same hosts, loaded at world 3 and on one host.
  ASSERT_GE(RunJob(4, SaveArgs(root_, "step-2", 2)), 0);
  ASSERT_GE(RunJob(3, LoadArgs(root_, "step-2", 2)), 0);
  ASSERT_GE(RunJob(1, LoadArgs(root_, "step-1", 1)), 0);
  EXPECT_THAT(Cli("verify " + root_), HasSubstr("exit 0"));
}

// A host's cable is pulled while its rank is in the middle of a save (its chunks written, its
// result not yet sent): every other rank fails within the group's timeout + 5 s with an error
// naming the lost rank, the lost rank fails too, nothing is committed, the previous checkpoint
// loads, and the job saves again once the cable is back.
class MultiHostCutTest : public MultiHostTest {
 protected:
  void CutMidSave(int lost, const std::string& naming) {
    ASSERT_GE(RunJob(4, SaveArgs(root_, "step-1", 1)), 0);
    Job job =
        Start(4, With(SaveArgs(root_, "step-2", 2),
                      {"--stall-at=save.after_flush", "--stall-rank=" + std::to_string(lost)}));
    ASSERT_TRUE(AwaitFile(signals_ + "/stalled." + std::to_string(lost), seconds(60)));
    ASSERT_TRUE(net_->Cut(lost).ok());
    const auto cut = Clock::now();
    // The lost rank goes on, into a link that is gone.
    FILE* resume = std::fopen((signals_ + "/resume").c_str(), "w");
    ASSERT_NE(resume, nullptr);
    std::fclose(resume);

    const auto limit = cut + kGroupTimeout + seconds(5);
    AwaitExits(job, limit + seconds(30));
    for (int r = 0; r < 4; ++r) {
      std::optional<int> code = job.ranks[r]->WaitUntil(Clock::now());
      ASSERT_TRUE(code.has_value()) << "rank " << r << " hangs";
      const std::string out = job.ranks[r]->Output();
      EXPECT_EQ(*code, 1) << out;
      const long after = Ms(job.ranks[r]->exited_at() - cut);
      std::printf("%s %d exited %ld ms after the cut: %s", r == lost ? "cut-off rank" : "rank", r,
                  after, out.c_str());
      if (r == lost) {
        // Alone, it fails at its own timeout (and cannot reach the rendezvous server to report).
        EXPECT_LE(job.ranks[r]->exited_at(), limit + seconds(5)) << out;
        continue;
      }
      EXPECT_LE(job.ranks[r]->exited_at(), limit)
          << "rank " << r << " failed " << after << " ms after the cut, later than the timeout ("
          << kGroupTimeout.count() << " ms) + 5 s: " << out;
      EXPECT_THAT(out, HasSubstr(naming)) << "rank " << r;
    }

    // step-1 stays committed; step-2's chunks are there, uncommitted, for gc or the next save.
    EXPECT_THAT(ListingOf("step-1"), HasSubstr(" committed"));
    EXPECT_THAT(ListingOf("step-2"), HasSubstr("uncommitted"));
    ASSERT_TRUE(net_->Restore(lost).ok());
    std::remove((signals_ + "/resume").c_str());
    ASSERT_GE(RunJob(4, LoadArgs(root_, "step-1", 1)), 0);
    ASSERT_GE(RunJob(4, SaveArgs(root_, "step-2", 2)), 0);
    ASSERT_GE(RunJob(3, LoadArgs(root_, "step-2", 2)), 0);
    EXPECT_THAT(Cli("verify " + root_), HasSubstr("exit 0"));
  }

  // Waits until every rank of `job` exited, or `deadline`, reaping each as soon as it exits.
  static void AwaitExits(Job& job, Clock::time_point deadline) {
    for (;;) {
      bool all = true;
      for (auto& rank : job.ranks) all = rank->WaitUntil(Clock::now()).has_value() && all;
      if (all || Clock::now() >= deadline) return;
      std::this_thread::sleep_for(milliseconds(2));
    }
  }
};

// Host 2 is lost: the coordinator gives up on it at its timeout and says so at the rendezvous
// server; the ranks waiting on the coordinator pass that on ("rank 0 reported: ... waiting for
// rank 2").
TEST_F(MultiHostCutTest, AHostCutOffMidSaveFailsEveryRankNamingItAndCommitsNothing) {
  CutMidSave(2, "waiting for rank 2");
}

// The coordinator's host is lost (rank 0, and the rendezvous server with it).
TEST_F(MultiHostCutTest, TheCoordinatorsHostCutOffMidSaveFailsEveryRankNamingIt) {
  CutMidSave(0, "waiting for rank 0");
}

// The replica is cut off while the job replicates asynchronously: the save returns, the
// coordinator retries, and the replica catches up once its cable is back. A synchronous save
// whose quorum the cut makes impossible fails on every rank saying so, and stays committed.
TEST_F(MultiHostTest, AReplicaCutOffCatchesUpAndASyncQuorumItMissesFailsCommitted) {
  StartReplica();
  const std::vector<std::string> async = {"--replica=" + ReplicaAddress(), "--namespace=job-7",
                                          "--replication=async", "--wait-replication-ms=60000"};
  ASSERT_GE(RunJob(4, With(SaveArgs(root_, "step-1", 1), async)), 0);
  EXPECT_THAT(JsonListing(), HasSubstr("1/1 replicas"));

  ASSERT_TRUE(net_->Cut(kReplicaHost).ok());
  Job job = Start(4, With(SaveArgs(root_, "step-2", 2), async));
  ASSERT_TRUE(AwaitFile(signals_ + "/saved.0", seconds(60))) << job.ranks[0]->Output();
  // Saved and committed; the replica is behind and the coordinator keeps retrying (its first
  // attempt ends at the call's deadline, 3 s).
  std::string behind;
  for (const auto give_up = Clock::now() + seconds(30); Clock::now() < give_up;) {
    behind = JsonListing();
    if (behind.find("retrying") != std::string::npos) break;
    std::this_thread::sleep_for(milliseconds(200));
  }
  EXPECT_THAT(behind, HasSubstr("retrying")) << behind;
  EXPECT_FALSE(job.ranks[0]->WaitUntil(Clock::now()).has_value()) << job.ranks[0]->Output();
  ASSERT_TRUE(net_->Restore(kReplicaHost).ok());
  const auto restored = Clock::now();
  ASSERT_TRUE(Finish(job));
  std::printf("the replica caught up %ld ms after its cable was back: %s",
              Ms(job.ranks[0]->exited_at() - restored), job.ranks[0]->Output().c_str());
  EXPECT_THAT(job.ranks[0]->Output(), HasSubstr("1/1 replicas"));
  EXPECT_THAT(JsonListing(), Not(HasSubstr("retrying")));
  // The replica holds both manifests: a store that lost them gets them back from it.
  {
    const std::string other = tmp_.Sub("recovered");
    std::string out;
    RunShell("ip netns exec " + net_->ns(1) + " " + DCPKV_CLI + " recover " + other + " --from " +
                 ReplicaAddress() + " --namespace job-7 --json",
             &out);
    EXPECT_THAT(out, HasSubstr("\"step-1\"")) << out;
    EXPECT_THAT(out, HasSubstr("\"step-2\"")) << out;
  }

  // A synchronous save that needs the replica, which is cut off.
  ASSERT_TRUE(net_->Cut(kReplicaHost).ok());
  Job sync = Start(
      4, With(SaveArgs(root_, "step-3", 3), {"--replica=" + ReplicaAddress(), "--namespace=job-7",
                                             "--replication=sync", "--quorum=1"}));
  EXPECT_FALSE(Finish(sync));
  for (int r = 0; r < 4; ++r) {
    const std::string out = sync.ranks[r]->Output();
    EXPECT_THAT(out, HasSubstr("UNAVAILABLE")) << "rank " << r;
    EXPECT_THAT(out, HasSubstr("committed and loadable")) << "rank " << r;
    EXPECT_THAT(out, HasSubstr("reached 0 of 1 replicas")) << "rank " << r;
  }
  EXPECT_THAT(JsonListing(), HasSubstr("\"0/1 replicas"));
  ASSERT_GE(RunJob(3, LoadArgs(root_, "step-3", 3)), 0);
  ASSERT_TRUE(net_->Restore(kReplicaHost).ok());
}

// Rate-limited and lossy links: saves and loads take longer and stay exact.
TEST_F(MultiHostTest, SlowAndLossyLinksMakeSavesSlowerNeverWrong) {
  // Time enough for a connection whose SYN is lost three times in a row (1 + 2 + 4 s).
  group_timeout_ = seconds(60);
  // Many small tensors: the plans and metadata the collectives carry are large.
  const std::vector<std::string> shape = {"--tensors=400", "--rows=64", "--cols=16"};
  enum Condition { kClear, kSlow, kLossy };
  const char* names[] = {"clear", "rate-limited to 2 Mbit/s", "losing 5% of packets"};
  std::vector<long> save_ms[3], load_ms[3];
  int step = 0;
  for (int round = 0; round < 3; ++round) {
    for (int c : {kClear, kSlow, kLossy}) {
      for (int h = 0; h < kRankHosts; ++h) {
        Status s = c == kSlow    ? net_->RateLimit(h, "2mbit")
                   : c == kLossy ? net_->DropRandomly(h, 5)
                                 : Status::Ok();
        ASSERT_TRUE(s.ok()) << s;
      }
      ++step;
      const std::string id = "step-" + std::to_string(step);
      const long saved = RunJob(4, With(SaveArgs(root_, id, step), shape));
      ASSERT_GE(saved, 0) << names[c];
      const long loaded = RunJob(3, With(LoadArgs(root_, id, step), shape));
      ASSERT_GE(loaded, 0) << names[c];
      save_ms[c].push_back(saved);
      load_ms[c].push_back(loaded);
      long dropped = 0;
      for (int h = 0; h < kRankHosts; ++h) {
        if (c == kSlow) {
          Status s = net_->ClearRateLimit(h);
          ASSERT_TRUE(s.ok()) << s;
        }
        if (c == kLossy) {
          StatusOr<long> n = net_->DroppedPackets(h);
          ASSERT_TRUE(n.ok()) << n.status();
          dropped += *n;
          ASSERT_TRUE(net_->StopDropping(h).ok());
        }
      }
      if (c == kLossy) {
        EXPECT_GT(dropped, 0) << "the loss rules dropped nothing";
      }
      std::printf("%s: save at world 4 %ld ms, load at world 3 %ld ms%s\n", names[c], saved, loaded,
                  c == kLossy ? (", " + std::to_string(dropped) + " packets dropped").c_str() : "");
    }
  }
  const auto median = [](std::vector<long> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
  };
  EXPECT_GT(median(save_ms[kSlow]), median(save_ms[kClear]));
  EXPECT_GT(median(save_ms[kLossy]), median(save_ms[kClear]));
  std::printf(
      "medians of 3: save clear %ld ms, rate-limited %ld ms, lossy %ld ms; load at world "
      "3 clear %ld ms, rate-limited %ld ms, lossy %ld ms\n",
      median(save_ms[kClear]), median(save_ms[kSlow]), median(save_ms[kLossy]),
      median(load_ms[kClear]), median(load_ms[kSlow]), median(load_ms[kLossy]));
  EXPECT_THAT(Cli("verify " + root_), HasSubstr("exit 0"));
}

}  // namespace
}  // namespace dcpkv::testing

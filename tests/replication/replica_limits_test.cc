// A replica's resources stay bounded however much is stored on it: `dcpkv serve` started with
// `ulimit -n 256` keeps working with a thousand manifests, in one namespace or in 250.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>

#include "dcpkv/replication/replica.h"
#include "tests/replication/replica_test_util.h"
#include "tests/util/spawn.h"
#include "tests/util/temp_dir.h"

extern char** environ;

namespace dcpkv::testing {
namespace {

using Clock = std::chrono::steady_clock;

// `dcpkv serve` in a process of its own, its open-file limit lowered first.
class ServeProcess {
 public:
  ServeProcess(const std::string& root, int max_open_files, const std::string& log) : log_(log) {
    std::vector<std::string> env;
    for (char** e = environ; *e != nullptr; ++e) env.push_back(*e);
    const std::string command = "ulimit -n " + std::to_string(max_open_files) + " && exec " +
                                DCPKV_CLI + " serve --root " + root + " --listen 127.0.0.1:0";
    error_ = SpawnWithOutput({"/bin/bash", "-c", command}, env, log, &pid_);
    if (!error_.empty()) return;
    for (const auto give_up = Clock::now() + std::chrono::seconds(30); Clock::now() < give_up;) {
      const std::string out = Output();
      if (const size_t at = out.find("listening on 127.0.0.1:"); at != std::string::npos) {
        port_ = std::atoi(out.c_str() + at + 23);
        if (port_ > 0) return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    error_ = "the replica did not start: " + Output();
  }
  ~ServeProcess() {
    if (pid_ > 0) {
      ::kill(pid_, SIGTERM);
      ::waitpid(pid_, nullptr, 0);
    }
  }

  const std::string& error() const { return error_; }
  std::string target() const { return "127.0.0.1:" + std::to_string(port_); }
  std::string Output() const {
    std::ifstream in(log_);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  }
  // Descriptors the server holds open now.
  int OpenFiles() const {
    int n = 0;
    std::error_code ec;
    for (auto it = std::filesystem::directory_iterator("/proc/" + std::to_string(pid_) + "/fd", ec);
         !ec && it != std::filesystem::directory_iterator(); it.increment(ec)) {
      ++n;
    }
    return n;
  }
  // Resident memory, in KiB.
  long RssKiB() const {
    std::ifstream in("/proc/" + std::to_string(pid_) + "/status");
    for (std::string line; std::getline(in, line);) {
      if (line.rfind("VmRSS:", 0) == 0) return std::atol(line.c_str() + 6);
    }
    return -1;
  }

 private:
  const std::string log_;
  pid_t pid_ = -1;
  int port_ = 0;
  std::string error_;
};

class ReplicaLimitsTest : public ::testing::TestWithParam<int> {};

// 1,000 manifests into GetParam() namespaces, on a server that may open 256 files: every Put,
// List and Get succeeds, and the server's descriptors stay well below the limit.
TEST_P(ReplicaLimitsTest, AThousandManifestsOnAServerLimitedTo256OpenFiles) {
  constexpr int kManifests = 1000;
  const int namespaces = GetParam();
  TempDir tmp;
  ServeProcess serve(tmp.Sub("replica"), 256, tmp.Sub("serve.log"));
  ASSERT_EQ(serve.error(), "");
  StatusOr<std::unique_ptr<replication::ReplicaClient>> client =
      replication::ReplicaClient::Connect(serve.target(), {});
  ASSERT_TRUE(client.ok()) << client.status();
  int most_open = 0;
  for (int i = 0; i < kManifests; ++i) {
    const std::string ns = "job-" + std::to_string(i % namespaces);
    Status s = (*client)->Put(ns, TestRecord("step-" + std::to_string(i), i));
    ASSERT_TRUE(s.ok()) << "Put " << i << " of " << kManifests << ": " << s << "\n"
                        << serve.Output();
    if (i % 50 == 0) most_open = std::max(most_open, serve.OpenFiles());
  }
  for (int i = 0; i < kManifests; ++i) {
    const std::string ns = "job-" + std::to_string(i % namespaces);
    StatusOr<ManifestRecord> got = (*client)->Get(ns, "step-" + std::to_string(i));
    ASSERT_TRUE(got.ok()) << "Get " << i << ": " << got.status() << "\n" << serve.Output();
    EXPECT_TRUE(SameRecord(*got, TestRecord("step-" + std::to_string(i), i))) << i;
  }
  size_t listed = 0;
  for (int n = 0; n < namespaces; ++n) {
    StatusOr<std::vector<std::string>> ids = (*client)->List("job-" + std::to_string(n));
    ASSERT_TRUE(ids.ok()) << ids.status();
    listed += ids->size();
  }
  EXPECT_EQ(listed, static_cast<size_t>(kManifests));
  most_open = std::max(most_open, serve.OpenFiles());
  std::printf("%d manifests in %d namespaces: the server held at most %d files open, RSS %ld KiB\n",
              kManifests, namespaces, most_open, serve.RssKiB());
  EXPECT_LT(most_open, 128);
}

INSTANTIATE_TEST_SUITE_P(Namespaces, ReplicaLimitsTest, ::testing::Values(1, 250));

}  // namespace
}  // namespace dcpkv::testing

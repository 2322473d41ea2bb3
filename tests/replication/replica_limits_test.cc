// A replica's resources stay bounded however much is stored on it: `dcpkv serve` started with
// `ulimit -n 256` keeps working with a thousand manifests, in one namespace or in 250.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
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
  std::string Output() const { return ReadFile(log_); }
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
  EXPECT_LT(most_open, 192);  // well below the limit: 8 stores of about 10 files, and gRPC's
}

INSTANTIATE_TEST_SUITE_P(Namespaces, ReplicaLimitsTest, ::testing::Values(1, 250));

// A TCP connection to 127.0.0.1:port that sends nothing; -1 if it cannot connect.
int ConnectAndStall(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  if (fd < 0 || ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    if (fd >= 0) ::close(fd);
    return -1;
  }
  return fd;
}

// True once the peer closed `fd`: reading what it sent (the server's HTTP/2 settings) reaches
// the end, or the connection was reset.
bool ClosedByPeer(int fd) {
  char buf[4096];
  for (;;) {
    const ssize_t n = ::recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
    if (n > 0) continue;
    return n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK);
  }
}

// How many of `fds` the peer has closed.
size_t CountClosed(const std::vector<int>& fds) {
  size_t closed = 0;
  for (int fd : fds) closed += ClosedByPeer(fd) ? 1 : 0;
  return closed;
}

// Waits until the peer closed every one of `fds` (at most `limit`); how many it closed.
size_t AwaitClosed(const std::vector<int>& fds, std::chrono::milliseconds limit) {
  size_t closed = CountClosed(fds);
  for (const auto give_up = Clock::now() + limit; closed < fds.size() && Clock::now() < give_up;) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    closed = CountClosed(fds);
  }
  return closed;
}

// A replica on loopback whose limits `change` sets.
class ReplicaConnectionLimitsTest : public ::testing::Test {
 protected:
  void Start(const std::function<void(replication::ReplicaServerLimits&)>& change) {
    replication::ReplicaServerOptions o;
    o.root = tmp_.Sub("replica");
    change(o.limits);
    StatusOr<std::unique_ptr<replication::ReplicaServer>> server =
        replication::ReplicaServer::Start(o);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(server).value();
  }
  // `n` connections to the server that send `hello` (maybe nothing), then nothing more.
  std::vector<int> Connect(int n, std::string_view hello) {
    std::vector<int> fds;
    for (int i = 0; i < n; ++i) {
      const int fd = ConnectAndStall(server_->port());
      EXPECT_GE(fd, 0) << "connection " << i;
      if (fd < 0) break;
      EXPECT_EQ(::send(fd, hello.data(), hello.size(), MSG_NOSIGNAL),
                static_cast<ssize_t>(hello.size()));
      fds.push_back(fd);
    }
    return fds;
  }
  ~ReplicaConnectionLimitsTest() override {
    for (int fd : fds_) ::close(fd);
  }

  TempDir tmp_;
  std::unique_ptr<replication::ReplicaServer> server_;
  std::vector<int> fds_;  // closed at the end
};

// Connections that never finish their handshake are closed at the handshake timeout, and the
// server answers normal calls meanwhile.
TEST_F(ReplicaConnectionLimitsTest, StalledConnectionsAreClosedAtTheHandshakeTimeout) {
  ASSERT_NO_FATAL_FAILURE(
      Start([](auto& l) { l.handshake_timeout = std::chrono::milliseconds(500); }));
  fds_ = Connect(200, "");
  StatusOr<std::unique_ptr<replication::ReplicaClient>> client =
      replication::ReplicaClient::Connect(Loopback(*server_), {});
  ASSERT_TRUE(client.ok()) << client.status();
  EXPECT_TRUE((*client)->Put("job", TestRecord("step-1")).ok());
  EXPECT_EQ(AwaitClosed(fds_, std::chrono::seconds(10)), fds_.size())
      << "stalled connections still open after 10 s";
  StatusOr<ManifestRecord> got = (*client)->Get("job", "step-1");
  EXPECT_TRUE(got.ok()) << got.status();
}

// Connections that finished their HTTP/2 handshake (the client preface and its settings) and
// then call nothing are closed once idle for connection_idle.
TEST_F(ReplicaConnectionLimitsTest, IdleConnectionsAreClosed) {
  ASSERT_NO_FATAL_FAILURE(
      Start([](auto& l) { l.connection_idle = std::chrono::milliseconds(1000); }));
  // The client connection preface, then an empty SETTINGS frame (length 0, type 4, stream 0).
  static constexpr char kPreface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\4\0\0\0\0\0";
  fds_ = Connect(100, std::string_view(kPreface, sizeof(kPreface) - 1));
  // Still open well before the limit: the handshake was complete.
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_EQ(CountClosed(fds_), 0u);
  EXPECT_EQ(AwaitClosed(fds_, std::chrono::seconds(10)), fds_.size())
      << "idle connections still open after 10 s";
}

TEST(ReplicaLimitsValidationTest, LimitsOutOfRangeAreInvalid) {
  TempDir tmp;
  const auto start = [&](auto change) {
    replication::ReplicaServerOptions o;
    o.root = tmp.Sub("replica");
    change(o.limits);
    return replication::ReplicaServer::Start(o).status();
  };
  using L = replication::ReplicaServerLimits;
  for (const auto& [s, name] : {
           std::pair{start([](L& l) { l.handshake_timeout = std::chrono::milliseconds(0); }),
                     "handshake_timeout"},
           std::pair{start([](L& l) { l.connection_idle = std::chrono::milliseconds(-1); }),
                     "connection_idle"},
           std::pair{start([](L& l) { l.max_concurrent_streams = 0; }), "max_concurrent_streams"},
           std::pair{start([](L& l) { l.max_metadata_bytes = 100; }), "max_metadata_bytes"},
           std::pair{start([](L& l) { l.memory_quota_bytes = 1 << 20; }), "memory_quota_bytes"},
       }) {
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << name << ": " << s;
    EXPECT_NE(s.message().find(name), std::string::npos) << s;
  }
}

}  // namespace
}  // namespace dcpkv::testing

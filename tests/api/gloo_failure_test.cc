// The gloo ProcessGroup when things go wrong: ranks that never arrive, peers that disappear,
// bad arguments and options, an unreachable or abused rendezvous server.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <latch>
#include <thread>

#include "dcpkv/gloo_process_group.h"
#include "tests/util/gloo_threads.h"
#include "tests/util/multiprocess.h"

namespace dcpkv {
namespace {

using std::chrono::milliseconds;
using testing::RunOnGlooRanks;
using Clock = std::chrono::steady_clock;

// Rank 1 never calls the collective: rank 0 fails with DEADLINE_EXCEEDED after its timeout,
// and the group is broken from then on.
TEST(GlooFailureTest, RankThatNeverArrivesTimesOut) {
  constexpr milliseconds kTimeout(1500);
  std::latch rank0_done(1);
  RunOnGlooRanks(
      2,
      [&](ProcessGroup& pg) {
        if (pg.rank() == 1) {
          rank0_done.wait();
          // Rank 0 gave up and closed its connections: rank 1 gets an error, not a hang.
          const auto start = Clock::now();
          Status s = pg.Barrier();
          EXPECT_FALSE(s.ok());
          EXPECT_LT(Clock::now() - start, kTimeout + milliseconds(3000));
          return;
        }
        const auto start = Clock::now();
        auto all = pg.AllGather("payload");
        const auto elapsed = Clock::now() - start;
        rank0_done.count_down();
        ASSERT_FALSE(all.ok());
        EXPECT_EQ(all.status().code(), StatusCode::kDeadlineExceeded) << all.status();
        EXPECT_NE(all.status().message().find("AllGather"), std::string::npos) << all.status();
        EXPECT_NE(all.status().message().find("rank 1"), std::string::npos) << all.status();
        EXPECT_GE(elapsed, kTimeout - milliseconds(50));
        EXPECT_LT(elapsed, kTimeout + milliseconds(3000));

        const auto again = Clock::now();
        Status s = pg.Barrier();
        EXPECT_EQ(s.code(), StatusCode::kAborted) << s;
        EXPECT_LT(Clock::now() - again, milliseconds(500));
        EXPECT_EQ(pg.Gather("x", 0).status().code(), StatusCode::kAborted);
      },
      kTimeout);
}

// Rank 2 never arrives: rank 0 gives up on it at its timeout, and rank 1, whose transfer to
// rank 0 then fails too, adds rank 0's report and so names rank 2 as well.
TEST(GlooFailureTest, ARankFailingOnAPeersAccountAddsThePeersReport) {
  constexpr milliseconds kTimeout(1500);
  std::latch done(2);
  RunOnGlooRanks(
      3,
      [&](ProcessGroup& pg) {
        if (pg.rank() == 2) {
          done.wait();
          return;
        }
        // Rank 0 waits for rank 2's part, rank 1 for rank 0 to take its payload.
        Status s = pg.Gather("x", 0).status();
        EXPECT_FALSE(s.ok());
        if (pg.rank() == 1) {
          EXPECT_NE(s.message().find("rank 1"), std::string::npos) << s;
          EXPECT_NE(s.message().find("rank 0 reported: Gather: rank 0 timed out"),
                    std::string::npos)
              << s;
        } else {
          EXPECT_EQ(s.code(), StatusCode::kDeadlineExceeded) << s;
          // Rank 2 reported nothing: rank 0's own error, after waiting for a report in vain.
          EXPECT_EQ(s.message().find("reported"), std::string::npos) << s;
        }
        EXPECT_NE(s.message().find("waiting for rank 2"), std::string::npos) << s;
        // The group is broken; the error it repeats is the one with the report.
        Status again = pg.Barrier();
        EXPECT_EQ(again.code(), StatusCode::kAborted);
        EXPECT_NE(again.message().find("waiting for rank 2"), std::string::npos) << again;
        done.count_down();
      },
      kTimeout);
}

// set_timeout applies to the next call.
TEST(GlooFailureTest, SetTimeoutShortensTheWait) {
  std::latch rank0_done(1);
  RunOnGlooRanks(2, [&](ProcessGroup& pg) {
    if (pg.rank() == 1) {
      rank0_done.wait();
      return;
    }
    EXPECT_EQ(pg.timeout(), std::chrono::seconds(30));
    pg.set_timeout(milliseconds(300));
    EXPECT_EQ(pg.timeout(), milliseconds(300));
    const auto start = Clock::now();
    Status s = pg.Barrier();
    const auto elapsed = Clock::now() - start;
    rank0_done.count_down();
    EXPECT_EQ(s.code(), StatusCode::kDeadlineExceeded) << s;
    EXPECT_LT(elapsed, milliseconds(3000));
  });
}

// A peer whose group goes away (its connections close) makes the waiting rank fail with
// UNAVAILABLE at once, long before the timeout.
TEST(GlooFailureTest, PeerThatLeavesIsUnavailable) {
  auto server = TcpStoreServer::Start("127.0.0.1", 0);
  ASSERT_TRUE(server.ok()) << server.status();
  constexpr milliseconds kTimeout(20000);
  std::thread leaver([&] {
    auto pg = CreateGlooProcessGroup(testing::GlooThreadOptions(*server, 1, 2, kTimeout));
    ASSERT_TRUE(pg.ok()) << pg.status();
    EXPECT_TRUE((*pg)->Barrier().ok());
    // The group is destroyed here, without taking part in rank 0's AllGather.
  });
  auto pg = CreateGlooProcessGroup(testing::GlooThreadOptions(*server, 0, 2, kTimeout));
  ASSERT_TRUE(pg.ok()) << pg.status();
  ASSERT_TRUE((*pg)->Barrier().ok());
  const auto start = Clock::now();
  auto all = (*pg)->AllGather(std::string(1 << 20, 'x'));
  EXPECT_EQ(all.status().code(), StatusCode::kUnavailable) << all.status();
  EXPECT_NE(all.status().message().find("rank 1"), std::string::npos) << all.status();
  EXPECT_LT(Clock::now() - start, milliseconds(5000));
  EXPECT_EQ((*pg)->Barrier().code(), StatusCode::kAborted);
  leaver.join();
}

TEST(GlooFailureTest, BadArgumentsAreInvalidAndDoNotBreakTheGroup) {
  RunOnGlooRanks(2, [&](ProcessGroup& pg) {
    EXPECT_EQ(pg.Gather("x", 2).status().code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(pg.Gather("x", -1).status().code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(pg.Broadcast("x", 5).status().code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(pg.Scatter({}, 2).status().code(), StatusCode::kInvalidArgument);
    if (pg.rank() == 0) {  // only root checks the count; the others would wait for it
      EXPECT_EQ(pg.Scatter({"a"}, 0).status().code(), StatusCode::kInvalidArgument);
      EXPECT_EQ(pg.Scatter({"a", "b", "c"}, 0).status().code(), StatusCode::kInvalidArgument);
    }
    EXPECT_EQ(pg.bytes_sent(), 0u);
    Status s = pg.Barrier();
    EXPECT_TRUE(s.ok()) << s;
    auto part = pg.Scatter(
        pg.rank() == 0 ? std::vector<std::string>{"a", "b"} : std::vector<std::string>{"ignored"},
        0);
    ASSERT_TRUE(part.ok()) << part.status();
    EXPECT_EQ(*part, pg.rank() == 0 ? "a" : "b");
  });
}

TEST(GlooFailureTest, BadOptionsAreInvalid) {
  auto create = [](auto edit) {
    GlooProcessGroupOptions o;
    o.world_size = 2;
    o.rank = 1;
    edit(o);
    return CreateGlooProcessGroup(o).status();
  };
  auto expect_invalid = [](const Status& s, const std::string& word) {
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s;
    EXPECT_NE(s.message().find(word), std::string::npos) << s;
  };
  expect_invalid(create([](auto& o) { o.world_size = 0; }), "world_size");
  expect_invalid(create([](auto& o) { o.rank = 2; }), "rank");
  expect_invalid(create([](auto& o) { o.rank = -1; }), "rank");
  expect_invalid(create([](auto& o) { o.timeout = milliseconds(0); }), "timeout");
  expect_invalid(create([](auto& o) { o.master_port = 70000; }), "master_port");
  expect_invalid(create([](auto& o) { o.master_port = 0; }), "master_port");
  expect_invalid(create([](auto& o) { o.master_addr = ""; }), "master_addr");
  expect_invalid(create([](auto& o) { o.hostname = ""; }), "hostname");
  // An unknown host name: INVALID_ARGUMENT, or UNAVAILABLE where name lookups cannot run.
  Status unknown = create([](auto& o) {
    o.master_addr = "no-such-host.invalid";
    o.timeout = milliseconds(1000);
  });
  EXPECT_TRUE(unknown.code() == StatusCode::kInvalidArgument ||
              unknown.code() == StatusCode::kUnavailable)
      << unknown;
  EXPECT_NE(unknown.message().find("no-such-host.invalid"), std::string::npos) << unknown;
  expect_invalid(TcpStoreServer::Start("", 0).status(), "host");
  expect_invalid(TcpStoreServer::Start("127.0.0.1", -1).status(), "port");
}

// Rank 1 never joins: rank 0's rendezvous fails with DEADLINE_EXCEEDED naming rank 1.
TEST(GlooFailureTest, RendezvousWithAMissingRankTimesOut) {
  auto server = TcpStoreServer::Start("127.0.0.1", 0);
  ASSERT_TRUE(server.ok()) << server.status();
  const auto start = Clock::now();
  auto pg = CreateGlooProcessGroup(testing::GlooThreadOptions(*server, 0, 2, milliseconds(700)));
  const auto elapsed = Clock::now() - start;
  EXPECT_EQ(pg.status().code(), StatusCode::kDeadlineExceeded) << pg.status();
  EXPECT_NE(pg.status().message().find("rank 1"), std::string::npos) << pg.status();
  EXPECT_LT(elapsed, milliseconds(4000));
}

TEST(GlooFailureTest, UnreachableServerIsUnavailable) {
  const int port = testing::FindFreePort();  // nobody listens there
  ASSERT_NE(port, 0);
  GlooProcessGroupOptions o;
  o.rank = 1;
  o.world_size = 2;
  o.master_port = port;
  o.timeout = milliseconds(400);
  const auto start = Clock::now();
  Status s = CreateGlooProcessGroup(o).status();
  EXPECT_EQ(s.code(), StatusCode::kUnavailable) << s;
  EXPECT_NE(s.message().find(std::to_string(port)), std::string::npos) << s;
  EXPECT_GE(Clock::now() - start, milliseconds(350));
  EXPECT_LT(Clock::now() - start, milliseconds(4000));
}

TEST(GlooFailureTest, PortInUseIsUnavailable) {
  auto server = TcpStoreServer::Start("127.0.0.1", 0);
  ASSERT_TRUE(server.ok()) << server.status();
  auto second = TcpStoreServer::Start("127.0.0.1", (*server)->port());
  EXPECT_EQ(second.status().code(), StatusCode::kUnavailable) << second.status();
}

// Connects a raw socket to the server, sends `bytes`, and returns whether the server closed
// the connection within a second.
bool ServerHangsUpAfter(int port, const std::string& bytes) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    ::close(fd);
    return false;
  }
  timeval tv{1, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  (void)!::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
  char buf[64];
  ssize_t n = 0;
  while ((n = ::recv(fd, buf, sizeof(buf), 0)) > 0) {
  }
  ::close(fd);
  return n == 0 || (n < 0 && errno == ECONNRESET);
}

// Garbage, oversized lengths and truncated requests make the server drop that connection and
// nothing else: groups still rendezvous through it afterwards.
TEST(GlooFailureTest, ServerSurvivesGarbage) {
  auto server = TcpStoreServer::Start("127.0.0.1", 0);
  ASSERT_TRUE(server.ok()) << server.status();
  const int port = (*server)->port();
  const std::string magic = "DCPKVKV1";
  EXPECT_TRUE(ServerHangsUpAfter(port, "GET / HTTP/1.1\r\n\r\n"));
  EXPECT_TRUE(ServerHangsUpAfter(port, magic + std::string("\x07\x01\0\0\0\0\0\0\0k", 10)));
  // SET with a 4 GiB value length.
  EXPECT_TRUE(ServerHangsUpAfter(port, magic + std::string("\x01\x01\0\0\0\xff\xff\xff\xff", 9)));
  // GET with an empty key.
  EXPECT_TRUE(ServerHangsUpAfter(port, magic + std::string("\x02\0\0\0\0\0\0\0\0", 9)));
  // A truncated request, then the client goes away.
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  const std::string partial = magic + std::string("\x01\x03\0\0\0\x10\0\0\0ab", 11);
  (void)!::send(fd, partial.data(), partial.size(), MSG_NOSIGNAL);
  ::close(fd);

  testing::RunOnGlooRanksWithServer(
      *server, 2, [](ProcessGroup& pg) { EXPECT_TRUE(pg.Barrier().ok()); }, milliseconds(20000));
}

TEST(GlooFailureTest, ServerStopsCleanlyWithClientsConnected) {
  auto server = TcpStoreServer::Start("127.0.0.1", 0);
  ASSERT_TRUE(server.ok()) << server.status();
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>((*server)->port()));
  ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  // A SET of "k" = "v", answered with code 0 and an empty value: the server has this connection.
  const std::string set = std::string("DCPKVKV1\x01\x01\0\0\0\x01\0\0\0kv", 19);
  ASSERT_EQ(::send(fd, set.data(), set.size(), MSG_NOSIGNAL), static_cast<ssize_t>(set.size()));
  char response[5];
  ASSERT_EQ(::recv(fd, response, sizeof(response), MSG_WAITALL), 5);
  EXPECT_EQ(std::string(response, 5), std::string(5, '\0'));
  const auto start = Clock::now();
  server->reset();  // joins the server thread
  EXPECT_LT(Clock::now() - start, milliseconds(1000));
  char c;
  EXPECT_EQ(::recv(fd, &c, 1, 0), 0);  // the server closed our connection
  ::close(fd);
}

}  // namespace
}  // namespace dcpkv

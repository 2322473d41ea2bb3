// A replica's resources stay bounded however much is stored on it: `dcpkv serve` started with
// `ulimit -n 256` keeps working with a thousand manifests, in one namespace or in 250.
#include <arpa/inet.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "dcpkv/replication/replica.h"
#include "replication.grpc.pb.h"
#include "tests/replication/replica_test_util.h"
#include "tests/replication/serve_process.h"
#include "tests/util/spawn.h"
#include "tests/util/temp_dir.h"

namespace dcpkv::testing {
namespace {

using Clock = std::chrono::steady_clock;

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

// Strangers' large bodies: 8 connections without the token, each with 16 unary Puts of 4 MiB
// (just under the request limit) in flight at once, three times over, then a 32 MiB Put (over the
// limit) and a 32 MiB PutStream each. Every call is refused, the server's peak memory stays within
// 64 MiB of what it was before, and a client with the token is answered throughout. A server that
// read a unary request before checking the token held up to 128 x 4 MiB.
TEST(ReplicaMemoryTest, StrangersLargeBodiesLeaveTheServersMemoryBounded) {
  namespace v1 = ::dcpkv::replication::v1;
  TempDir tmp;
  const std::string token = "s3cret-token-0123456789";
  std::ofstream(tmp.Sub("token")) << token;
  ServeProcess serve(tmp.Sub("replica"), 1024, tmp.Sub("serve.log"),
                     "--token-file " + tmp.Sub("token"));
  ASSERT_EQ(serve.error(), "");
  replication::ReplicaClientOptions with_token;
  with_token.token = token;
  StatusOr<std::unique_ptr<replication::ReplicaClient>> client =
      replication::ReplicaClient::Connect(serve.target(), with_token);
  ASSERT_TRUE(client.ok()) << client.status();
  ASSERT_TRUE((*client)->Put("job", TestRecord("step-0")).ok());
  const long before = serve.PeakRssKiB();

  constexpr int kConnections = 8, kInFlight = 16, kRounds = 3;
  constexpr size_t kUnderLimit = size_t{4} << 20, kOverLimit = size_t{32} << 20;
  std::atomic<int> calls{0}, refused{0};
  std::vector<std::thread> strangers;
  for (int t = 0; t < kConnections; ++t) {
    strangers.emplace_back([&, t] {
      auto count = [&](const grpc::Status& s) {
        ++calls;
        if (s.error_code() == grpc::StatusCode::UNAUTHENTICATED) ++refused;
      };
      PutWithoutToken(serve.target(), t, kUnderLimit, kInFlight, kRounds, count);
      PutWithoutToken(serve.target(), t, kOverLimit, 1, 1, count);
      grpc::ChannelArguments args;
      args.SetMaxSendMessageSize(-1);
      args.SetInt("dcpkv.test.channel", t);  // a connection of its own
      auto stub = v1::ManifestReplica::NewStub(
          grpc::CreateCustomChannel(serve.target(), grpc::InsecureChannelCredentials(), args));
      v1::PutResponse response;
      grpc::ClientContext streamed;
      auto writer = stub->PutStream(&streamed, &response);
      v1::PutPiece piece;
      piece.set_namespace_("job");
      piece.set_checkpoint_id("step-x");
      piece.set_record_size(kOverLimit);
      const std::string mib(size_t{1} << 20, 'x');
      for (size_t sent = 0; sent < kOverLimit; sent += mib.size()) {
        piece.set_data(mib);
        if (!writer->Write(piece)) break;
        piece.Clear();
      }
      writer->WritesDone();
      count(writer->Finish());
    });
  }
  int answered = 0;
  for (int i = 1; i <= 20; ++i) {
    Status put = (*client)->Put("job", TestRecord("step-" + std::to_string(i)));
    EXPECT_TRUE(put.ok()) << put;
    answered += put.ok() ? 1 : 0;
  }
  for (std::thread& t : strangers) t.join();
  const long after = serve.PeakRssKiB();
  std::printf(
      "strangers' 4 MiB Puts (8 connections x 16 in flight x 3), 32 MiB Puts and PutStreams: %d "
      "of %d refused as UNAUTHENTICATED; peak RSS %ld KiB before, %ld KiB after (+%ld KiB); %d of "
      "20 calls with the token answered meanwhile\n",
      refused.load(), calls.load(), before, after, after - before, answered);
  EXPECT_EQ(calls.load(), kConnections * (kInFlight * kRounds + 2));
  EXPECT_EQ(refused.load(), calls.load());
  EXPECT_LT(after - before, 64 << 10) << "KiB";
  EXPECT_EQ((*client)->List("job")->size(), 21u);
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

// 600 connections that send nothing, 200 from each of three hosts, to `dcpkv serve` with its
// default caps (256 connections, 64 per address) and 512 open files: the server keeps 64 from
// each host and closes the others at once, its descriptors stay well below the limit, and a client
// is answered throughout. A server without the caps took all 600 and ran out of descriptors.
TEST(ReplicaConnectionFloodTest, StalledConnectionsFromManyHostsStayUnderTheCaps) {
  TempDir tmp;
  ServeProcess serve(tmp.Sub("replica"), 512, tmp.Sub("serve.log"));
  ASSERT_EQ(serve.error(), "");
  StatusOr<std::unique_ptr<replication::ReplicaClient>> client =
      replication::ReplicaClient::Connect(serve.target(), {});
  ASSERT_TRUE(client.ok()) << client.status();
  ASSERT_TRUE((*client)->Put("job", TestRecord("step-0")).ok());
  const int files_before = serve.OpenFiles();
  const long rss_before = serve.RssKiB();
  const int port = serve.port();
  std::vector<int> fds;
  int answered = 0;
  for (const char* host : {"127.0.0.2", "127.0.0.3", "127.0.0.4"}) {
    for (int i = 0; i < 200; ++i) {
      const int fd = ConnectAndStall(port, host);
      ASSERT_GE(fd, 0) << host << " connection " << i << ": " << std::strerror(errno);
      fds.push_back(fd);
    }
    answered += (*client)->Put("job", TestRecord(std::string("step-") + host)).ok() ? 1 : 0;
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  const int files_during = serve.OpenFiles();
  const long rss_during = serve.RssKiB();
  size_t kept = 0;
  for (int fd : fds) kept += ClosedByPeer(fd) ? 0 : 1;
  StatusOr<std::vector<std::string>> ids = (*client)->List("job");
  answered += ids.ok() ? 1 : 0;
  for (int fd : fds) ::close(fd);
  std::printf(
      "600 stalled connections from 3 hosts: %zu kept by the server, %d files open before, %d "
      "during; RSS %ld KiB before, %ld KiB during; %d of 4 calls answered meanwhile\n",
      kept, files_before, files_during, rss_before, rss_during, answered);
  EXPECT_EQ(kept, 3u * 64u);
  EXPECT_LT(files_during, files_before + 3 * 64 + 16);
  EXPECT_EQ(answered, 4) << serve.Output();
  ASSERT_TRUE(ids.ok()) << ids.status();
  EXPECT_EQ(ids->size(), 4u);
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
  // `n` connections to the server from `from` that send `hello` (maybe nothing), then nothing
  // more.
  std::vector<int> Connect(int n, std::string_view hello, const char* from = "127.0.0.1") {
    std::vector<int> fds;
    for (int i = 0; i < n; ++i) {
      const int fd = ConnectAndStall(server_->port(), from);
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
  ASSERT_NO_FATAL_FAILURE(Start([](auto& l) {
    l.handshake_timeout = std::chrono::milliseconds(500);
    l.max_connections = l.max_connections_per_address = 1000;  // no cap: the timeout closes them
  }));
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
  ASSERT_NO_FATAL_FAILURE(Start([](auto& l) {
    l.connection_idle = std::chrono::milliseconds(1000);
    l.max_connections = l.max_connections_per_address = 1000;  // no cap: idleness closes them
  }));
  // The client connection preface, then an empty SETTINGS frame (length 0, type 4, stream 0).
  static constexpr char kPreface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\4\0\0\0\0\0";
  fds_ = Connect(100, std::string_view(kPreface, sizeof(kPreface) - 1));
  // Still open well before the limit: the handshake was complete.
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_EQ(CountClosed(fds_), 0u);
  EXPECT_EQ(AwaitClosed(fds_, std::chrono::seconds(10)), fds_.size())
      << "idle connections still open after 10 s";
}

// A client connection of its own (a channel argument no other channel has) to `server`.
std::unique_ptr<replication::v1::ManifestReplica::Stub> NewConnection(const std::string& target,
                                                                      int tag) {
  grpc::ChannelArguments args;
  args.SetInt("dcpkv.test.channel", tag);
  return replication::v1::ManifestReplica::NewStub(
      grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), args));
}

grpc::StatusCode ListOn(replication::v1::ManifestReplica::Stub& stub) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  replication::v1::ListRequest request;
  request.set_namespace_("job");
  replication::v1::ListResponse response;
  return stub.List(&context, request, &response).error_code();
}

// Past max_connections_per_address, a host's new connections are closed as soon as they are
// accepted; past max_connections, everyone's are. A client already connected is answered
// throughout; once the stalled connections reach the handshake timeout, new clients are too.
TEST_F(ReplicaConnectionLimitsTest, ConnectionsPastTheCapsAreClosedAtOnce) {
  ASSERT_NO_FATAL_FAILURE(Start([](auto& l) {
    l.max_connections = 25;
    l.max_connections_per_address = 10;
    l.handshake_timeout = std::chrono::milliseconds(2000);
  }));
  const std::string target = Loopback(*server_);
  auto connected = NewConnection(target, 1);
  ASSERT_EQ(ListOn(*connected), grpc::StatusCode::OK);
  // 30 each from three hosts: 10, 10 and the 4 left of the 25 are kept.
  std::vector<int> kept;
  for (const char* host : {"127.0.0.2", "127.0.0.3", "127.0.0.4"}) {
    std::vector<int> fds = Connect(30, "", host);
    fds_.insert(fds_.end(), fds.begin(), fds.end());
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    size_t open = 0;
    for (int fd : fds) open += ClosedByPeer(fd) ? 0 : 1;
    kept.push_back(static_cast<int>(open));
  }
  EXPECT_EQ(kept, (std::vector<int>{10, 10, 4}));
  EXPECT_EQ(ListOn(*connected), grpc::StatusCode::OK) << "the connected client is answered";
  auto newcomer = NewConnection(target, 2);
  EXPECT_EQ(ListOn(*newcomer), grpc::StatusCode::UNAVAILABLE) << "the server is full";
  EXPECT_EQ(AwaitClosed(fds_, std::chrono::seconds(10)), fds_.size());
  auto later = NewConnection(target, 3);
  EXPECT_EQ(ListOn(*later), grpc::StatusCode::OK) << "room again after the handshake timeout";
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
           std::pair{start([](L& l) { l.max_connections = 0; }), "max_connections"},
           std::pair{start([](L& l) { l.max_connections_per_address = 0; }),
                     "max_connections_per_address"},
           std::pair{start([](L& l) { l.max_metadata_bytes = 100; }), "max_metadata_bytes"},
           std::pair{start([](L& l) { l.memory_quota_bytes = 1 << 20; }), "memory_quota_bytes"},
       }) {
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << name << ": " << s;
    EXPECT_NE(s.message().find(name), std::string::npos) << s;
  }
}

}  // namespace
}  // namespace dcpkv::testing

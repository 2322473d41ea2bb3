// The replica server and client end to end: real servers on loopback, no mocks.
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <sstream>
#include <thread>

#include "dcpkv/replication/replica.h"
#include "dcpkv/replication/serve.h"
#include "tests/replication/replica_test_util.h"
#include "tests/util/temp_dir.h"

namespace dcpkv::replication {
namespace {

using ::dcpkv::testing::Loopback;
using ::dcpkv::testing::SameRecord;
using ::dcpkv::testing::TempDir;
using ::dcpkv::testing::TestRecord;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

std::unique_ptr<ReplicaServer> StartServer(const ReplicaServerOptions& options) {
  StatusOr<std::unique_ptr<ReplicaServer>> server = ReplicaServer::Start(options);
  EXPECT_TRUE(server.ok()) << server.status();
  return server.ok() ? std::move(server).value() : nullptr;
}

std::unique_ptr<ReplicaClient> ConnectClient(const std::string& target,
                                             const ReplicaClientOptions& options = {}) {
  StatusOr<std::unique_ptr<ReplicaClient>> client = ReplicaClient::Connect(target, options);
  EXPECT_TRUE(client.ok()) << client.status();
  return client.ok() ? std::move(client).value() : nullptr;
}

// A loopback port that nothing listens on (bound, then released).
int UnusedPort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  EXPECT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  socklen_t len = sizeof(addr);
  EXPECT_EQ(::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  ::close(fd);
  return ntohs(addr.sin_port);
}

TEST(ValidateNamespaceTest, AcceptsAndRejects) {
  for (const char* ns : {"job", "team/job-7", "a.b_c:d@e", "x/.y/z..", "/abs/path"}) {
    EXPECT_TRUE(ValidateNamespace(ns).ok()) << ns;
  }
  EXPECT_TRUE(ValidateNamespace(std::string(128, 'n')).ok());
  for (const std::string& ns :
       {std::string(), std::string(129, 'n'), std::string("a b"), std::string("a\0b", 3),
        std::string("../x"), std::string("x/./y"), std::string(".."), std::string("job\n")}) {
    Status s = ValidateNamespace(ns);
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << "\"" << ns << "\" " << s;
  }
}

TEST(ReplicaTest, PutGetListDelete) {
  TempDir dir;
  auto server = StartServer({.root = dir.Sub("root")});
  ASSERT_NE(server, nullptr);
  EXPECT_GT(server->port(), 0);
  auto client = ConnectClient(Loopback(*server));
  ASSERT_NE(client, nullptr);
  EXPECT_EQ(client->target(), Loopback(*server));

  StatusOr<std::vector<std::string>> ids = client->List("job");
  ASSERT_TRUE(ids.ok()) << ids.status();
  EXPECT_THAT(*ids, IsEmpty());

  ASSERT_TRUE(client->Put("job", TestRecord("step-20")).ok());
  ASSERT_TRUE(client->Put("job", TestRecord("step-10")).ok());
  // The same record again, and then a different one under the same id: replaced.
  ASSERT_TRUE(client->Put("job", TestRecord("step-10")).ok());
  ASSERT_TRUE(client->Put("job", TestRecord("step-10", 5)).ok());

  StatusOr<ManifestRecord> got = client->Get("job", "step-10");
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_TRUE(SameRecord(*got, TestRecord("step-10", 5)));
  ids = client->List("job");
  ASSERT_TRUE(ids.ok()) << ids.status();
  EXPECT_THAT(*ids, ElementsAre("step-10", "step-20"));

  ASSERT_TRUE(client->Delete("job", "step-10").ok());
  got = client->Get("job", "step-10");
  EXPECT_EQ(got.status().code(), StatusCode::kNotFound) << got.status();
  EXPECT_THAT(got.status().message(), HasSubstr(Loopback(*server)));
  EXPECT_TRUE(client->Delete("job", "step-10").ok());    // not there: OK
  EXPECT_TRUE(client->Delete("other", "step-10").ok());  // unknown namespace: OK
  EXPECT_EQ(client->Get("other", "step-20").status().code(), StatusCode::kNotFound);
  ids = client->List("job");
  ASSERT_TRUE(ids.ok()) << ids.status();
  EXPECT_THAT(*ids, ElementsAre("step-20"));
}

TEST(ReplicaTest, ClientRejectsBadNamesBeforeSending) {
  TempDir dir;
  auto server = StartServer({.root = dir.Sub("root")});
  ASSERT_NE(server, nullptr);
  auto client = ConnectClient(Loopback(*server));
  ASSERT_NE(client, nullptr);
  EXPECT_EQ(client->Put("../x", TestRecord("step-1")).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(client->Get("job", "latest").status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(client->List("").status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(client->Delete("job", "").code(), StatusCode::kInvalidArgument);
}

TEST(ReplicaTest, NamespacesAreKeptApart) {
  TempDir dir;
  auto server = StartServer({.root = dir.Sub("root")});
  ASSERT_NE(server, nullptr);
  auto client = ConnectClient(Loopback(*server));
  ASSERT_NE(client, nullptr);
  // The longest namespace takes the split directory layout.
  const std::string long_ns = "team/" + std::string(123, 'z');
  const std::vector<std::string> namespaces = {"job-a", "team/job-b", long_ns};
  for (size_t i = 0; i < namespaces.size(); ++i) {
    ASSERT_TRUE(client->Put(namespaces[i], TestRecord("step-1", i)).ok()) << namespaces[i];
    ASSERT_TRUE(client->Put(namespaces[i], TestRecord("step-2", 10 + i)).ok()) << namespaces[i];
  }
  ASSERT_TRUE(client->Put("job-a", TestRecord("only-a")).ok());
  for (size_t i = 0; i < namespaces.size(); ++i) {
    StatusOr<ManifestRecord> got = client->Get(namespaces[i], "step-1");
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_TRUE(SameRecord(*got, TestRecord("step-1", i))) << namespaces[i];
    got = client->Get(namespaces[i], "step-2");
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_TRUE(SameRecord(*got, TestRecord("step-2", 10 + i))) << namespaces[i];
  }
  EXPECT_THAT(*client->List("job-a"), ElementsAre("only-a", "step-1", "step-2"));
  EXPECT_THAT(*client->List("team/job-b"), ElementsAre("step-1", "step-2"));
  EXPECT_THAT(*client->List(long_ns), ElementsAre("step-1", "step-2"));
  EXPECT_EQ(client->Get("team/job-b", "only-a").status().code(), StatusCode::kNotFound);

  ASSERT_TRUE(client->Delete("team/job-b", "step-1").ok());
  EXPECT_TRUE(client->Get("job-a", "step-1").ok());
  EXPECT_TRUE(client->Get(long_ns, "step-1").ok());
  // Everything below the root is the lock and the namespaces' directories.
  for (const std::string& name : testing::DirectoryEntries(dir.Sub("root"))) {
    EXPECT_TRUE(name == "LOCK" || name.rfind("ns-", 0) == 0 || name.rfind("ns+", 0) == 0) << name;
  }
}

TEST(ReplicaTest, RestartOnTheSameRootKeepsData) {
  TempDir dir;
  ReplicaServerOptions options{.root = dir.Sub("root")};
  {
    auto server = StartServer(options);
    ASSERT_NE(server, nullptr);
    auto client = ConnectClient(Loopback(*server));
    ASSERT_NE(client, nullptr);
    ASSERT_TRUE(client->Put("job", TestRecord("step-1")).ok());
    ASSERT_TRUE(client->Put("job", TestRecord("step-2")).ok());
    ASSERT_TRUE(client->Put("other", TestRecord("step-3")).ok());
    // A second replica on the same root is refused while the first serves it.
    StatusOr<std::unique_ptr<ReplicaServer>> second = ReplicaServer::Start(options);
    EXPECT_EQ(second.status().code(), StatusCode::kFailedPrecondition) << second.status();
    server->Shutdown();
    server->Shutdown();  // idempotent
  }
  auto server = StartServer(options);
  ASSERT_NE(server, nullptr);
  auto client = ConnectClient(Loopback(*server));
  ASSERT_NE(client, nullptr);
  EXPECT_THAT(*client->List("job"), ElementsAre("step-1", "step-2"));
  StatusOr<ManifestRecord> got = client->Get("other", "step-3");
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_TRUE(SameRecord(*got, TestRecord("step-3")));
}

TEST(ReplicaTest, StartRejectsBadOptions) {
  TempDir dir;
  auto code = [](const ReplicaServerOptions& options) {
    return ReplicaServer::Start(options).status().code();
  };
  EXPECT_EQ(code({}), StatusCode::kInvalidArgument);
  for (const char* listen : {"", "nonsense", ":80", "127.0.0.1:", "127.0.0.1:x", "[::1]:65536"}) {
    EXPECT_EQ(code({.root = dir.Sub("r"), .listen = listen}), StatusCode::kInvalidArgument)
        << listen;
  }
  EXPECT_EQ(code({.root = dir.Sub("r"), .tls_cert_file = "cert.pem"}),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(code({.root = dir.Sub("r"), .client_ca_file = "ca.pem"}), StatusCode::kInvalidArgument);
  EXPECT_EQ(code({.root = dir.Sub("r"), .token = "has space"}), StatusCode::kInvalidArgument);
  EXPECT_EQ(code({.root = dir.Sub("r"), .max_message_bytes = 0}), StatusCode::kInvalidArgument);
  Status missing = ReplicaServer::Start({.root = dir.Sub("r"),
                                         .tls_cert_file = dir.Sub("missing-cert.pem"),
                                         .tls_key_file = dir.Sub("missing-key.pem")})
                       .status();
  EXPECT_EQ(missing.code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(missing.message(), HasSubstr("missing-cert.pem"));

  EXPECT_EQ(ReplicaClient::Connect("", {}).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(ReplicaClient::Connect("127.0.0.1:1", {.tls_server_name = "localhost"}).status().code(),
            StatusCode::kInvalidArgument);
  Status missing_ca =
      ReplicaClient::Connect("127.0.0.1:1", {.tls_ca_file = dir.Sub("no-ca.pem")}).status();
  EXPECT_EQ(missing_ca.code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(missing_ca.message(), HasSubstr("no-ca.pem"));
}

TEST(ReplicaTest, PortInUseIsUnavailable) {
  TempDir dir;
  auto first = StartServer({.root = dir.Sub("a")});
  ASSERT_NE(first, nullptr);
  StatusOr<std::unique_ptr<ReplicaServer>> second =
      ReplicaServer::Start({.root = dir.Sub("b"), .listen = Loopback(*first)});
  EXPECT_EQ(second.status().code(), StatusCode::kUnavailable) << second.status();
  // The failed start left its root free for the next one.
  EXPECT_NE(StartServer({.root = dir.Sub("b")}), nullptr);
}

TEST(ReplicaTest, TokenIsCheckedOnEveryCall) {
  TempDir dir;
  auto server = StartServer({.root = dir.Sub("root"), .token = "s3cret-token"});
  ASSERT_NE(server, nullptr);
  auto good = ConnectClient(Loopback(*server), {.token = "s3cret-token"});
  for (const std::string& token : {std::string(), std::string("s3cret-tokem"),
                                   std::string("s3cret-token2"), std::string("s3cret")}) {
    auto bad = ConnectClient(Loopback(*server), {.token = token});
    ASSERT_NE(bad, nullptr);
    Status put = bad->Put("job", TestRecord("step-1"));
    EXPECT_EQ(put.code(), StatusCode::kUnauthenticated) << token << ": " << put;
    EXPECT_EQ(bad->Get("job", "step-1").status().code(), StatusCode::kUnauthenticated);
    EXPECT_EQ(bad->List("job").status().code(), StatusCode::kUnauthenticated);
    EXPECT_EQ(bad->Delete("job", "step-1").code(), StatusCode::kUnauthenticated);
  }
  StatusOr<std::vector<std::string>> ids = good->List("job");
  ASSERT_TRUE(ids.ok()) << ids.status();
  EXPECT_THAT(*ids, IsEmpty());  // nothing stored by the rejected calls
  EXPECT_THAT(testing::DirectoryEntries(dir.Sub("root")), ElementsAre("LOCK"));
  ASSERT_TRUE(good->Put("job", TestRecord("step-1")).ok());
  EXPECT_TRUE(good->Get("job", "step-1").ok());
}

TEST(ReplicaTest, UnreachableReplicaIsUnavailableWithinTheDeadline) {
  const std::string target = "127.0.0.1:" + std::to_string(UnusedPort());
  auto client = ConnectClient(target, {.deadline = std::chrono::seconds(5)});
  ASSERT_NE(client, nullptr);
  const auto start = std::chrono::steady_clock::now();
  Status put = client->Put("job", TestRecord("step-1"));
  EXPECT_EQ(put.code(), StatusCode::kUnavailable) << put;
  EXPECT_THAT(put.message(), HasSubstr(target));
  EXPECT_EQ(client->List("job").status().code(), StatusCode::kUnavailable);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(6));
}

TEST(ReplicaTest, OversizedRequestIsRejectedAndTheServerKeepsServing) {
  TempDir dir;
  constexpr size_t kLimit = size_t{64} << 10;
  auto server = StartServer({.root = dir.Sub("root"), .max_message_bytes = kLimit});
  ASSERT_NE(server, nullptr);
  auto client = ConnectClient(Loopback(*server));
  ASSERT_NE(client, nullptr);
  Metadata md = testing::TestMetadata("step-big");
  for (int i = 0; i < 30; ++i) md.tags["tag-" + std::to_string(i)] = std::string(4000, 'x');
  ManifestRecord big{"step-big", md.committed_unix_micros, EncodeMetadata(md)};
  ASSERT_GT(big.payload.size(), kLimit);
  Status put = client->Put("job", big);
  EXPECT_TRUE(put.code() == StatusCode::kResourceExhausted ||
              put.code() == StatusCode::kInvalidArgument)
      << put;
  ASSERT_TRUE(client->Put("job", TestRecord("step-1")).ok());
  EXPECT_THAT(*client->List("job"), ElementsAre("step-1"));
}

TEST(ReplicaTest, ConcurrentClients) {
  TempDir dir;
  auto server = StartServer({.root = dir.Sub("root")});
  ASSERT_NE(server, nullptr);
  auto client = ConnectClient(Loopback(*server));
  ASSERT_NE(client, nullptr);
  constexpr int kThreads = 6;
  constexpr int kRecords = 8;
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      const std::string ns = "job-" + std::to_string(t % 3);
      for (int i = 0; i < kRecords; ++i) {
        const std::string id = "t" + std::to_string(t) + "-" + std::to_string(i);
        if (!client->Put(ns, TestRecord(id, t)).ok()) ++failures;
        StatusOr<ManifestRecord> got = client->Get(ns, id);
        if (!got.ok() || !SameRecord(*got, TestRecord(id, t))) ++failures;
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(failures.load(), 0);
  for (int n = 0; n < 3; ++n) {
    StatusOr<std::vector<std::string>> ids = client->List("job-" + std::to_string(n));
    ASSERT_TRUE(ids.ok()) << ids.status();
    EXPECT_EQ(ids->size(), size_t{2 * kRecords});
  }
}

TEST(ServeUntilSignalledTest, ServesUntilSigterm) {
  TempDir dir;
  const std::string out_path = dir.Sub("out.txt");
  std::atomic<bool> returned{false};
  Status result = InternalError("not returned");
  std::thread serving([&] {
    std::ofstream out(out_path);
    result = ServeUntilSignalled({.root = dir.Sub("root")}, out);
    returned = true;
  });
  std::string written;  // what the server wrote, once it is a whole line
  for (int i = 0; i < 1000 && written.find('\n') == std::string::npos; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    std::ifstream in(out_path);
    written.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  const std::string line = written.substr(0, written.find('\n'));
  EXPECT_EQ(written, line + "\n");
  ASSERT_THAT(line, ::testing::StartsWith("listening on 127.0.0.1:"));
  auto client = ConnectClient(line.substr(std::string("listening on ").size()));
  ASSERT_NE(client, nullptr);
  EXPECT_TRUE(client->Put("job", TestRecord("step-1")).ok());
  EXPECT_FALSE(returned.load());
  ASSERT_EQ(pthread_kill(serving.native_handle(), SIGTERM), 0);
  serving.join();
  EXPECT_TRUE(result.ok()) << result;
  // Shut down: its root is free again, with the data.
  auto server = StartServer({.root = dir.Sub("root")});
  ASSERT_NE(server, nullptr);
  auto again = ConnectClient(Loopback(*server));
  EXPECT_TRUE(again->Get("job", "step-1").ok());
}

TEST(ServeUntilSignalledTest, FailedStartReturnsWhy) {
  std::ostringstream out;
  Status s = ServeUntilSignalled({.root = ""}, out);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s;
  EXPECT_EQ(out.str(), "");
}

}  // namespace
}  // namespace dcpkv::replication

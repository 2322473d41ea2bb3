// TLS and mutual TLS between replica clients and servers, with certificates made by `openssl` in
// the test (skipped where openssl is missing).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <memory>
#include <string>

#include "dcpkv/replication/replica.h"
#include "tests/replication/replica_test_util.h"
#include "tests/util/temp_dir.h"

namespace dcpkv::replication {
namespace {

using ::dcpkv::testing::Loopback;
using ::dcpkv::testing::TempDir;
using ::dcpkv::testing::TestRecord;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

// A CA, a server certificate for localhost and a client certificate signed by it, and a
// self-signed "rogue" certificate with the client's name.
constexpr char kMakeCertificates[] = R"(set -e
key='-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes'
openssl req -x509 $key -keyout ca.key -out ca.pem -days 2 -subj '/CN=dcpkv test CA'
openssl req $key -keyout server.key -out server.csr -subj '/CN=localhost'
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' > server.ext
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
  -extfile server.ext -out server.pem
openssl req $key -keyout client.key -out client.csr -subj '/CN=trainer'
printf 'extendedKeyUsage=clientAuth\n' > client.ext
openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
  -extfile client.ext -out client.pem
openssl req -x509 $key -keyout rogue.key -out rogue.pem -days 2 -subj '/CN=trainer'
)";

constexpr auto kFailFast = std::chrono::seconds(3);

class ReplicaTlsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (std::system("openssl version > /dev/null 2>&1") != 0) return;
    certs_ = new TempDir();
    std::ofstream(certs_->Sub("make.sh")) << kMakeCertificates;
    const std::string command = "cd '" + certs_->path() + "' && sh make.sh > make.log 2>&1";
    if (std::system(command.c_str()) != 0) {
      std::ifstream log(certs_->Sub("make.log"));
      ADD_FAILURE() << "making certificates failed:\n" << log.rdbuf();
      TearDownTestSuite();
    }
  }
  static void TearDownTestSuite() {
    delete certs_;
    certs_ = nullptr;
  }

  void SetUp() override {
    if (certs_ == nullptr) GTEST_SKIP() << "openssl is not available";
  }

  static std::string Cert(const std::string& name) { return certs_->Sub(name); }

  ReplicaServerOptions TlsServerOptions(bool mutual) const {
    return {.root = dir_.Sub("root"),
            .tls_cert_file = Cert("server.pem"),
            .tls_key_file = Cert("server.key"),
            .client_ca_file = mutual ? Cert("ca.pem") : ""};
  }

  static ReplicaClientOptions TlsClientOptions(const std::string& cert = "") {
    return {.tls_ca_file = Cert("ca.pem"),
            .tls_cert_file = cert.empty() ? "" : Cert(cert + ".pem"),
            .tls_key_file = cert.empty() ? "" : Cert(cert + ".key"),
            .tls_server_name = "localhost",
            .deadline = kFailFast};
  }

  std::unique_ptr<ReplicaServer> Start(const ReplicaServerOptions& options) {
    StatusOr<std::unique_ptr<ReplicaServer>> server = ReplicaServer::Start(options);
    EXPECT_TRUE(server.ok()) << server.status();
    return server.ok() ? std::move(server).value() : nullptr;
  }

  // Puts a record through a client with `options`; returns the status of the Put.
  Status PutWith(const ReplicaServer& server, const ReplicaClientOptions& options) {
    StatusOr<std::unique_ptr<ReplicaClient>> client =
        ReplicaClient::Connect(Loopback(server), options);
    if (!client.ok()) return client.status();
    return (*client)->Put("job", TestRecord("step-1"));
  }

  // The ids stored in "job", read with a client that may.
  std::vector<std::string> StoredIds(const ReplicaServer& server, const std::string& cert) {
    StatusOr<std::unique_ptr<ReplicaClient>> client =
        ReplicaClient::Connect(Loopback(server), TlsClientOptions(cert));
    EXPECT_TRUE(client.ok()) << client.status();
    if (!client.ok()) return {};
    StatusOr<std::vector<std::string>> ids = (*client)->List("job");
    EXPECT_TRUE(ids.ok()) << ids.status();
    return ids.ok() ? *ids : std::vector<std::string>{};
  }

  static TempDir* certs_;
  TempDir dir_;
};

TempDir* ReplicaTlsTest::certs_ = nullptr;

TEST_F(ReplicaTlsTest, TlsRoundTrip) {
  auto server = Start(TlsServerOptions(/*mutual=*/false));
  ASSERT_NE(server, nullptr);
  ASSERT_TRUE(PutWith(*server, TlsClientOptions()).ok());
  EXPECT_THAT(StoredIds(*server, ""), ElementsAre("step-1"));
}

TEST_F(ReplicaTlsTest, ClientVerifiesTheServer) {
  auto server = Start(TlsServerOptions(/*mutual=*/false));
  ASSERT_NE(server, nullptr);
  ReplicaClientOptions wrong_name = TlsClientOptions();
  wrong_name.tls_server_name = "replica.example.com";
  EXPECT_FALSE(PutWith(*server, wrong_name).ok());
  ReplicaClientOptions wrong_ca = TlsClientOptions();
  wrong_ca.tls_ca_file = Cert("rogue.pem");
  EXPECT_FALSE(PutWith(*server, wrong_ca).ok());
  Status plaintext = PutWith(*server, {.deadline = kFailFast});
  EXPECT_FALSE(plaintext.ok());
  EXPECT_EQ(plaintext.code(), StatusCode::kUnavailable) << plaintext;
  EXPECT_THAT(StoredIds(*server, ""), IsEmpty());
}

TEST_F(ReplicaTlsTest, TlsClientToPlaintextServerFails) {
  auto server = Start({.root = dir_.Sub("root")});
  ASSERT_NE(server, nullptr);
  EXPECT_FALSE(PutWith(*server, TlsClientOptions()).ok());
}

TEST_F(ReplicaTlsTest, MutualTlsRequiresAClientCertificateFromTheCa) {
  auto server = Start(TlsServerOptions(/*mutual=*/true));
  ASSERT_NE(server, nullptr);
  Status no_cert = PutWith(*server, TlsClientOptions());
  EXPECT_FALSE(no_cert.ok()) << "without a client certificate";
  Status rogue = PutWith(*server, TlsClientOptions("rogue"));
  EXPECT_FALSE(rogue.ok()) << "with a self-signed client certificate";
  EXPECT_FALSE(PutWith(*server, {.deadline = kFailFast}).ok()) << "plaintext";
  EXPECT_THAT(StoredIds(*server, "client"), IsEmpty());

  ASSERT_TRUE(PutWith(*server, TlsClientOptions("client")).ok());
  EXPECT_THAT(StoredIds(*server, "client"), ElementsAre("step-1"));
}

TEST_F(ReplicaTlsTest, MutualTlsAndToken) {
  ReplicaServerOptions options = TlsServerOptions(/*mutual=*/true);
  options.token = "tok3n";
  auto server = Start(options);
  ASSERT_NE(server, nullptr);
  Status no_token = PutWith(*server, TlsClientOptions("client"));
  EXPECT_EQ(no_token.code(), StatusCode::kUnauthenticated) << no_token;
  ReplicaClientOptions client = TlsClientOptions("client");
  client.token = "tok3n";
  ASSERT_TRUE(PutWith(*server, client).ok());
}

TEST_F(ReplicaTlsTest, UnreadableOrNonPemFilesAreInvalidArgument) {
  const std::string not_pem = dir_.Sub("not.pem");
  std::ofstream(not_pem) << "hello\n";
  ReplicaServerOptions options = TlsServerOptions(/*mutual=*/false);
  options.tls_key_file = not_pem;
  Status bad_key = ReplicaServer::Start(options).status();
  EXPECT_EQ(bad_key.code(), StatusCode::kInvalidArgument) << bad_key;
  EXPECT_THAT(bad_key.message(), HasSubstr(not_pem));
  options = TlsServerOptions(/*mutual=*/true);
  options.client_ca_file = dir_.Sub("absent.pem");
  Status absent_ca = ReplicaServer::Start(options).status();
  EXPECT_EQ(absent_ca.code(), StatusCode::kInvalidArgument) << absent_ca;
  EXPECT_THAT(absent_ca.message(), HasSubstr("absent.pem"));

  ReplicaClientOptions client = TlsClientOptions("client");
  client.tls_key_file = dir_.Sub("absent.key");
  Status absent_key = ReplicaClient::Connect("127.0.0.1:1", client).status();
  EXPECT_EQ(absent_key.code(), StatusCode::kInvalidArgument) << absent_key;
  EXPECT_THAT(absent_key.message(), HasSubstr("absent.key"));
}

}  // namespace
}  // namespace dcpkv::replication

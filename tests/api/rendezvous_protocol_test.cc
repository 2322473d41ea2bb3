// RendezvousProtocol: the checks that need no torch (tests/api/torch_store_test.cc talks to a
// real torch store).
#include <gtest/gtest.h>

#include <chrono>

#include "api/tcp_store.h"
#include "dcpkv/gloo_process_group.h"

namespace dcpkv {
namespace {

TEST(RendezvousProtocolTest, TorchsProtocolAtADcpkvServerFailsAtOnceAndSaysWhy) {
  auto server = TcpStoreServer::Start("127.0.0.1", 0);
  ASSERT_TRUE(server.ok()) << server.status();
  const auto start = std::chrono::steady_clock::now();
  auto client = TcpStoreClient::Connect("127.0.0.1", (*server)->port(), std::chrono::seconds(30),
                                        RendezvousProtocol::kTorchTcpStore);
  EXPECT_EQ(client.status().code(), StatusCode::kFailedPrecondition) << client.status();
  EXPECT_NE(client.status().message().find("TCPStore"), std::string::npos) << client.status();
  EXPECT_NE(client.status().message().find("DCPKV_RENDEZVOUS_PROTOCOL"), std::string::npos);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(10));

  GlooProcessGroupOptions o;
  o.rank = 1;
  o.world_size = 2;
  o.master_port = (*server)->port();
  o.start_server = false;
  o.server_protocol = RendezvousProtocol::kTorchTcpStore;
  EXPECT_EQ(CreateGlooProcessGroup(o).status().code(), StatusCode::kFailedPrecondition);
}

TEST(RendezvousProtocolTest, DcpkvCannotStartTorchsServer) {
  GlooProcessGroupOptions o;
  o.rank = 0;
  o.world_size = 2;
  o.server_protocol = RendezvousProtocol::kTorchTcpStore;  // with start_server left true
  Status s = CreateGlooProcessGroup(o).status();
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s;
  EXPECT_NE(s.message().find("start_server"), std::string::npos) << s;
}

}  // namespace
}  // namespace dcpkv

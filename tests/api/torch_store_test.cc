// RendezvousProtocol::kTorchTcpStore against a real torch c10d TCPStore server (what torchrun's
// elastic agent serves with TORCHELASTIC_USE_AGENT_STORE=True), run by the python of the
// project's venv (CMake's DCPKV_TORCH_PYTHON, with torch from PyPI). Built only when CMake was
// given DCPKV_TORCH_PYTHON; then a missing or broken torch fails these tests.
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "api/tcp_store.h"
#include "dcpkv/gloo_process_group.h"

extern char** environ;

namespace dcpkv {
namespace {

using Clock = std::chrono::steady_clock;

// A torch TCPStore server in a python child; stops when the object is destroyed.
class TorchStoreServer {
 public:
  TorchStoreServer() {
    const char* python = DCPKV_TORCH_PYTHON;
    int in[2], out[2];
    if (pipe(in) != 0 || pipe(out) != 0) {
      error_ = "pipe failed";
      return;
    }
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, in[0], 0);
    posix_spawn_file_actions_adddup2(&actions, out[1], 1);
    posix_spawn_file_actions_addclose(&actions, in[1]);
    posix_spawn_file_actions_addclose(&actions, out[0]);
    std::string py = python, script = DCPKV_TORCH_STORE_SERVER_PY;
    std::vector<char*> argv = {py.data(), script.data(), nullptr};
    const int err = posix_spawn(&pid_, py.c_str(), &actions, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    close(in[0]);
    close(out[1]);
    stdin_ = in[1];
    if (err != 0) {
      pid_ = -1;
      close(out[0]);
      error_ = "cannot run " + py;
      return;
    }
    FILE* f = fdopen(out[0], "r");
    char line[64] = {};
    if (f == nullptr || std::fgets(line, sizeof(line), f) == nullptr) {
      error_ = py + " " + script + " printed no port (is torch installed?)";
    } else {
      port_ = std::atoi(line);
    }
    if (f != nullptr) std::fclose(f);
  }
  ~TorchStoreServer() {
    if (stdin_ >= 0) close(stdin_);  // the server exits when its stdin closes
    if (pid_ > 0) {
      int status = 0;
      for (int i = 0; i < 100 && waitpid(pid_, &status, WNOHANG) == 0; ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
      }
      if (waitpid(pid_, &status, WNOHANG) == 0) {
        kill(pid_, SIGKILL);
        waitpid(pid_, &status, 0);
      }
    }
  }
  int port() const { return port_; }
  const std::string& error() const { return error_; }

 private:
  pid_t pid_ = -1;
  int stdin_ = -1;
  int port_ = 0;
  std::string error_;
};

class TorchStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(server_.error().empty()) << server_.error();
    ASSERT_GT(server_.port(), 0);
  }
  TorchStoreServer server_;
};

TEST_F(TorchStoreTest, SetGetAndTheKeysTorchsOwnClientSet) {
  auto client = TcpStoreClient::Connect("127.0.0.1", server_.port(), std::chrono::seconds(10),
                                        RendezvousProtocol::kTorchTcpStore);
  ASSERT_TRUE(client.ok()) << client.status();
  const auto deadline = Clock::now() + std::chrono::seconds(10);
  // torch's Python and C++ clients store key k as "/k".
  auto from_torch = (*client)->TryGet("/torch-key", deadline);
  ASSERT_TRUE(from_torch.ok()) << from_torch.status();
  ASSERT_TRUE(from_torch->has_value());
  EXPECT_EQ(from_torch->value().rfind("set by torch 2.", 0), 0u) << from_torch->value();

  auto missing = (*client)->TryGet("dcpkv/never-set", deadline);
  ASSERT_TRUE(missing.ok()) << missing.status();
  EXPECT_FALSE(missing->has_value());

  std::string value(70000, '\0');  // binary, and larger than one socket read
  for (size_t i = 0; i < value.size(); ++i) value[i] = static_cast<char>(i * 7);
  ASSERT_TRUE((*client)->Set("dcpkv/k", value, deadline).ok());
  auto got = (*client)->WaitGet("dcpkv/k", deadline);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, value);
}

TEST_F(TorchStoreTest, AWaitForAKeyNeverSetEndsAtItsDeadline) {
  auto client = TcpStoreClient::Connect("127.0.0.1", server_.port(), std::chrono::seconds(10),
                                        RendezvousProtocol::kTorchTcpStore);
  ASSERT_TRUE(client.ok()) << client.status();
  const auto start = Clock::now();
  auto got = (*client)->WaitGet("dcpkv/absent", start + std::chrono::milliseconds(300));
  EXPECT_EQ(got.status().code(), StatusCode::kDeadlineExceeded) << got.status();
  EXPECT_LT(Clock::now() - start, std::chrono::seconds(5));
  // The connection is still usable.
  const auto deadline = Clock::now() + std::chrono::seconds(10);
  ASSERT_TRUE((*client)->Set("dcpkv/after", "x", deadline).ok());
  auto after = (*client)->TryGet("dcpkv/after", deadline);
  ASSERT_TRUE(after.ok() && after->has_value()) << after.status();
}

TEST_F(TorchStoreTest, GlooGroupsRendezvousThroughTorchsStore) {
  constexpr int kWorld = 3;
  std::vector<std::string> results(kWorld);
  std::vector<std::thread> threads;
  for (int rank = 0; rank < kWorld; ++rank) {
    threads.emplace_back([&, rank] {
      GlooProcessGroupOptions o;
      o.rank = rank;
      o.world_size = kWorld;
      o.master_port = server_.port();
      o.start_server = false;
      o.server_protocol = RendezvousProtocol::kTorchTcpStore;
      o.prefix = "run-1/0";
      o.timeout = std::chrono::seconds(30);
      auto group = CreateGlooProcessGroup(o);
      if (!group.ok()) {
        results[rank] = group.status().ToString();
        return;
      }
      auto all = (*group)->AllGather("rank " + std::to_string(rank));
      if (!all.ok()) {
        results[rank] = all.status().ToString();
        return;
      }
      if (rank == 1) {
        results[rank] = (*all)[0] + "," + (*all)[1] + "," + (*all)[2];
        return;
      }
      // A subgroup rendezvouses through the same store.
      auto sub = CreateGlooSubgroup(**group, {2, 0});
      if (!sub.ok()) {
        results[rank] = sub.status().ToString();
        return;
      }
      auto pair = (*sub)->AllGather(std::to_string(rank));
      results[rank] = (*all)[0] + "," + (*all)[1] + "," + (*all)[2] + ";" +
                      (pair.ok() ? (*pair)[0] + (*pair)[1] : pair.status().ToString());
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(results[0], "rank 0,rank 1,rank 2;20");
  EXPECT_EQ(results[1], "rank 0,rank 1,rank 2");
  EXPECT_EQ(results[2], "rank 0,rank 1,rank 2;20");
}

}  // namespace
}  // namespace dcpkv

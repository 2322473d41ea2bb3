// A world of child processes that a crash test starts and kills at will: `world` copies of a
// program launched the torchrun way (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT; the
// rendezvous server runs in this process), each with its stdout and stderr in a file. Unlike
// tests/util/multiprocess.h's RunProcesses, Start returns at once: the test kills ranks when it
// likes (SIGKILL), then waits for the others with a deadline.
#ifndef DCPKV_TESTS_CRASH_CHILD_WORLD_H_
#define DCPKV_TESTS_CRASH_CHILD_WORLD_H_

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "dcpkv/gloo_process_group.h"
#include "tests/util/spawn.h"

extern char** environ;

namespace dcpkv::testing {

class ChildWorld {
 public:
  ChildWorld() = default;
  ChildWorld(const ChildWorld&) = delete;
  ChildWorld& operator=(const ChildWorld&) = delete;
  ~ChildWorld() {  // never leaves a child behind
    for (size_t r = 0; r < pids_.size(); ++r) {
      if (pids_[r] > 0) {
        ::kill(pids_[r], SIGKILL);
        Reap(r, /*block=*/true);
      }
    }
  }

  // Starts rank r of `world` as `exe args...` with `env` added to this process's environment
  // ("NAME=value" entries), its output in `output_prefix`-<r>.txt. An error message, or "".
  std::string Start(const std::string& exe, const std::vector<std::string>& args, int world,
                    const std::vector<std::string>& env, const std::string& output_prefix) {
    std::vector<std::string> common;
    if (world > 1) {
      StatusOr<std::shared_ptr<TcpStoreServer>> server = TcpStoreServer::Start("127.0.0.1", 0);
      if (!server.ok()) return server.status().ToString();
      server_ = *server;
      common = {"WORLD_SIZE=" + std::to_string(world),
                "LOCAL_WORLD_SIZE=" + std::to_string(world),
                "MASTER_ADDR=127.0.0.1",
                "MASTER_PORT=" + std::to_string(server_->port()),
                "TORCHELASTIC_USE_AGENT_STORE=True",
                "DCPKV_RENDEZVOUS_PROTOCOL=dcpkv"};
    }
    for (char** e = environ; *e != nullptr; ++e) {
      const std::string var(*e);
      const std::string name = var.substr(0, var.find('='));
      if (name != "RANK" && name != "LOCAL_RANK" && name != "WORLD_SIZE" && name != "MASTER_PORT" &&
          name != "MASTER_ADDR") {
        common.push_back(var);
      }
    }
    common.insert(common.end(), env.begin(), env.end());
    pids_.assign(world, -1);
    exit_codes_.assign(world, kRunning);
    outputs_.clear();
    for (int rank = 0; rank < world; ++rank) {
      outputs_.push_back(output_prefix + "-" + std::to_string(rank) + ".txt");
      std::vector<std::string> vars = common;
      vars.push_back("RANK=" + std::to_string(rank));
      vars.push_back("LOCAL_RANK=" + std::to_string(rank));
      std::vector<std::string> argv_strings = {exe};
      argv_strings.insert(argv_strings.end(), args.begin(), args.end());
      std::string error = SpawnWithOutput(argv_strings, vars, outputs_.back(), &pids_[rank]);
      if (!error.empty()) return error;
    }
    return "";
  }

  int world() const { return static_cast<int>(pids_.size()); }
  bool running(int rank) {
    Reap(rank, /*block=*/false);
    return pids_[rank] > 0;
  }
  void Kill(int rank) {
    if (running(rank)) ::kill(pids_[rank], SIGKILL);
  }
  // Waits until every rank has exited or `timeout` has passed (then kills the rest, and returns
  // false).
  bool WaitAll(std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      bool any = false;
      for (int r = 0; r < world(); ++r) any = running(r) || any;
      if (!any) return true;
      if (std::chrono::steady_clock::now() >= deadline) {
        for (int r = 0; r < world(); ++r) Kill(r);
        for (int r = 0; r < world(); ++r) Reap(r, /*block=*/true);
        return false;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
  }
  // After exit: the exit status, or -N for death by signal N.
  int exit_code(int rank) const { return exit_codes_[rank]; }
  // What rank r wrote to stdout and stderr.
  std::string output(int rank) const { return ReadFile(outputs_[rank]); }

 private:
  static constexpr int kRunning = -1000;

  void Reap(size_t rank, bool block) {
    if (pids_[rank] <= 0) return;
    int status = 0;
    const pid_t r = ::waitpid(pids_[rank], &status, block ? 0 : WNOHANG);
    if (r == 0) return;
    exit_codes_[rank] = r != pids_[rank]      ? -1
                        : WIFEXITED(status)   ? WEXITSTATUS(status)
                        : WIFSIGNALED(status) ? -WTERMSIG(status)
                                              : -1;
    pids_[rank] = -1;
  }

  std::shared_ptr<TcpStoreServer> server_;
  std::vector<pid_t> pids_;
  std::vector<int> exit_codes_;
  std::vector<std::string> outputs_;
};

}  // namespace dcpkv::testing

#endif  // DCPKV_TESTS_CRASH_CHILD_WORLD_H_

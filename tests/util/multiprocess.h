// Launches a world of real processes, as torchrun would: RunProcesses(exe, args, world) starts
// `world` copies of `exe` with RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR and
// MASTER_PORT set, waits for all of them (SIGKILLing the rest at the timeout) and returns their
// exit codes. Processes are started with posix_spawn, never a bare fork, so it is safe in a
// test process that runs threads.
#ifndef DCPKV_TESTS_UTIL_MULTIPROCESS_H_
#define DCPKV_TESTS_UTIL_MULTIPROCESS_H_

#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "dcpkv/gloo_process_group.h"
#include "tests/util/spawn.h"

extern char** environ;

namespace dcpkv::testing {

struct MultiProcessOptions {
  // Longest run of the whole world; processes still running then are SIGKILLed. Default: 60 s.
  std::chrono::milliseconds timeout{60000};
  // True: this (parent) process runs the rendezvous server on a port it picks, and the ranks
  // get TORCHELASTIC_USE_AGENT_STORE=True (as under torchrun's agent) with
  // DCPKV_RENDEZVOUS_PROTOCOL=dcpkv (the server is dcpkv's), which is race-free.
  // False: MASTER_PORT is a port found free by binding port 0, and rank 0 starts the server
  // itself (the plain torchrun path). Default: true.
  bool parent_runs_store = true;
  // Environment variables for every rank, added to or replacing the ones above (RANK and
  // LOCAL_RANK excepted). Default: none.
  std::vector<std::pair<std::string, std::string>> env;
};

struct MultiProcessResult {
  // Per rank: the exit status, or -N if the process was killed by signal N. -1 if not started.
  std::vector<int> exit_codes;
  // Some process was still running at the timeout (and was killed).
  bool timed_out = false;
  // Why the world could not be started; empty if it was.
  std::string error;
};

// A TCP port that was free a moment ago (bound to port 0 on 127.0.0.1, then released); 0 on
// failure.
inline int FindFreePort() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return 0;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  int port = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    port = ntohs(addr.sin_port);
  }
  ::close(fd);
  return port;
}

inline MultiProcessResult RunProcesses(const std::string& exe, const std::vector<std::string>& args,
                                       int world, const MultiProcessOptions& options = {}) {
  MultiProcessResult result;
  result.exit_codes.assign(world, -1);
  std::shared_ptr<TcpStoreServer> server;  // lives until every process has exited
  int port = 0;
  if (options.parent_runs_store) {
    StatusOr<std::shared_ptr<TcpStoreServer>> started = TcpStoreServer::Start("127.0.0.1", 0);
    if (!started.ok()) {
      result.error = "TcpStoreServer::Start: " + started.status().ToString();
      return result;
    }
    server = *started;
    port = server->port();
  } else {
    port = FindFreePort();
    if (port == 0) {
      result.error = "no free port";
      return result;
    }
  }

  // The parent's environment, with the variables set here replaced.
  std::map<std::string, std::string> common = {
      {"WORLD_SIZE", std::to_string(world)},
      {"LOCAL_WORLD_SIZE", std::to_string(world)},
      {"MASTER_ADDR", "127.0.0.1"},
      {"MASTER_PORT", std::to_string(port)},
      {"TORCHELASTIC_USE_AGENT_STORE", options.parent_runs_store ? "True" : "False"},
      {"DCPKV_RENDEZVOUS_PROTOCOL", "dcpkv"}};
  for (const auto& [name, value] : options.env) common[name] = value;
  std::vector<std::string> base_env;
  for (char** e = environ; *e != nullptr; ++e) {
    std::string var(*e);
    std::string name = var.substr(0, var.find('='));
    if (name != "RANK" && name != "LOCAL_RANK" && common.count(name) == 0) {
      base_env.push_back(std::move(var));
    }
  }
  for (const auto& [name, value] : common) base_env.push_back(name + "=" + value);

  // Children start with no blocked signals and without this process's descriptors (gloo's
  // sockets are not close-on-exec: a child holding them would keep dead connections open).
  posix_spawnattr_t attr;
  InitSpawnAttrUnblocked(&attr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addclosefrom_np(&actions, 3);

  std::vector<pid_t> pids(world, -1);
  for (int rank = 0; rank < world; ++rank) {
    std::vector<std::string> env = base_env;
    env.push_back("RANK=" + std::to_string(rank));
    env.push_back("LOCAL_RANK=" + std::to_string(rank));
    std::vector<char*> envp;
    for (std::string& var : env) envp.push_back(var.data());
    envp.push_back(nullptr);
    std::vector<std::string> argv_strings = {exe};
    argv_strings.insert(argv_strings.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (std::string& a : argv_strings) argv.push_back(a.data());
    argv.push_back(nullptr);
    int rc = posix_spawn(&pids[rank], exe.c_str(), &actions, &attr, argv.data(), envp.data());
    if (rc != 0) {
      pids[rank] = -1;
      result.error = "posix_spawn " + exe + ": " + strerror(rc);
      break;
    }
  }

  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);

  const auto deadline = std::chrono::steady_clock::now() + options.timeout;
  int running = 0;
  for (pid_t pid : pids) running += pid > 0 ? 1 : 0;
  if (!result.error.empty()) {  // a rank did not start: the others would wait for it in vain
    for (pid_t pid : pids) {
      if (pid > 0) ::kill(pid, SIGKILL);
    }
  }
  while (running > 0) {
    for (int rank = 0; rank < world; ++rank) {
      if (pids[rank] <= 0) continue;
      int status = 0;
      pid_t r = ::waitpid(pids[rank], &status, WNOHANG);
      if (r == 0) continue;
      if (r == pids[rank]) {
        result.exit_codes[rank] = WIFEXITED(status)     ? WEXITSTATUS(status)
                                  : WIFSIGNALED(status) ? -WTERMSIG(status)
                                                        : -1;
      }
      pids[rank] = -1;
      --running;
    }
    if (running == 0) break;
    if (std::chrono::steady_clock::now() >= deadline && !result.timed_out) {
      result.timed_out = true;
      for (pid_t pid : pids) {
        if (pid > 0) ::kill(pid, SIGKILL);
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return result;
}

}  // namespace dcpkv::testing

#endif  // DCPKV_TESTS_UTIL_MULTIPROCESS_H_

#include "launcher.h"

#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "dcpkv/gloo_process_group.h"
#include "workspace.h"

extern char** environ;

namespace dcpkv::bench {
namespace {

// This process's environment without the variables the launcher sets.
std::vector<std::string> BaseEnvironment() {
  static const char* const kSet[] = {"RANK=",
                                     "LOCAL_RANK=",
                                     "WORLD_SIZE=",
                                     "MASTER_ADDR=",
                                     "MASTER_PORT=",
                                     "TORCHELASTIC_USE_AGENT_STORE=",
                                     "DCPKV_RENDEZVOUS_PROTOCOL="};
  std::vector<std::string> env;
  for (char** e = environ; *e != nullptr; ++e) {
    bool replaced = false;
    for (const char* prefix : kSet) replaced |= std::strncmp(*e, prefix, std::strlen(prefix)) == 0;
    if (!replaced) env.emplace_back(*e);
  }
  return env;
}

std::vector<char*> Pointers(std::vector<std::string>& strings) {
  std::vector<char*> out;
  for (std::string& s : strings) out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

}  // namespace

int LaunchProcessWorld(int argc, char** argv, const Config& config) {
  StatusOr<std::unique_ptr<Workspace>> workspace = Workspace::Create(config);
  if (!workspace.ok()) {
    std::fprintf(stderr, "dcpkv_bench: %s\n", workspace.status().ToString().c_str());
    return 1;
  }
  StatusOr<std::shared_ptr<TcpStoreServer>> store = TcpStoreServer::Start("127.0.0.1", 0);
  if (!store.ok()) {
    std::fprintf(stderr, "dcpkv_bench: rendezvous store: %s\n", store.status().ToString().c_str());
    return 1;
  }
  const int processes = config.world + 1;
  std::vector<std::string> args(argv, argv + argc);
  args.push_back("--workspace-dir=" + (*workspace)->path());
  std::map<pid_t, int> running;  // pid -> rank
  for (int rank = 0; rank < processes; ++rank) {
    std::vector<std::string> env = BaseEnvironment();
    env.push_back("RANK=" + std::to_string(rank));
    env.push_back("LOCAL_RANK=" + std::to_string(rank));
    env.push_back("WORLD_SIZE=" + std::to_string(processes));
    env.push_back("MASTER_ADDR=127.0.0.1");
    env.push_back("MASTER_PORT=" + std::to_string((*store)->port()));
    env.push_back("TORCHELASTIC_USE_AGENT_STORE=1");
    env.push_back("DCPKV_RENDEZVOUS_PROTOCOL=dcpkv");
    std::vector<char*> argv_ptrs = Pointers(args), env_ptrs = Pointers(env);
    pid_t pid = -1;
    if (const int err = posix_spawn(&pid, "/proc/self/exe", nullptr, nullptr, argv_ptrs.data(),
                                    env_ptrs.data());
        err != 0) {
      std::fprintf(stderr, "dcpkv_bench: starting rank %d: %s\n", rank, std::strerror(err));
      for (const auto& [p, r] : running) kill(p, SIGTERM);
      for (const auto& [p, r] : running) waitpid(p, nullptr, 0);
      return 1;
    }
    running[pid] = rank;
  }
  int result = 0;
  while (!running.empty()) {
    int status = 0;
    const pid_t pid = waitpid(-1, &status, 0);
    if (pid < 0) break;
    auto it = running.find(pid);
    if (it == running.end()) continue;
    const int rank = it->second;
    running.erase(it);
    const bool ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    if (!ok && result == 0) {
      result = 1;
      std::fprintf(stderr, "dcpkv_bench: rank %d %s %d; stopping the other ranks\n", rank,
                   WIFEXITED(status) ? "exited with" : "was killed by signal",
                   WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
      for (const auto& [p, r] : running) kill(p, SIGTERM);
    }
  }
  return result;
}

}  // namespace dcpkv::bench

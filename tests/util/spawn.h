// Starts a test's child process with posix_spawn (never a bare fork, so it is safe in a test
// process that runs threads): no blocked signals, none of this process's descriptors beyond
// 0-2 (gloo's sockets are not close-on-exec), stdout and stderr into one file.
#ifndef DCPKV_TESTS_UTIL_SPAWN_H_
#define DCPKV_TESTS_UTIL_SPAWN_H_

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <string.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace dcpkv::testing {

// Initializes `attr` for a child that starts with no signal blocked (whatever the spawning
// thread blocks). posix_spawnattr_destroy it after the spawn.
inline void InitSpawnAttrUnblocked(posix_spawnattr_t* attr) {
  posix_spawnattr_init(attr);
  sigset_t none;
  sigemptyset(&none);
  posix_spawnattr_setsigmask(attr, &none);
  posix_spawnattr_setflags(attr, POSIX_SPAWN_SETSIGMASK);
}

// Starts argv[0] (a path) with `argv` and exactly the variables `env` ("NAME=value"), its output
// in the file `output` (made or emptied). Sets *pid and returns "", or returns why it could not
// start (and sets *pid to -1).
inline std::string SpawnWithOutput(std::vector<std::string> argv, std::vector<std::string> env,
                                   const std::string& output, pid_t* pid) {
  std::vector<char*> argp, envp;
  for (std::string& a : argv) argp.push_back(a.data());
  argp.push_back(nullptr);
  for (std::string& v : env) envp.push_back(v.data());
  envp.push_back(nullptr);
  posix_spawnattr_t attr;
  InitSpawnAttrUnblocked(&attr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, output.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_adddup2(&actions, 1, 2);
  posix_spawn_file_actions_addclosefrom_np(&actions, 3);
  const int rc = posix_spawn(pid, argp[0], &actions, &attr, argp.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) {
    *pid = -1;
    return "posix_spawn " + argv[0] + ": " + strerror(rc);
  }
  return "";
}

// The whole of the file `path`, such as what a child wrote to its output; empty if it cannot be
// read.
inline std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

}  // namespace dcpkv::testing

#endif  // DCPKV_TESTS_UTIL_SPAWN_H_

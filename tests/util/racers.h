// Processes started together against one store: each waits for a "go" file, so that they race
// for real. Started with posix_spawn (safe in a test process that runs threads).
#ifndef DCPKV_TESTS_UTIL_RACERS_H_
#define DCPKV_TESTS_UTIL_RACERS_H_

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <iterator>
#include <map>
#include <string>
#include <thread>
#include <vector>

extern char** environ;

namespace dcpkv::testing {

struct Racer {
  pid_t pid = -1;
  std::string output_path;  // its stdout and stderr

  std::string Output() const {
    std::ifstream in(output_path);
    return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  }
};

// Starts `exe` with `args`, with the parent's environment plus `env`, its output to
// `output_path`.
inline Racer StartRacer(const std::string& exe, const std::vector<std::string>& args,
                        const std::map<std::string, std::string>& env,
                        const std::string& output_path) {
  std::vector<std::string> argv_storage{exe};
  argv_storage.insert(argv_storage.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (std::string& a : argv_storage) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::vector<std::string> env_storage;
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string entry = *e;
    const std::string name = entry.substr(0, entry.find('='));
    if (env.count(name) == 0) env_storage.push_back(entry);
  }
  for (const auto& [name, value] : env) env_storage.push_back(name + "=" + value);
  std::vector<char*> envp;
  for (std::string& e : env_storage) envp.push_back(e.data());
  envp.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, output_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC,
                                   0644);
  posix_spawn_file_actions_adddup2(&actions, 1, 2);
  Racer racer;
  racer.output_path = output_path;
  if (posix_spawn(&racer.pid, exe.c_str(), &actions, nullptr, argv.data(), envp.data()) != 0) {
    racer.pid = -1;
  }
  posix_spawn_file_actions_destroy(&actions);
  return racer;
}

// Waits for `racer` up to `timeout` (then SIGKILLs it); its exit code, or -signal.
inline int WaitRacer(const Racer& racer, std::chrono::seconds timeout = std::chrono::seconds(60)) {
  if (racer.pid <= 0) return -1000;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  int status = 0;
  for (;;) {
    const pid_t done = ::waitpid(racer.pid, &status, WNOHANG);
    if (done == racer.pid) break;
    if (std::chrono::steady_clock::now() > deadline) {
      ::kill(racer.pid, SIGKILL);
      ::waitpid(racer.pid, &status, 0);
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
}

// Releases the racers waiting for `go_file`.
inline void Go(const std::string& go_file) { std::ofstream(go_file) << "go\n"; }

}  // namespace dcpkv::testing

#endif  // DCPKV_TESTS_UTIL_RACERS_H_

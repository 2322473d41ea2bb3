// Runs tests/tools/safetensors_check.py, the independent numpy reader of safetensors files.
// The including test binary defines DCPKV_PYTHON3 (the interpreter CMake chose) and
// DCPKV_SAFETENSORS_CHECK_PY (the script's path).
#ifndef DCPKV_TESTS_TOOLS_SAFETENSORS_CHECK_H_
#define DCPKV_TESTS_TOOLS_SAFETENSORS_CHECK_H_

#include <spawn.h>
#include <sys/wait.h>

#include <cerrno>
#include <cstdlib>
#include <string>
#include <vector>

extern char** environ;

namespace dcpkv::testing {

// The script's exit status when numpy cannot be imported.
inline constexpr int kNumpyMissing = 77;

// The interpreter: $DCPKV_TEST_PYTHON3 if set, else the one CMake found; empty if none.
inline std::string Python3() {
  const char* env = std::getenv("DCPKV_TEST_PYTHON3");
  std::string python = env != nullptr ? env : DCPKV_PYTHON3;
  if (python.find("NOTFOUND") != std::string::npos) python.clear();
  return python;
}

// Checks `file` against `expected_json` (format at the top of the script); returns the
// script's exit status (0: every tensor matches), or -1 if it did not run or exit.
inline int RunSafetensorsCheck(const std::string& file, const std::string& expected_json) {
  std::vector<std::string> args = {Python3(), DCPKV_SAFETENSORS_CHECK_PY, file, expected_json};
  std::vector<char*> argv;
  for (std::string& arg : args) argv.push_back(arg.data());
  argv.push_back(nullptr);
  pid_t pid = -1;
  if (posix_spawnp(&pid, argv[0], nullptr, nullptr, argv.data(), environ) != 0) return -1;
  int status = 0;
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return -1;
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

}  // namespace dcpkv::testing

#endif  // DCPKV_TESTS_TOOLS_SAFETENSORS_CHECK_H_

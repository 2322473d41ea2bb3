#include "process_identity.h"

#include <signal.h>
#include <sys/random.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <sstream>

namespace dcpkv {

std::string HostName() {
  char name[256] = {};
  if (::gethostname(name, sizeof(name) - 1) != 0 || name[0] == '\0') return "unknown-host";
  return name;
}

std::string BootId() {
  std::ifstream in("/proc/sys/kernel/random/boot_id");
  std::string id;
  std::getline(in, id);
  return id;
}

uint64_t ProcessStartTime(int pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  // The command name (field 2) is in parentheses and may hold spaces: fields are counted after
  // its closing parenthesis, which is field 3's start minus 2.
  const size_t close = stat.rfind(')');
  if (close == std::string::npos) return 0;
  std::istringstream fields(stat.substr(close + 1));
  std::string field;
  for (int i = 3; i <= 22; ++i) {
    if (!(fields >> field)) return 0;
  }
  try {
    return std::stoull(field);
  } catch (...) {
    return 0;
  }
}

std::string RandomNonce() {
  uint64_t value = 0;
  if (::getrandom(&value, sizeof(value), 0) != sizeof(value)) {
    value = static_cast<uint64_t>(::getpid()) * 0x9E3779B97F4A7C15ull ^
            static_cast<uint64_t>(reinterpret_cast<uintptr_t>(&value));
  }
  char text[17];
  std::snprintf(text, sizeof(text), "%016llx", static_cast<unsigned long long>(value));
  return text;
}

bool ProcessMayBeAlive(int pid, uint64_t start_time) {
  if (pid <= 0) return true;
  if (::kill(pid, 0) != 0 && errno == ESRCH) return false;
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const size_t close = stat.rfind(')');
  if (close != std::string::npos && close + 2 < stat.size() && stat[close + 2] == 'Z') {
    return false;  // exited, not yet reaped by its parent
  }
  if (start_time == 0) return true;
  const uint64_t now = ProcessStartTime(pid);
  return now == 0 || now == start_time;
}

std::string MakerTag() {
  const int pid = static_cast<int>(::getpid());
  return HostName() + "." + std::to_string(pid) + "." + std::to_string(ProcessStartTime(pid)) +
         "." + RandomNonce();
}

bool ScratchIsAbandoned(const std::filesystem::path& path, std::string_view prefix) {
  const std::string name = path.filename().string();
  const std::string mine = std::string(prefix) + HostName() + ".";
  int pid = 0;
  unsigned long long start = 0;
  if (name.rfind(mine, 0) == 0 &&
      std::sscanf(name.c_str() + mine.size(), "%d.%llu.", &pid, &start) == 2 &&
      !ProcessMayBeAlive(pid, start)) {
    return true;
  }
  std::error_code ec;
  const auto modified = std::filesystem::last_write_time(path, ec);
  return !ec && std::filesystem::file_time_type::clock::now() - modified > std::chrono::hours(1);
}

}  // namespace dcpkv

#include "lock_state.h"

#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <cinttypes>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>

namespace dcpkv {

bool FileIsLocked(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return false;
  // Each line: "<n>: <POSIX|OFDLCK|FLOCK> <ADVISORY|MANDATORY> <READ|WRITE> <pid>
  // <major>:<minor>:<inode> <start> <end>", major and minor in hex; waiters have "->" after <n>:.
  std::ifstream locks("/proc/locks");
  std::string line;
  while (std::getline(locks, line)) {
    std::istringstream fields(line);
    std::string field, device_inode;
    fields >> field;  // "<n>:"
    if (!(fields >> field)) continue;
    if (field == "->") continue;                        // waiting for the lock, not holding it
    fields >> field >> field >> field >> device_inode;  // advisory, access, pid, device:inode
    unsigned int major_id = 0, minor_id = 0;
    uintmax_t inode = 0;
    if (std::sscanf(device_inode.c_str(), "%x:%x:%" SCNuMAX, &major_id, &minor_id, &inode) != 3) {
      continue;
    }
    if (major_id == major(st.st_dev) && minor_id == minor(st.st_dev) && inode == st.st_ino) {
      return true;
    }
  }
  return false;
}

}  // namespace dcpkv

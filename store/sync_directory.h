// fsync of a directory, making its entries (files created or renamed into it) durable. Internal
// to store/.
#ifndef DCPKV_STORE_SYNC_DIRECTORY_H_
#define DCPKV_STORE_SYNC_DIRECTORY_H_

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "dcpkv/status.h"

namespace dcpkv {

inline Status SyncDirectory(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return IOError("cannot open directory " + dir + ": " + std::strerror(errno));
  const bool synced = ::fsync(fd) == 0;
  const int error = errno;
  ::close(fd);
  if (!synced) return IOError("cannot sync directory " + dir + ": " + std::strerror(error));
  return Status::Ok();
}

}  // namespace dcpkv

#endif  // DCPKV_STORE_SYNC_DIRECTORY_H_

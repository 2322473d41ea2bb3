#include "page_cache.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <functional>
#include <vector>

namespace dcpkv::bench {
namespace {

namespace fs = std::filesystem;

// Calls fn(path, size) for `root` if it is a regular file, else for every regular file below.
void ForEachFile(const std::string& root,
                 const std::function<void(const fs::path&, uint64_t)>& fn) {
  std::error_code ec;
  if (fs::is_regular_file(root, ec)) {
    const uint64_t size = fs::file_size(root, ec);
    if (!ec) fn(root, size);
    return;
  }
  for (auto it = fs::recursive_directory_iterator(root, ec); !ec && it != fs::end(it);
       it.increment(ec)) {
    std::error_code file_ec;
    if (!it->is_regular_file(file_ec)) continue;
    const uint64_t size = it->file_size(file_ec);
    if (!file_ec) fn(it->path(), size);
  }
}

Status DropFile(const fs::path& path) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return Status::Ok();  // removed meanwhile (RocksDB's temporary files)
    return IOError("open " + path.string() + ": " + std::strerror(errno));
  }
  int rc = fdatasync(fd);
  if (rc == 0) rc = posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
  const int err = rc == 0 ? 0 : (rc > 0 ? rc : errno);
  close(fd);
  if (err != 0) return IOError("drop page cache of " + path.string() + ": " + std::strerror(err));
  return Status::Ok();
}

uint64_t ResidentBytesOfFile(const fs::path& path, uint64_t size) {
  if (size == 0) return 0;
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  void* map = mmap(nullptr, size, PROT_READ, MAP_SHARED, fd, 0);
  close(fd);
  if (map == MAP_FAILED) return 0;
  const uint64_t page = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
  std::vector<unsigned char> resident((size + page - 1) / page);
  uint64_t bytes = 0;
  if (mincore(map, size, resident.data()) == 0) {
    for (unsigned char r : resident) bytes += (r & 1) ? page : 0;
  }
  munmap(map, size);
  return std::min(bytes, size);
}

}  // namespace

Status DropPageCache(const std::string& path) {
  Status first;
  ForEachFile(path, [&](const fs::path& file, uint64_t) {
    Status s = DropFile(file);
    if (first.ok() && !s.ok()) first = s;
  });
  return first;
}

uint64_t ResidentBytes(const std::string& path) {
  uint64_t bytes = 0;
  ForEachFile(
      path, [&](const fs::path& file, uint64_t size) { bytes += ResidentBytesOfFile(file, size); });
  return bytes;
}

uint64_t FileBytes(const std::string& path) {
  uint64_t bytes = 0;
  ForEachFile(path, [&](const fs::path&, uint64_t size) { bytes += size; });
  return bytes;
}

}  // namespace dcpkv::bench

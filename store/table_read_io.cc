// Table reads with O_DIRECT for read-only opens. A cold load through the page cache costs the
// kernel a page-cache page for every 4 KiB read and a copy out of it; where fresh pages are dear
// (here, a virtual machine, after other files' writes filled the page cache) that cost exceeds
// the read: 1 GiB of table files loaded in 1.5-2.1 s with 1.7 s of system time, most of it in
// the copy, against 0.7 s and 0.1 s read with O_DIRECT into RocksDB's (pooled) block buffers. A file already in
// the page cache (a checkpoint just saved, or loaded again) is read faster from there, so kAuto
// asks the page cache first.
#include "table_read_io.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <string_view>
#include <vector>

namespace dcpkv {

double PageCacheResidency(int fd, uint64_t size) {
  if (size == 0) return 1.0;
  const long page = sysconf(_SC_PAGESIZE);
  if (page <= 0) return -1;
  void* map = mmap(nullptr, size, PROT_READ, MAP_SHARED, fd, 0);
  if (map == MAP_FAILED) return -1;
  const size_t pages = (size + static_cast<size_t>(page) - 1) / static_cast<size_t>(page);
  std::vector<unsigned char> resident(pages);
  double fraction = -1;
  if (mincore(map, size, resident.data()) == 0) {
    size_t in = 0;
    for (unsigned char r : resident) in += r & 1;
    fraction = static_cast<double>(in) / static_cast<double>(pages);
  }
  munmap(map, size);
  return fraction;
}

TableReadIoFileSystem::TableReadIoFileSystem(const std::shared_ptr<rocksdb::FileSystem>& target,
                                             TableReadIo mode)
    : rocksdb::FileSystemWrapper(target), mode_(mode) {}

bool TableReadIoFileSystem::WantsDirect(const std::string& fname) const {
  if (mode_ == TableReadIo::kBuffered) return false;
  constexpr std::string_view kSuffix = ".sst";
  if (fname.size() < kSuffix.size() ||
      std::string_view(fname).substr(fname.size() - kSuffix.size()) != kSuffix) {
    return false;
  }
  const int fd = ::open(fname.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;  // the buffered open reports why
  struct stat st {};
  bool direct = false;
  if (::fstat(fd, &st) == 0 && static_cast<uint64_t>(st.st_size) >= kMinDirectTableFileBytes) {
    if (mode_ == TableReadIo::kDirect) {
      direct = true;
    } else {
      const double residency = PageCacheResidency(fd, static_cast<uint64_t>(st.st_size));
      direct = residency >= 0 && residency < 0.5;
    }
  }
  ::close(fd);
  return direct;
}

rocksdb::IOStatus TableReadIoFileSystem::NewRandomAccessFile(
    const std::string& fname, const rocksdb::FileOptions& options,
    std::unique_ptr<rocksdb::FSRandomAccessFile>* result, rocksdb::IODebugContext* dbg) {
  if (!options.use_direct_reads && WantsDirect(fname)) {
    rocksdb::FileOptions direct = options;
    direct.use_direct_reads = true;
    rocksdb::IOStatus s = target()->NewRandomAccessFile(fname, direct, result, dbg);
    if (s.ok()) return s;
    // A file system without O_DIRECT (EINVAL): read through the page cache.
  }
  return target()->NewRandomAccessFile(fname, options, result, dbg);
}

rocksdb::Env* TableReadIoEnv(TableReadIo mode) {
  static rocksdb::Env* const auto_env =
      rocksdb::NewCompositeEnv(std::make_shared<TableReadIoFileSystem>(
                                   rocksdb::FileSystem::Default(), TableReadIo::kAuto))
          .release();
  static rocksdb::Env* const direct_env =
      rocksdb::NewCompositeEnv(std::make_shared<TableReadIoFileSystem>(
                                   rocksdb::FileSystem::Default(), TableReadIo::kDirect))
          .release();
  return mode == TableReadIo::kDirect ? direct_env : auto_env;
}

}  // namespace dcpkv

#include "dcpkv/store/file_ops.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <vector>

namespace dcpkv {
namespace {

std::atomic<FileOps*> test_ops{nullptr};

int Result(int rc) { return rc == 0 ? 0 : errno; }

}  // namespace

int FileOps::MakeDirectory(const std::string& path) { return Result(::mkdir(path.c_str(), 0755)); }

int FileOps::Rename(const std::string& from, const std::string& to) {
  return Result(::rename(from.c_str(), to.c_str()));
}

int FileOps::Link(const std::string& from, const std::string& to) {
  return Result(::link(from.c_str(), to.c_str()));
}

int FileOps::Unlink(const std::string& path) { return Result(::unlink(path.c_str())); }

int FileOps::RemoveDirectory(const std::string& path) { return Result(::rmdir(path.c_str())); }

int FileOps::CreateFile(const std::string& path, int flags) {
  const int fd = ::open(path.c_str(), O_CREAT | O_CLOEXEC | flags, 0644);
  return fd >= 0 ? fd : -errno;
}

int FileOps::SyncFile(int fd, const std::string& /*path*/) { return Result(::fsync(fd)); }

int FileOps::SyncDirectory(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return errno;
  const int rc = Result(::fsync(fd));
  ::close(fd);
  return rc;
}

FileOps& CurrentFileOps() {
  static FileOps posix;
  FileOps* ops = test_ops.load(std::memory_order_acquire);
  return ops != nullptr ? *ops : posix;
}

void SetFileOpsForTesting(FileOps* ops) { test_ops.store(ops, std::memory_order_release); }

int MakeDirectories(const std::string& path) {
  namespace fs = std::filesystem;
  std::vector<fs::path> missing;
  std::error_code ec;
  for (fs::path p = fs::path(path).lexically_normal(); !p.empty() && !fs::exists(p, ec);
       p = p.parent_path()) {
    missing.push_back(p);
    if (p == p.parent_path()) break;
  }
  for (auto it = missing.rbegin(); it != missing.rend(); ++it) {
    const int rc = CurrentFileOps().MakeDirectory(it->string());
    if (rc != 0 && rc != EEXIST) return rc;
  }
  if (!fs::is_directory(path, ec)) return ENOTDIR;
  return 0;
}

int RemoveTree(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::file_status st = fs::symlink_status(path, ec);
  if (ec || !fs::exists(st)) return 0;
  FileOps& ops = CurrentFileOps();
  if (!fs::is_directory(st)) {
    const int rc = ops.Unlink(path);
    return rc == ENOENT ? 0 : rc;
  }
  int first = 0;
  std::vector<std::string> entries;
  for (const auto& e : fs::directory_iterator(path, ec)) entries.push_back(e.path().string());
  if (ec) first = ec.value();
  for (const std::string& e : entries) {
    const int rc = RemoveTree(e);
    if (first == 0) first = rc;
  }
  const int rc = ops.RemoveDirectory(path);
  if (first == 0 && rc != ENOENT) first = rc;
  return first;
}

Status SyncDirectory(const std::string& dir) {
  const int rc = CurrentFileOps().SyncDirectory(dir);
  if (rc != 0) return IOError("cannot sync directory " + dir + ": " + std::strerror(rc));
  return Status::Ok();
}

}  // namespace dcpkv

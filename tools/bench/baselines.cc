#include "baselines.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <thread>
#include <vector>

namespace dcpkv::bench {
namespace {

constexpr size_t kMaxIo = size_t{1} << 30;  // below Linux's 2 GiB limit per call

Status Errno(const std::string& what, const std::string& path) {
  return IOError(what + " " + path + ": " + std::strerror(errno));
}

// Writes all of [data, data + size) or fails.
Status WriteAll(int fd, const std::string& path, const char* data, size_t size) {
  while (size > 0) {
    const ssize_t n = write(fd, data, std::min(size, kMaxIo));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return Errno("write", path);
    data += n;
    size -= static_cast<size_t>(n);
  }
  return Status::Ok();
}

Status ReadAll(int fd, const std::string& path, char* data, size_t size) {
  while (size > 0) {
    const ssize_t n = read(fd, data, std::min(size, kMaxIo));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Errno("read", path);
    if (n == 0) return IOError("read " + path + ": file too short");
    data += n;
    size -= static_cast<size_t>(n);
  }
  return Status::Ok();
}

// Shards first, first + step, ... of `state` written one after another into `path` (created or
// truncated), then fdatasync and close.
Status WriteShards(const std::string& path, const RankState& state, size_t first, size_t step) {
  const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return Errno("open", path);
  Status s;
  for (size_t i = first; i < state.shards.size() && s.ok(); i += step) {
    const Tensor& t = state.shards[i].tensor;
    s = WriteAll(fd, path, static_cast<const char*>(t.data()), t.nbytes());
  }
  if (s.ok() && fdatasync(fd) != 0) s = Errno("fdatasync", path);
  if (close(fd) != 0 && s.ok()) s = Errno("close", path);
  return s;
}

}  // namespace

Status RawWrite(const std::string& path, const RankState& state) {
  return WriteShards(path, state, 0, 1);
}

Status RawWriteParallel(const std::string& path_prefix, const RankState& state, int writers) {
  std::vector<Status> status(writers);
  std::vector<std::thread> threads;
  for (int w = 0; w < writers; ++w) {
    threads.emplace_back([&, w] {
      status[w] = WriteShards(path_prefix + "." + std::to_string(w), state, w, writers);
    });
  }
  for (std::thread& t : threads) t.join();
  for (const Status& s : status) DCPKV_RETURN_IF_ERROR(s);
  return Status::Ok();
}

Status RawRead(const std::string& path, RankState& state) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Errno("open", path);
  Status s;
  for (const Shard& shard : state.shards) {
    s = ReadAll(fd, path, static_cast<char*>(shard.tensor.data()), shard.tensor.nbytes());
    if (!s.ok()) break;
  }
  close(fd);
  return s;
}

Status RawScan(const std::string& path, std::vector<char>& buffer, uint64_t* bytes) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Errno("open", path);
  Status s;
  while (true) {
    const ssize_t n = read(fd, buffer.data(), buffer.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) s = Errno("read", path);
    if (n <= 0) break;
    *bytes += static_cast<uint64_t>(n);
  }
  close(fd);
  return s;
}

void CopyState(const RankState& from, RankState& to) {
  for (size_t i = 0; i < from.shards.size() && i < to.shards.size(); ++i) {
    std::memcpy(to.shards[i].tensor.data(), from.shards[i].tensor.data(),
                std::min(from.shards[i].tensor.nbytes(), to.shards[i].tensor.nbytes()));
  }
}

}  // namespace dcpkv::bench

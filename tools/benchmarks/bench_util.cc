// dcpkv_bench helpers: timing, reporting, state construction, gloo worlds of threads and the
// raw-I/O baselines.
#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <thread>

#include "bench.h"
#include "dcpkv/gloo_process_group.h"

namespace dcpkv::bench {

double Median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

double NowSeconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

uint64_t PeakRssBytes() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<uint64_t>(usage.ru_maxrss) * 1024;
}

void Report(const Config& config, const Result& r) {
  const double gbps = r.seconds > 0 ? r.bytes / r.seconds / 1e9 : 0;
  const double ratio = r.seconds > 0 && r.baseline_seconds > 0 ? r.baseline_seconds / r.seconds : 0;
  if (config.json) {
    std::printf(
        "{\"benchmark\":\"%s\",\"bytes\":%llu,\"seconds\":%.6f,\"gbps\":%.4f,\"baseline\":\"%s\","
        "\"baseline_seconds\":%.6f,\"ratio\":%.4f,\"peak_rss_bytes\":%llu,\"world\":%d,"
        "\"note\":\"%s\"}\n",
        r.benchmark.c_str(), static_cast<unsigned long long>(r.bytes), r.seconds, gbps,
        r.baseline.c_str(), r.baseline_seconds, ratio,
        static_cast<unsigned long long>(PeakRssBytes()), config.world, r.note.c_str());
  } else {
    std::printf("%-18s %10.1f MiB %10.4f s %8.3f GB/s  baseline %-10s %10.4f s  ratio %6.3f  %s\n",
                r.benchmark.c_str(), r.bytes / 1048576.0, r.seconds, gbps, r.baseline.c_str(),
                r.baseline_seconds, ratio, r.note.c_str());
  }
  std::fflush(stdout);
}

State MakeState(const Config& config, int rank, int world, float seed) {
  State s;
  const uint64_t per_tensor = std::max<uint64_t>(config.size / config.tensors / 4, 1);  // floats
  const uint64_t cols = 1024;
  const uint64_t rows = std::max<uint64_t>(per_tensor / cols, static_cast<uint64_t>(world));
  for (int t = 0; t < config.tensors; ++t) {
    const uint64_t base = rows / world, extra = rows % world, r = rank;
    const uint64_t first = r * base + std::min<uint64_t>(r, extra);
    const uint64_t mine = base + (r < extra ? 1 : 0);
    Tensor shard = Tensor::Allocate(DType::kFloat32, {mine, cols});
    float* p = shard.data_as<float>();
    for (uint64_t i = 0; i < shard.numel(); ++i) p[i] = seed + static_cast<float>(i % 4093);
    s.dict.Set("layers." + std::to_string(t) + ".weight",
               ShardedTensor{DType::kFloat32, {rows, cols}, {Shard{{first, 0}, shard}}});
    s.bytes += shard.nbytes();
    s.shards.push_back(shard);
  }
  return s;
}

bool RunRanks(int world, const std::function<void(ProcessGroup*)>& body) {
  if (world == 1) {
    body(nullptr);
    return true;
  }
  StatusOr<std::shared_ptr<TcpStoreServer>> server = TcpStoreServer::Start("127.0.0.1", 0);
  if (!server.ok()) return false;
  static int generation = 0;
  const std::string prefix = "bench-" + std::to_string(generation++);
  std::vector<std::thread> threads;
  std::atomic<bool> ok{true};
  for (int rank = 0; rank < world; ++rank) {
    threads.emplace_back([&, rank] {
      GlooProcessGroupOptions o;
      o.rank = rank;
      o.world_size = world;
      o.server = *server;
      o.prefix = prefix;
      o.timeout = std::chrono::seconds(300);
      StatusOr<std::unique_ptr<ProcessGroup>> group = CreateGlooProcessGroup(o);
      if (!group.ok()) {
        std::fprintf(stderr, "dcpkv_bench: %s\n", group.status().ToString().c_str());
        ok = false;
        return;
      }
      body(group->get());
    });
  }
  for (auto& t : threads) t.join();
  return ok;
}

double RawWriteSeconds(const std::string& path, const void* data, uint64_t bytes) {
  const double start = NowSeconds();
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return 0;
  const char* p = static_cast<const char*>(data);
  for (uint64_t done = 0; done < bytes;) {
    ssize_t n = write(fd, p + done, std::min<uint64_t>(bytes - done, uint64_t{8} << 20));
    if (n <= 0) break;
    done += static_cast<uint64_t>(n);
  }
  fdatasync(fd);
  const double seconds = NowSeconds() - start;
  posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
  close(fd);
  return seconds;
}

double RawReadSeconds(const std::string& path, void* data, uint64_t bytes) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
  const double start = NowSeconds();
  char* p = static_cast<char*>(data);
  for (uint64_t done = 0; done < bytes;) {
    ssize_t n = read(fd, p + done, std::min<uint64_t>(bytes - done, uint64_t{8} << 20));
    if (n <= 0) break;
    done += static_cast<uint64_t>(n);
  }
  const double seconds = NowSeconds() - start;
  close(fd);
  return seconds;
}

void DropPageCache(const std::string& dir) {
  std::error_code ec;
  for (auto it = std::filesystem::recursive_directory_iterator(dir, ec);
       it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
    if (ec || !it->is_regular_file()) continue;
    int fd = open(it->path().c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) continue;
    fdatasync(fd);
    posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    close(fd);
  }
}

}  // namespace dcpkv::bench

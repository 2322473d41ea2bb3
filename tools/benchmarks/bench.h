// Shared pieces of dcpkv_bench: configuration, results, the state under test, baselines.
#ifndef DCPKV_TOOLS_BENCHMARKS_BENCH_H_
#define DCPKV_TOOLS_BENCHMARKS_BENCH_H_

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "dcpkv/process_group.h"
#include "dcpkv/state_dict.h"

namespace dcpkv::bench {

struct Config {
  uint64_t size = uint64_t{256} << 20;  // total state bytes across ranks
  int tensors = 16;
  int world = 1;  // ranks as threads over gloo on 127.0.0.1
  uint64_t chunk_size = uint64_t{4} << 20;
  std::string dir;
  int repetitions = 3;
  int sim_ranks = 4096;     // plan
  int plan_tensors = 1000;  // plan
  bool json = false;
};

// One reported figure. ratio = baseline_seconds / seconds: >= 1 means at least as fast as the
// baseline (for time-to-block figures, lower seconds is better all the same).
struct Result {
  std::string benchmark;
  uint64_t bytes = 0;
  double seconds = 0;
  std::string baseline;
  double baseline_seconds = 0;
  std::string note;
};

double Median(std::vector<double> v);
double NowSeconds();
uint64_t PeakRssBytes();
void Report(const Config& config, const Result& result);

// A float32 state of config.tensors tensors, `rank`'s row shard of each, seeded with `seed`.
struct State {
  std::vector<Tensor> shards;  // own the memory
  StateDict dict;
  uint64_t bytes = 0;
};
State MakeState(const Config& config, int rank, int world, float seed);

// Runs body(group) on `world` threads, each with a gloo group over 127.0.0.1 (or no group for
// a world of 1). Returns false if a group could not be created.
bool RunRanks(int world, const std::function<void(ProcessGroup*)>& body);

// Baselines, per rank (called from RunRanks bodies): write + fdatasync of `bytes` to one file;
// cold read of it back; memcpy of `bytes`.
double RawWriteSeconds(const std::string& path, const void* data, uint64_t bytes);
double RawReadSeconds(const std::string& path, void* data, uint64_t bytes);
// Drops every file under `dir` from the page cache.
void DropPageCache(const std::string& dir);

using Benchmark = std::function<void(const Config&)>;
const std::map<std::string, Benchmark>& Benchmarks();

}  // namespace dcpkv::bench

#endif  // DCPKV_TOOLS_BENCHMARKS_BENCH_H_

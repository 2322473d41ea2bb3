// dcpkv_bench: the pieces every benchmark shares. Modelled on leveldb's db_bench: one binary,
// `--benchmarks=a,b,c`, one function per name (registry.cc), one result record, one reporter.
//
// Every figure is the median of `repetitions` runs; where a benchmark has a baseline, baseline
// and measured runs alternate (baseline, measured, baseline, ...) on the same bytes and the same
// directory, and ratio = baseline_seconds / seconds, so that ratio >= 1 means "at least as fast
// as the baseline".
//
// Adding a benchmark: write `StatusOr<std::vector<Result>> RunFoo(BenchContext&)` in its own
// file (helpers: state.h, ranks.h, baselines.h, page_cache.h, stats.h) and add one line to the
// table in registry.cc.
#ifndef DCPKV_TOOLS_BENCH_BENCH_H_
#define DCPKV_TOOLS_BENCH_BENCH_H_

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "dcpkv/status.h"
#include "dcpkv/store/chunk_store.h"

namespace dcpkv::bench {

struct Config {
  // Benchmarks to run, in this order. Empty: every registered benchmark.
  std::vector<std::string> benchmarks;
  // Total bytes of the state, summed over ranks.
  uint64_t size = uint64_t{256} << 20;
  // Number of float32 tensors the state is split into, each sharded by rows across the ranks.
  int tensors = 16;
  // Ranks, as threads over gloo on 127.0.0.1 (a world of 1 uses no process group).
  int world = 1;
  // Ranks as processes instead of threads: world + 1 processes of this binary, launched the
  // torchrun way (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT), each holding only its own state.
  bool processes = false;
  // Writer threads per rank of the raw_write_parallel baseline (each writes its part of the
  // rank's bytes into a file of its own).
  int raw_writers = 2;
  // Set by the launcher for the ranks it starts: the run's working directory, made by the
  // launcher, which removes it.
  std::string workspace_dir;
  // Payload bytes per stored chunk.
  uint64_t chunk_size = uint64_t{4} << 20;
  // How chunks reach the rank databases: "batch" (WriteBatches, flushed) or "ingest" (table files
  // built and ingested).
  ChunkWritePath write_path = ChunkWritePath::kIngestTableFiles;
  // Threads a rank's save writes with (KvStorageOptions::write_threads); 0: the library default.
  int write_threads = 0;
  // Threads a rank's load reads with (KvStorageOptions::read_threads); 0: the library default.
  int read_threads = 0;
  // Where the run's working directory (a fresh dcpkv-bench-XXXXXX) is made. Empty: the temp
  // directory ($TMPDIR or /tmp).
  std::string dir;
  // Keep the working directory at exit instead of removing it.
  bool keep = false;
  int repetitions = 3;
  // plan: simulated ranks, and row-sharded tensors in each rank's local plan.
  int sim_ranks = 4096;
  int plan_tensors = 1000;
  // One JSON object per line instead of a table.
  bool json = false;
  bool help = false;
};

// One reported figure.
struct Result {
  std::string benchmark;
  // Bytes the figure is about (the state's bytes; for plan, the encoded local plans).
  uint64_t bytes = 0;
  // Median of `runs`.
  double seconds = 0;
  std::vector<double> runs;
  // Name of the baseline, or "none" (then ratio is 1).
  std::string baseline = "none";
  double baseline_seconds = 0;
  std::vector<double> baseline_runs;
  // What the figure measures, in a few words.
  std::string note;
  // Further numeric fields, reported as they are (e.g. bytes on disk).
  std::vector<std::pair<std::string, double>> extra;

  // baseline_seconds / seconds; 1 without a baseline.
  double ratio() const;
};

// Fills runs/seconds and baseline_runs/baseline_seconds from paired repetitions.
Result MakeResult(std::string benchmark, uint64_t bytes, std::vector<double> runs,
                  std::string baseline = "none", std::vector<double> baseline_runs = {});

class Workspace;

// What a benchmark gets: the flags and the run's working directory.
struct BenchContext {
  const Config& config;
  Workspace& workspace;
};

using BenchmarkFn = std::function<StatusOr<std::vector<Result>>(BenchContext&)>;

struct BenchmarkSpec {
  std::string name;
  std::string description;
  BenchmarkFn run;
  // Runs on ranks (ranks.h). A benchmark that does not (plan) runs on process rank 0 only in a
  // process world.
  bool on_ranks = true;
};

// Every benchmark, in the default order (registry.cc).
const std::vector<BenchmarkSpec>& Registry();
// nullptr if there is none of that name.
const BenchmarkSpec* FindBenchmark(const std::string& name);

}  // namespace dcpkv::bench

#endif  // DCPKV_TOOLS_BENCH_BENCH_H_

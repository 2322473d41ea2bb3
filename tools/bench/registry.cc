// The table of benchmarks: name -> function. A new benchmark is one line here.
#include "bench.h"
#include "benchmarks.h"

namespace dcpkv::bench {

const std::vector<BenchmarkSpec>& Registry() {
  static const auto* const kRegistry = new std::vector<BenchmarkSpec>{
      {"save", "sync Save vs the faster of raw_write and raw_write_parallel (+ fdatasync)",
       RunSave},
      {"load", "cold Load vs raw_read (cold read of the raw files)", RunLoad},
      {"load_reshard", "cold Load on world+1 ranks vs cold Load on world", RunLoadReshard},
      {"verify", "cold dcpkv verify of the checkpoint vs raw_scan (cold read of the raw files)",
       RunVerify},
      {"incremental", "incremental Save with 10% of chunks changed vs a full Save of the state",
       RunIncremental},
      {"save_strided", "sync Save of strided (column-half) views vs the same bytes contiguous",
       RunSaveStrided},
      {"plan", "global planning for --sim-ranks x --plan-tensors, and plan-cache hits", RunPlan,
       /*on_ranks=*/false},
      {"memcpy", "memcpy of the state (the async baselines' reference)", RunMemcpy},
      {"async_block", "time AsyncSave blocks the caller vs memcpy",
       [](BenchContext& ctx) { return RunAsyncBlock(ctx, /*lazy=*/false); }},
      {"async_block_lazy", "the same with use_async_staging",
       [](BenchContext& ctx) { return RunAsyncBlock(ctx, /*lazy=*/true); }},
  };
  return *kRegistry;
}

const BenchmarkSpec* FindBenchmark(const std::string& name) {
  for (const BenchmarkSpec& spec : Registry()) {
    if (spec.name == name) return &spec;
  }
  return nullptr;
}

}  // namespace dcpkv::bench

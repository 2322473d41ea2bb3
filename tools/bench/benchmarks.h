// The benchmark functions that registry.cc lists, one per name.
#ifndef DCPKV_TOOLS_BENCH_BENCHMARKS_H_
#define DCPKV_TOOLS_BENCH_BENCHMARKS_H_

#include <vector>

#include "bench.h"

namespace dcpkv::bench {

// bench_io.cc
StatusOr<std::vector<Result>> RunSave(BenchContext& ctx);
StatusOr<std::vector<Result>> RunLoad(BenchContext& ctx);
StatusOr<std::vector<Result>> RunLoadReshard(BenchContext& ctx);
// bench_verify.cc
StatusOr<std::vector<Result>> RunVerify(BenchContext& ctx);
// bench_plan.cc
StatusOr<std::vector<Result>> RunPlan(BenchContext& ctx);
StatusOr<std::vector<Result>> RunIncremental(BenchContext& ctx);
// bench_strided.cc
StatusOr<std::vector<Result>> RunSaveStrided(BenchContext& ctx);
// bench_async.cc
StatusOr<std::vector<Result>> RunMemcpy(BenchContext& ctx);
StatusOr<std::vector<Result>> RunAsyncBlock(BenchContext& ctx, bool lazy);

}  // namespace dcpkv::bench

#endif  // DCPKV_TOOLS_BENCH_BENCHMARKS_H_

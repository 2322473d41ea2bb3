// Runs the selected benchmarks one after another and reports each figure with the peak RSS of
// the benchmark that produced it.
#ifndef DCPKV_TOOLS_BENCH_RUNNER_H_
#define DCPKV_TOOLS_BENCH_RUNNER_H_

#include "bench.h"
#include "report.h"
#include "workspace.h"

namespace dcpkv::bench {

// Stops at the first benchmark that fails; its error names it.
Status RunBenchmarks(const Config& config, Workspace& workspace, Reporter& reporter);

}  // namespace dcpkv::bench

#endif  // DCPKV_TOOLS_BENCH_RUNNER_H_

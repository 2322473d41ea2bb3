#include "runner.h"

#include "ranks.h"
#include "stats.h"

namespace dcpkv::bench {
namespace {

std::vector<const BenchmarkSpec*> Selected(const Config& config) {
  std::vector<const BenchmarkSpec*> out;
  if (config.benchmarks.empty()) {
    for (const BenchmarkSpec& spec : Registry()) out.push_back(&spec);
  }
  for (const std::string& name : config.benchmarks) out.push_back(FindBenchmark(name));
  return out;
}

}  // namespace

Status RunBenchmarks(const Config& config, Workspace& workspace, Reporter& reporter) {
  BenchContext ctx{config, workspace};
  for (const BenchmarkSpec* spec : Selected(config)) {
    if (spec == nullptr) return InvalidArgumentError("unknown benchmark");
    if (!spec->on_ranks && ProcessRank() != 0) continue;
    const PeakScope scope = ResetPeakRss() ? PeakScope::kBenchmark : PeakScope::kProcess;
    StatusOr<std::vector<Result>> results = spec->run(ctx);
    if (!results.ok()) return results.status().WithContext(spec->name);
    const uint64_t peak = PeakRssBytes();
    if (ProcessRank() != 0) continue;  // figures are the same on every rank; rank 0 reports
    for (const Result& r : *results) reporter.Report(r, peak, scope);
  }
  return Status::Ok();
}

}  // namespace dcpkv::bench

#include "stats.h"

#include <sys/resource.h>

#include <algorithm>
#include <fstream>
#include <string>

#include "bench.h"

namespace dcpkv::bench {

double Median(std::vector<double> values) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  return values[values.size() / 2];
}

StatusOr<PairedRuns> Interleave(int reps, const TimedRun& baseline, const TimedRun& measured) {
  PairedRuns runs;
  for (int rep = 0; rep < reps; ++rep) {
    DCPKV_ASSIGN_OR_RETURN(double b, baseline(rep));
    runs.baseline.push_back(b);
    DCPKV_ASSIGN_OR_RETURN(double m, measured(rep));
    runs.measured.push_back(m);
  }
  return runs;
}

StatusOr<std::vector<std::vector<double>>> InterleaveAll(int reps,
                                                         const std::vector<TimedRun>& runs) {
  std::vector<std::vector<double>> out(runs.size());
  for (int rep = 0; rep < reps; ++rep) {
    for (size_t k = 0; k < runs.size(); ++k) {
      DCPKV_ASSIGN_OR_RETURN(double seconds, runs[k](rep));
      out[k].push_back(seconds);
    }
  }
  return out;
}

double Quantile(std::vector<double> values, double q) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  const size_t index = static_cast<size_t>(q * double(values.size() - 1) + 0.5);
  return values[std::min(index, values.size() - 1)];
}

uint64_t PeakRssBytes() {
  std::ifstream status("/proc/self/status");
  for (std::string line; std::getline(status, line);) {
    if (line.starts_with("VmHWM:")) return std::stoull(line.substr(6)) * 1024;  // "... kB"
  }
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<uint64_t>(usage.ru_maxrss) * 1024;
}

uint64_t CurrentRssBytes() {
  std::ifstream status("/proc/self/status");
  for (std::string line; std::getline(status, line);) {
    if (line.starts_with("VmRSS:")) return std::stoull(line.substr(6)) * 1024;  // "... kB"
  }
  return 0;
}

bool ResetPeakRss() {
  std::ofstream clear_refs("/proc/self/clear_refs");
  clear_refs << "5";
  clear_refs.flush();
  return clear_refs.good();
}

double Result::ratio() const {
  if (baseline == "none" || seconds <= 0) return 1;
  return baseline_seconds / seconds;
}

Result MakeResult(std::string benchmark, uint64_t bytes, std::vector<double> runs,
                  std::string baseline, std::vector<double> baseline_runs) {
  Result r;
  r.benchmark = std::move(benchmark);
  r.bytes = bytes;
  r.seconds = Median(runs);
  r.runs = std::move(runs);
  r.baseline = std::move(baseline);
  r.baseline_seconds = Median(baseline_runs);
  r.baseline_runs = std::move(baseline_runs);
  return r;
}

}  // namespace dcpkv::bench

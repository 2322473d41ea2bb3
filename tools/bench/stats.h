// Timing, medians and the process's peak memory.
#ifndef DCPKV_TOOLS_BENCH_STATS_H_
#define DCPKV_TOOLS_BENCH_STATS_H_

#include <chrono>
#include <cstdint>
#include <functional>
#include <vector>

#include "dcpkv/status.h"

namespace dcpkv::bench {

class Stopwatch {
 public:
  Stopwatch() : start_(std::chrono::steady_clock::now()) {}
  double Seconds() const {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  }

 private:
  std::chrono::steady_clock::time_point start_;
};

// The median (the upper one of an even count); 0 for none.
double Median(std::vector<double> values);

// Seconds of `reps` baseline runs and `reps` measured runs, taken alternately (baseline first):
// whatever drifts during the run (page cache, device, other load) affects both alike.
struct PairedRuns {
  std::vector<double> baseline;
  std::vector<double> measured;
};
using TimedRun = std::function<StatusOr<double>(int rep)>;
StatusOr<PairedRuns> Interleave(int reps, const TimedRun& baseline, const TimedRun& measured);

// Seconds of several kinds of runs taken in turn, `reps` rounds of one run of each, in order:
// runs[k][rep] is run k of round rep.
StatusOr<std::vector<std::vector<double>>> InterleaveAll(int reps,
                                                         const std::vector<TimedRun>& runs);

// The q-quantile (0..1) of `values`, nearest rank; 0 for none.
double Quantile(std::vector<double> values, double q);

// Peak resident set size of this process in bytes: VmHWM from /proc/self/status, else
// getrusage's ru_maxrss.
uint64_t PeakRssBytes();

// Resident set size of this process now, in bytes (VmRSS from /proc/self/status; 0 where it
// cannot be read).
uint64_t CurrentRssBytes();

// Resets the peak to the current RSS (writes "5" to /proc/self/clear_refs), so that the next
// PeakRssBytes() is the peak since this call. Returns false where the kernel does not allow it
// (then the peak is the process's since it started).
bool ResetPeakRss();

}  // namespace dcpkv::bench

#endif  // DCPKV_TOOLS_BENCH_STATS_H_

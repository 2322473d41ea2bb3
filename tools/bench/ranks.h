// A world of ranks as threads of this process: gloo over 127.0.0.1 for a world of more than
// one, no process group at all for a world of one (what a single-process save or load uses).
#ifndef DCPKV_TOOLS_BENCH_RANKS_H_
#define DCPKV_TOOLS_BENCH_RANKS_H_

#include <functional>

#include "dcpkv/process_group.h"
#include "dcpkv/status.h"

namespace dcpkv::bench {

struct Rank {
  int rank = 0;
  int world = 1;
  ProcessGroup* group = nullptr;  // null for a world of one
};

// Runs body on `world` threads, one per rank, and returns when all have finished (groups are
// destroyed only then). Returns the error of the lowest rank that failed, naming it.
Status RunRanks(int world, const std::function<Status(const Rank&)>& body);

// Runs `step` on every rank, each returning its own figure (seconds it measured itself);
// returns the largest, or the first error.
StatusOr<double> MaxOnRanks(int world, const std::function<StatusOr<double>(const Rank&)>& step);

// Runs `step` on every rank, each timed from a barrier to its own return; the run takes as long
// as its slowest rank. Returns those seconds, or the first error.
StatusOr<double> TimeOnRanks(int world, const std::function<Status(const Rank&)>& step);

}  // namespace dcpkv::bench

#endif  // DCPKV_TOOLS_BENCH_RANKS_H_

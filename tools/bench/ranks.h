// A world of ranks: threads of this process (the default), or processes (--processes), each rank
// its own process joined over gloo as a torchrun job is. A world of one uses no process group at
// all (what a single-process save or load uses).
//
// In a process world every process runs the same benchmark code (SPMD): RunRanks runs `body` for
// this process's rank only and then tells every process how every rank fared, so all take the
// same path; states of other ranks are left empty (IsLocalRank). The process world has one rank
// more than the run's world, so that load_reshard can load on world + 1 ranks; a step on `world`
// ranks runs on the first `world` processes, joined in a subgroup, while the last one waits.
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

// Makes this process a rank of a process world from the torchrun environment (RANK,
// WORLD_SIZE, MASTER_ADDR, MASTER_PORT; the launcher serves the rendezvous store), with a
// subgroup of the first n ranks for every n below WORLD_SIZE. Call once, before any benchmark.
Status JoinProcessWorld();
// True once JoinProcessWorld succeeded.
bool InProcessWorld();
// This process's rank in the process world; 0 in a thread world.
int ProcessRank();
// True if this process runs rank `rank` (every rank in a thread world).
bool IsLocalRank(int rank);

// Runs body on `world` ranks, one per thread (or per process), and returns when all have
// finished (groups are destroyed only then). Returns the error of the lowest rank that failed,
// naming it, on every rank.
Status RunRanks(int world, const std::function<Status(const Rank&)>& body);

// Runs `step` on every rank, each returning its own figure (seconds it measured itself);
// returns the largest, or the first error.
StatusOr<double> MaxOnRanks(int world, const std::function<StatusOr<double>(const Rank&)>& step);

// Runs `step` on every rank, each timed from a barrier to its own return; the run takes as long
// as its slowest rank. Returns those seconds, or the first error.
StatusOr<double> TimeOnRanks(int world, const std::function<Status(const Rank&)>& step);

}  // namespace dcpkv::bench

#endif  // DCPKV_TOOLS_BENCH_RANKS_H_

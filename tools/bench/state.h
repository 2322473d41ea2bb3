// The state under test: `tensors` float32 global tensors of shape {rows, cols}, each sharded by
// rows across the ranks (near-equal parts, the first ones one row longer), filled with a pattern
// that depends only on global coordinates so that a load on any world can be checked.
#ifndef DCPKV_TOOLS_BENCH_STATE_H_
#define DCPKV_TOOLS_BENCH_STATE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "dcpkv/state_dict.h"
#include "dcpkv/tensor.h"

namespace dcpkv::bench {

struct StateShape {
  int tensors = 0;
  uint64_t rows = 0;  // of each global tensor
  uint64_t cols = 0;

  uint64_t total_bytes() const { return uint64_t(tensors) * rows * cols * sizeof(float); }
};

// About `size` bytes in `tensors` tensors of 4 KiB rows (narrower for tiny sizes), with at
// least `min_rows` rows each so that every rank of a world up to min_rows holds a row.
StateShape ShapeFor(uint64_t size, int tensors, int min_rows);

// One rank's part of the state. The shards own their memory (untouched until filled).
struct RankState {
  StateDict dict;
  std::vector<std::string> fqns;
  std::vector<Shard> shards;  // shards[i] is the local shard of fqns[i]
  uint64_t bytes = 0;
};

RankState MakeRankState(const StateShape& shape, int rank, int world);
// Every rank's part, indexed by rank; in a process world (ranks.h) only this process's rank
// has one, the others are empty.
std::vector<RankState> MakeWorldStates(const StateShape& shape, int world);

// Writes the pattern of `seed` into every shard.
void FillPattern(RankState& state, uint32_t seed);
// Overwrites every shard with a value the pattern never takes (so a load that wrote nothing is
// caught); also touches every page.
void FillSentinel(RankState& state);
// Checks a sample of rows of every shard (first, last and ~64 between) against the pattern.
bool MatchesPattern(const RankState& state, uint32_t seed);

}  // namespace dcpkv::bench

#endif  // DCPKV_TOOLS_BENCH_STATE_H_

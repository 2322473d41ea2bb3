#include "state.h"

#include <algorithm>
#include <cstring>

#include "ranks.h"

namespace dcpkv::bench {
namespace {

constexpr uint64_t kRowFloats = 1024;  // 4 KiB rows

// Element (row, col) of tensor `t`: an integer below 2^24, exact as a float.
inline uint32_t RowBase(int t, uint64_t row, uint32_t seed) {
  return static_cast<uint32_t>(t) * 2654435761u ^ static_cast<uint32_t>(row) * 40503u ^ seed;
}
inline float Element(uint32_t row_base, uint64_t col) {
  return static_cast<float>((row_base + static_cast<uint32_t>(col)) & 0xFFFFFFu);
}

// First row and row count of part `rank` of `world` of `rows`.
std::pair<uint64_t, uint64_t> RowRange(uint64_t rows, int rank, int world) {
  const uint64_t base = rows / world, extra = rows % world, r = static_cast<uint64_t>(rank);
  return {r * base + std::min(r, extra), base + (r < extra ? 1 : 0)};
}

}  // namespace

StateShape ShapeFor(uint64_t size, int tensors, int min_rows) {
  StateShape s;
  s.tensors = tensors;
  const uint64_t floats = std::max<uint64_t>(size / sizeof(float) / tensors, 1);
  const uint64_t min = static_cast<uint64_t>(std::max(min_rows, 1));
  s.cols = std::clamp<uint64_t>(floats / min, 1, kRowFloats);
  s.rows = std::max(floats / s.cols, min);
  return s;
}

RankState MakeRankState(const StateShape& shape, int rank, int world) {
  RankState state;
  const auto [first, count] = RowRange(shape.rows, rank, world);
  for (int t = 0; t < shape.tensors; ++t) {
    Shard shard{{first, 0}, Tensor::Allocate(DType::kFloat32, {count, shape.cols})};
    const std::string fqn = "model.layers." + std::to_string(t) + ".weight";
    state.dict.Set(fqn, ShardedTensor{DType::kFloat32, {shape.rows, shape.cols}, {shard}});
    state.bytes += shard.tensor.nbytes();
    state.fqns.push_back(fqn);
    state.shards.push_back(std::move(shard));
  }
  return state;
}

std::vector<RankState> MakeWorldStates(const StateShape& shape, int world) {
  std::vector<RankState> states;
  // Ranks another process runs (--processes) get an empty state.
  for (int r = 0; r < world; ++r) {
    states.push_back(IsLocalRank(r) ? MakeRankState(shape, r, world) : RankState());
  }
  return states;
}

void FillPattern(RankState& state, uint32_t seed) {
  for (size_t t = 0; t < state.shards.size(); ++t) {
    const Shard& shard = state.shards[t];
    const uint64_t rows = shard.tensor.shape()[0], cols = shard.tensor.shape()[1];
    float* p = shard.tensor.data_as<float>();
    for (uint64_t r = 0; r < rows; ++r) {
      const uint32_t base = RowBase(static_cast<int>(t), shard.offsets[0] + r, seed);
      for (uint64_t c = 0; c < cols; ++c) p[r * cols + c] = Element(base, c);
    }
  }
}

void FillSentinel(RankState& state) {
  for (const Shard& shard : state.shards) {
    std::fill_n(shard.tensor.data_as<float>(), shard.tensor.numel(), -1.0f);
  }
}

bool MatchesPattern(const RankState& state, uint32_t seed) {
  for (size_t t = 0; t < state.shards.size(); ++t) {
    const Shard& shard = state.shards[t];
    const uint64_t rows = shard.tensor.shape()[0], cols = shard.tensor.shape()[1];
    const float* p = shard.tensor.data_as<float>();
    auto row_ok = [&](uint64_t r) {
      const uint32_t base = RowBase(static_cast<int>(t), shard.offsets[0] + r, seed);
      for (uint64_t c = 0; c < cols; ++c) {
        if (p[r * cols + c] != Element(base, c)) return false;
      }
      return true;
    };
    const uint64_t step = std::max<uint64_t>(rows / 64, 1);
    for (uint64_t r = 0; r < rows; r += step) {
      if (!row_ok(r)) return false;
    }
    if (rows > 0 && !row_ok(rows - 1)) return false;
  }
  return true;
}

}  // namespace dcpkv::bench

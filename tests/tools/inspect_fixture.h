// Test stores for the dcpkv CLI and its library: checkpoints saved by real gloo process groups
// (world 1..4 threads) through dcpkv::Save, with tensors of several dtypes sharded by rows, by
// columns, in 2-D blocks and replicated, a scalar, an empty tensor, special float values and a
// bytes entry, together with the global bytes each fqn must read back as.
#ifndef DCPKV_TESTS_TOOLS_INSPECT_FIXTURE_H_
#define DCPKV_TESTS_TOOLS_INSPECT_FIXTURE_H_

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "dcpkv/checkpoint.h"
#include "dcpkv/core/box.h"
#include "tests/util/gloo_threads.h"
#include "tests/util/sharding.h"

namespace dcpkv::testing {

struct FixtureSpec {
  std::string id = "ck";
  int world = 2;
  // Seed of every tensor's values; an fqn in `reseeded` uses seed + 1 (a changed tensor).
  uint32_t seed = 1;
  std::set<std::string> reseeded;
  // Fqns left out, and whether to add "model.extra".
  std::set<std::string> omit;
  bool extra = false;
  // Save incrementally on the newest checkpoint of the store (default: a full save).
  bool incremental = false;
};

// One fqn's global value.
struct FixtureTensor {
  DType dtype = DType::kFloat32;
  Shape shape;
  std::string bytes;  // row-major global tensor, or the bytes entry's data
  bool is_bytes = false;
  enum Split { kRows, kColumns, kBlocks, kReplicated } split = kReplicated;
};

using FixtureState = std::map<std::string, FixtureTensor>;

inline std::string FixtureValues(DType dtype, uint64_t n, uint32_t seed) {
  std::string out(n * ElementSize(dtype), '\0');
  for (uint64_t i = 0; i < n; ++i) {
    const float f = static_cast<float>(static_cast<int>((i * 7 + seed * 13) % 101) - 50) / 8.0f;
    char* p = out.data() + i * ElementSize(dtype);
    switch (dtype) {
      case DType::kFloat32: std::memcpy(p, &f, 4); break;
      case DType::kFloat64: {
        const double d = f * 1.5;
        std::memcpy(p, &d, 8);
        break;
      }
      case DType::kBFloat16: {
        uint32_t bits;
        std::memcpy(&bits, &f, 4);
        const uint16_t hi = static_cast<uint16_t>(bits >> 16);
        std::memcpy(p, &hi, 2);
        break;
      }
      case DType::kInt64: {
        const int64_t v = static_cast<int64_t>(i) * 1000 + seed;
        std::memcpy(p, &v, 8);
        break;
      }
      case DType::kFloat8E4M3: {
        uint8_t b = static_cast<uint8_t>((i * 37 + seed * 11) % 256);
        if ((b & 0x7F) == 0x7F) b = 0x01;  // not NaN
        *p = static_cast<char>(b);
        break;
      }
      case DType::kBool: *p = static_cast<char>((i + seed) % 3 == 0); break;
      default: *p = static_cast<char>(i + seed);
    }
  }
  return out;
}

// The global tensors of a fixture checkpoint.
inline FixtureState FixtureGlobals(const FixtureSpec& spec) {
  auto seed = [&](const std::string& fqn) {
    return spec.seed + (spec.reseeded.count(fqn) ? 1u : 0u) +
           static_cast<uint32_t>(std::hash<std::string>()(fqn) % 1000);
  };
  FixtureState s;
  auto add = [&](const std::string& fqn, DType dtype, Shape shape, FixtureTensor::Split split) {
    uint64_t n = 1;
    for (uint64_t d : shape) n *= d;
    s[fqn] = FixtureTensor{dtype, shape, FixtureValues(dtype, n, seed(fqn)), false, split};
  };
  add("model.w", DType::kFloat32, {13, 8}, FixtureTensor::kRows);
  add("model.col", DType::kBFloat16, {6, 12}, FixtureTensor::kColumns);
  add("model.grid", DType::kFloat64, {6, 6}, FixtureTensor::kBlocks);
  add("model.bias", DType::kFloat32, {16}, FixtureTensor::kReplicated);
  add("model.fp8", DType::kFloat8E4M3, {32}, FixtureTensor::kRows);
  add("model.mask", DType::kBool, {10}, FixtureTensor::kReplicated);
  add("opt.step_count", DType::kInt64, {}, FixtureTensor::kReplicated);
  add("opt.empty", DType::kFloat32, {0, 4}, FixtureTensor::kReplicated);
  if (spec.extra) add("model.extra", DType::kFloat32, {5}, FixtureTensor::kRows);
  // Special values: 0, -0, 1, 2, NaN, +inf, -inf, 3.
  const float special[] = {0.0f,
                           -0.0f,
                           1.0f,
                           2.0f,
                           std::numeric_limits<float>::quiet_NaN(),
                           std::numeric_limits<float>::infinity(),
                           -std::numeric_limits<float>::infinity(),
                           3.0f};
  s["stats.special"] = FixtureTensor{DType::kFloat32,
                                     {8},
                                     std::string(reinterpret_cast<const char*>(special), 32),
                                     false,
                                     FixtureTensor::kRows};
  s["trainer.state"] = FixtureTensor{
      DType::kBytes, {20}, "step=" + std::to_string(spec.seed) + ";rng=abcdefgh", true};
  s["trainer.state"].shape = {s["trainer.state"].bytes.size()};
  for (const std::string& fqn : spec.omit) s.erase(fqn);
  return s;
}

// Rank `rank`'s boxes of `t` under its split.
inline std::vector<Box> FixtureBoxes(const FixtureTensor& t, int world, int rank) {
  switch (t.split) {
    case FixtureTensor::kRows: return {SplitBox(t.shape, 0, world, rank)};
    case FixtureTensor::kColumns: return {SplitBox(t.shape, 1, world, rank)};
    case FixtureTensor::kBlocks: {  // a 2x2 grid of blocks, dealt round-robin
      std::vector<Box> boxes;
      for (int b = 0; b < 4; ++b) {
        if (b % world != rank) continue;
        Box row = SplitBox(t.shape, 0, 2, b / 2), col = SplitBox(t.shape, 1, 2, b % 2);
        boxes.push_back(Box{{row.offsets[0], col.offsets[1]}, {row.sizes[0], col.sizes[1]}});
      }
      return boxes;
    }
    case FixtureTensor::kReplicated: return {Box{Shape(t.shape.size(), 0), t.shape}};
  }
  return {};
}

// Rank `rank`'s state dict. Tensors point into `state` (which must outlive it).
inline StateDict FixtureStateDict(FixtureState& state, int world, int rank) {
  StateDict sd;
  for (auto& [fqn, t] : state) {
    if (t.is_bytes) {
      sd.Set(fqn, Bytes{t.bytes});
      continue;
    }
    Tensor global = Tensor::Wrap(t.dtype, t.shape, t.bytes.data());
    if (t.split == FixtureTensor::kReplicated) {
      sd.Set(fqn, global);
      continue;
    }
    ShardedTensor st{t.dtype, t.shape, {}};
    for (const Box& box : FixtureBoxes(t, world, rank)) {
      st.local_shards.push_back(Shard{box.offsets, Slice(global, box)});
    }
    sd.Set(fqn, std::move(st));
  }
  return sd;
}

// Saves the fixture checkpoint `spec` into `root` with spec.world gloo ranks; returns its
// global state.
inline FixtureState SaveFixture(const std::string& root, const FixtureSpec& spec) {
  FixtureState state = FixtureGlobals(spec);
  RunOnGlooRanks(spec.world, [&](ProcessGroup& pg) {
    StateDict sd = FixtureStateDict(state, spec.world, pg.rank());
    SaveOptions o;
    o.checkpoint_id = spec.id;
    o.store_root = root;
    o.process_group = &pg;
    o.incremental = spec.incremental;
    StatusOr<Metadata> md = Save(sd, o);
    EXPECT_TRUE(md.ok()) << "saving fixture " << spec.id << ": " << md.status();
  });
  return state;
}

}  // namespace dcpkv::testing

#endif  // DCPKV_TESTS_TOOLS_INSPECT_FIXTURE_H_

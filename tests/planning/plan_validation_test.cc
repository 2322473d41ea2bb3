#include "dcpkv/core/plan_validation.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>
#include <regex>
#include <string>
#include <vector>

#include "dcpkv/core/box.h"

namespace dcpkv {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;

constexpr uint64_t kMax = UINT64_MAX;

SavedShard S(Shape offsets, Shape sizes, int32_t rank = 0) {
  return SavedShard{std::move(offsets), std::move(sizes), rank, 0, 0};
}

Status Validate(const Shape& global_shape, const std::vector<SavedShard>& shards,
                DType dtype = DType::kFloat32) {
  return ValidateSavedShards("model.w", dtype, global_shape, shards);
}

// Splits [0, extent) at `cuts` into [start, end) pairs.
std::vector<std::pair<uint64_t, uint64_t>> Ranges(uint64_t extent, std::vector<uint64_t> cuts) {
  std::vector<std::pair<uint64_t, uint64_t>> ranges;
  uint64_t start = 0;
  cuts.push_back(extent);
  for (uint64_t end : cuts) {
    ranges.emplace_back(start, end);
    start = end;
  }
  return ranges;
}

// The product grid of `shape` cut at cuts[d] along each dimension d; ranks numbered in order.
std::vector<SavedShard> Grid(const Shape& shape, const std::vector<std::vector<uint64_t>>& cuts) {
  std::vector<SavedShard> shards{S(Shape(), Shape())};
  for (size_t d = 0; d < shape.size(); ++d) {
    std::vector<SavedShard> next;
    for (const SavedShard& s : shards) {
      for (auto [start, end] : Ranges(shape[d], cuts[d])) {
        SavedShard t = s;
        t.offsets.push_back(start);
        t.sizes.push_back(end - start);
        next.push_back(t);
      }
    }
    shards = std::move(next);
  }
  for (size_t i = 0; i < shards.size(); ++i) shards[i].rank = static_cast<int32_t>(i);
  return shards;
}

// `n` equal slices of `shape` along `dim` (REQUIRES: n divides shape[dim]).
std::vector<SavedShard> Slices(const Shape& shape, size_t dim, uint64_t n) {
  std::vector<std::vector<uint64_t>> cuts(shape.size());
  for (uint64_t i = 1; i < n; ++i) cuts[dim].push_back(i * (shape[dim] / n));
  return Grid(shape, cuts);
}

void ExpectValid(const Shape& shape, const std::vector<SavedShard>& shards) {
  Status s = Validate(shape, shards);
  EXPECT_TRUE(s.ok()) << s;
  std::vector<SavedShard> reversed(shards.rbegin(), shards.rend());
  s = Validate(shape, reversed);
  EXPECT_TRUE(s.ok()) << s;
}

void ExpectInvalid(const Status& s, const std::vector<std::string>& substrings) {
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("fqn \"model.w\""));
  for (const std::string& sub : substrings) EXPECT_THAT(s.message(), HasSubstr(sub));
}

// ---------------------------------------------------------------- valid tilings

TEST(PlanValidationTest, RowAndColumnSplits) {
  const Shape shape{16, 8};
  ExpectValid(shape, Slices(shape, 0, 4));
  ExpectValid(shape, Slices(shape, 1, 4));
  ExpectValid(shape, Slices(shape, 0, 16));
  ExpectValid(shape, Slices(shape, 1, 1));
  ExpectValid({1000}, Slices({1000}, 0, 8));
}

TEST(PlanValidationTest, UnevenSplits) {
  ExpectValid({10, 3}, Grid({10, 3}, {{3, 6, 9}, {}}));
  ExpectValid({10, 7}, Grid({10, 7}, {{}, {1, 2, 6}}));
  ExpectValid({5}, Grid({5}, {{1, 2, 3, 4}}));
}

TEST(PlanValidationTest, Grids) {
  ExpectValid({8, 8}, Grid({8, 8}, {{4}, {4}}));
  ExpectValid({9, 7}, Grid({9, 7}, {{1, 5}, {2, 3, 6}}));
  ExpectValid({4, 6, 5}, Grid({4, 6, 5}, {{2}, {1, 3}, {4}}));
  ExpectValid({2, 3, 4, 5}, Grid({2, 3, 4, 5}, {{1}, {1, 2}, {2}, {1, 4}}));
}

TEST(PlanValidationTest, HierarchicalSplits) {
  // Row slabs, each split into columns at its own points, one of them further along dim 0.
  ExpectValid({8, 10}, {S({0, 0}, {4, 3}), S({0, 3}, {4, 7}), S({4, 0}, {4, 6}), S({4, 6}, {2, 4}),
                        S({6, 6}, {2, 4})});
  // Columns split at staggered rows.
  ExpectValid({6, 4}, {S({0, 0}, {2, 2}), S({2, 0}, {4, 2}), S({0, 2}, {5, 2}), S({5, 2}, {1, 2})});
}

TEST(PlanValidationTest, Pinwheel) {
  // Not a guillotine tiling: no straight cut separates it.
  ExpectValid({5, 5}, {S({0, 0}, {3, 2}), S({0, 2}, {2, 3}), S({2, 3}, {3, 2}), S({3, 0}, {2, 3}),
                       S({2, 2}, {1, 1})});
}

TEST(PlanValidationTest, ScalarAndZeroSize) {
  ExpectValid({}, {S({}, {})});
  ExpectValid({0}, {});
  ExpectValid({0}, {S({0}, {0})});
  ExpectValid({4, 0}, {S({0, 0}, {2, 0}), S({2, 0}, {2, 0}), S({2, 0}, {2, 0})});
  ExpectValid({0, 5}, {S({0, 5}, {0, 0})});
  // Empty shards anywhere within bounds are allowed next to a tiling.
  ExpectValid({4}, {S({0}, {4}), S({2}, {0}), S({4}, {0}), S({0}, {0})});
  // A zero dimension makes the tensor empty even if the other dimensions are huge.
  ExpectValid({kMax, kMax, 0}, {S({7, 8, 0}, {kMax - 7, 1, 0})});
}

TEST(PlanValidationTest, BytesEntryShape) {
  EXPECT_TRUE(ValidateSavedShards("step", DType::kBytes, {12}, {S({0}, {12})}).ok());
}

// ---------------------------------------------------------------- overlaps

TEST(PlanValidationTest, PartialOverlap) {
  Status s = Validate({8, 8}, {S({0, 0}, {4, 8}, 0), S({6, 0}, {2, 8}, 1), S({3, 2}, {3, 6}, 2)});
  ExpectInvalid(s, {"shard 0 (offsets [0, 0], sizes [4, 8], rank 0)",
                    "shard 2 (offsets [3, 2], sizes [3, 6], rank 2)",
                    "overlap in the region at offsets [3, 2] sizes [1, 6]"});
}

TEST(PlanValidationTest, IdenticalDuplicate) {
  Status s = Validate({8, 8}, {S({0, 0}, {4, 8}, 0), S({4, 0}, {4, 8}, 1), S({4, 0}, {4, 8}, 5)});
  ExpectInvalid(s, {"shard 1 (offsets [4, 0], sizes [4, 8], rank 1)",
                    "shard 2 (offsets [4, 0], sizes [4, 8], rank 5)",
                    "overlap in the region at offsets [4, 0] sizes [4, 8]"});
  ExpectInvalid(Validate({}, {S({}, {}, 0), S({}, {}, 1)}), {"shard 0", "shard 1", "overlap"});
  ExpectInvalid(Validate({3}, {S({0}, {3}), S({0}, {3})}), {"overlap"});
}

TEST(PlanValidationTest, ContainedShard) {
  Status s = Validate({10, 10}, {S({0, 0}, {10, 10}, 3), S({2, 3}, {4, 5}, 7)});
  ExpectInvalid(s, {"shard 0 (offsets [0, 0], sizes [10, 10], rank 3)",
                    "shard 1 (offsets [2, 3], sizes [4, 5], rank 7)",
                    "region at offsets [2, 3] sizes [4, 5]"});
}

TEST(PlanValidationTest, OverlapInsideAGridCell) {
  std::vector<SavedShard> shards = Grid({8, 8, 8}, {{4}, {4}, {4}});
  shards.push_back(S({5, 1, 6}, {1, 1, 1}, 99));
  ExpectInvalid(Validate({8, 8, 8}, shards),
                {"shard 5 (offsets [4, 0, 4], sizes [4, 4, 4], rank 5)", "rank 99",
                 "region at offsets [5, 1, 6] sizes [1, 1, 1]"});
}

TEST(PlanValidationTest, OverlapOnlyAlongOneDimensionIsNotAnOverlap) {
  // Shards whose ranges overlap along the sweep dimension but not along another.
  ExpectValid({4, 4}, {S({0, 0}, {3, 2}), S({1, 2}, {3, 2}), S({3, 0}, {1, 2}), S({0, 2}, {1, 2})});
}

// ---------------------------------------------------------------- gaps

TEST(PlanValidationTest, MissingRowSlice) {
  std::vector<SavedShard> shards = Slices({16, 4}, 0, 4);
  shards.erase(shards.begin() + 2);
  ExpectInvalid(Validate({16, 4}, shards), {"hold 48 of the 64 elements of global shape [16, 4]",
                                            "no shard holds the element at [8, 0]"});
}

TEST(PlanValidationTest, MissingLastSliceAndMissingGridCell) {
  std::vector<SavedShard> shards = Slices({16}, 0, 4);
  shards.pop_back();
  ExpectInvalid(Validate({16}, shards), {"hold 12 of the 16", "element at [12]"});
  shards = Grid({6, 6}, {{2, 4}, {3}});
  shards.erase(shards.begin() + 3);  // rows [2, 4), columns [3, 6)
  ExpectInvalid(Validate({6, 6}, shards), {"hold 30 of the 36", "element at [2, 3]"});
}

TEST(PlanValidationTest, ShardNarrowerThanTheTensor) {
  ExpectInvalid(Validate({4, 8}, {S({0, 0}, {4, 7})}), {"hold 28 of the 32", "element at [0, 7]"});
  ExpectInvalid(Validate({4, 8}, {S({0, 1}, {4, 7})}), {"element at [0, 0]"});
  ExpectInvalid(Validate({4, 8}, {S({0, 0}, {2, 8}), S({3, 0}, {1, 8})}), {"element at [2, 0]"});
}

TEST(PlanValidationTest, NoShards) {
  ExpectInvalid(Validate({3, 3}, {}), {"hold 0 of the 9", "element at [0, 0]"});
  ExpectInvalid(Validate({3, 3}, {S({1, 1}, {0, 2})}), {"hold 0 of the 9"});
  ExpectInvalid(Validate({}, {}), {"hold 0 of the 1 elements of global shape []"});
}

// ---------------------------------------------------------------- bad shards and shapes

TEST(PlanValidationTest, OutOfBounds) {
  ExpectInvalid(Validate({8, 8}, {S({0, 0}, {4, 8}), S({4, 0}, {5, 8}, 3)}),
                {"shard 1 (offsets [4, 0], sizes [5, 8], rank 3)",
                 "exceeds global shape [8, 8] in dimension 0: 4 + 5 > 8"});
  ExpectInvalid(Validate({8, 8}, {S({0, 1}, {8, 8})}), {"in dimension 1: 1 + 8 > 8"});
  // An empty shard must lie within bounds too.
  ExpectInvalid(Validate({8}, {S({0}, {8}), S({9}, {0})}), {"shard 1", "9 + 0 > 8"});
}

TEST(PlanValidationTest, OverflowingOffsets) {
  ExpectInvalid(Validate({8, 8}, {S({0, kMax}, {8, 2})}),
                {"shard 0 (offsets [0, 18446744073709551615], sizes [8, 2], rank 0)",
                 "overflows in dimension 1: 18446744073709551615 + 2 > 2^64 - 1"});
  ExpectInvalid(Validate({8}, {S({2}, {kMax})}), {"overflows in dimension 0"});
}

TEST(PlanValidationTest, DimensionMismatch) {
  ExpectInvalid(Validate({8, 8}, {S({0, 0}, {8, 8}), S({0}, {8}, 4)}),
                {"shard 1 (offsets [0], sizes [8], rank 4)",
                 "has 1 offsets and 1 sizes but global shape [8, 8] has 2 dimensions"});
  ExpectInvalid(Validate({8, 8}, {S({0, 0}, {8, 8, 1})}), {"has 2 offsets and 3 sizes"});
  ExpectInvalid(Validate({}, {S({0}, {1})}), {"global shape [] has 0 dimensions"});
}

TEST(PlanValidationTest, BadDTypeAndOverflowingGlobalShape) {
  ExpectInvalid(Validate({4}, {S({0}, {4})}, static_cast<DType>(77)), {"invalid dtype 77"});
  ExpectInvalid(Validate({uint64_t{1} << 62, 2}, {}, DType::kFloat32),
                {"global shape [4611686018427387904, 2] of float32 has more than 2^64 - 1 bytes"});
  ExpectInvalid(Validate({kMax, 2}, {}), {"more than 2^64 - 1 bytes"});
}

// ---------------------------------------------------------------- random layouts vs brute force

enum class Verdict { kOk, kOverlap, kGap };

// O(n^2) pairwise overlaps, then volumes. REQUIRES: shards within bounds.
Verdict BruteForce(const Shape& shape, const std::vector<SavedShard>& shards) {
  for (size_t i = 0; i < shards.size(); ++i) {
    for (size_t j = 0; j < i; ++j) {
      if (Intersect(Box{shards[i].offsets, shards[i].sizes},
                    Box{shards[j].offsets, shards[j].sizes}, nullptr)) {
        return Verdict::kOverlap;
      }
    }
  }
  uint64_t covered = 0;
  for (const SavedShard& s : shards) covered += Volume(Box{s.offsets, s.sizes});
  return covered == Volume(Box{Shape(shape.size(), 0), shape}) ? Verdict::kOk : Verdict::kGap;
}

// Guillotine tiling: `box` split recursively at random points along random dimensions.
void RandomTiling(const Box& box, int depth, std::mt19937_64& rng, std::vector<SavedShard>* out) {
  std::vector<size_t> splittable;
  for (size_t d = 0; d < box.sizes.size(); ++d) {
    if (box.sizes[d] >= 2) splittable.push_back(d);
  }
  if (depth == 0 || splittable.empty() || rng() % 5 == 0) {
    out->push_back(S(box.offsets, box.sizes, static_cast<int32_t>(out->size())));
    return;
  }
  const size_t d = splittable[rng() % splittable.size()];
  const uint64_t cut = 1 + rng() % (box.sizes[d] - 1);
  Box lo = box, hi = box;
  lo.sizes[d] = cut;
  hi.offsets[d] += cut;
  hi.sizes[d] -= cut;
  RandomTiling(lo, depth - 1, rng, out);
  RandomTiling(hi, depth - 1, rng, out);
}

// Grows, shrinks or moves one shard by one element along one dimension, staying in bounds.
void Perturb(const Shape& shape, std::vector<SavedShard>* shards, std::mt19937_64& rng) {
  SavedShard& s = (*shards)[rng() % shards->size()];
  const size_t d = rng() % shape.size();
  switch (rng() % 5) {
    case 0: shards->erase(shards->begin() + (&s - shards->data())); return;
    case 1: shards->push_back(s); return;
    case 2:
      if (s.offsets[d] + s.sizes[d] < shape[d]) ++s.sizes[d];
      return;
    case 3:
      if (s.sizes[d] > 1) --s.sizes[d];
      return;
    default:
      if (s.offsets[d] > 0) --s.offsets[d];
      return;
  }
}

// Checks that the element the message names is within `shape` and in no shard.
void ExpectGapIsReal(const Status& s, const Shape& shape, const std::vector<SavedShard>& shards) {
  std::smatch m;
  const std::string& message = s.message();
  if (!std::regex_search(message, m, std::regex("element at \\[([0-9, ]*)\\]"))) return;
  Shape point;
  const std::string list = m[1];
  const std::regex number("[0-9]+");
  for (std::sregex_iterator it(list.begin(), list.end(), number), end; it != end; ++it) {
    point.push_back(std::stoull(it->str()));
  }
  const Box element{point, Shape(point.size(), 1)};
  EXPECT_TRUE(Contains(Box{Shape(shape.size(), 0), shape}, element)) << message;
  for (const SavedShard& shard : shards) {
    EXPECT_FALSE(Intersect(Box{shard.offsets, shard.sizes}, element, nullptr)) << message;
  }
}

TEST(PlanValidationTest, RandomTilingsMatchBruteForce) {
  std::mt19937_64 rng(99);
  int counts[3] = {0, 0, 0};
  for (int iter = 0; iter < 3000; ++iter) {
    const size_t ndim = 1 + iter % 3;
    Shape shape(ndim);
    for (uint64_t& size : shape) size = 1 + rng() % 9;
    std::vector<SavedShard> shards;
    RandomTiling(Box{Shape(ndim, 0), shape}, 8, rng, &shards);
    if (iter % 4 != 0) Perturb(shape, &shards, rng);
    std::shuffle(shards.begin(), shards.end(), rng);
    const Verdict expected = BruteForce(shape, shards);
    ++counts[static_cast<int>(expected)];
    const Status s = Validate(shape, shards);
    switch (expected) {
      case Verdict::kOk: ASSERT_TRUE(s.ok()) << s; break;
      case Verdict::kOverlap:
        ASSERT_FALSE(s.ok());
        ASSERT_THAT(s.message(), HasSubstr("overlap in the region"));
        break;
      case Verdict::kGap:
        ASSERT_FALSE(s.ok());
        ASSERT_THAT(s.message(), HasSubstr("elements of global shape"));
        ExpectGapIsReal(s, shape, shards);
        break;
    }
  }
  EXPECT_GT(counts[0], 500);
  EXPECT_GT(counts[1], 300);
  EXPECT_GT(counts[2], 300);
}

// ---------------------------------------------------------------- scale

double SecondsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

TEST(PlanValidationTest, ScaleGrid64x64) {
  const Shape shape{64 * 32, 64 * 16};
  std::vector<std::vector<uint64_t>> cuts(2);
  for (uint64_t i = 1; i < 64; ++i) {
    cuts[0].push_back(i * 32);
    cuts[1].push_back(i * 16);
  }
  const std::vector<SavedShard> shards = Grid(shape, cuts);
  ASSERT_EQ(shards.size(), 4096u);
  const auto start = std::chrono::steady_clock::now();
  EXPECT_TRUE(Validate(shape, shards).ok());
  std::printf("64x64 grid of 4096 shards: %.3f ms\n", SecondsSince(start) * 1e3);
}

TEST(PlanValidationTest, ScaleRowSlices4096) {
  const Shape shape{4096 * 4, 1024};
  const std::vector<SavedShard> shards = Slices(shape, 0, 4096);
  const auto start = std::chrono::steady_clock::now();
  EXPECT_TRUE(Validate(shape, shards).ok());
  std::printf("4096 row slices: %.3f ms\n", SecondsSince(start) * 1e3);
}

TEST(PlanValidationTest, ScaleStaggeredColumns) {
  // 64 columns, each cut into 64 pieces at rows shifted per column: every row range is distinct,
  // yet the columns separate the shards.
  const uint64_t rows = 64 * 64;
  std::vector<SavedShard> shards;
  for (uint64_t c = 0; c < 64; ++c) {
    uint64_t start = 0;
    for (uint64_t p = 0; p < 64; ++p) {
      const uint64_t end = p == 63 ? rows : (p + 1) * 64 - c;
      shards.push_back(S({start, c * 8}, {end - start, 8}));
      start = end;
    }
  }
  const auto start = std::chrono::steady_clock::now();
  EXPECT_TRUE(Validate({rows, 64 * 8}, shards).ok());
  std::printf("64 staggered columns of 64 shards: %.3f ms\n", SecondsSince(start) * 1e3);
}

TEST(PlanValidationTest, ScaleThousandTensorsOf4096RowShards) {
  const Shape shape{4096 * 2, 512};
  const std::vector<SavedShard> shards = Slices(shape, 0, 4096);
  const auto start = std::chrono::steady_clock::now();
  for (int t = 0; t < 1000; ++t) {
    ASSERT_TRUE(
        ValidateSavedShards("layers." + std::to_string(t) + ".w", DType::kBFloat16, shape, shards)
            .ok());
  }
  std::printf("1000 tensors x 4096 row shards: %.3f ms\n", SecondsSince(start) * 1e3);
}

}  // namespace
}  // namespace dcpkv

#include "dcpkv/core/box.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <vector>

#include "tests/util/test_data.h"

namespace dcpkv {
namespace {

using ::testing::HasSubstr;

constexpr uint64_t kMax = UINT64_MAX;

// ---------------------------------------------------------------- Intersect, Contains, Volume

TEST(BoxTest, IntersectOverlapping) {
  Box out;
  ASSERT_TRUE(Intersect(Box{{0, 0}, {4, 6}}, Box{{2, 3}, {5, 5}}, &out));
  EXPECT_EQ(out, (Box{{2, 3}, {2, 3}}));
  ASSERT_TRUE(Intersect(Box{{2, 3}, {5, 5}}, Box{{0, 0}, {4, 6}}, &out));
  EXPECT_EQ(out, (Box{{2, 3}, {2, 3}}));
  EXPECT_TRUE(Intersect(Box{{0, 0}, {4, 6}}, Box{{2, 3}, {5, 5}}, nullptr));
}

TEST(BoxTest, IntersectContainedAndIdentical) {
  Box out;
  ASSERT_TRUE(Intersect(Box{{0, 0, 0}, {8, 8, 8}}, Box{{1, 2, 3}, {1, 2, 3}}, &out));
  EXPECT_EQ(out, (Box{{1, 2, 3}, {1, 2, 3}}));
  ASSERT_TRUE(Intersect(Box{{5}, {7}}, Box{{5}, {7}}, &out));
  EXPECT_EQ(out, (Box{{5}, {7}}));
}

TEST(BoxTest, IntersectAliasesInput) {
  Box a{{0, 0}, {4, 4}};
  ASSERT_TRUE(Intersect(a, Box{{1, 1}, {10, 10}}, &a));
  EXPECT_EQ(a, (Box{{1, 1}, {3, 3}}));
}

TEST(BoxTest, IntersectDisjointAndTouching) {
  Box out;
  EXPECT_FALSE(Intersect(Box{{0, 0}, {4, 4}}, Box{{10, 0}, {4, 4}}, &out));
  EXPECT_FALSE(Intersect(Box{{0, 0}, {4, 4}}, Box{{4, 0}, {4, 4}}, &out));  // touching rows
  EXPECT_FALSE(Intersect(Box{{0, 4}, {4, 4}}, Box{{0, 0}, {4, 4}}, &out));  // touching cols
  EXPECT_FALSE(Intersect(Box{{0, 0}, {4, 4}}, Box{{4, 4}, {1, 1}}, &out));  // corner
  // Overlapping in one dimension only.
  EXPECT_FALSE(Intersect(Box{{0, 0}, {4, 4}}, Box{{2, 5}, {4, 4}}, &out));
}

TEST(BoxTest, IntersectZeroSize) {
  Box out;
  EXPECT_FALSE(Intersect(Box{{0, 0}, {4, 0}}, Box{{0, 0}, {4, 4}}, &out));
  EXPECT_FALSE(Intersect(Box{{2, 2}, {0, 0}}, Box{{0, 0}, {4, 4}}, &out));
  EXPECT_FALSE(Intersect(Box{{0}, {0}}, Box{{0}, {0}}, &out));
}

TEST(BoxTest, IntersectScalarsAndRankMismatch) {
  Box out{{9}, {9}};
  ASSERT_TRUE(Intersect(Box{}, Box{}, &out));
  EXPECT_EQ(out, Box{});
  EXPECT_EQ(Volume(out), 1u);
  EXPECT_FALSE(Intersect(Box{{0}, {4}}, Box{{0, 0}, {4, 4}}, &out));
  EXPECT_FALSE(Intersect(Box{}, Box{{0}, {1}}, &out));
}

TEST(BoxTest, IntersectNearTheTopOfTheRangeDoesNotOverflow) {
  Box out;
  // a ends exactly at 2^64, which does not fit in 64 bits.
  ASSERT_TRUE(Intersect(Box{{kMax - 4}, {5}}, Box{{kMax - 2}, {3}}, &out));
  EXPECT_EQ(out, (Box{{kMax - 2}, {3}}));
  EXPECT_FALSE(Intersect(Box{{kMax}, {kMax}}, Box{{0}, {kMax}}, &out));
  ASSERT_TRUE(Intersect(Box{{1}, {kMax}}, Box{{kMax - 1}, {kMax}}, &out));
  EXPECT_EQ(out, (Box{{kMax - 1}, {2}}));
  EXPECT_FALSE(Intersect(Box{{kMax - 1}, {1}}, Box{{kMax}, {kMax}}, &out));
}

TEST(BoxTest, Contains) {
  const Box outer{{2, 4}, {6, 8}};
  EXPECT_TRUE(Contains(outer, outer));
  EXPECT_TRUE(Contains(outer, Box{{3, 5}, {2, 2}}));
  EXPECT_TRUE(Contains(outer, Box{{2, 4}, {6, 1}}));
  EXPECT_TRUE(Contains(outer, Box{{7, 11}, {1, 1}}));  // the last element
  EXPECT_FALSE(Contains(outer, Box{{1, 4}, {2, 2}}));  // starts before
  EXPECT_FALSE(Contains(outer, Box{{7, 4}, {2, 2}}));  // ends after
  EXPECT_FALSE(Contains(outer, Box{{2, 4}, {6, 9}}));
  EXPECT_FALSE(Contains(outer, Box{{0, 0}, {10, 20}}));
  EXPECT_FALSE(Contains(outer, Box{{2}, {6}}));  // rank mismatch
}

TEST(BoxTest, ContainsZeroSizeAndScalars) {
  const Box outer{{2, 4}, {6, 8}};
  EXPECT_TRUE(Contains(outer, Box{{8, 4}, {0, 8}}));   // empty, at the edge
  EXPECT_TRUE(Contains(outer, Box{{5, 5}, {0, 0}}));   // empty, inside
  EXPECT_FALSE(Contains(outer, Box{{9, 4}, {0, 8}}));  // empty, beyond the edge
  EXPECT_TRUE(Contains(Box{{3}, {0}}, Box{{3}, {0}}));
  EXPECT_FALSE(Contains(Box{{3}, {0}}, Box{{3}, {1}}));
  EXPECT_TRUE(Contains(Box{}, Box{}));
  EXPECT_FALSE(Contains(Box{}, Box{{0}, {1}}));
}

TEST(BoxTest, ContainsNearTheTopOfTheRangeDoesNotOverflow) {
  EXPECT_TRUE(Contains(Box{{kMax - 4}, {5}}, Box{{kMax - 1}, {2}}));
  EXPECT_FALSE(Contains(Box{{kMax - 4}, {4}}, Box{{kMax - 1}, {2}}));
  EXPECT_FALSE(Contains(Box{{0}, {kMax}}, Box{{kMax}, {kMax}}));
  EXPECT_FALSE(Contains(Box{{10}, {kMax - 10}}, Box{{11}, {kMax}}));
}

TEST(BoxTest, Volume) {
  EXPECT_EQ(Volume(Box{}), 1u);
  EXPECT_EQ(Volume(Box{{7}, {5}}), 5u);
  EXPECT_EQ(Volume(Box{{0, 0, 0}, {2, 3, 4}}), 24u);
  EXPECT_EQ(Volume(Box{{0, 0}, {5, 0}}), 0u);
  ASSERT_TRUE(CheckedVolume(Box{}).ok());
  EXPECT_EQ(*CheckedVolume(Box{}), 1u);
  EXPECT_EQ(*CheckedVolume(Box{{0, 0, 0}, {2, 3, 4}}), 24u);
  EXPECT_EQ(*CheckedVolume(Box{{0, 0}, {uint64_t{1} << 32, uint64_t{1} << 31}}), uint64_t{1} << 63);
  // A zero size wins over an overflowing product of the others.
  EXPECT_EQ(*CheckedVolume(Box{{0, 0, 0}, {kMax, kMax, 0}}), 0u);
}

TEST(BoxTest, CheckedVolumeOverflow) {
  StatusOr<uint64_t> v = CheckedVolume(Box{{0, 0}, {uint64_t{1} << 32, uint64_t{1} << 32}});
  ASSERT_FALSE(v.ok());
  EXPECT_EQ(v.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(v.status().message(), HasSubstr("sizes [4294967296, 4294967296]"));
  EXPECT_FALSE(CheckedVolume(Box{{0, 0, 0}, {3, kMax, 1}}).ok());
}

TEST(BoxTest, BoxToString) {
  EXPECT_EQ(BoxToString(Box{{1, 0}, {2, 3}}), "offsets [1, 0] sizes [2, 3]");
  EXPECT_EQ(BoxToString(Box{}), "offsets [] sizes []");
}

// ---------------------------------------------------------------- CopyBox

// Row-major linear index, in a buffer holding `box`, of the element at global `point`.
uint64_t LinearIndex(const Box& box, const Shape& point) {
  uint64_t index = 0;
  for (size_t d = 0; d < point.size(); ++d)
    index = index * box.sizes[d] + point[d] - box.offsets[d];
  return index;
}

// Calls fn(point) for every element of `box` in row-major order.
template <typename Fn>
void ForEachPoint(const Box& box, Fn fn) {
  if (Volume(box) == 0) return;
  Shape point = box.offsets;
  for (;;) {
    fn(point);
    size_t d = point.size();
    for (;;) {
      if (d == 0) return;
      --d;
      if (++point[d] < box.offsets[d] + box.sizes[d]) break;
      point[d] = box.offsets[d];
    }
  }
}

// The obviously correct copy: element by element.
void NaiveCopyBox(const uint8_t* src, const Box& src_box, uint8_t* dst, const Box& dst_box,
                  const Box& region, size_t element_size) {
  ForEachPoint(region, [&](const Shape& p) {
    std::memcpy(dst + LinearIndex(dst_box, p) * element_size,
                src + LinearIndex(src_box, p) * element_size, element_size);
  });
}

// A tensor of `shape` whose element at global point p encodes LinearIndex(p) (so each slice of
// it is recognisable), element_size bytes per element, little-endian, truncated.
class GlobalTensor {
 public:
  GlobalTensor(Shape shape, size_t element_size)
      : box_{Shape(shape.size(), 0), std::move(shape)}, element_size_(element_size) {}

  // The bytes of the sub-box `box`, as a shard holding it stores them.
  std::vector<uint8_t> Slice(const Box& box) const {
    std::vector<uint8_t> out(Volume(box) * element_size_);
    uint8_t* p = out.data();
    ForEachPoint(box, [&](const Shape& point) {
      const uint64_t value = LinearIndex(box_, point) * 2654435761u + 1;
      std::memcpy(p, &value, element_size_);
      p += element_size_;
    });
    return out;
  }
  const Box& box() const { return box_; }

 private:
  Box box_;
  size_t element_size_;
};

// Reshards `global` from `from` boxes to `to` boxes with CopyBox and checks every target.
void CheckReshard(const Shape& global_shape, const std::vector<Box>& from,
                  const std::vector<Box>& to, size_t element_size) {
  const GlobalTensor global(global_shape, element_size);
  std::vector<std::vector<uint8_t>> sources;
  for (const Box& b : from) sources.push_back(global.Slice(b));
  for (const Box& target : to) {
    std::vector<uint8_t> out(Volume(target) * element_size, 0xEE);
    uint64_t copied = 0;
    for (size_t s = 0; s < from.size(); ++s) {
      Box region;
      if (!Intersect(from[s], target, &region)) continue;
      CopyBox(sources[s].data(), from[s], out.data(), target, region, element_size);
      copied += Volume(region);
    }
    EXPECT_EQ(copied, Volume(target)) << BoxToString(target);
    EXPECT_EQ(out, global.Slice(target)) << "target " << BoxToString(target);
  }
}

// `parts` boxes splitting dimension `dim` of `shape` at the given cut points.
std::vector<Box> SplitAt(const Shape& shape, size_t dim, const std::vector<uint64_t>& cuts) {
  std::vector<Box> boxes;
  uint64_t start = 0;
  std::vector<uint64_t> ends = cuts;
  ends.push_back(shape[dim]);
  for (uint64_t end : ends) {
    Box b{Shape(shape.size(), 0), shape};
    b.offsets[dim] = start;
    b.sizes[dim] = end - start;
    boxes.push_back(b);
    start = end;
  }
  return boxes;
}

constexpr size_t kElementSizes[] = {1, 2, 4, 8};

TEST(BoxTest, CopyBoxReshardRows2To3) {
  const Shape shape{12, 5};
  for (size_t es : kElementSizes) {
    CheckReshard(shape, SplitAt(shape, 0, {6}), SplitAt(shape, 0, {4, 8}), es);
  }
}

TEST(BoxTest, CopyBoxReshard4To1And1To4) {
  const Shape shape{8, 6};
  const std::vector<Box> whole{Box{{0, 0}, shape}};
  for (size_t es : kElementSizes) {
    CheckReshard(shape, SplitAt(shape, 0, {2, 4, 6}), whole, es);
    CheckReshard(shape, whole, SplitAt(shape, 0, {2, 4, 6}), es);
    CheckReshard(shape, whole, SplitAt(shape, 1, {1, 3, 5}), es);
  }
}

TEST(BoxTest, CopyBoxColumnSplitsAndUnevenSplits) {
  const Shape shape{7, 10};
  for (size_t es : kElementSizes) {
    CheckReshard(shape, SplitAt(shape, 1, {5}), SplitAt(shape, 0, {3, 5}), es);  // cols -> rows
    CheckReshard(shape, SplitAt(shape, 0, {1, 6}), SplitAt(shape, 1, {2, 3, 9}), es);
    CheckReshard(shape, SplitAt(shape, 1, {3}), SplitAt(shape, 1, {7}), es);  // uneven cols
  }
}

TEST(BoxTest, CopyBox3DGridToGrid) {
  const Shape shape{4, 5, 6};
  std::vector<Box> from, to;
  for (uint64_t i : {0, 2}) {
    for (uint64_t j : {0, 3}) from.push_back(Box{{i, j, 0}, {2, j == 0 ? 3u : 2u, 6}});
  }
  for (uint64_t j : {0, 1, 4}) {
    for (uint64_t k : {0, 4}) {
      to.push_back(Box{{0, j, k}, {4, j == 0 ? 1u : (j == 1 ? 3u : 1u), k == 0 ? 4u : 2u}});
    }
  }
  for (size_t es : kElementSizes) CheckReshard(shape, from, to, es);
}

TEST(BoxTest, CopyBoxScalar) {
  const uint64_t src = 0x0123456789ABCDEFull;
  uint64_t dst = 0;
  CopyBox(&src, Box{}, &dst, Box{}, Box{}, sizeof(src));
  EXPECT_EQ(dst, src);
}

TEST(BoxTest, CopyBoxEmptyRegionCopiesNothing) {
  const std::vector<uint8_t> src(16, 1);
  std::vector<uint8_t> dst(16, 2);
  CopyBox(src.data(), Box{{0, 0}, {4, 4}}, dst.data(), Box{{0, 0}, {4, 4}}, Box{{1, 1}, {0, 3}}, 1);
  CopyBox(nullptr, Box{{0}, {0}}, nullptr, Box{{0}, {0}}, Box{{0}, {0}}, 4);
  EXPECT_EQ(dst, std::vector<uint8_t>(16, 2));
}

TEST(BoxTest, CopyBoxManyDimensions) {
  // 64 dimensions of size 1 or 2, copying a region that is partial in several of them.
  Shape shape(64, 1);
  for (size_t d : {3, 17, 40, 63}) shape[d] = 2;
  Box src{Shape(64, 0), shape};
  Box dst = src;
  Box region = src;
  region.offsets[17] = 1;
  region.sizes[17] = 1;
  std::vector<uint8_t> s = testing::RandomBytes(Volume(src) * 2, 64);
  std::vector<uint8_t> expected(Volume(dst) * 2, 0), actual(Volume(dst) * 2, 0);
  NaiveCopyBox(s.data(), src, expected.data(), dst, region, 2);
  CopyBox(s.data(), src, actual.data(), dst, region, 2);
  EXPECT_EQ(actual, expected);
}

// A random sub-box of `box`, whole along each dimension with probability 1/3 (so that
// contiguous runs merge), and never empty if `box` is not.
Box RandomSubBox(const Box& box, std::mt19937_64& rng) {
  Box sub = box;
  for (size_t d = 0; d < box.sizes.size(); ++d) {
    if (box.sizes[d] == 0 || rng() % 3 == 0) continue;
    const uint64_t a = rng() % box.sizes[d], b = rng() % box.sizes[d];
    sub.offsets[d] = box.offsets[d] + std::min(a, b);
    sub.sizes[d] = std::max(a, b) - std::min(a, b) + 1;
  }
  return sub;
}

Box RandomGlobalBox(size_t ndim, std::mt19937_64& rng) {
  Box global{Shape(ndim, 0), Shape(ndim)};
  for (uint64_t& size : global.sizes) size = 1 + rng() % 7;
  return global;
}

TEST(BoxTest, CopyBoxMatchesNaiveOnRandomBoxes) {
  std::mt19937_64 rng(20240611);
  int cases = 0;
  for (int iter = 0; iter < 4000; ++iter) {
    const size_t ndim = 1 + iter % 5;
    const size_t es = kElementSizes[rng() % 4];
    const Box global = RandomGlobalBox(ndim, rng);
    const Box src_box = RandomSubBox(global, rng);
    const Box dst_box = RandomSubBox(global, rng);
    Box common;
    if (!Intersect(src_box, dst_box, &common)) continue;
    const Box region = rng() % 4 == 0 ? common : RandomSubBox(common, rng);
    ++cases;
    const std::vector<uint8_t> src = testing::RandomBytes(Volume(src_box) * es, iter);
    const std::vector<uint8_t> initial = testing::RandomBytes(Volume(dst_box) * es, ~iter);
    std::vector<uint8_t> expected = initial, actual = initial;
    NaiveCopyBox(src.data(), src_box, expected.data(), dst_box, region, es);
    CopyBox(src.data(), src_box, actual.data(), dst_box, region, es);
    ASSERT_EQ(actual, expected) << "src " << BoxToString(src_box) << ", dst "
                                << BoxToString(dst_box) << ", region " << BoxToString(region)
                                << ", element size " << es;
  }
  EXPECT_GT(cases, 2000);
}

// ---------------------------------------------------------------- ByteRange

std::pair<uint64_t, uint64_t> BruteForceByteRange(const Box& shard, const Box& region, size_t es) {
  uint64_t lo = UINT64_MAX, hi = 0;
  ForEachPoint(region, [&](const Shape& p) {
    lo = std::min(lo, LinearIndex(shard, p) * es);
    hi = std::max(hi, (LinearIndex(shard, p) + 1) * es);
  });
  return lo == UINT64_MAX ? std::pair<uint64_t, uint64_t>{0, 0} : std::pair{lo, hi};
}

TEST(BoxTest, ByteRangeExamples) {
  const Box shard{{4, 0}, {4, 8}};  // rows 4..7 of an 8-column tensor
  auto r = ByteRange(shard, Box{{5, 0}, {2, 8}}, 4);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(*r, (std::pair<uint64_t, uint64_t>{32, 96}));
  r = ByteRange(shard, Box{{5, 2}, {2, 3}}, 4);  // a column block: from (5,2) to (6,4)
  EXPECT_EQ(*r, (std::pair<uint64_t, uint64_t>{40, 84}));
  r = ByteRange(shard, shard, 2);
  EXPECT_EQ(*r, (std::pair<uint64_t, uint64_t>{0, 64}));
  r = ByteRange(Box{}, Box{}, 8);
  EXPECT_EQ(*r, (std::pair<uint64_t, uint64_t>{0, 8}));
  r = ByteRange(shard, Box{{6, 3}, {0, 2}}, 4);
  EXPECT_EQ(*r, (std::pair<uint64_t, uint64_t>{0, 0}));
}

TEST(BoxTest, ByteRangeErrors) {
  const Box shard{{4, 0}, {4, 8}};
  auto r = ByteRange(shard, Box{{3, 0}, {2, 8}}, 4);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(r.status().message(), HasSubstr("offsets [3, 0] sizes [2, 8]"));
  EXPECT_THAT(r.status().message(), HasSubstr("offsets [4, 0] sizes [4, 8]"));
  EXPECT_FALSE(ByteRange(shard, Box{{4}, {1}}, 4).ok());
  EXPECT_FALSE(ByteRange(shard, shard, 0).ok());
  r = ByteRange(Box{{0, 0}, {uint64_t{1} << 62, 2}}, Box{{0, 0}, {1, 1}}, 8);
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), HasSubstr("bytes"));
  EXPECT_FALSE(ByteRange(Box{{0, 0}, {kMax, 2}}, Box{{0, 0}, {1, 1}}, 1).ok());
}

TEST(BoxTest, ByteRangeMatchesBruteForce) {
  std::mt19937_64 rng(7);
  for (int iter = 0; iter < 3000; ++iter) {
    const size_t ndim = iter % 6;  // 0-d too
    const size_t es = kElementSizes[rng() % 4];
    const Box shard = RandomSubBox(RandomGlobalBox(ndim, rng), rng);
    const Box region = RandomSubBox(shard, rng);
    auto r = ByteRange(shard, region, es);
    ASSERT_TRUE(r.ok()) << r.status();
    ASSERT_EQ(*r, BruteForceByteRange(shard, region, es))
        << "shard " << BoxToString(shard) << ", region " << BoxToString(region);
  }
}

}  // namespace
}  // namespace dcpkv

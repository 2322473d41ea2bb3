// The C++ forms a training program writes: strided tensors (Tensor::WrapStrided; the layout
// walk of core/strided.h against plain index arithmetic, and saves and loads of column shards
// and transposed views in place), ShardedTensor::FromLocal, the typed accessors of StateDict,
// and the group Checkpointer::AsyncSave uploads on.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <random>
#include <vector>

#include "dcpkv/api/kv_storage.h"
#include "dcpkv/async_save.h"
#include "dcpkv/checkpoint.h"
#include "dcpkv/checkpointer.h"
#include "dcpkv/core/strided.h"
#include "dcpkv/gloo_process_group.h"
#include "tests/util/checkpoint_options.h"
#include "tests/util/gloo_threads.h"
#include "tests/util/sharding.h"
#include "tests/util/temp_dir.h"

namespace dcpkv {
namespace {

// The memory offset, in elements, of the element at row-major linear index `linear`.
uint64_t ElementOffset(const Shape& shape, const std::vector<uint64_t>& strides, uint64_t linear) {
  uint64_t offset = 0;
  for (size_t d = shape.size(); d-- > 0;) {
    offset += (linear % shape[d]) * strides[d];
    linear /= shape[d];
  }
  return offset;
}

// The row-major bytes of a strided block, element by element.
std::vector<uint8_t> NaiveGather(const uint8_t* base, const Shape& shape,
                                 const std::vector<uint64_t>& strides, size_t element) {
  uint64_t numel = 1;
  for (uint64_t s : shape) numel *= s;
  std::vector<uint8_t> out(numel * element);
  for (uint64_t i = 0; i < numel; ++i) {
    std::memcpy(out.data() + i * element, base + ElementOffset(shape, strides, i) * element,
                element);
  }
  return out;
}

TEST(StridedLayoutTest, CollapsesRunsAndDimensions) {
  // A block of whole rows is contiguous.
  StridedLayout rows = MakeStridedLayout({4, 10}, {10, 1}, 4);
  EXPECT_TRUE(rows.contiguous());
  EXPECT_EQ(rows.total_bytes, 160u);
  // A column shard [4, 3] of a row-major [4, 10]: rows of 3 elements, 40 bytes apart.
  StridedLayout columns = MakeStridedLayout({4, 3}, {10, 1}, 4);
  EXPECT_EQ(columns.run_bytes, 12u);
  EXPECT_EQ(columns.outer_sizes, (std::vector<uint64_t>{4}));
  EXPECT_EQ(columns.outer_byte_strides, (std::vector<uint64_t>{40}));
  EXPECT_FALSE(columns.MayOverlap());
  // Dimensions of size 1 and dimensions that continue each other merge.
  StridedLayout merged = MakeStridedLayout({2, 1, 3, 5}, {300, 7, 20, 1}, 2);
  EXPECT_EQ(merged.run_bytes, 10u);
  EXPECT_EQ(merged.outer_sizes, (std::vector<uint64_t>{2, 3}));
  // A transposed [3, 4] (column-major): single elements, no overlap.
  StridedLayout transposed = MakeStridedLayout({3, 4}, {1, 3}, 8);
  EXPECT_EQ(transposed.run_bytes, 8u);
  EXPECT_FALSE(transposed.MayOverlap());
  // A broadcast dimension (stride 0) shares elements.
  EXPECT_TRUE(MakeStridedLayout({3, 4}, {0, 1}, 4).MayOverlap());
}

TEST(StridedLayoutTest, GatherAndScatterAgreeWithIndexArithmetic) {
  std::mt19937_64 rng(7);
  for (int round = 0; round < 300; ++round) {
    // A random slice of a random permutation of a random row-major buffer.
    const size_t ndim = 1 + rng() % 4;
    Shape full(ndim);
    for (uint64_t& s : full) s = 1 + rng() % 6;
    std::vector<size_t> perm(ndim);
    for (size_t d = 0; d < ndim; ++d) perm[d] = d;
    std::shuffle(perm.begin(), perm.end(), rng);
    std::vector<uint64_t> full_strides(ndim, 1);
    for (size_t d = ndim - 1; d > 0; --d) full_strides[d - 1] = full_strides[d] * full[d];
    Shape shape(ndim);
    std::vector<uint64_t> strides(ndim);
    uint64_t start = 0;
    for (size_t d = 0; d < ndim; ++d) {
      const uint64_t extent = full[perm[d]];
      const uint64_t first = rng() % extent;
      shape[d] = 1 + rng() % (extent - first);
      strides[d] = full_strides[perm[d]];
      start += first * strides[d];
    }
    const size_t element = size_t{1} << (rng() % 4);
    uint64_t full_numel = 1;
    for (uint64_t s : full) full_numel *= s;
    std::vector<uint8_t> buffer(full_numel * element);
    for (uint8_t& b : buffer) b = static_cast<uint8_t>(rng());
    const uint8_t* base = buffer.data() + start * element;
    const std::vector<uint8_t> expected = NaiveGather(base, shape, strides, element);
    const StridedLayout layout = MakeStridedLayout(shape, strides, element);
    ASSERT_EQ(layout.total_bytes, expected.size());
    // Any byte range, also one starting and ending inside runs.
    const uint64_t offset = rng() % (expected.size() + 1);
    const uint64_t size = rng() % (expected.size() - offset + 1);
    std::vector<uint8_t> got(size);
    GatherBytes(base, layout, offset, size, got.data());
    ASSERT_TRUE(std::equal(got.begin(), got.end(), expected.begin() + offset)) << "round " << round;
    // Scattering new bytes writes exactly the addressed elements.
    std::vector<uint8_t> fresh(size);
    for (uint8_t& b : fresh) b = static_cast<uint8_t>(rng());
    std::vector<uint8_t> before = buffer;
    ScatterBytes(buffer.data() + start * element, layout, offset, size, fresh.data());
    std::vector<uint8_t> model = before;
    for (uint64_t k = 0; k < size; ++k) {
      const uint64_t logical = offset + k;
      const uint64_t at =
          (start + ElementOffset(shape, strides, logical / element)) * element + logical % element;
      model[at] = fresh[k];
    }
    ASSERT_EQ(buffer, model) << "round " << round;
  }
}

// A [rows, cols] float32 buffer whose element (r, c) is r * 1000 + c.
std::vector<float> Matrix(uint64_t rows, uint64_t cols, float plus = 0) {
  std::vector<float> m(rows * cols);
  for (uint64_t r = 0; r < rows; ++r) {
    for (uint64_t c = 0; c < cols; ++c) m[r * cols + c] = float(r * 1000 + c) + plus;
  }
  return m;
}

// The column shard [rows, width] at column `first` of a row-major [rows, cols] buffer.
Tensor ColumnView(std::vector<float>& m, uint64_t rows, uint64_t cols, uint64_t first,
                  uint64_t width) {
  return Tensor::WrapStrided(DType::kFloat32, {rows, width}, {cols, 1}, m.data() + first);
}

using testing::LoadFrom;

// testing::SaveTo, with chunks of `chunk_size` bytes (0: the default 4 MiB).
SaveOptions SaveTo(const std::string& root, const std::string& id, uint64_t chunk_size = 0) {
  SaveOptions o = testing::SaveTo(root, id);
  if (chunk_size > 0) {
    KvStorageOptions storage{root, {}};
    storage.store_options.chunk_size = chunk_size;
    o.storage_writer = std::make_shared<KvStorageWriter>(storage);
  }
  return o;
}

constexpr uint64_t kRows = 300, kCols = 1000;

TEST(StridedTensorTest, ColumnShardsSaveInPlaceAndLoadIntoAnyLayout) {
  testing::TempDir tmp;
  std::vector<float> weight = Matrix(kRows, kCols);
  // Columns [0, 400) and [400, 1000) as two local shards: views of the one buffer.
  ShardedTensor w{DType::kFloat32, {kRows, kCols}, {}};
  w.local_shards.push_back(Shard{{0, 0}, ColumnView(weight, kRows, kCols, 0, 400)});
  w.local_shards.push_back(Shard{{0, 400}, ColumnView(weight, kRows, kCols, 400, 600)});
  StateDict sd;
  sd.Set("w", w);
  SaveOptions save = SaveTo(tmp.path(), "cols", 64 << 10);  // chunks end inside rows
  StatusOr<Metadata> md = Save(sd, save);
  ASSERT_TRUE(md.ok()) << md.status();

  // Into a plain tensor.
  Tensor whole = Tensor::Allocate(DType::kFloat32, {kRows, kCols});
  StateDict plain;
  plain.Set("w", whole);
  ASSERT_TRUE(Load(plain, LoadFrom(tmp.path(), "cols")).ok());
  EXPECT_EQ(std::memcmp(whole.data(), weight.data(), whole.nbytes()), 0);

  // Into column views of another buffer, resharded: columns [0, 700) and [700, 1000).
  std::vector<float> other(kRows * kCols, -1.0f);
  ShardedTensor into{DType::kFloat32, {kRows, kCols}, {}};
  into.local_shards.push_back(Shard{{0, 0}, ColumnView(other, kRows, kCols, 0, 700)});
  into.local_shards.push_back(Shard{{0, 700}, ColumnView(other, kRows, kCols, 700, 300)});
  StateDict views;
  views.Set("w", into);
  Status s = Load(views, LoadFrom(tmp.path(), "cols"));
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_EQ(other, weight);

  // Into a column-major tensor (a transposed buffer): element (r, c) at c * kRows + r.
  std::vector<float> column_major(kRows * kCols, -1.0f);
  StateDict transposed;
  transposed.Set(
      "w", Tensor::WrapStrided(DType::kFloat32, {kRows, kCols}, {1, kRows}, column_major.data()));
  ASSERT_TRUE(Load(transposed, LoadFrom(tmp.path(), "cols")).ok());
  for (uint64_t r = 0; r < kRows; ++r) {
    for (uint64_t c = 0; c < kCols; ++c) {
      ASSERT_EQ(column_major[c * kRows + r], weight[r * kCols + c]) << r << "," << c;
    }
  }
}

TEST(StridedTensorTest, ATransposedViewSavesAsItsLogicalLayout) {
  testing::TempDir tmp;
  // w.T of a row-major [kRows, kCols]: logical shape [kCols, kRows].
  std::vector<float> weight = Matrix(kRows, kCols);
  StateDict sd;
  sd.Set("wt", Tensor::WrapStrided(DType::kFloat32, {kCols, kRows}, {1, kCols}, weight.data()));
  ASSERT_TRUE(Save(sd, SaveTo(tmp.path(), "t")).ok());
  Tensor out = Tensor::Allocate(DType::kFloat32, {kCols, kRows});
  StateDict load;
  load.Set("wt", out);
  ASSERT_TRUE(Load(load, LoadFrom(tmp.path(), "t")).ok());
  for (uint64_t c = 0; c < kCols; ++c) {
    for (uint64_t r = 0; r < kRows; ++r) {
      ASSERT_EQ(out.data_as<float>()[c * kRows + r], weight[r * kCols + c]);
    }
  }
}

TEST(StridedTensorTest, IncrementalSavesOfAViewStoreOnlyTheChangedChunks) {
  testing::TempDir tmp;
  std::vector<float> weight = Matrix(kRows, kCols);
  auto state = [&] {
    StateDict sd;
    sd.Set("w", ShardedTensor::FromLocal(ColumnView(weight, kRows, kCols, 100, 800), {kRows, 800},
                                         {0, 0}));
    return sd;
  };
  SaveOptions base = SaveTo(tmp.path(), "base", 32 << 10);
  StateDict sd = state();
  Status saved = Save(sd, base).status();
  ASSERT_TRUE(saved.ok()) << saved;
  weight[150 * kCols + 500] += 1.0f;  // one element, inside the view
  SaveOptions next = base;  // the same writer (its store stays open), incremental on "base"
  next.checkpoint_id = "next";

  StateDict sd2 = state();
  StatusOr<Metadata> md = Save(sd2, next);
  ASSERT_TRUE(md.ok()) << md.status();
  EXPECT_EQ(md->stored_bytes, 32u << 10) << "one chunk changed";
  std::vector<float> out(kRows * kCols, 0.0f);
  StateDict load;
  load.Set("w",
           ShardedTensor::FromLocal(ColumnView(out, kRows, kCols, 100, 800), {kRows, 800}, {0, 0}));
  ASSERT_TRUE(Load(load, LoadFrom(tmp.path(), "next")).ok());
  for (uint64_t r = 0; r < kRows; ++r) {
    for (uint64_t c = 100; c < 900; ++c) ASSERT_EQ(out[r * kCols + c], weight[r * kCols + c]);
  }
}

TEST(StridedTensorTest, AsyncSaveStagesAViewAndCheckpointerRoundTrips) {
  testing::TempDir tmp;
  std::vector<float> weight = Matrix(kRows, kCols);
  StateDict sd;
  sd.Set("w", ColumnView(weight, kRows, kCols, 10, 20));
  AsyncSaveOptions o;
  o.save = SaveTo(tmp.path(), "async");
  StatusOr<AsyncSaveResponse> r = AsyncSave(sd, o);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_TRUE(r->staging_completion.get().ok());
  const std::vector<float> at_save = weight;
  std::fill(weight.begin(), weight.end(), 0.0f);  // training goes on
  ASSERT_TRUE(r->upload_completion.get().ok());

  auto ckpt = Checkpointer::Create({.store_root = tmp.path()});
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  std::vector<float> out(kRows * kCols, 0.0f);
  StateDict load;
  load.Set("w", ColumnView(out, kRows, kCols, 10, 20));
  ASSERT_TRUE((*ckpt)->Load(load, "async").ok());
  for (uint64_t r2 = 0; r2 < kRows; ++r2) {
    for (uint64_t c = 10; c < 30; ++c) ASSERT_EQ(out[r2 * kCols + c], at_save[r2 * kCols + c]);
  }
  EXPECT_EQ(out[0], 0.0f) << "a column outside the view was written";
}

TEST(StridedTensorTest, ColumnShardsOnTwoRanksLoadOnThree) {
  testing::TempDir tmp;
  const Tensor global = testing::MakeGlobal({96, 64}, 0.25f);
  testing::RunOnGlooRanks(2, [&](ProcessGroup& pg) {
    // Each rank's buffer holds the whole matrix; it saves its half of the columns as a view.
    Tensor copy = Tensor::Allocate(DType::kFloat32, {96, 64});
    std::memcpy(copy.data(), global.data(), global.nbytes());
    const uint64_t first = pg.rank() * 32;
    StateDict sd;
    sd.Set("w", ShardedTensor::FromLocal(Tensor::WrapStrided(DType::kFloat32, {96, 32}, {64, 1},
                                                             copy.data_as<float>() + first),
                                         {96, 64}, {0, first}));
    SaveOptions o = SaveTo(tmp.path(), "two");
    o.process_group = &pg;
    Status s = Save(sd, o).status();
    EXPECT_TRUE(s.ok()) << s;
  });
  testing::RunOnGlooRanks(3, [&](ProcessGroup& pg) {
    // Rows split three ways, each into a transposed (column-major) buffer.
    const Box box = testing::SplitBox({96, 64}, 0, 3, pg.rank());
    std::vector<float> column_major(box.sizes[0] * 64, -1.0f);
    StateDict sd;
    sd.Set("w",
           ShardedTensor::FromLocal(Tensor::WrapStrided(DType::kFloat32, box.sizes,
                                                        {1, box.sizes[0]}, column_major.data()),
                                    {96, 64}, box.offsets));
    LoadOptions o = LoadFrom(tmp.path(), "two");
    o.process_group = &pg;
    Status s = Load(sd, o);
    ASSERT_TRUE(s.ok()) << s;
    for (uint64_t r = 0; r < box.sizes[0]; ++r) {
      for (uint64_t c = 0; c < 64; ++c) {
        ASSERT_EQ(column_major[c * box.sizes[0] + r],
                  global.data_as<float>()[(box.offsets[0] + r) * 64 + c]);
      }
    }
  });
}

TEST(StridedTensorTest, BadStridesAndSharedDestinationsAreRefused) {
  testing::TempDir tmp;
  std::vector<float> weight = Matrix(4, 8);
  StateDict bad;
  bad.Set("w", Tensor::WrapStrided(DType::kFloat32, {4, 8}, {8}, weight.data()));
  Status s = Save(bad, SaveTo(tmp.path(), "bad")).status();
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s;
  EXPECT_NE(s.message().find("strides"), std::string::npos) << s;

  StateDict good;
  good.Set("w", Tensor::Wrap(DType::kFloat32, {4, 8}, weight.data()));
  ASSERT_TRUE(Save(good, SaveTo(tmp.path(), "good")).ok());
  // A broadcast destination: every row is the same memory.
  std::vector<float> row(8);
  StateDict shared;
  shared.Set("w", Tensor::WrapStrided(DType::kFloat32, {4, 8}, {0, 1}, row.data()));
  s = Load(shared, LoadFrom(tmp.path(), "good"));
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s;
  EXPECT_NE(s.message().find("share memory"), std::string::npos) << s;

  // A shared device destination likewise, before any device is touched (none is needed).
  StateDict device;
  device.Set("w",
             Tensor::WrapStrided(DType::kFloat32, {4, 8}, {0, 1}, row.data(), Device::Cuda(0)));
  s = Load(device, LoadFrom(tmp.path(), "good"));
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s;
  EXPECT_NE(s.message().find("tensor \"w\" (shape [4, 8], strides [0, 1]) has elements that "
                             "share memory"),
            std::string::npos)
      << s;
}

// Runs pitched copies on host memory, as cudaMemcpy2D would on a device.
void RunPitchedCopies(const std::vector<PitchedCopy>& copies, const uint8_t* src, uint8_t* dst) {
  for (const PitchedCopy& c : copies) {
    for (uint64_t r = 0; r < c.rows; ++r) {
      std::memcpy(dst + c.dst_offset + r * c.dst_pitch, src + c.src_offset + r * c.src_pitch,
                  c.width);
    }
  }
}

// Pitched copies between random layouts (permuted dimensions, slices, broadcast sources) move
// every element to where element-wise indexing puts it, and are as few as the layouts allow.
TEST(PitchedCopyTest, CopiesMatchElementwiseIndexing) {
  std::mt19937 rng(11);
  for (int trial = 0; trial < 600; ++trial) {
    const size_t ndim = trial % 5;
    const uint64_t element = uint64_t{1} << (rng() % 4);
    Shape shape(ndim);
    for (uint64_t& d : shape) d = 1 + rng() % 5;
    // Each side: a slice of a larger row-major parent, its dimensions permuted.
    auto random_side = [&](bool may_broadcast, uint64_t* span) {
      std::vector<size_t> order(ndim);
      for (size_t d = 0; d < ndim; ++d) order[d] = d;
      std::shuffle(order.begin(), order.end(), rng);
      std::vector<uint64_t> strides(ndim);
      uint64_t step = element;
      for (size_t k = ndim; k-- > 0;) {
        const size_t d = order[k];
        strides[d] = step;
        step *= shape[d] + (rng() % 3 == 0 ? rng() % 3 : 0);  // a parent wider than the view
      }
      if (may_broadcast && ndim > 0 && rng() % 4 == 0) strides[rng() % ndim] = 0;
      *span = step;
      return strides;
    };
    uint64_t src_span = 0, dst_span = 0;
    const std::vector<uint64_t> src_strides = random_side(true, &src_span);
    const std::vector<uint64_t> dst_strides = random_side(false, &dst_span);
    std::vector<uint8_t> src(src_span);
    for (size_t i = 0; i < src.size(); ++i) src[i] = static_cast<uint8_t>(rng());
    std::vector<uint8_t> expected(dst_span, 0), actual(dst_span, 0);
    const uint64_t numel = Volume(Box{Shape(ndim, 0), shape});
    for (uint64_t i = 0; i < numel; ++i) {
      uint64_t rest = i, from = 0, to = 0;
      for (size_t d = ndim; d-- > 0;) {
        from += (rest % shape[d]) * src_strides[d];
        to += (rest % shape[d]) * dst_strides[d];
        rest /= shape[d];
      }
      std::memcpy(expected.data() + to, src.data() + from, element);
    }
    const std::vector<PitchedCopy> copies =
        PlanPitchedCopies(shape, src_strides, dst_strides, element);
    uint64_t moved = 0;
    for (const PitchedCopy& c : copies) {
      moved += c.width * c.rows;
      if (c.rows > 1) {
        ASSERT_GE(c.src_pitch, c.width);
        ASSERT_GE(c.dst_pitch, c.width);
      }
    }
    ASSERT_EQ(moved, numel * element) << "trial " << trial;
    RunPitchedCopies(copies, src.data(), actual.data());
    ASSERT_EQ(actual, expected) << "trial " << trial << " shape " << ShapeToString(shape)
                                << " src strides " << ShapeToString(src_strides) << " dst strides "
                                << ShapeToString(dst_strides);
  }
}

TEST(PitchedCopyTest, CommonViewsNeedFewCopies) {
  std::vector<float> m(64 * 32);
  // Contiguous: one copy of every byte.
  std::vector<PitchedCopy> c = PlanPackingCopies(Tensor::Wrap(DType::kFloat32, {64, 32}, m.data()));
  ASSERT_EQ(c.size(), 1u);
  EXPECT_EQ(c[0].width * c[0].rows, 64u * 32 * 4);
  // A column shard (columns 8..15 of every row): one copy, a row of 32 bytes per row.
  c = PlanPackingCopies(Tensor::WrapStrided(DType::kFloat32, {64, 8}, {32, 1}, m.data() + 8));
  ASSERT_EQ(c.size(), 1u);
  EXPECT_EQ(c[0].width, 32u);
  EXPECT_EQ(c[0].rows, 64u);
  EXPECT_EQ(c[0].src_pitch, 128u);
  EXPECT_EQ(c[0].dst_pitch, 32u);
  // A transposed matrix: element-wide copies, rows along the longer dimension (32 copies of 64).
  c = PlanPackingCopies(Tensor::WrapStrided(DType::kFloat32, {32, 64}, {1, 32}, m.data()));
  ASSERT_EQ(c.size(), 32u);
  EXPECT_EQ(c[0].width, 4u);
  EXPECT_EQ(c[0].rows, 64u);
  // Planes of rows, the planes further apart than their rows: one copy per plane.
  std::vector<float> cube(4 * 200);
  c = PlanPackingCopies(
      Tensor::WrapStrided(DType::kFloat32, {4, 10, 8}, {200, 16, 1}, cube.data()));
  EXPECT_EQ(c.size(), 4u);
  EXPECT_EQ(c[0].rows, 10u);
  // Without the gap the planes merge into one copy of 40 rows.
  c = PlanPackingCopies(
      Tensor::WrapStrided(DType::kFloat32, {4, 10, 8}, {160, 16, 1}, cube.data()));
  ASSERT_EQ(c.size(), 1u);
  EXPECT_EQ(c[0].rows, 40u);
}

TEST(StateDictAccessTest, TypedAccessorsNameTheKeyAndTheKindOnAMismatch) {
  std::vector<float> w(6, 1.0f);
  StateDict sd;
  sd.Set("w", Tensor::Wrap(DType::kFloat32, {2, 3}, w.data()));
  sd.Set("step", Bytes{"41"});
  sd.Set("shard",
         ShardedTensor::FromLocal(Tensor::Wrap(DType::kFloat32, {2, 3}, w.data()), {4, 3}, {2, 0}));
  StateDict inner;
  inner.Set("m", Bytes{"x"});
  sd.SetDict("optim", std::move(inner));

  StatusOr<Bytes*> step = sd.GetBytes("step");
  ASSERT_TRUE(step.ok()) << step.status();
  (*step)->data = "42";  // in place
  EXPECT_EQ(std::get<Bytes>(*sd.Find("step")).data, "42");
  EXPECT_EQ((*sd.GetTensor("w"))->shape(), (Shape{2, 3}));
  StatusOr<ShardedTensor*> shard = sd.GetShardedTensor("shard");
  ASSERT_TRUE(shard.ok());
  EXPECT_EQ((*shard)->dtype, DType::kFloat32);
  EXPECT_EQ((*shard)->global_shape, (Shape{4, 3}));
  EXPECT_EQ((*shard)->local_shards.at(0).offsets, (Shape{2, 0}));
  EXPECT_TRUE((*shard)->Validate().ok());
  StatusOr<StateDict*> optim = sd.GetDict("optim");
  ASSERT_TRUE(optim.ok());
  EXPECT_EQ((*(*optim)->GetBytes("m"))->data, "x");

  Status wrong = sd.GetTensor("step").status();
  EXPECT_EQ(wrong.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(wrong.message().find("\"step\" holds a bytes, not a tensor"), std::string::npos)
      << wrong;
  EXPECT_EQ(sd.GetBytes("w").status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(sd.GetDict("w").status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(sd.GetShardedTensor("nope").status().code(), StatusCode::kNotFound);
  const StateDict& frozen = sd;
  EXPECT_EQ((*frozen.GetBytes("step"))->data, "42");
  EXPECT_EQ(frozen.GetTensor("shard").status().code(), StatusCode::kInvalidArgument);

  // A shard that does not fit its global shape is refused by Validate (and by save).
  ShardedTensor outside =
      ShardedTensor::FromLocal(Tensor::Wrap(DType::kFloat32, {2, 3}, w.data()), {4, 3}, {3, 0});
  EXPECT_EQ(outside.Validate().code(), StatusCode::kInvalidArgument);
}

TEST(AsyncSaveGroupTest, CheckpointerUploadsWhileTheCallerUsesItsGroup) {
  testing::TempDir tmp;
  testing::RunOnGlooRanks(2, [&](ProcessGroup& pg) {
    auto ckpt = Checkpointer::Create({.store_root = tmp.path(), .process_group = &pg});
    ASSERT_TRUE(ckpt.ok()) << ckpt.status();
    std::vector<float> w(1 << 20, float(pg.rank()));
    for (int step = 0; step < 3; ++step) {
      StateDict sd;
      sd.Set("w", ShardedTensor::FromLocal(Tensor::Wrap(DType::kFloat32, {1 << 20}, w.data()),
                                           {2 << 20}, {uint64_t(pg.rank()) << 20}));
      StatusOr<AsyncSaveResponse> r = (*ckpt)->AsyncSave(sd, "step-" + std::to_string(step));
      ASSERT_TRUE(r.ok()) << r.status();
      ASSERT_TRUE(r->staging_completion.get().ok());
      // Training's own collectives on the same group while the upload runs.
      for (int i = 0; i < 20; ++i) {
        StatusOr<std::vector<std::string>> all = pg.AllGather(std::to_string(i));
        ASSERT_TRUE(all.ok()) << all.status();
        ASSERT_EQ((*all)[1 - pg.rank()], std::to_string(i));
      }
      StatusOr<Metadata> md = r->upload_completion.get();
      ASSERT_TRUE(md.ok()) << md.status();
    }
  });

  // The helper for programs that call AsyncSave themselves; gloo groups only.
  testing::RunOnGlooRanks(2, [&](ProcessGroup& pg) {
    StatusOr<std::unique_ptr<ProcessGroup>> upload = CreateAsyncSaveGroup(pg);
    ASSERT_TRUE(upload.ok()) << upload.status();
    EXPECT_EQ((*upload)->size(), 2);
    EXPECT_EQ((*upload)->rank(), pg.rank());
  });
}

}  // namespace
}  // namespace dcpkv

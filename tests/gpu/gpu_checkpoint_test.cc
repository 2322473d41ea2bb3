// Save, load and async_save of CUDA tensors (needs a CUDA device; skipped without one).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <vector>

#include "dcpkv/api/cuda_staging.h"
#include "dcpkv/async_save.h"
#include "dcpkv/checkpoint.h"
#include "dcpkv/core/strided.h"
#include "tests/gpu/gpu_test_util.h"
#include "tests/util/checkpoint_options.h"
#include "tests/util/sharding.h"
#include "tests/util/temp_dir.h"
#include "tests/util/test_data.h"

namespace dcpkv {
namespace {

using testing::DeviceTensor;
using ::testing::HasSubstr;

// A host tensor of random bits (NaN and denormal patterns included: the copy must be exact).
Tensor RandomTensor(DType dtype, const Shape& shape, uint64_t seed) {
  Tensor t = Tensor::Allocate(dtype, shape);
  const std::vector<uint8_t> bits = testing::RandomBytes(t.nbytes(), seed);
  if (!bits.empty()) std::memcpy(t.data(), bits.data(), bits.size());
  return t;
}

using testing::LoadFrom;
using testing::SaveTo;

struct Case {
  std::string fqn;
  DType dtype;
  Shape shape;
};

const std::vector<Case>& Cases() {
  static const std::vector<Case> cases = {
      {"layers.0.w", DType::kFloat32, {256, 384}},
      {"layers.0.b", DType::kBFloat16, {384}},
      {"emb", DType::kFloat16, {1000, 64}},
      {"scalar", DType::kFloat64, {}},
      {"empty", DType::kInt32, {0, 8}},
      {"mask", DType::kUInt8, {12345}},
      {"big", DType::kFloat32, {1024, 1024}},
      {"ids", DType::kInt64, {77, 3}},
  };
  return cases;
}

TEST(GpuCheckpointTest, DeviceTensorsSaveAndLoadBitExact) {
  DCPKV_REQUIRE_GPUS(1);
  testing::TempDir tmp;
  std::vector<Tensor> originals;
  std::vector<DeviceTensor> on_device;
  StateDict state;
  for (size_t i = 0; i < Cases().size(); ++i) {
    const Case& c = Cases()[i];
    originals.push_back(RandomTensor(c.dtype, c.shape, 100 + i));
    on_device.push_back(DeviceTensor::Copy(originals.back(), 0));
    state.Set(c.fqn, on_device.back().view());
  }
  const Tensor host_only = RandomTensor(DType::kFloat32, {33, 5}, 9);
  state.Set("host_only", host_only);
  state.Set("step", Bytes{"42"});
  StatusOr<Metadata> md = Save(state, SaveTo(tmp.path(), "exact"));
  ASSERT_TRUE(md.ok()) << md.status();

  // Into fresh device tensors (filled with 0xAB so that untouched bytes show), and into host
  // tensors: the checkpoint does not depend on where the tensors were.
  std::vector<DeviceTensor> loaded;
  StateDict into_device, into_host;
  std::vector<Tensor> host_targets;
  for (const Case& c : Cases()) {
    loaded.push_back(DeviceTensor::Filled(c.dtype, c.shape, 0, 0xAB));
    into_device.Set(c.fqn, loaded.back().view());
    host_targets.push_back(Tensor::Allocate(c.dtype, c.shape));
    into_host.Set(c.fqn, host_targets.back());
  }
  DeviceTensor host_only_on_device = DeviceTensor::Filled(DType::kFloat32, {33, 5}, 0);
  into_device.Set("host_only", host_only_on_device.view());
  ASSERT_TRUE(Load(into_device, LoadFrom(tmp.path(), "exact")).ok());
  LoadOptions partial = LoadFrom(tmp.path(), "exact");
  partial.planner = std::make_shared<DefaultLoadPlanner>(DefaultLoadPlannerOptions{true});
  ASSERT_TRUE(Load(into_host, partial).ok());
  for (size_t i = 0; i < Cases().size(); ++i) {
    EXPECT_TRUE(testing::SameBytes(loaded[i].ToHost(), originals[i])) << Cases()[i].fqn;
    EXPECT_TRUE(testing::SameBytes(host_targets[i], originals[i])) << Cases()[i].fqn;
  }
  EXPECT_TRUE(testing::SameBytes(host_only_on_device.ToHost(), host_only));
}

TEST(GpuCheckpointTest, ManyDeviceItemsWithChangingSizesStayInOrder) {
  // Enough items of alternating sizes that the save's two host buffers and its prefetch of the
  // next item are exercised, and a small load budget so that stand-ins are recycled.
  DCPKV_REQUIRE_GPUS(1);
  testing::TempDir tmp;
  std::vector<Tensor> originals;
  std::vector<DeviceTensor> on_device;
  StateDict state;
  for (int i = 0; i < 60; ++i) {
    const Shape shape = {static_cast<uint64_t>(1 + (i * 37) % 211), 129};
    originals.push_back(RandomTensor(DType::kFloat32, shape, 500 + i));
    on_device.push_back(DeviceTensor::Copy(originals.back(), 0));
    state.Set("t" + std::to_string(i), on_device.back().view());
  }
  ASSERT_TRUE(Save(state, SaveTo(tmp.path(), "many")).ok());
  std::vector<DeviceTensor> loaded;
  StateDict into;
  for (int i = 0; i < 60; ++i) {
    loaded.push_back(DeviceTensor::Filled(DType::kFloat32, originals[i].shape(), 0));
    into.Set("t" + std::to_string(i), loaded.back().view());
  }
  LoadOptions o = LoadFrom(tmp.path(), "many");
  DefaultLoadPlannerOptions small;
  small.device_staging_bytes = 64 << 10;
  o.planner = std::make_shared<DefaultLoadPlanner>(small);
  ASSERT_TRUE(Load(into, o).ok());
  for (int i = 0; i < 60; ++i) {
    EXPECT_TRUE(testing::SameBytes(loaded[i].ToHost(), originals[i])) << "t" << i;
  }
}

// Shards of `global` split `world` ways along `dim`, each copied to the device.
struct DeviceShards {
  std::vector<DeviceTensor> memory;
  ShardedTensor sharded;
};

DeviceShards ShardsOnDevice(const Tensor& global, int dim, int world, bool empty) {
  DeviceShards out;
  out.sharded = ShardedTensor{global.dtype(), global.shape(), {}};
  out.memory.reserve(world);
  for (int r = 0; r < world; ++r) {
    const Box box = testing::SplitBox(global.shape(), dim, world, r);
    out.memory.push_back(empty ? DeviceTensor::Filled(global.dtype(), box.sizes, 0, 0xCD)
                               : DeviceTensor::Copy(testing::Slice(global, box), 0));
    out.sharded.local_shards.push_back(Shard{box.offsets, out.memory.back().view()});
  }
  return out;
}

TEST(GpuCheckpointTest, ReshardedLoadIntoDeviceShards) {
  DCPKV_REQUIRE_GPUS(1);
  testing::TempDir tmp;
  // 2-d: rows split 4 ways at save, columns 3 ways at load (strided regions, 2-d copies);
  // 3-d: the middle dimension (copies of several row blocks).
  const Tensor flat = testing::MakeGlobal({61, 45}, 1);
  const Tensor cube = testing::MakeGlobal({5, 17, 9}, 2);
  DeviceShards flat_rows = ShardsOnDevice(flat, 0, 4, false);
  DeviceShards cube_rows = ShardsOnDevice(cube, 0, 2, false);
  StateDict state;
  state.Set("flat", flat_rows.sharded);
  state.Set("cube", cube_rows.sharded);
  ASSERT_TRUE(Save(state, SaveTo(tmp.path(), "reshard")).ok());

  for (uint64_t budget : {uint64_t{1} << 30, uint64_t{1024}}) {
    DeviceShards flat_cols = ShardsOnDevice(flat, 1, 3, true);
    DeviceShards cube_mid = ShardsOnDevice(cube, 1, 4, true);
    StateDict into;
    into.Set("flat", flat_cols.sharded);
    into.Set("cube", cube_mid.sharded);
    LoadOptions o = LoadFrom(tmp.path(), "reshard");
    DefaultLoadPlannerOptions options;
    options.device_staging_bytes = budget;
    o.planner = std::make_shared<DefaultLoadPlanner>(options);
    Status s = Load(into, o);
    ASSERT_TRUE(s.ok()) << s;
    for (int r = 0; r < 3; ++r) {
      const Tensor want = testing::Slice(flat, testing::SplitBox(flat.shape(), 1, 3, r));
      EXPECT_TRUE(testing::SameBytes(flat_cols.memory[r].ToHost(), want)) << "flat " << r;
    }
    for (int r = 0; r < 4; ++r) {
      const Tensor want = testing::Slice(cube, testing::SplitBox(cube.shape(), 1, 4, r));
      EXPECT_TRUE(testing::SameBytes(cube_mid.memory[r].ToHost(), want)) << "cube " << r;
    }
  }
}

TEST(GpuCheckpointTest, AsyncSaveOfDeviceTensors) {
  DCPKV_REQUIRE_GPUS(1);
  testing::TempDir tmp;
  int n = 0;
  for (bool background : {true, false}) {
    for (bool non_blocking : {true, false}) {
      const std::string id = "async" + std::to_string(n++);
      const Tensor original = RandomTensor(DType::kFloat32, {512, 300}, 11 + n);
      DeviceTensor w = DeviceTensor::Copy(original, 0);
      StateDict state;
      state.Set("w", w.view());
      AsyncSaveOptions o;
      o.save = SaveTo(tmp.path(), id);
      o.staging_options.use_async_staging = background;
      o.staging_options.use_non_blocking_copy = non_blocking;
      StatusOr<AsyncSaveResponse> r = AsyncSave(state, o);
      ASSERT_TRUE(r.ok()) << r.status();
      ASSERT_TRUE(r->staging_completion.get().ok()) << id;
      // Training goes on: the device tensor changes once staging is complete.
      const Tensor changed = RandomTensor(DType::kFloat32, {512, 300}, 999);
      ASSERT_TRUE(
          cuda::CopyToDeviceSync(0, w.view().data(), changed.data(), changed.nbytes()).ok());
      StatusOr<Metadata> md = r->upload_completion.get();
      ASSERT_TRUE(md.ok()) << md.status();
      DeviceTensor back = DeviceTensor::Filled(DType::kFloat32, {512, 300}, 0);
      StateDict into;
      into.Set("w", back.view());
      ASSERT_TRUE(Load(into, LoadFrom(tmp.path(), id)).ok());
      EXPECT_TRUE(testing::SameBytes(back.ToHost(), original)) << id;
    }
  }
}

TEST(GpuCheckpointTest, StagerReusesItsPinnedBuffersForDeviceTensors) {
  DCPKV_REQUIRE_GPUS(1);
  const Tensor a = RandomTensor(DType::kFloat16, {1000, 33}, 1);
  const Tensor b = RandomTensor(DType::kInt64, {4097}, 2);
  DeviceTensor da = DeviceTensor::Copy(a, 0), db = DeviceTensor::Copy(b, 0);
  FlatStateDict flat;
  flat.emplace("a", da.view());
  ShardedTensor sb{DType::kInt64, {8194}, {Shard{{4097}, db.view()}}};
  flat.emplace("b", sb);
  DefaultStager stager;  // pinned, non-blocking
  for (int round = 0; round < 3; ++round) {
    StatusOr<FlatStateDict> staged = stager.Stage(flat);
    ASSERT_TRUE(staged.ok()) << staged.status();
    ASSERT_TRUE(stager.SynchronizeStaging().ok());
    const Tensor& sa = std::get<Tensor>(staged->at("a"));
    EXPECT_FALSE(sa.is_cuda());
    EXPECT_TRUE(testing::SameBytes(sa, a));
    const Tensor& sbt = std::get<ShardedTensor>(staged->at("b")).local_shards[0].tensor;
    EXPECT_TRUE(testing::SameBytes(sbt, b));
  }
  EXPECT_EQ(stager.allocations(), 2u);
  stager.Close();
}

// A strided view into `whole` (host or device memory), from element `element_offset` on.
Tensor ViewOf(const Tensor& whole, const Shape& shape, const std::vector<uint64_t>& strides,
              uint64_t element_offset) {
  auto* base = static_cast<uint8_t*>(whole.data()) + element_offset * ElementSize(whole.dtype());
  return Tensor::WrapStrided(whole.dtype(), shape, strides, base, whole.device());
}

// The packed bytes of a strided host view.
Tensor Packed(const Tensor& view) {
  Tensor t = Tensor::Allocate(view.dtype(), view.shape());
  GatherBytes(view.data(), LayoutOf(view), 0, view.nbytes(), t.data());
  return t;
}

TEST(GpuCheckpointTest, StridedDeviceViewsSaveStageAndLoadInPlace) {
  DCPKV_REQUIRE_GPUS(1);
  testing::TempDir tmp;
  // Views of device matrices, and the same views of their host originals.
  const Tensor m = RandomTensor(DType::kFloat32, {64, 96}, 21);   // columns 32..63: a shard
  const Tensor t = RandomTensor(DType::kBFloat16, {48, 40}, 22);  // read transposed, 40 x 48
  const Tensor c = RandomTensor(DType::kInt64, {4, 200}, 23);     // planes of 10 rows of 8, gaps
  DeviceTensor dm = DeviceTensor::Copy(m, 0), dt = DeviceTensor::Copy(t, 0),
               dc = DeviceTensor::Copy(c, 0);
  struct View {
    std::string fqn;
    Shape shape;
    std::vector<uint64_t> strides;
    uint64_t offset;
  };
  const std::vector<View> views = {{"cols", {64, 32}, {96, 1}, 32},
                                   {"transposed", {40, 48}, {1, 40}, 0},
                                   {"planes", {4, 10, 8}, {200, 16, 1}, 3}};
  const Tensor* hosts[] = {&m, &t, &c};
  const DeviceTensor* devices[] = {&dm, &dt, &dc};
  StateDict state;
  FlatStateDict flat;
  std::vector<Tensor> expected;
  for (size_t i = 0; i < views.size(); ++i) {
    const View& v = views[i];
    state.Set(v.fqn, ViewOf(devices[i]->view(), v.shape, v.strides, v.offset));
    flat.emplace(v.fqn, ViewOf(devices[i]->view(), v.shape, v.strides, v.offset));
    expected.push_back(Packed(ViewOf(*hosts[i], v.shape, v.strides, v.offset)));
  }
  ASSERT_TRUE(Save(state, SaveTo(tmp.path(), "views")).ok());

  // Staging packs each view into its host buffer.
  DefaultStager stager;
  StatusOr<FlatStateDict> staged = stager.Stage(flat);
  ASSERT_TRUE(staged.ok()) << staged.status();
  ASSERT_TRUE(stager.SynchronizeStaging().ok());
  for (size_t i = 0; i < views.size(); ++i) {
    EXPECT_TRUE(testing::SameBytes(std::get<Tensor>(staged->at(views[i].fqn)), expected[i]))
        << views[i].fqn;
  }
  stager.Close();

  // Loaded into host tensors: the packed bytes of each view.
  StateDict into_host;
  std::vector<Tensor> host_targets;
  for (size_t i = 0; i < views.size(); ++i) {
    host_targets.push_back(Tensor::Allocate(expected[i].dtype(), expected[i].shape()));
    into_host.Set(views[i].fqn, host_targets.back());
  }
  ASSERT_TRUE(Load(into_host, LoadFrom(tmp.path(), "views")).ok());
  for (size_t i = 0; i < views.size(); ++i) {
    EXPECT_TRUE(testing::SameBytes(host_targets[i], expected[i])) << views[i].fqn;
  }

  // Loaded into the same views of fresh device buffers (0xAB): the views' elements change and
  // nothing else does; a row-split resharded load of "cols" into two strided device shards too.
  std::vector<DeviceTensor> fresh;
  StateDict into_device;
  for (size_t i = 0; i < views.size(); ++i) {
    fresh.push_back(DeviceTensor::Filled(hosts[i]->dtype(), hosts[i]->shape(), 0, 0xAB));
    into_device.Set(views[i].fqn,
                    ViewOf(fresh.back().view(), views[i].shape, views[i].strides, views[i].offset));
  }
  ASSERT_TRUE(Load(into_device, LoadFrom(tmp.path(), "views")).ok());
  for (size_t i = 0; i < views.size(); ++i) {
    Tensor want = Tensor::Allocate(hosts[i]->dtype(), hosts[i]->shape());
    std::memset(want.data(), 0xAB, want.nbytes());
    const Tensor view = ViewOf(want, views[i].shape, views[i].strides, views[i].offset);
    ScatterBytes(view.data(), LayoutOf(view), 0, expected[i].nbytes(), expected[i].data());
    EXPECT_TRUE(testing::SameBytes(fresh[i].ToHost(), want)) << views[i].fqn;
  }
  DeviceTensor wide = DeviceTensor::Filled(DType::kFloat32, {64, 50}, 0, 0xAB);
  StateDict sharded;
  sharded.Set("cols", ShardedTensor{
                          DType::kFloat32,
                          {64, 32},
                          {Shard{{0, 0}, ViewOf(wide.view(), {32, 32}, {50, 1}, 10)},
                           Shard{{32, 0}, ViewOf(wide.view(), {32, 32}, {50, 1}, 32 * 50 + 10)}}});
  ASSERT_TRUE(Load(sharded, LoadFrom(tmp.path(), "views")).ok());
  const Tensor got = wide.ToHost();
  const Tensor got_cols = Packed(ViewOf(got, {64, 32}, {50, 1}, 10));
  EXPECT_TRUE(testing::SameBytes(got_cols, expected[0]));
  EXPECT_EQ(static_cast<const uint8_t*>(got.data())[0], 0xAB);  // outside the shards
}

TEST(GpuCheckpointTest, HostMemoryWrappedAsCudaIsRejected) {
  DCPKV_REQUIRE_GPUS(1);
  testing::TempDir tmp;
  std::vector<float> host(64);
  StateDict state;
  state.Set("w", Tensor::WrapCuda(DType::kFloat32, {64}, host.data(), 0));
  StatusOr<Metadata> md = Save(state, SaveTo(tmp.path(), "liar"));
  ASSERT_FALSE(md.ok());
  EXPECT_EQ(md.status().code(), StatusCode::kInvalidArgument) << md.status();
  EXPECT_THAT(std::string(md.status().message()), HasSubstr("host memory"));
}

}  // namespace
}  // namespace dcpkv

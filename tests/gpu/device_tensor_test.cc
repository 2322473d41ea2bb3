// Device tensors without a device: the Tensor API, the row blocks of load's host-to-device
// copies, and the errors of save, load and staging when a CUDA tensor cannot be used.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <random>

#include "dcpkv/api/cuda_staging.h"
#include "dcpkv/async_save.h"
#include "dcpkv/checkpoint.h"
#include "dcpkv/core/box.h"
#include "tests/gpu/gpu_test_util.h"
#include "tests/util/sharding.h"
#include "tests/util/temp_dir.h"

namespace dcpkv {
namespace {

using ::testing::AnyOf;
using ::testing::HasSubstr;

TEST(GpuDeviceTensorTest, DevicesAndWrappedTensors) {
  EXPECT_EQ(Device::Cpu().ToString(), "cpu");
  EXPECT_EQ(Device::Cuda(3).ToString(), "cuda:3");
  EXPECT_EQ(Device::Cuda(1), Device::Cuda(1));
  EXPECT_NE(Device::Cuda(1), Device::Cpu());

  float host[6] = {};
  const Tensor cpu = Tensor::Wrap(DType::kFloat32, {2, 3}, host);
  EXPECT_FALSE(cpu.is_cuda());
  EXPECT_EQ(cpu.device(), Device::Cpu());
  EXPECT_TRUE(Tensor::Allocate(DType::kInt32, {4}).device() == Device::Cpu());

  void* fake_device_ptr = reinterpret_cast<void*>(uintptr_t{0x7f0000000000});
  const Tensor gpu = Tensor::WrapCuda(DType::kBFloat16, {4, 5}, fake_device_ptr, 1);
  EXPECT_TRUE(gpu.is_cuda());
  EXPECT_EQ(gpu.device(), Device::Cuda(1));
  EXPECT_EQ(gpu.data(), fake_device_ptr);
  EXPECT_EQ(gpu.nbytes(), 40u);
  EXPECT_TRUE(gpu.Validate().ok());
  EXPECT_EQ(Tensor::Wrap(DType::kBFloat16, {4, 5}, fake_device_ptr, Device::Cuda(1)).device(),
            gpu.device());

  Status negative = Tensor::WrapCuda(DType::kFloat32, {1}, fake_device_ptr, -1).Validate();
  EXPECT_EQ(negative.code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(negative.message()), HasSubstr("cuda:-1"));
}

// Copies `region` from `src` into `dst` (both row-major tensors of `shape`) block by block, as
// load's host-to-device copies do.
void CopyByBlocks(const std::vector<uint8_t>& src, std::vector<uint8_t>* dst, const Shape& shape,
                  const Box& region, size_t element) {
  for (const cuda::RowBlock& b :
       cuda::RegionRowBlocks(shape, region.offsets, region.sizes, element)) {
    for (size_t row = 0; row < b.rows; ++row) {
      const size_t at = b.offset + row * b.pitch;
      ASSERT_LE(at + b.width, dst->size());
      std::memcpy(dst->data() + at, src.data() + at, b.width);
    }
  }
}

TEST(GpuDeviceTensorTest, RowBlocksCoverExactlyTheRegion) {
  std::mt19937 rng(7);
  for (int trial = 0; trial < 400; ++trial) {
    const size_t ndim = trial % 5;  // scalars to 4-d
    Shape shape(ndim);
    for (uint64_t& d : shape) d = 1 + rng() % 6;
    Box region{Shape(ndim), Shape(ndim)};
    for (size_t d = 0; d < ndim; ++d) {
      region.offsets[d] = rng() % shape[d];
      region.sizes[d] = rng() % (shape[d] - region.offsets[d] + 1);        // may be empty
      if (trial % 3 == 0) region.sizes[d] = shape[d] - region.offsets[d];  // to the end
    }
    const size_t element = 1 + rng() % 4;
    const Box whole{Shape(ndim, 0), shape};
    const size_t bytes = Volume(whole) * element;
    std::vector<uint8_t> src(bytes);
    for (size_t i = 0; i < bytes; ++i) src[i] = static_cast<uint8_t>(1 + i % 255);
    std::vector<uint8_t> expected(bytes, 0), actual(bytes, 0);
    CopyBox(src.data(), whole, expected.data(), whole, region, element);
    CopyByBlocks(src, &actual, shape, region, element);
    ASSERT_EQ(actual, expected) << "trial " << trial << " shape " << ShapeToString(shape)
                                << " region " << ShapeToString(region.offsets) << "+"
                                << ShapeToString(region.sizes);
  }
}

TEST(GpuDeviceTensorTest, ColumnRegionIsOneStridedBlock) {
  const std::vector<cuda::RowBlock> blocks = cuda::RegionRowBlocks({8, 10}, {0, 2}, {8, 3}, 4);
  ASSERT_EQ(blocks.size(), 1u);
  EXPECT_EQ(blocks[0].offset, 8u);
  EXPECT_EQ(blocks[0].pitch, 40u);
  EXPECT_EQ(blocks[0].width, 12u);
  EXPECT_EQ(blocks[0].rows, 8u);
}

// Every way a CUDA tensor is used fails the same clear way when the process cannot use it.
void ExpectUnusable(const Status& s, const std::string& device) {
  EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr("tensor \"w\" is on " + device + " but"));
}

StateDict StateWithDeviceTensor(int device) {
  StateDict state;
  void* fake_device_ptr = reinterpret_cast<void*>(uintptr_t{0x7f0000000000});
  state.Set("w", Tensor::WrapCuda(DType::kFloat32, {16, 16}, fake_device_ptr, device));
  state.Set("cpu", testing::MakeGlobal({4}, 1));
  return state;
}

TEST(GpuDeviceTensorTest, CudaTensorWithoutGpuIsAClearErrorEverywhere) {
  if (testing::GpuCount() > 0) GTEST_SKIP() << "a CUDA device is present: the error needs none";
  const std::string why =
      cuda::BuiltWithCuda() ? "no CUDA device is available" : "has no CUDA support";
  testing::TempDir tmp;
  StateDict state = StateWithDeviceTensor(0);

  SaveOptions save;
  save.checkpoint_id = "gpu";
  save.store_root = tmp.path();
  StatusOr<Metadata> saved = Save(state, save);
  ExpectUnusable(saved.status(), "cuda:0");
  EXPECT_THAT(std::string(saved.status().message()), HasSubstr(why));
  if (cuda::BuiltWithCuda()) {
    EXPECT_THAT(std::string(saved.status().message()), HasSubstr("cudaGetDeviceCount"));
  }

  // Nothing was committed; a CPU save of the same state then works, and a load into a CUDA
  // tensor fails the same way.
  StateDict cpu_state;
  cpu_state.Set("w", testing::MakeGlobal({16, 16}, 2));
  ASSERT_TRUE(Save(cpu_state, save).ok());
  LoadOptions load;
  load.checkpoint_id = "gpu";
  load.store_root = tmp.path();
  StateDict into = StateWithDeviceTensor(0);
  load.planner = std::make_shared<DefaultLoadPlanner>(DefaultLoadPlannerOptions{true});
  ExpectUnusable(Load(into, load), "cuda:0");

  FlatStateDict flat;
  std::vector<StatefulBinding> bindings;
  ASSERT_TRUE(FlattenStateDict(state, &flat, &bindings).ok());
  DefaultStager stager;
  ExpectUnusable(stager.Stage(flat).status(), "cuda:0");
  EXPECT_EQ(stager.allocations(), 0u) << "nothing staged before the check";

  for (bool background : {true, false}) {
    AsyncSaveOptions async;
    async.save.checkpoint_id = background ? "async-lazy" : "async-eager";
    async.save.store_root = tmp.path();
    async.staging_options.use_async_staging = background;
    StatusOr<AsyncSaveResponse> r = AsyncSave(state, async);
    ASSERT_TRUE(r.ok()) << r.status();
    ExpectUnusable(r->staging_completion.get(), "cuda:0");
    ExpectUnusable(r->upload_completion.get().status(), "cuda:0");
  }
}

TEST(GpuDeviceTensorTest, DeviceIndexBeyondTheMachineIsAClearError) {
  testing::TempDir tmp;
  StateDict state = StateWithDeviceTensor(4096);
  SaveOptions save;
  save.checkpoint_id = "far";
  save.store_root = tmp.path();
  StatusOr<Metadata> saved = Save(state, save);
  ExpectUnusable(saved.status(), "cuda:4096");
  EXPECT_THAT(std::string(saved.status().message()),
              AnyOf(HasSubstr("CUDA device"), HasSubstr("CUDA support")));
}

}  // namespace
}  // namespace dcpkv

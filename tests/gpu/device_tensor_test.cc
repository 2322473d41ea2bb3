// Device tensors without a device: the Tensor API, the pitched copies of load's host-to-device
// copies (into row-major and strided targets), and the errors of save, load and staging when a
// CUDA tensor cannot be used.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <random>

#include "dcpkv/api/cuda_staging.h"
#include "dcpkv/async_save.h"
#include "dcpkv/checkpoint.h"
#include "dcpkv/core/box.h"
#include "dcpkv/core/strided.h"
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

// Copies `region` of a packed stand-in into a target of `shape` with `strides` (empty:
// row-major) as load's host-to-device copies do, on host memory.
void CopyRegion(const std::vector<uint8_t>& packed, std::vector<uint8_t>* target,
                const Shape& shape, const std::vector<uint64_t>& strides, const Box& region,
                DType dtype) {
  const Tensor t = strides.empty() ? Tensor::Wrap(dtype, shape, target->data())
                                   : Tensor::WrapStrided(dtype, shape, strides, target->data());
  const cuda::RegionCopies plan = cuda::PlanRegionCopies(t, region.offsets, region.sizes);
  for (const PitchedCopy& c : plan.copies) {
    for (uint64_t row = 0; row < c.rows; ++row) {
      const uint64_t to = plan.target_offset + c.dst_offset + row * c.dst_pitch;
      const uint64_t from = plan.packed_offset + c.src_offset + row * c.src_pitch;
      ASSERT_LE(to + c.width, target->size());
      ASSERT_LE(from + c.width, packed.size());
      std::memcpy(target->data() + to, packed.data() + from, c.width);
    }
  }
}

TEST(GpuDeviceTensorTest, RegionCopiesCoverExactlyTheRegion) {
  std::mt19937 rng(7);
  const DType dtypes[] = {DType::kUInt8, DType::kBFloat16, DType::kFloat32, DType::kFloat64};
  for (int trial = 0; trial < 400; ++trial) {
    const size_t ndim = trial % 5;  // scalars to 4-d
    const DType dtype = dtypes[rng() % 4];
    const size_t element = ElementSize(dtype);
    Shape shape(ndim);
    for (uint64_t& d : shape) d = 1 + rng() % 6;
    Box region{Shape(ndim), Shape(ndim)};
    for (size_t d = 0; d < ndim; ++d) {
      region.offsets[d] = rng() % shape[d];
      region.sizes[d] = rng() % (shape[d] - region.offsets[d] + 1);        // may be empty
      if (trial % 3 == 0) region.sizes[d] = shape[d] - region.offsets[d];  // to the end
    }
    // Odd trials: the target is a transposed view (dimensions reversed) of its own buffer.
    std::vector<uint64_t> strides;
    if (trial % 2 == 1 && ndim > 1) {
      strides.resize(ndim);
      uint64_t step = 1;
      for (size_t d = 0; d < ndim; ++d) {
        strides[d] = step;
        step *= shape[d];
      }
    }
    const Box whole{Shape(ndim, 0), shape};
    const size_t bytes = Volume(whole) * element;
    std::vector<uint8_t> packed(bytes);
    for (size_t i = 0; i < bytes; ++i) packed[i] = static_cast<uint8_t>(1 + i % 255);
    // Expected: the region copied element-wise into the target's layout.
    std::vector<uint8_t> expected(bytes, 0), actual(bytes, 0);
    const std::vector<uint64_t> packed_strides = RowMajorByteStrides(shape, 1);
    const uint64_t count = Volume(region);
    for (uint64_t i = 0; i < count; ++i) {
      uint64_t rest = i, from = 0, to = 0;
      for (size_t d = ndim; d-- > 0;) {
        const uint64_t at = region.offsets[d] + rest % region.sizes[d];
        rest /= region.sizes[d];
        from += at * packed_strides[d];
        to += at * (strides.empty() ? packed_strides[d] : strides[d]);
      }
      std::memcpy(expected.data() + to * element, packed.data() + from * element, element);
    }
    CopyRegion(packed, &actual, shape, strides, region, dtype);
    ASSERT_EQ(actual, expected) << "trial " << trial << " shape " << ShapeToString(shape)
                                << " region " << ShapeToString(region.offsets) << "+"
                                << ShapeToString(region.sizes);
  }
}

TEST(GpuDeviceTensorTest, ColumnRegionIsOnePitchedCopy) {
  float fake[80];
  const cuda::RegionCopies plan =
      cuda::PlanRegionCopies(Tensor::Wrap(DType::kFloat32, {8, 10}, fake), {0, 2}, {8, 3});
  ASSERT_EQ(plan.copies.size(), 1u);
  EXPECT_EQ(plan.packed_offset, 8u);
  EXPECT_EQ(plan.target_offset, 8u);
  EXPECT_EQ(plan.copies[0].src_pitch, 40u);
  EXPECT_EQ(plan.copies[0].dst_pitch, 40u);
  EXPECT_EQ(plan.copies[0].width, 12u);
  EXPECT_EQ(plan.copies[0].rows, 8u);
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

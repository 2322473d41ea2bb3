// GPU test helpers: how many CUDA devices there are (tests that need one skip, saying why),
// and device copies of host tensors. Device memory comes through libdcpkv's own CUDA runtime
// (api/cuda_copy.h), so the tests link no CUDA library of their own.
#ifndef DCPKV_TESTS_GPU_GPU_TEST_UTIL_H_
#define DCPKV_TESTS_GPU_GPU_TEST_UTIL_H_

#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <utility>

#include "dcpkv/api/cuda_copy.h"
#include "dcpkv/api/cuda_device.h"
#include "dcpkv/tensor.h"

namespace dcpkv::testing {

inline int GpuCount() {
  StatusOr<int> n = cuda::DeviceCount();
  return n.ok() ? *n : 0;
}

// Why there are fewer than `n` devices, for GTEST_SKIP.
inline std::string WhyNoGpus(int n) {
  StatusOr<int> count = cuda::DeviceCount();
  if (!count.ok()) return "needs a CUDA device: " + count.status().message();
  return "needs " + std::to_string(n) + " CUDA devices; this machine has " + std::to_string(*count);
}

#define DCPKV_REQUIRE_GPUS(n)                         \
  do {                                                \
    if (::dcpkv::testing::GpuCount() < (n)) {         \
      GTEST_SKIP() << ::dcpkv::testing::WhyNoGpus(n); \
    }                                                 \
  } while (0)

// Device memory of one device holding a tensor's bytes; freed on destruction.
class DeviceTensor {
 public:
  // A device copy of host tensor `host` on `device`.
  static DeviceTensor Copy(const Tensor& host, int device) {
    DeviceTensor d(host.dtype(), host.shape(), device);
    if (host.nbytes() > 0) {
      Status s = cuda::CopyToDeviceSync(device, d.ptr_, host.data(), host.nbytes());
      EXPECT_TRUE(s.ok()) << s;
    }
    return d;
  }
  // A tensor of `fill` bytes on `device`, to load into.
  static DeviceTensor Filled(DType dtype, Shape shape, int device, uint8_t fill = 0) {
    Tensor host = Tensor::Allocate(dtype, std::move(shape));
    if (host.nbytes() > 0) std::memset(host.data(), fill, host.nbytes());
    return Copy(host, device);
  }

  DeviceTensor(DeviceTensor&& o) noexcept
      : dtype_(o.dtype_),
        shape_(std::move(o.shape_)),
        device_(o.device_),
        ptr_(std::exchange(o.ptr_, nullptr)) {}
  DeviceTensor& operator=(DeviceTensor&&) = delete;
  ~DeviceTensor() { cuda::DeviceFree(device_, ptr_); }

  Tensor view() const { return Tensor::WrapCuda(dtype_, shape_, ptr_, device_); }
  // The bytes now on the device, as a host tensor.
  Tensor ToHost() const {
    Tensor host = Tensor::Allocate(dtype_, shape_);
    if (host.nbytes() > 0) {
      Status s = cuda::CopyToHostSync(device_, host.data(), ptr_, host.nbytes());
      EXPECT_TRUE(s.ok()) << s;
    }
    return host;
  }

 private:
  DeviceTensor(DType dtype, Shape shape, int device)
      : dtype_(dtype), shape_(std::move(shape)), device_(device) {
    const uint64_t bytes = Tensor::Wrap(dtype_, shape_, nullptr).nbytes();
    StatusOr<void*> p = cuda::DeviceMalloc(device, bytes == 0 ? 1 : bytes);
    EXPECT_TRUE(p.ok()) << p.status();
    ptr_ = p.ok() ? *p : nullptr;
  }

  DType dtype_;
  Shape shape_;
  int device_;
  void* ptr_ = nullptr;
};

}  // namespace dcpkv::testing

#endif  // DCPKV_TESTS_GPU_GPU_TEST_UTIL_H_

// Which CUDA devices this process can use, with errors that say why not. Not installed: api/ and
// its tests only.
//
// Every function tolerates a build without CUDA and a machine without a GPU or driver: it
// answers with FAILED_PRECONDITION (never aborts), naming the CUDA call and its message, e.g.
//   tensor "w" is on cuda:0 but no CUDA device is available: cudaGetDeviceCount: CUDA driver
//   version is insufficient for CUDA runtime version (cudaErrorInsufficientDriver)
#ifndef DCPKV_API_CUDA_DEVICE_H_
#define DCPKV_API_CUDA_DEVICE_H_

#include <string>
#include <string_view>

#include "dcpkv/status.h"
#include "dcpkv/tensor.h"

namespace dcpkv::cuda {

// True if this build has the CUDA paths (DCPKV_WITH_CUDA).
bool BuiltWithCuda();

// The number of CUDA devices (at least 1), or FAILED_PRECONDITION saying why there is none
// ("this build of dcpkv has no CUDA support ..." or "no CUDA device is available: ...").
// The answer is computed once per process.
StatusOr<int> DeviceCount();

// OK if `device` is the CPU or a CUDA device this process can use. Otherwise
// FAILED_PRECONDITION: "<what> is on cuda:N but <why>".
Status CheckDevice(const Device& device, std::string_view what);

// For a CUDA tensor (contiguous or a strided view): CheckDevice, then that data() is memory of that
// device (device or managed memory); host memory wrapped as a CUDA tensor is INVALID_ARGUMENT. OK
// for CPU tensors.
Status CheckTensor(const Tensor& tensor, std::string_view what);

// Makes `device` the calling thread's current CUDA device until destroyed, then restores the
// previous one (a no-op without CUDA, and when `device` is current already: the common case of
// a training thread that has set its device). Restoring initializes the previous device's
// context if it had none, so threads that drive a device should make it current first.
class DeviceGuard {
 public:
  explicit DeviceGuard(int device);
  ~DeviceGuard();
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;
  // The outcome of switching devices.
  const Status& status() const { return status_; }

 private:
  [[maybe_unused]] int previous_ = -1;  // unused in a build without CUDA
  Status status_;
};

// "<call>: <message> (<error name>)" for a CUDA error code (an int so that this header needs
// no CUDA headers), as an error with `code`.
Status CudaError(StatusCode code, std::string_view call, int error);

}  // namespace dcpkv::cuda

#endif  // DCPKV_API_CUDA_DEVICE_H_

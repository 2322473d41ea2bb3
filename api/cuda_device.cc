#include "dcpkv/api/cuda_device.h"

#if DCPKV_WITH_CUDA
#include <cuda_runtime_api.h>
#endif

namespace dcpkv::cuda {

#if DCPKV_WITH_CUDA

bool BuiltWithCuda() { return true; }

Status CudaError(StatusCode code, std::string_view call, int error) {
  const auto e = static_cast<cudaError_t>(error);
  return Status(
      code, std::string(call) + ": " + cudaGetErrorString(e) + " (" + cudaGetErrorName(e) + ")");
}

StatusOr<int> DeviceCount() {
  static const StatusOr<int> count = []() -> StatusOr<int> {
    int n = 0;
    // Without a driver this is cudaErrorInsufficientDriver (35); without a GPU
    // cudaErrorNoDevice (100).
    const cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
      cudaGetLastError();  // so that later calls do not report it again
      return FailedPreconditionError(
          "no CUDA device is available: " +
          CudaError(StatusCode::kFailedPrecondition, "cudaGetDeviceCount", e).message());
    }
    if (n <= 0) return FailedPreconditionError("no CUDA device is available");
    return n;
  }();
  return count;
}

DeviceGuard::DeviceGuard(int device) {
  int current = -1;
  cudaError_t e = cudaGetDevice(&current);
  if (e != cudaSuccess) {
    status_ = CudaError(StatusCode::kFailedPrecondition, "cudaGetDevice", e);
    return;
  }
  if (current == device) return;
  e = cudaSetDevice(device);
  if (e != cudaSuccess) {
    status_ = CudaError(StatusCode::kFailedPrecondition,
                        "cudaSetDevice(" + std::to_string(device) + ")", e);
    return;
  }
  previous_ = current;
}

DeviceGuard::~DeviceGuard() {
  if (previous_ >= 0) cudaSetDevice(previous_);
}

Status CheckTensor(const Tensor& tensor, std::string_view what) {
  DCPKV_RETURN_IF_ERROR(CheckDevice(tensor.device(), what));
  if (!tensor.is_cuda() || tensor.data() == nullptr) return Status::Ok();
  cudaPointerAttributes attributes{};
  const cudaError_t e = cudaPointerGetAttributes(&attributes, tensor.data());
  if (e != cudaSuccess) {
    cudaGetLastError();
    return InvalidArgumentError(
        std::string(what) + " is on " + tensor.device().ToString() +
        " but its data pointer is not CUDA memory: " +
        CudaError(StatusCode::kInvalidArgument, "cudaPointerGetAttributes", e).message());
  }
  const bool device_memory =
      attributes.type == cudaMemoryTypeDevice || attributes.type == cudaMemoryTypeManaged;
  if (!device_memory) {
    return InvalidArgumentError(std::string(what) + " is on " + tensor.device().ToString() +
                                " but its data pointer is host memory");
  }
  if (attributes.type == cudaMemoryTypeDevice && attributes.device != tensor.device().index) {
    return InvalidArgumentError(
        std::string(what) + " is on " + tensor.device().ToString() +
        " but its data pointer is memory of cuda:" + std::to_string(attributes.device));
  }
  return Status::Ok();
}

#else  // no CUDA in this build

bool BuiltWithCuda() { return false; }

Status CudaError(StatusCode code, std::string_view call, int error) {
  return Status(code, std::string(call) + ": CUDA error " + std::to_string(error));
}

StatusOr<int> DeviceCount() {
  return FailedPreconditionError(
      "this build of dcpkv has no CUDA support (configure with the CUDA toolkit and "
      "DCPKV_WITH_CUDA=ON)");
}

DeviceGuard::DeviceGuard(int device) {}
DeviceGuard::~DeviceGuard() {}

Status CheckTensor(const Tensor& tensor, std::string_view what) {
  return CheckDevice(tensor.device(), what);
}

#endif

Status CheckDevice(const Device& device, std::string_view what) {
  if (!device.is_cuda()) return Status::Ok();
  const std::string where = std::string(what) + " is on " + device.ToString() + " but ";
  if (device.index < 0) return InvalidArgumentError(where + "a CUDA device index is not negative");
  StatusOr<int> count = DeviceCount();
  if (!count.ok()) return FailedPreconditionError(where + std::string(count.status().message()));
  if (device.index >= *count) {
    return FailedPreconditionError(where + "this process sees " + std::to_string(*count) +
                                   " CUDA device" + (*count == 1 ? "" : "s"));
  }
  return Status::Ok();
}

}  // namespace dcpkv::cuda

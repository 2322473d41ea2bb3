#include "dcpkv/api/cuda_copy.h"

#include <cstdint>
#include <utility>

#include "dcpkv/api/cuda_device.h"

#if DCPKV_WITH_CUDA
#include <cuda_runtime_api.h>
#endif

namespace dcpkv::cuda {

Event::~Event() { Reset(); }

Event::Event(Event&& other) noexcept
    : event_(std::exchange(other.event_, nullptr)), device_(other.device_) {}

Event& Event::operator=(Event&& other) noexcept {
  if (this != &other) {
    Reset();
    event_ = std::exchange(other.event_, nullptr);
    device_ = other.device_;
  }
  return *this;
}

Status CopyStream::CopyPitchedToHost(void* host_base, const void* device_base,
                                     const std::vector<PitchedCopy>& copies) {
  return CopyPitched(host_base, device_base, copies, /*to_device=*/false);
}

Status CopyStream::CopyPitchedToDevice(void* device_base, const void* host_base,
                                       const std::vector<PitchedCopy>& copies) {
  return CopyPitched(device_base, host_base, copies, /*to_device=*/true);
}

#if DCPKV_WITH_CUDA

namespace {

cudaStream_t AsStream(void* p) { return static_cast<cudaStream_t>(p); }
cudaEvent_t AsEvent(void* p) { return static_cast<cudaEvent_t>(p); }

Status Check(cudaError_t e, std::string_view call) {
  if (e == cudaSuccess) return Status::Ok();
  cudaGetLastError();
  return CudaError(
      e == cudaErrorMemoryAllocation ? StatusCode::kResourceExhausted : StatusCode::kInternal, call,
      e);
}

}  // namespace

void Event::Reset() {
  if (event_ == nullptr) return;
  DeviceGuard guard(device_);
  cudaEventDestroy(AsEvent(event_));
  event_ = nullptr;
}

Status Event::Wait() {
  if (event_ == nullptr) return Status::Ok();
  DeviceGuard guard(device_);
  DCPKV_RETURN_IF_ERROR(guard.status());
  return Check(cudaEventSynchronize(AsEvent(event_)), "cudaEventSynchronize");
}

StatusOr<bool> Event::Done() {
  if (event_ == nullptr) return true;
  DeviceGuard guard(device_);
  DCPKV_RETURN_IF_ERROR(guard.status());
  const cudaError_t e = cudaEventQuery(AsEvent(event_));
  if (e == cudaErrorNotReady) return false;
  DCPKV_RETURN_IF_ERROR(Check(e, "cudaEventQuery"));
  return true;
}

StatusOr<std::unique_ptr<CopyStream>> CopyStream::Create(int device) {
  DCPKV_RETURN_IF_ERROR(CheckDevice(Device::Cuda(device), "a copy stream"));
  DeviceGuard guard(device);
  DCPKV_RETURN_IF_ERROR(guard.status());
  cudaStream_t stream = nullptr;
  DCPKV_RETURN_IF_ERROR(
      Check(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), "cudaStreamCreate"));
  cudaEvent_t start = nullptr;
  Status s = Check(cudaEventCreateWithFlags(&start, cudaEventDisableTiming), "cudaEventCreate");
  if (!s.ok()) {
    cudaStreamDestroy(stream);
    return s;
  }
  return std::unique_ptr<CopyStream>(new CopyStream(stream, start, device));
}

CopyStream::~CopyStream() {
  DeviceGuard guard(device_);
  cudaStreamSynchronize(AsStream(stream_));
  cudaEventDestroy(AsEvent(default_done_));
  cudaStreamDestroy(AsStream(stream_));
}

Status CopyStream::WaitForDefaultStream() {
  DeviceGuard guard(device_);
  DCPKV_RETURN_IF_ERROR(guard.status());
  DCPKV_RETURN_IF_ERROR(
      Check(cudaEventRecord(AsEvent(default_done_), cudaStreamLegacy), "cudaEventRecord"));
  return Check(cudaStreamWaitEvent(AsStream(stream_), AsEvent(default_done_), 0),
               "cudaStreamWaitEvent");
}

Status CopyStream::CopyToHost(void* host, const void* device_ptr, size_t bytes) {
  if (bytes == 0) return Status::Ok();
  DeviceGuard guard(device_);
  DCPKV_RETURN_IF_ERROR(guard.status());
  return Check(cudaMemcpyAsync(host, device_ptr, bytes, cudaMemcpyDeviceToHost, AsStream(stream_)),
               "cudaMemcpyAsync (device to host)");
}

Status CopyStream::CopyToDevice(void* device_ptr, const void* host, size_t bytes) {
  if (bytes == 0) return Status::Ok();
  DeviceGuard guard(device_);
  DCPKV_RETURN_IF_ERROR(guard.status());
  return Check(cudaMemcpyAsync(device_ptr, host, bytes, cudaMemcpyHostToDevice, AsStream(stream_)),
               "cudaMemcpyAsync (host to device)");
}

Status CopyStream::CopyPitched(void* dst_base, const void* src_base,
                               const std::vector<PitchedCopy>& copies, bool to_device) {
  if (copies.empty()) return Status::Ok();
  DeviceGuard guard(device_);
  DCPKV_RETURN_IF_ERROR(guard.status());
  const cudaMemcpyKind kind = to_device ? cudaMemcpyHostToDevice : cudaMemcpyDeviceToHost;
  auto* dst = static_cast<uint8_t*>(dst_base);
  const auto* src = static_cast<const uint8_t*>(src_base);
  // cudaMemcpy2D takes pitches up to the device's maximum pitch (cudaDevAttrMaxPitch, 2^31 - 1
  // on current devices); copies with larger pitches are made a row at a time.
  constexpr uint64_t kMaxPitch = (uint64_t{1} << 31) - 1;
  for (const PitchedCopy& c : copies) {
    if (c.width == 0 || c.rows == 0) continue;
    if (c.rows > 1 && (c.src_pitch > kMaxPitch || c.dst_pitch > kMaxPitch)) {
      std::vector<PitchedCopy> rows;
      for (uint64_t r = 0; r < c.rows; ++r) {
        rows.push_back(
            {c.src_offset + r * c.src_pitch, c.dst_offset + r * c.dst_pitch, 0, 0, c.width, 1});
      }
      DCPKV_RETURN_IF_ERROR(CopyPitched(dst_base, src_base, rows, to_device));
      continue;
    }
    if (c.rows == 1) {
      DCPKV_RETURN_IF_ERROR(Check(
          cudaMemcpyAsync(dst + c.dst_offset, src + c.src_offset, c.width, kind, AsStream(stream_)),
          to_device ? "cudaMemcpyAsync (host to device)" : "cudaMemcpyAsync (device to host)"));
    } else {
      DCPKV_RETURN_IF_ERROR(Check(
          cudaMemcpy2DAsync(dst + c.dst_offset, c.dst_pitch, src + c.src_offset, c.src_pitch,
                            c.width, c.rows, kind, AsStream(stream_)),
          to_device ? "cudaMemcpy2DAsync (host to device)" : "cudaMemcpy2DAsync (device to host)"));
    }
  }
  return Status::Ok();
}

StatusOr<Event> CopyStream::Record() {
  DeviceGuard guard(device_);
  DCPKV_RETURN_IF_ERROR(guard.status());
  cudaEvent_t e = nullptr;
  DCPKV_RETURN_IF_ERROR(
      Check(cudaEventCreateWithFlags(&e, cudaEventDisableTiming), "cudaEventCreate"));
  Event event(e, device_);
  DCPKV_RETURN_IF_ERROR(Check(cudaEventRecord(e, AsStream(stream_)), "cudaEventRecord"));
  return event;
}

Status CopyStream::Synchronize() {
  DeviceGuard guard(device_);
  DCPKV_RETURN_IF_ERROR(guard.status());
  return Check(cudaStreamSynchronize(AsStream(stream_)), "cudaStreamSynchronize");
}

StatusOr<void*> DeviceMalloc(int device, size_t bytes) {
  DCPKV_RETURN_IF_ERROR(CheckDevice(Device::Cuda(device), "DeviceMalloc"));
  DeviceGuard guard(device);
  DCPKV_RETURN_IF_ERROR(guard.status());
  void* p = nullptr;
  DCPKV_RETURN_IF_ERROR(Check(cudaMalloc(&p, bytes), "cudaMalloc"));
  return p;
}

void DeviceFree(int device, void* device_ptr) {
  if (device_ptr == nullptr) return;
  DeviceGuard guard(device);
  cudaFree(device_ptr);
}

Status CopyToDeviceSync(int device, void* device_ptr, const void* host, size_t bytes) {
  DeviceGuard guard(device);
  DCPKV_RETURN_IF_ERROR(guard.status());
  return Check(cudaMemcpy(device_ptr, host, bytes, cudaMemcpyHostToDevice), "cudaMemcpy");
}

Status CopyToHostSync(int device, void* host, const void* device_ptr, size_t bytes) {
  DeviceGuard guard(device);
  DCPKV_RETURN_IF_ERROR(guard.status());
  return Check(cudaMemcpy(host, device_ptr, bytes, cudaMemcpyDeviceToHost), "cudaMemcpy");
}

#else  // no CUDA in this build: nothing can be created, so the members are never reached

void Event::Reset() { event_ = nullptr; }
Status Event::Wait() { return Status::Ok(); }
StatusOr<bool> Event::Done() { return true; }

StatusOr<std::unique_ptr<CopyStream>> CopyStream::Create(int device) {
  DCPKV_RETURN_IF_ERROR(CheckDevice(Device::Cuda(device), "a copy stream"));
  return InternalError("CopyStream without CUDA");
}

CopyStream::~CopyStream() {}
Status CopyStream::WaitForDefaultStream() { return DeviceCount().status(); }
Status CopyStream::CopyToHost(void*, const void*, size_t) { return DeviceCount().status(); }
Status CopyStream::CopyToDevice(void*, const void*, size_t) { return DeviceCount().status(); }
Status CopyStream::CopyPitched(void*, const void*, const std::vector<PitchedCopy>&, bool) {
  return DeviceCount().status();
}
StatusOr<Event> CopyStream::Record() { return DeviceCount().status(); }
Status CopyStream::Synchronize() { return DeviceCount().status(); }

StatusOr<void*> DeviceMalloc(int device, size_t) {
  DCPKV_RETURN_IF_ERROR(CheckDevice(Device::Cuda(device), "DeviceMalloc"));
  return InternalError("DeviceMalloc without CUDA");
}
void DeviceFree(int, void*) {}
Status CopyToDeviceSync(int, void*, const void*, size_t) { return DeviceCount().status(); }
Status CopyToHostSync(int, void*, const void*, size_t) { return DeviceCount().status(); }

#endif

}  // namespace dcpkv::cuda

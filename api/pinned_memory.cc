#include "pinned_memory.h"

#if DCPKV_WITH_CUDA
#include <cuda_runtime_api.h>
#endif

namespace dcpkv {

#if DCPKV_WITH_CUDA

bool PinnedMemoryAvailable() {
  static const bool available = [] {
    int devices = 0;
    // Without a GPU driver this returns cudaErrorInsufficientDriver (35): no pinned memory.
    return cudaGetDeviceCount(&devices) == cudaSuccess && devices > 0;
  }();
  return available;
}

void* AllocatePinned(size_t bytes) {
  if (!PinnedMemoryAvailable()) return nullptr;
  void* p = nullptr;
  return cudaHostAlloc(&p, bytes, cudaHostAllocDefault) == cudaSuccess ? p : nullptr;
}

void FreePinned(void* p) { cudaFreeHost(p); }

bool RegisterPinned(void* p, size_t bytes) {
  return PinnedMemoryAvailable() &&
         cudaHostRegister(p, bytes, cudaHostRegisterDefault) == cudaSuccess;
}

void UnregisterPinned(void* p) { cudaHostUnregister(p); }

#else  // no CUDA in this build

bool PinnedMemoryAvailable() { return false; }
void* AllocatePinned(size_t) { return nullptr; }
void FreePinned(void*) {}
bool RegisterPinned(void*, size_t) { return false; }
void UnregisterPinned(void*) {}

#endif

}  // namespace dcpkv

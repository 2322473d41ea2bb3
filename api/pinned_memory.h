// Page-locked host memory for staging, when CUDA and a GPU are present. Internal to api/.
#ifndef DCPKV_API_PINNED_MEMORY_H_
#define DCPKV_API_PINNED_MEMORY_H_

#include <cstddef>

namespace dcpkv {

// True if this build has CUDA and the machine has a usable GPU (cudaGetDeviceCount succeeds
// with at least one device). Without a driver it returns false; it never aborts.
bool PinnedMemoryAvailable();

// `bytes` of page-locked memory, or nullptr if not available.
void* AllocatePinned(size_t bytes);
void FreePinned(void* p);

// Page-locks existing memory (e.g. a shared mapping); false if not available.
bool RegisterPinned(void* p, size_t bytes);
void UnregisterPinned(void* p);

}  // namespace dcpkv

#endif  // DCPKV_API_PINNED_MEMORY_H_

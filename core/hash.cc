#include "dcpkv/core/hash.h"

#include <cstdio>

#if defined(__x86_64__)
// Debian's libxxhash picks the widest vector unit of the machine it runs on (SSE2, AVX2 or
// AVX-512) at the first call; XXH3 built into this library could only assume the x86-64
// baseline, SSE2, at half the speed or less on the large chunks every save and load hashes.
#include <xxh_x86dispatch.h>
#define DCPKV_XXH3_128 XXH3_128bits_dispatch
#else
#include <xxhash.h>
#define DCPKV_XXH3_128 XXH3_128bits
#endif

namespace dcpkv {

Hash128 HashBytes(const void* data, size_t size) {
  XXH128_hash_t h = DCPKV_XXH3_128(data, size);
  return Hash128{h.low64, h.high64};
}

std::string HashToHex(const Hash128& h) {
  char buf[33];
  std::snprintf(buf, sizeof(buf), "%016llx%016llx", static_cast<unsigned long long>(h.hi),
                static_cast<unsigned long long>(h.lo));
  return buf;
}

}  // namespace dcpkv

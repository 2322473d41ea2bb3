// Content hashes used for payload checksums (and, later, for content-addressed chunk reuse).
#ifndef DCPKV_CORE_HASH_H_
#define DCPKV_CORE_HASH_H_

#include <cstddef>
#include <cstdint>
#include <string>

namespace dcpkv {

// An XXH3-128 hash. 128 bits so that a false match between different contents is not a
// practical risk even across billions of chunks.
struct Hash128 {
  uint64_t lo = 0;
  uint64_t hi = 0;

  friend bool operator==(const Hash128& a, const Hash128& b) {
    return a.lo == b.lo && a.hi == b.hi;
  }
  friend bool operator!=(const Hash128& a, const Hash128& b) { return !(a == b); }
};

// XXH3-128 (seed 0) of `size` bytes at `data`. Thread-safe.
Hash128 HashBytes(const void* data, size_t size);

// 32 lower-case hex digits, hi first (the canonical XXH128 representation).
std::string HashToHex(const Hash128& h);

}  // namespace dcpkv

#endif  // DCPKV_CORE_HASH_H_

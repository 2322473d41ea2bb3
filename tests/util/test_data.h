// Deterministic test payloads.
#ifndef DCPKV_TESTS_UTIL_TEST_DATA_H_
#define DCPKV_TESTS_UTIL_TEST_DATA_H_

#include <cstdint>
#include <vector>

namespace dcpkv::testing {

// `size` pseudo-random bytes from a 64-bit seed (splitmix64), identical on every run.
inline std::vector<uint8_t> RandomBytes(size_t size, uint64_t seed) {
  std::vector<uint8_t> out(size);
  uint64_t x = seed;
  size_t i = 0;
  while (i < size) {
    x += 0x9E3779B97F4A7C15ull;
    uint64_t z = x;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    for (int b = 0; b < 8 && i < size; ++b, ++i) out[i] = static_cast<uint8_t>(z >> (8 * b));
  }
  return out;
}

}  // namespace dcpkv::testing

#endif  // DCPKV_TESTS_UTIL_TEST_DATA_H_

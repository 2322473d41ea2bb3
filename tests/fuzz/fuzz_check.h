// Invariant checks of the fuzzers: a broken invariant is a crash, so that libFuzzer keeps the
// input that broke it (crash-<sha1> in its artifact directory).
#ifndef DCPKV_TESTS_FUZZ_FUZZ_CHECK_H_
#define DCPKV_TESTS_FUZZ_FUZZ_CHECK_H_

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string_view>

#include "dcpkv/status.h"

// Aborts naming the condition and where it is, if `cond` is false.
#define DCPKV_FUZZ_CHECK(cond)                                                               \
  do {                                                                                       \
    if (!(cond)) {                                                                           \
      std::fprintf(stderr, "%s:%d: fuzz invariant broken: %s\n", __FILE__, __LINE__, #cond); \
      std::abort();                                                                          \
    }                                                                                        \
  } while (0)

namespace dcpkv::fuzzing {

// Aborts printing `status` unless it has `code`.
inline void CheckCode(const Status& status, StatusCode code, const char* what) {
  if (status.code() != code) {
    std::fprintf(stderr, "fuzz invariant broken: %s returned %s\n", what,
                 status.ToString().c_str());
    std::abort();
  }
}

// A copy of some bytes in a heap block of exactly their size (so that ASan sees any read past
// the end) that starts 16-byte aligned, as malloc's blocks do (FlatBuffers reads 8-byte scalars
// in place).
class AlignedBytes {
 public:
  explicit AlignedBytes(std::string_view bytes)
      : data_(static_cast<char*>(std::malloc(bytes.empty() ? 1 : bytes.size()))),
        size_(bytes.size()) {
    if (data_ == nullptr) std::abort();
    if (size_ > 0) std::memcpy(data_, bytes.data(), size_);
  }
  ~AlignedBytes() { std::free(data_); }
  AlignedBytes(const AlignedBytes&) = delete;
  AlignedBytes& operator=(const AlignedBytes&) = delete;

  std::string_view view() const { return std::string_view(data_, size_); }

 private:
  char* const data_;
  const size_t size_;
};

inline std::string_view AsView(const uint8_t* data, size_t size) {
  return std::string_view(reinterpret_cast<const char*>(data), size);
}

}  // namespace dcpkv::fuzzing

#endif  // DCPKV_TESTS_FUZZ_FUZZ_CHECK_H_

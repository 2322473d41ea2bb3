// Fixed-width integers on the wire and on disk: the one place their byte order is written.
//
// Little-endian is the order of every message and file header dcpkv defines (protocol messages,
// the TCP rendezvous store, NCCL framing); big-endian is used only where byte order must sort
// like the number (the offsets inside storage keys, docs/format.md). Readers take a pointer to at
// least sizeof(T) bytes: bounds are the caller's to check.
#ifndef DCPKV_CORE_WIRE_H_
#define DCPKV_CORE_WIRE_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <type_traits>

namespace dcpkv::wire {

template <typename T>
inline void AppendLittleEndian(std::string* out, T v) {
  static_assert(std::is_unsigned_v<T>);
  for (size_t i = 0; i < sizeof(T); ++i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
}

template <typename T>
inline T ReadLittleEndian(const char* p) {
  static_assert(std::is_unsigned_v<T>);
  T v = 0;
  for (size_t i = 0; i < sizeof(T); ++i) v |= T{static_cast<uint8_t>(p[i])} << (8 * i);
  return v;
}

template <typename T>
inline void AppendBigEndian(std::string* out, T v) {
  static_assert(std::is_unsigned_v<T>);
  for (size_t i = sizeof(T); i-- > 0;) out->push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
}

template <typename T>
inline T ReadBigEndian(const char* p) {
  static_assert(std::is_unsigned_v<T>);
  T v = 0;
  for (size_t i = 0; i < sizeof(T); ++i) v = static_cast<T>(v << 8) | static_cast<uint8_t>(p[i]);
  return v;
}

}  // namespace dcpkv::wire

#endif  // DCPKV_CORE_WIRE_H_

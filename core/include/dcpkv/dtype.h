// Element types of tensors that dcpkv stores.
//
// The numeric value of each DType is written into every stored chunk and manifest:
// DO NOT CHANGE existing values; append new ones only.
#ifndef DCPKV_DTYPE_H_
#define DCPKV_DTYPE_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

#include "dcpkv/export.h"

namespace dcpkv {

enum class DType : uint8_t {
  kFloat64 = 1,
  kFloat32 = 2,
  kFloat16 = 3,
  kBFloat16 = 4,
  kInt8 = 5,
  kInt16 = 6,
  kInt32 = 7,
  kInt64 = 8,
  kUInt8 = 9,
  kBool = 10,
  kFloat8E4M3 = 11,  // torch.float8_e4m3fn
  kFloat8E5M2 = 12,  // torch.float8_e5m2
  // Opaque bytes entries (step counters, RNG state, configs). Element size 1.
  kBytes = 13,
  // Appended for the rest of torch's dtypes that DLPack can carry.
  kComplex64 = 14,   // torch.complex64: two float32
  kComplex128 = 15,  // torch.complex128: two float64
  kUInt16 = 16,
  kUInt32 = 17,
  kUInt64 = 18,
  kFloat8E4M3Fnuz = 19,  // torch.float8_e4m3fnuz
  kFloat8E5M2Fnuz = 20,  // torch.float8_e5m2fnuz
  kFloat8E8M0 = 21,      // torch.float8_e8m0fnu: an exponent only
  kComplex32 = 22,       // torch.complex32: two float16
};

// Every valid DType, in numeric order.
inline constexpr DType kAllDTypes[] = {
    DType::kFloat64,    DType::kFloat32,   DType::kFloat16,        DType::kBFloat16,
    DType::kInt8,       DType::kInt16,     DType::kInt32,          DType::kInt64,
    DType::kUInt8,      DType::kBool,      DType::kFloat8E4M3,     DType::kFloat8E5M2,
    DType::kBytes,      DType::kComplex64, DType::kComplex128,     DType::kUInt16,
    DType::kUInt32,     DType::kUInt64,    DType::kFloat8E4M3Fnuz, DType::kFloat8E5M2Fnuz,
    DType::kFloat8E8M0, DType::kComplex32};

// True for the complex dtypes (their elements are pairs: real, imaginary).
inline constexpr bool IsComplex(DType dtype) {
  return dtype == DType::kComplex32 || dtype == DType::kComplex64 || dtype == DType::kComplex128;
}

// Size of one element in bytes; 0 for a value that is not a valid DType.
DCPKV_EXPORT size_t ElementSize(DType dtype);

// True if `raw` is the numeric value of a valid DType.
DCPKV_EXPORT bool IsValidDType(uint8_t raw);

// Short lower-case name as PyTorch spells it ("float32", "bfloat16", "float8_e4m3fn", "bytes").
DCPKV_EXPORT std::string_view DTypeName(DType dtype);

// Inverse of DTypeName; nullopt for an unknown name.
DCPKV_EXPORT std::optional<DType> DTypeFromName(std::string_view name);

}  // namespace dcpkv

#endif  // DCPKV_DTYPE_H_

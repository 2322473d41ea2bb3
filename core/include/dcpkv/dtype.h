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
};

// Every valid DType, in numeric order.
inline constexpr DType kAllDTypes[] = {
    DType::kFloat64,    DType::kFloat32,    DType::kFloat16, DType::kBFloat16, DType::kInt8,
    DType::kInt16,      DType::kInt32,      DType::kInt64,   DType::kUInt8,    DType::kBool,
    DType::kFloat8E4M3, DType::kFloat8E5M2, DType::kBytes};

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

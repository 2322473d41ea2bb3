#include "dcpkv/inspect/values.h"

#include <cmath>
#include <cstring>
#include <limits>

namespace dcpkv::inspect {
namespace {

template <typename T>
T Load(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

// A minifloat with `exp_bits` exponent bits and `mant_bits` mantissa bits (IEEE-style bias,
// subnormals). `ieee_specials`: an all-ones exponent means infinity/NaN (else handled by caller).
double MiniFloat(uint32_t bits, int exp_bits, int mant_bits, bool ieee_specials) {
  const bool negative = (bits >> (exp_bits + mant_bits)) & 1;
  const uint32_t exp = (bits >> mant_bits) & ((1u << exp_bits) - 1);
  const uint32_t mant = bits & ((1u << mant_bits) - 1);
  const int bias = (1 << (exp_bits - 1)) - 1;
  double v;
  if (ieee_specials && exp == (1u << exp_bits) - 1) {
    v = mant == 0 ? std::numeric_limits<double>::infinity()
                  : std::numeric_limits<double>::quiet_NaN();
  } else if (exp == 0) {
    v = std::ldexp(static_cast<double>(mant), 1 - bias - mant_bits);
  } else {
    v = std::ldexp(static_cast<double>(mant | (1u << mant_bits)),
                   static_cast<int>(exp) - bias - mant_bits);
  }
  return negative ? -v : v;
}

}  // namespace

double HalfToDouble(uint16_t bits) { return MiniFloat(bits, 5, 10, true); }

double BFloat16ToDouble(uint16_t bits) {
  const uint32_t f32 = uint32_t{bits} << 16;
  float f;
  std::memcpy(&f, &f32, sizeof(f));
  return f;
}

double Float8E4M3ToDouble(uint8_t bits) {
  if ((bits & 0x7F) == 0x7F) return std::numeric_limits<double>::quiet_NaN();
  return MiniFloat(bits, 4, 3, false);
}

double Float8E5M2ToDouble(uint8_t bits) { return MiniFloat(bits, 5, 2, true); }

// The fnuz formats: one more of exponent bias than their fn/IEEE siblings (so every value is
// half theirs), no infinities, no negative zero: 0x80 is the only NaN.
double Float8E4M3FnuzToDouble(uint8_t bits) {
  if (bits == 0x80) return std::numeric_limits<double>::quiet_NaN();
  return MiniFloat(bits, 4, 3, false) / 2;
}

double Float8E5M2FnuzToDouble(uint8_t bits) {
  if (bits == 0x80) return std::numeric_limits<double>::quiet_NaN();
  return MiniFloat(bits, 5, 2, false) / 2;
}

double Float8E8M0ToDouble(uint8_t bits) {
  if (bits == 0xFF) return std::numeric_limits<double>::quiet_NaN();
  return std::ldexp(1.0, static_cast<int>(bits) - 127);
}

double ElementToDouble(DType dtype, const uint8_t* p) {
  switch (dtype) {
    case DType::kFloat64: return Load<double>(p);
    case DType::kFloat32: return Load<float>(p);
    case DType::kFloat16: return HalfToDouble(Load<uint16_t>(p));
    case DType::kBFloat16: return BFloat16ToDouble(Load<uint16_t>(p));
    case DType::kInt8: return Load<int8_t>(p);
    case DType::kInt16: return Load<int16_t>(p);
    case DType::kInt32: return Load<int32_t>(p);
    case DType::kInt64: return static_cast<double>(Load<int64_t>(p));
    case DType::kUInt8: return *p;
    case DType::kBool: return *p != 0 ? 1.0 : 0.0;
    case DType::kFloat8E4M3: return Float8E4M3ToDouble(*p);
    case DType::kFloat8E5M2: return Float8E5M2ToDouble(*p);
    case DType::kBytes: return *p;
    case DType::kUInt16: return Load<uint16_t>(p);
    case DType::kUInt32: return Load<uint32_t>(p);
    case DType::kUInt64: return static_cast<double>(Load<uint64_t>(p));
    case DType::kFloat8E4M3Fnuz: return Float8E4M3FnuzToDouble(*p);
    case DType::kFloat8E5M2Fnuz: return Float8E5M2FnuzToDouble(*p);
    case DType::kFloat8E8M0: return Float8E8M0ToDouble(*p);
    case DType::kComplex32:
    case DType::kComplex64:
    case DType::kComplex128: break;  // not one real number
  }
  return std::numeric_limits<double>::quiet_NaN();
}

void ElementsToDouble(DType dtype, const uint8_t* data, size_t n, double* out) {
  const size_t size = ElementSize(dtype);
  switch (dtype) {  // the common wide types without a per-element switch
    case DType::kFloat32:
      for (size_t i = 0; i < n; ++i) out[i] = Load<float>(data + i * 4);
      return;
    case DType::kFloat64: std::memcpy(out, data, n * sizeof(double)); return;
    default:
      for (size_t i = 0; i < n; ++i) out[i] = ElementToDouble(dtype, data + i * size);
  }
}

}  // namespace dcpkv::inspect

// Element values of every dtype as doubles, for statistics and comparisons.
//
// float16, bfloat16 and the float8 types are decoded exactly (every value of these types is a
// double); int64 and uint64 values beyond 2^53 are rounded to the nearest double; bool is 0 or
// 1; a complex element is not one real number: NaN (statistics skip it, diff compares bytes).
#ifndef DCPKV_INSPECT_VALUES_H_
#define DCPKV_INSPECT_VALUES_H_

#include <cstddef>
#include <cstdint>

#include "dcpkv/dtype.h"

namespace dcpkv::inspect {

// The value of the element at `p` (ElementSize(dtype) bytes, little-endian, any alignment).
// REQUIRES: dtype is a valid numeric dtype (not kBytes). NaN for a complex dtype.
double ElementToDouble(DType dtype, const uint8_t* p);

// ElementToDouble for `n` consecutive elements.
void ElementsToDouble(DType dtype, const uint8_t* data, size_t n, double* out);

double HalfToDouble(uint16_t bits);
double BFloat16ToDouble(uint16_t bits);
double Float8E4M3ToDouble(uint8_t bits);  // float8_e4m3fn: no infinities, 0x7F/0xFF are NaN
double Float8E5M2ToDouble(uint8_t bits);
double Float8E4M3FnuzToDouble(uint8_t bits);  // 0x80 is NaN, no infinities
double Float8E5M2FnuzToDouble(uint8_t bits);  // 0x80 is NaN, no infinities
double Float8E8M0ToDouble(uint8_t bits);      // 2^(bits - 127); 0xFF is NaN

}  // namespace dcpkv::inspect

#endif  // DCPKV_INSPECT_VALUES_H_

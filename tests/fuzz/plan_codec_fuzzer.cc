// Fuzzes the plan wire decoders (core/include/dcpkv/core/plan_codec.h): SavePlans, LoadPlans, write results and
// Statuses as another rank might send them.
//
// Invariants: bytes that fail to decode are DATA_LOSS (and DecodeStatus leaves its output
// alone); every value has exactly one encoding, so bytes that decode re-encode to exactly
// themselves, and HashSavePlan of a decoded SavePlan is the hash of its bytes.
#include <cstdint>
#include <string>
#include <type_traits>
#include <vector>

#include "dcpkv/core/hash.h"
#include "dcpkv/core/plan_codec.h"
#include "tests/fuzz/fuzz_check.h"

namespace dcpkv {
namespace {

using fuzzing::AlignedBytes;
using fuzzing::CheckCode;

// Decodes `bytes` with `decode`; if that succeeds, checks that `encode` gives them back.
template <typename T, typename Decode, typename Encode>
void CheckRoundTrip(std::string_view bytes, Decode decode, Encode encode, const char* what) {
  StatusOr<T> decoded = decode(bytes);
  if (!decoded.ok()) {
    CheckCode(decoded.status(), StatusCode::kDataLoss, what);
    return;
  }
  DCPKV_FUZZ_CHECK(encode(*decoded) == bytes);
  if constexpr (std::is_same_v<T, SavePlan>) {
    DCPKV_FUZZ_CHECK(HashSavePlan(*decoded) == HashBytes(bytes.data(), bytes.size()).lo);
  }
}

void FuzzPlans(std::string_view input) {
  const AlignedBytes copy(input);
  const std::string_view bytes = copy.view();
  CheckRoundTrip<SavePlan>(bytes, DecodeSavePlan, EncodeSavePlan, "DecodeSavePlan");
  CheckRoundTrip<LoadPlan>(bytes, DecodeLoadPlan, EncodeLoadPlan, "DecodeLoadPlan");
  CheckRoundTrip<std::vector<WriteResult>>(bytes, DecodeWriteResults, EncodeWriteResults,
                                           "DecodeWriteResults");

  const Status sentinel = AbortedError("untouched");
  Status out = sentinel;
  Status decoded = DecodeStatus(bytes, &out);
  if (!decoded.ok()) {
    CheckCode(decoded, StatusCode::kDataLoss, "DecodeStatus");
    DCPKV_FUZZ_CHECK(out == sentinel);
    return;
  }
  DCPKV_FUZZ_CHECK(EncodeStatus(out) == bytes);
}

}  // namespace
}  // namespace dcpkv

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  dcpkv::FuzzPlans(dcpkv::fuzzing::AsView(data, size));
  return 0;
}

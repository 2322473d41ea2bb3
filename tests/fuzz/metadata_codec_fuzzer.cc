// Fuzzes DecodeMetadata (core/include/dcpkv/core/metadata_codec.h): the manifest payloads a
// load, the tools and a replica decode.
//
// Invariants: an encoding that fails to decode is DATA_LOSS; alignment does not change the
// outcome (an unaligned copy decodes to the same result); what decodes passes
// ValidateMetadata, and re-encoding it gives bytes that decode to an equal Metadata and re-encode
// to the same bytes.
#include <cstdint>
#include <string>

#include "dcpkv/core/metadata_codec.h"
#include "tests/fuzz/fuzz_check.h"

namespace dcpkv {
namespace {

using fuzzing::AlignedBytes;
using fuzzing::CheckCode;

void FuzzMetadata(std::string_view input) {
  const AlignedBytes aligned(input);
  StatusOr<Metadata> decoded = DecodeMetadata(aligned.view());

  // The same bytes at an odd address: DecodeMetadata decodes them from an aligned copy.
  const AlignedBytes shifted(std::string(1, '\0') + std::string(input));
  StatusOr<Metadata> unaligned = DecodeMetadata(shifted.view().substr(1));
  DCPKV_FUZZ_CHECK(unaligned.status() == decoded.status());
  if (!decoded.ok()) {
    CheckCode(decoded.status(), StatusCode::kDataLoss, "DecodeMetadata");
    return;
  }
  DCPKV_FUZZ_CHECK(*unaligned == *decoded);
  CheckCode(ValidateMetadata(*decoded), StatusCode::kOk, "ValidateMetadata of a decoded Metadata");

  const std::string again = EncodeMetadata(*decoded);
  const AlignedBytes again_aligned(again);
  StatusOr<Metadata> redecoded = DecodeMetadata(again_aligned.view());
  if (!redecoded.ok()) CheckCode(redecoded.status(), StatusCode::kOk, "DecodeMetadata(re-encoded)");
  DCPKV_FUZZ_CHECK(*redecoded == *decoded);
  DCPKV_FUZZ_CHECK(EncodeMetadata(*redecoded) == again);
}

}  // namespace
}  // namespace dcpkv

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  dcpkv::FuzzMetadata(dcpkv::fuzzing::AsView(data, size));
  return 0;
}

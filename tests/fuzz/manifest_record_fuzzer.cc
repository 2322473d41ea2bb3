// Fuzzes DecodeManifestRecord (core/include/dcpkv/core/manifest_record_codec.h): the envelope of
// every manifest, read from a database or received by a replica.
//
// Invariants: a value that fails to decode is DATA_LOSS; one that decodes names a valid
// checkpoint id, and re-encoding it gives bytes that decode to the same record and re-encode to
// the same bytes.
#include <cstdint>
#include <string>

#include "dcpkv/core/manifest_record_codec.h"
#include "dcpkv/core/names.h"
#include "tests/fuzz/fuzz_check.h"

namespace dcpkv {
namespace {

using fuzzing::AlignedBytes;
using fuzzing::CheckCode;

bool SameRecord(const ManifestRecord& a, const ManifestRecord& b) {
  return a.checkpoint_id == b.checkpoint_id && a.committed_unix_micros == b.committed_unix_micros &&
         a.payload == b.payload;
}

void FuzzManifestRecord(std::string_view input) {
  const AlignedBytes value(input);
  StatusOr<ManifestRecord> decoded = DecodeManifestRecord(value.view());
  if (!decoded.ok()) {
    CheckCode(decoded.status(), StatusCode::kDataLoss, "DecodeManifestRecord");
    return;
  }
  CheckCode(ValidateCheckpointId(decoded->checkpoint_id), StatusCode::kOk,
            "ValidateCheckpointId of a decoded record's id");

  const std::string again = EncodeManifestRecord(*decoded);
  const AlignedBytes again_value(again);
  StatusOr<ManifestRecord> redecoded = DecodeManifestRecord(again_value.view());
  if (!redecoded.ok()) {
    CheckCode(redecoded.status(), StatusCode::kOk, "DecodeManifestRecord(re-encoded)");
  }
  DCPKV_FUZZ_CHECK(SameRecord(*redecoded, *decoded));
  DCPKV_FUZZ_CHECK(EncodeManifestRecord(*redecoded) == again);
}

}  // namespace
}  // namespace dcpkv

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  dcpkv::FuzzManifestRecord(dcpkv::fuzzing::AsView(data, size));
  return 0;
}

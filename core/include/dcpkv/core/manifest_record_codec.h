// The envelope stored under every manifest key: pure encode/decode, no I/O.
//
// A manifest record is a FlatBuffer `dcpkv.format.ManifestRecord` (core/schema/
// manifest_record.fbs, file identifier "DKVM") that carries the checkpoint id, the commit time
// and the manifest bytes with their XXH3-128. Decoding verifies all of it; failures are DATA_LOSS.
#ifndef DCPKV_CORE_MANIFEST_RECORD_CODEC_H_
#define DCPKV_CORE_MANIFEST_RECORD_CODEC_H_

#include <cstdint>
#include <string>
#include <string_view>

#include "dcpkv/manifest_record.h"
#include "dcpkv/status.h"

namespace dcpkv {

inline constexpr uint16_t kManifestRecordFormatVersion = 1;

// REQUIRES: ValidateCheckpointId(record.checkpoint_id).ok()
std::string EncodeManifestRecord(const ManifestRecord& record);

// Verifies and decodes; `value` may have any alignment.
StatusOr<ManifestRecord> DecodeManifestRecord(std::string_view value);

}  // namespace dcpkv

#endif  // DCPKV_CORE_MANIFEST_RECORD_CODEC_H_

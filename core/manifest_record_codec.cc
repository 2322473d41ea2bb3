// Manifest record layout (docs/format.md, "Manifest records"): a FlatBuffer with file identifier
// "DKVM" and root table dcpkv.format.ManifestRecord:
//   format_version u16 | checkpoint_id string | committed_unix_micros i64 | payload_len u64 |
//   payload_hash Hash128{lo,hi} | payload [u8]
#include "dcpkv/core/manifest_record_codec.h"

#include <cstring>
#include <vector>

#include "dcpkv/core/hash.h"
#include "dcpkv/core/names.h"
#include "dcpkv/core/schema/manifest_record_generated.h"

namespace dcpkv {
namespace {

namespace fb = ::dcpkv::format;

Status Corrupt(const std::string& what) {
  return DataLossError("corrupt manifest record: " + what);
}

}  // namespace

std::string EncodeManifestRecord(const ManifestRecord& record) {
  flatbuffers::FlatBufferBuilder b(record.payload.size() + 256);
  uint8_t* dst = nullptr;
  auto payload = b.CreateUninitializedVector(record.payload.size(), 1, &dst);
  if (!record.payload.empty()) std::memcpy(dst, record.payload.data(), record.payload.size());
  Hash128 hash = HashBytes(record.payload.data(), record.payload.size());
  fb::Hash128 fb_hash(hash.lo, hash.hi);
  auto id = b.CreateString(record.checkpoint_id);
  fb::ManifestRecordBuilder mb(b);
  mb.add_committed_unix_micros(record.committed_unix_micros);
  mb.add_payload_len(record.payload.size());
  mb.add_payload_hash(&fb_hash);
  mb.add_checkpoint_id(id);
  mb.add_payload(payload);
  mb.add_format_version(kManifestRecordFormatVersion);
  b.Finish(mb.Finish(), fb::ManifestRecordIdentifier());
  return std::string(reinterpret_cast<const char*>(b.GetBufferPointer()), b.GetSize());
}

StatusOr<ManifestRecord> DecodeManifestRecord(std::string_view value) {
  if (value.size() < 8) {
    return Corrupt("value is " + std::to_string(value.size()) + " bytes, too short");
  }
  // FlatBuffers reads 8-byte scalars in place: work on an aligned copy (manifests are small).
  std::vector<uint64_t> aligned((value.size() + 7) / 8);
  std::memcpy(aligned.data(), value.data(), value.size());
  const auto* data = reinterpret_cast<const uint8_t*>(aligned.data());
  if (!fb::ManifestRecordBufferHasIdentifier(data)) {
    return Corrupt("missing file identifier \"DKVM\"");
  }
  flatbuffers::Verifier verifier(data, value.size(), /*max_depth=*/16, /*max_tables=*/64);
  if (!fb::VerifyManifestRecordBuffer(verifier)) {
    return Corrupt("FlatBuffers verification failed");
  }
  const fb::ManifestRecord* m = fb::GetManifestRecord(data);
  if (m->format_version() == 0 || m->format_version() > kManifestRecordFormatVersion) {
    return Corrupt("unsupported format version " + std::to_string(m->format_version()));
  }
  if (!m->checkpoint_id()) return Corrupt("missing checkpoint id");
  ManifestRecord record;
  record.checkpoint_id = m->checkpoint_id()->str();
  if (Status s = ValidateCheckpointId(record.checkpoint_id); !s.ok()) return Corrupt(s.message());
  record.committed_unix_micros = m->committed_unix_micros();
  size_t stored = m->payload() ? m->payload()->size() : 0;
  if (stored != m->payload_len()) {
    return Corrupt("payload is " + std::to_string(stored) + " bytes but payload_len says " +
                   std::to_string(m->payload_len()));
  }
  if (!m->payload_hash()) return Corrupt("missing payload hash");
  if (stored > 0)
    record.payload.assign(reinterpret_cast<const char*>(m->payload()->data()), stored);
  Hash128 expected{m->payload_hash()->lo(), m->payload_hash()->hi()};
  Hash128 actual = HashBytes(record.payload.data(), record.payload.size());
  if (actual != expected) {
    return Corrupt("payload checksum mismatch (stored xxh3-128 " + HashToHex(expected) +
                   ", computed " + HashToHex(actual) + ")");
  }
  return record;
}

}  // namespace dcpkv

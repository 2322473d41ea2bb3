#include "dcpkv/core/protocol_messages.h"

#include "dcpkv/core/names.h"
#include "dcpkv/core/plan_codec.h"
#include "dcpkv/core/wire.h"

namespace dcpkv {

std::string PayloadMessage(std::string_view payload) {
  std::string out(1, static_cast<char>(MessageKind::kPayload));
  out += payload;
  return out;
}

std::string CachedMessage(uint64_t hash, std::string_view extra) {
  std::string out(1, static_cast<char>(MessageKind::kCached));
  wire::AppendLittleEndian(&out, hash);
  out += extra;
  return out;
}

std::string FailureMessage(const Status& status) {
  std::string out(1, static_cast<char>(MessageKind::kFailure));
  out += EncodeStatus(status);
  return out;
}

StatusOr<Message> DecodeMessage(std::string_view bytes) {
  if (bytes.empty()) return DataLossError("empty protocol message");
  Message m;
  const auto kind = static_cast<uint8_t>(bytes[0]);
  bytes.remove_prefix(1);
  switch (kind) {
    case static_cast<uint8_t>(MessageKind::kPayload):
      m.kind = MessageKind::kPayload;
      m.payload = std::string(bytes);
      return m;
    case static_cast<uint8_t>(MessageKind::kCached):
      if (bytes.size() < 8) return DataLossError("protocol message 'cached' is under 9 bytes");
      m.kind = MessageKind::kCached;
      m.hash = wire::ReadLittleEndian<uint64_t>(bytes.data());
      m.payload = std::string(bytes.substr(8));
      return m;
    case static_cast<uint8_t>(MessageKind::kFailure): {
      m.kind = MessageKind::kFailure;
      DCPKV_RETURN_IF_ERROR(DecodeStatus(bytes, &m.status));
      if (m.status.ok()) return DataLossError("protocol message 'failure' carries OK");
      return m;
    }
  }
  return DataLossError("unknown protocol message kind " + std::to_string(kind));
}

Status AggregateFailures(std::string_view what, const std::vector<Status>& per_rank) {
  std::string ranks, details;
  StatusCode code = StatusCode::kInternal;
  bool first = true;
  for (size_t r = 0; r < per_rank.size(); ++r) {
    if (per_rank[r].ok()) continue;
    if (first) code = per_rank[r].code();
    ranks += (first ? "" : ", ") + std::to_string(r);
    details += (first ? "" : "; ") + ("rank " + std::to_string(r) + ": " + per_rank[r].ToString());
    first = false;
  }
  return Status(code, std::string(what) + " failed on rank" +
                          (ranks.find(',') == std::string::npos ? " " : "s ") + ranks + " of " +
                          std::to_string(per_rank.size()) + ": " + details);
}

GatheredMessages DecodeGathered(const std::vector<std::string>& gathered) {
  GatheredMessages out;
  out.messages.resize(gathered.size());
  out.failures.resize(gathered.size());
  for (size_t r = 0; r < gathered.size(); ++r) {
    StatusOr<Message> m = DecodeMessage(gathered[r]);
    if (!m.ok()) {
      out.failures[r] = m.status();
    } else {
      out.messages[r] = std::move(m).value();
      if (out.messages[r].kind == MessageKind::kFailure) out.failures[r] = out.messages[r].status;
    }
    out.any_failed = out.any_failed || !out.failures[r].ok();
  }
  return out;
}

}  // namespace dcpkv

#include "dcpkv/store/key_encoding.h"

#include "dcpkv/core/names.h"
#include "dcpkv/core/wire.h"

namespace dcpkv {
namespace {

// Splits a 0x00-terminated field off the front of *in.
bool TakeTerminated(std::string_view* in, std::string_view* field) {
  size_t end = in->find('\0');
  if (end == std::string_view::npos) return false;
  *field = in->substr(0, end);
  in->remove_prefix(end + 1);
  return true;
}

Status BadKey(std::string_view what) {
  return DataLossError("malformed chunk key: " + std::string(what));
}

// tag checkpoint_id: the manifest, trash and reclaim keys.
StatusOr<std::string> EncodeIdKey(char tag, std::string_view checkpoint_id) {
  DCPKV_RETURN_IF_ERROR(ValidateCheckpointId(checkpoint_id));
  std::string out;
  out += tag;
  out += checkpoint_id;
  return out;
}

StatusOr<std::string> DecodeIdKey(char tag, std::string_view kind, std::string_view in) {
  if (in.empty() || in[0] != tag) {
    return DataLossError("malformed " + std::string(kind) + " key: missing tag '" +
                         std::string(1, tag) + "'");
  }
  in.remove_prefix(1);
  if (Status s = ValidateCheckpointId(in); !s.ok()) {
    return DataLossError("malformed " + std::string(kind) + " key: " + s.message());
  }
  return std::string(in);
}

}  // namespace

std::string DescribeChunkKey(const ChunkKey& key) {
  std::string out =
      "checkpoint \"" + key.checkpoint_id + "\" fqn \"" + key.fqn + "\" shard offset [";
  for (size_t i = 0; i < key.shard_offsets.size(); ++i) {
    if (i) out += ",";
    out += std::to_string(key.shard_offsets[i]);
  }
  out += "] byte " + std::to_string(key.byte_offset);
  return out;
}

std::string ChunkKeyCheckpointPrefix(std::string_view checkpoint_id) {
  std::string out;
  out.reserve(checkpoint_id.size() + 2);
  out += kChunkKeyTag;
  out += checkpoint_id;
  out += '\0';
  return out;
}

std::string ChunkKeyShardPrefix(std::string_view checkpoint_id, std::string_view fqn,
                                const std::vector<uint64_t>& shard_offsets) {
  std::string out = ChunkKeyCheckpointPrefix(checkpoint_id);
  out.reserve(out.size() + fqn.size() + 2 + 8 * (shard_offsets.size() + 1));
  out += fqn;
  out += '\0';
  out += static_cast<char>(shard_offsets.size());
  for (uint64_t o : shard_offsets) wire::AppendBigEndian<uint64_t>(&out, o);
  return out;
}

std::string PrefixUpperBound(std::string_view prefix) {
  std::string out(prefix);
  while (!out.empty() && static_cast<unsigned char>(out.back()) == 0xFF) out.pop_back();
  if (!out.empty()) out.back() = static_cast<char>(static_cast<unsigned char>(out.back()) + 1);
  return out;
}

StatusOr<std::string> EncodeChunkKey(const ChunkKey& key) {
  DCPKV_RETURN_IF_ERROR(ValidateCheckpointId(key.checkpoint_id));
  DCPKV_RETURN_IF_ERROR(ValidateFqn(key.fqn));
  if (key.shard_offsets.size() > kMaxTensorDims) {
    return InvalidArgumentError("tensor \"" + key.fqn + "\" has " +
                                std::to_string(key.shard_offsets.size()) +
                                " dimensions; the limit is " + std::to_string(kMaxTensorDims));
  }
  std::string out = ChunkKeyShardPrefix(key.checkpoint_id, key.fqn, key.shard_offsets);
  wire::AppendBigEndian<uint64_t>(&out, key.byte_offset);
  return out;
}

StatusOr<ChunkKey> DecodeChunkKey(std::string_view in) {
  if (in.empty() || in[0] != kChunkKeyTag) return BadKey("missing tag 'C'");
  in.remove_prefix(1);
  ChunkKey key;
  std::string_view id, fqn;
  if (!TakeTerminated(&in, &id)) return BadKey("unterminated checkpoint id");
  if (!TakeTerminated(&in, &fqn)) return BadKey("unterminated fqn");
  if (Status s = ValidateCheckpointId(id); !s.ok()) return BadKey(s.message());
  if (Status s = ValidateFqn(fqn); !s.ok()) return BadKey(s.message());
  if (in.empty()) return BadKey("missing dimension count");
  size_t ndim = static_cast<unsigned char>(in[0]);
  in.remove_prefix(1);
  if (ndim > kMaxTensorDims) return BadKey("dimension count " + std::to_string(ndim));
  if (in.size() != 8 * (ndim + 1)) {
    return BadKey("expected " + std::to_string(8 * (ndim + 1)) + " offset bytes, found " +
                  std::to_string(in.size()));
  }
  key.checkpoint_id = std::string(id);
  key.fqn = std::string(fqn);
  key.shard_offsets.resize(ndim);
  for (size_t i = 0; i < ndim; ++i)
    key.shard_offsets[i] = wire::ReadBigEndian<uint64_t>(in.data() + 8 * i);
  key.byte_offset = wire::ReadBigEndian<uint64_t>(in.data() + 8 * ndim);
  return key;
}

StatusOr<std::string> EncodeManifestKey(std::string_view checkpoint_id) {
  return EncodeIdKey(kManifestKeyTag, checkpoint_id);
}

StatusOr<std::string> DecodeManifestKey(std::string_view in) {
  return DecodeIdKey(kManifestKeyTag, "manifest", in);
}

StatusOr<std::string> EncodeTrashKey(std::string_view checkpoint_id) {
  return EncodeIdKey(kTrashKeyTag, checkpoint_id);
}

StatusOr<std::string> DecodeTrashKey(std::string_view in) {
  return DecodeIdKey(kTrashKeyTag, "trash", in);
}

StatusOr<std::string> EncodeReclaimKey(std::string_view checkpoint_id) {
  return EncodeIdKey(kReclaimKeyTag, checkpoint_id);
}

StatusOr<std::string> DecodeReclaimKey(std::string_view in) {
  return DecodeIdKey(kReclaimKeyTag, "reclaim", in);
}

StatusOr<std::string> EncodeDataMarkerKey(std::string_view checkpoint_id) {
  return EncodeIdKey(kDataMarkerKeyTag, checkpoint_id);
}

StatusOr<std::string> DecodeDataMarkerKey(std::string_view in) {
  return DecodeIdKey(kDataMarkerKeyTag, "data marker", in);
}

}  // namespace dcpkv

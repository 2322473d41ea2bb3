// Storage keys of the chunk store.
//
// Grammar (docs/format.md has the full table; repeated here because the encoder must match it):
//
//   chunk_key    := 'C' checkpoint_id 0x00 fqn 0x00 ndim:u8 shard_offset:u64be{ndim}
//                   byte_offset:u64be
//   manifest_key := 'M' checkpoint_id
//   trash_key    := 'T' checkpoint_id     (default column family; see gc.h)
//   reclaim_key  := 'R' checkpoint_id     (default column family; see gc.h)
//
// checkpoint_id and fqn never contain 0x00 (see names.h), so the terminator is unambiguous and
// RocksDB's bytewise order (1) groups all keys of one checkpoint under the prefix
// 'C' checkpoint_id 0x00, (2) groups all chunks of one fqn under the longer prefix ... fqn 0x00,
// even when one fqn is a prefix of another ("w" sorts before "w2" and their ranges never
// interleave), and (3) orders shards by their N-d offsets and chunks by byte offset numerically,
// because integers are fixed-width big-endian.
//
// The leading tag bytes are part of the on-disk format: DO NOT CHANGE.
#ifndef DCPKV_STORE_KEY_ENCODING_H_
#define DCPKV_STORE_KEY_ENCODING_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "dcpkv/status.h"

namespace dcpkv {

inline constexpr char kChunkKeyTag = 'C';
inline constexpr char kManifestKeyTag = 'M';
inline constexpr char kTrashKeyTag = 'T';
inline constexpr char kReclaimKeyTag = 'R';
// Default column family: 'D' checkpoint_id, the data marker of a checkpoint with chunks in the
// database (store format version 3).
inline constexpr char kDataMarkerKeyTag = 'D';

// Identifies one stored chunk: byte range [byte_offset, byte_offset + payload) of the shard of
// tensor `fqn` whose N-d offsets in the global tensor are `shard_offsets`.
struct ChunkKey {
  std::string checkpoint_id;
  std::string fqn;
  std::vector<uint64_t> shard_offsets;
  uint64_t byte_offset = 0;

  friend bool operator==(const ChunkKey& a, const ChunkKey& b) {
    return a.checkpoint_id == b.checkpoint_id && a.fqn == b.fqn &&
           a.shard_offsets == b.shard_offsets && a.byte_offset == b.byte_offset;
  }
};

// Human-readable form for messages: checkpoint "c" fqn "f" shard offset [0,4] byte 4096.
std::string DescribeChunkKey(const ChunkKey& key);

// Validates the id, fqn and dimension count, then encodes.
StatusOr<std::string> EncodeChunkKey(const ChunkKey& key);

// Parses and validates an encoded chunk key. A malformed key is DATA_LOSS.
StatusOr<ChunkKey> DecodeChunkKey(std::string_view encoded);

// 'C' checkpoint_id 0x00: the prefix shared by every chunk key of one checkpoint.
// REQUIRES: ValidateCheckpointId(checkpoint_id).ok()
std::string ChunkKeyCheckpointPrefix(std::string_view checkpoint_id);

// 'C' checkpoint_id 0x00 fqn 0x00 ndim offsets...: every chunk of one shard.
// REQUIRES: valid id and fqn, shard_offsets.size() <= kMaxTensorDims.
std::string ChunkKeyShardPrefix(std::string_view checkpoint_id, std::string_view fqn,
                                const std::vector<uint64_t>& shard_offsets);

// A half-open range [begin, end) of encoded chunk keys (bytewise order).
struct ChunkKeyRange {
  std::string begin;
  std::string end;

  friend bool operator==(const ChunkKeyRange&, const ChunkKeyRange&) = default;
};

// The smallest key greater than every key that starts with `prefix` (for range bounds).
// REQUIRES: prefix is not empty and not all 0xFF bytes.
std::string PrefixUpperBound(std::string_view prefix);

// Validates the id, then encodes.
StatusOr<std::string> EncodeManifestKey(std::string_view checkpoint_id);
// Returns the checkpoint id of a manifest key; malformed keys are DATA_LOSS.
StatusOr<std::string> DecodeManifestKey(std::string_view encoded);

// Trash key: a removed checkpoint's manifest record, kept until its chunks are reclaimed.
// Validates the id, then encodes.
StatusOr<std::string> EncodeTrashKey(std::string_view checkpoint_id);
// Returns the checkpoint id of a trash key; malformed keys are DATA_LOSS.
StatusOr<std::string> DecodeTrashKey(std::string_view encoded);

// Reclaim key: which key ranges of a trashed checkpoint one database has already deleted.
// Validates the id, then encodes.
StatusOr<std::string> EncodeReclaimKey(std::string_view checkpoint_id);
// Returns the checkpoint id of a reclaim key; malformed keys are DATA_LOSS.
StatusOr<std::string> DecodeReclaimKey(std::string_view encoded);

// Data marker key: written (synced) before a checkpoint's first chunk in a database, deleted once
// none of its chunks is left there, so that listing the checkpoints with data reads no chunk.
// Validates the id, then encodes.
StatusOr<std::string> EncodeDataMarkerKey(std::string_view checkpoint_id);
// Returns the checkpoint id of a data marker key; malformed keys are DATA_LOSS.
StatusOr<std::string> DecodeDataMarkerKey(std::string_view encoded);

}  // namespace dcpkv

#endif  // DCPKV_STORE_KEY_ENCODING_H_

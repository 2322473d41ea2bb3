// Encoding and decoding of a checkpoint's Metadata, the payload of its manifest record: pure
// functions, no I/O.
//
// The encoding is a FlatBuffer `dcpkv.format.CheckpointMetadata` (core/schema/metadata.fbs,
// file identifier "DKVD"; docs/format.md, "Checkpoint metadata"). DecodeMetadata runs the
// FlatBuffers Verifier and then checks the metadata's meaning (names, dtypes, shard geometry,
// byte counts, ranks, fqn order); any failure is DATA_LOSS naming the fqn at fault. It never reads
// outside the given bytes, and the memory it allocates is proportional to their size.
//
// Thread safety: both functions are pure and may be called concurrently.
#ifndef DCPKV_CORE_METADATA_CODEC_H_
#define DCPKV_CORE_METADATA_CODEC_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "dcpkv/metadata.h"
#include "dcpkv/status.h"

namespace dcpkv {

inline constexpr uint16_t kMetadataFormatVersion = 2;

// Limits on user tags: key and value lengths, and tags per checkpoint.
inline constexpr size_t kMaxTagKeyLength = 256;
inline constexpr size_t kMaxTagValueLength = 4096;
inline constexpr size_t kMaxTags = 256;

// Most fqns one checkpoint may hold; a decoded metadata with more is DATA_LOSS. (Each fqn may
// have any number of shards, within FlatBuffers' 2 GiB buffer limit.)
inline constexpr size_t kMaxMetadataEntries = size_t{1} << 20;

// Checks the meaning of a metadata, as DecodeMetadata does after decoding: a valid checkpoint
// id, world_size >= 1, coordinator_rank in [0, world_size), at most kMaxMetadataEntries entries,
// and for every entry a valid fqn and dtype, a global shape of at most kMaxTensorDims dimensions
// whose byte size fits 64 bits (or is 0), and shards whose offsets and sizes have one value per
// dimension and lie within the global shape, whose bytes equal product(sizes) * element size
// and whose rank is in [0, world_size), a known bytes_encoding (other than kRaw only for bytes
// entries), torch properties' strides only with has_strides (at most kMaxTensorDims), and for
// torch_dcp: a flatten mapping only with has_flatten_mapping, of at most kMaxMetadataEntries
// valid fqns whose path indices are >= -1, and storage meta fields only with has_storage_meta.
// INVALID_ARGUMENT naming the checkpoint, fqn and shard.
// The coordinator calls it before committing a metadata it built.
Status ValidateMetadata(const Metadata& metadata);

// Encodes `metadata` as given, valid or not (tests build invalid encodings with it); a shard
// whose offsets or sizes do not have one value per global dimension is written truncated or
// zero-padded to that count.
// REQUIRES: an encoding under 2 GiB (FlatBuffers' limit). For an encoding that decodes:
// ValidateMetadata(metadata).ok().
std::string EncodeMetadata(const Metadata& metadata);

// Verifies and decodes an encoding made by EncodeMetadata: the identifier, the FlatBuffers
// Verifier, the format version, the structure (column lengths, fqns sorted and unique, no data
// shared between vectors) and then ValidateMetadata; any failure is DATA_LOSS. `bytes` may have
// any alignment (an unaligned input is copied to aligned memory first).
StatusOr<Metadata> DecodeMetadata(std::string_view bytes);

}  // namespace dcpkv

#endif  // DCPKV_CORE_METADATA_CODEC_H_

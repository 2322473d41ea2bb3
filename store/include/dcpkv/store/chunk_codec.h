// Encoding and decoding of chunk values: pure functions, no I/O.
//
// A chunk value is a FlatBuffer `dcpkv.format.Chunk` (store/schema/chunk.fbs, file identifier
// "DKVC"). DecodeChunk runs the FlatBuffers Verifier, checks every field against the others
// (dimensions, lengths, byte ranges) and verifies the payload's XXH3-128; any failure is
// DATA_LOSS. It never reads outside the given bytes.
#ifndef DCPKV_STORE_CHUNK_CODEC_H_
#define DCPKV_STORE_CHUNK_CODEC_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "dcpkv/core/hash.h"
#include "dcpkv/dtype.h"
#include "dcpkv/status.h"

namespace dcpkv {

inline constexpr uint16_t kChunkFormatVersion = 1;

// Payload encodings. Numeric values are on disk: DO NOT CHANGE.
enum class ChunkCodec : uint8_t { kNone = 0, kZstd = 1 };

// Where a shard sits in its global tensor. For bytes entries: dtype kBytes, offsets {0},
// sizes {length}.
struct ShardGeometry {
  DType dtype = DType::kBytes;
  std::vector<uint64_t> offsets;
  std::vector<uint64_t> sizes;

  // product(sizes) * ElementSize(dtype), or an error if invalid or overflowing.
  StatusOr<uint64_t> ByteSize() const;
  // Checks dtype, dimension count and that offsets and sizes agree in length.
  Status Validate() const;
};

// Everything a chunk value says about itself except the payload bytes.
struct ChunkInfo {
  uint16_t format_version = kChunkFormatVersion;
  ShardGeometry geometry;
  uint64_t byte_offset = 0;  // of this chunk within the shard
  uint64_t shard_bytes = 0;  // total bytes of the shard
  uint64_t payload_len = 0;  // uncompressed payload bytes of this chunk
  Hash128 payload_hash;      // XXH3-128 of the uncompressed payload
  ChunkCodec codec = ChunkCodec::kNone;
};

// A decoded chunk: its description and a view of its payload bytes. The view points into the
// buffer given to DecodeChunk and is valid as long as that buffer is.
struct ChunkView {
  ChunkInfo info;
  const uint8_t* payload = nullptr;
  size_t payload_size = 0;
};

// Builds chunk values. Reuses one growing buffer across calls.
// Thread safety: not thread-safe; use one encoder per thread.
class ChunkEncoder {
 public:
  ChunkEncoder();
  ~ChunkEncoder();
  ChunkEncoder(const ChunkEncoder&) = delete;
  ChunkEncoder& operator=(const ChunkEncoder&) = delete;

  // Encodes the `size` bytes at `payload` as the chunk at `byte_offset` of a shard with
  // `geometry`. Returns a view of the encoded value, valid until the next Encode or the
  // encoder's destruction. If `hash` is not null it receives the payload's hash.
  // REQUIRES: geometry.Validate().ok(), byte_offset + size <= geometry.ByteSize().
  std::string_view Encode(const ShardGeometry& geometry, uint64_t byte_offset, const void* payload,
                          size_t size, Hash128* hash = nullptr);
  // As above, with the payload written by `fill` into the `size` bytes it is given.
  std::string_view Encode(const ShardGeometry& geometry, uint64_t byte_offset, size_t size,
                          const std::function<void(uint8_t*)>& fill, Hash128* hash = nullptr);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Convenience for tests and tools: encodes into a fresh string.
std::string EncodeChunk(const ShardGeometry& geometry, uint64_t byte_offset, const void* payload,
                        size_t size);

// Verifies and decodes a chunk value. `value` must stay alive while the result is used.
// If `value.data()` is not 8-byte aligned (FlatBuffers reads 8-byte scalars in place), the
// caller must first copy it to aligned memory; DecodeChunk returns INTERNAL otherwise.
StatusOr<ChunkView> DecodeChunk(std::string_view value);

// DecodeChunk of a value that is not 8-byte aligned, without an aligned copy of it all: `head`
// is 8-byte aligned and readable for value.size() bytes, of which the first `head_bytes` are a
// copy of the value's first bytes (the rest is never taken as the value's). The metadata is
// verified and read in `head`, the payload (hashed and viewed) in place in `value`. Returns
// nullopt unless the value decodes and all but its payload's bytes lie in the copied head (as
// in every value ChunkEncoder writes, given a head of a few KiB): the caller then decodes an
// aligned copy of the whole value with DecodeChunk, which is the final word, errors included.
std::optional<ChunkView> DecodeChunkHead(std::string_view value, const uint8_t* head,
                                         size_t head_bytes);

}  // namespace dcpkv

#endif  // DCPKV_STORE_CHUNK_CODEC_H_

// Fuzzes DecodeChunk (store/include/dcpkv/store/chunk_codec.h): chunk values as read from a
// damaged or hostile database.
//
// Invariants: a value that fails to decode is DATA_LOSS (INTERNAL only for an unaligned buffer,
// which DecodeChunk must refuse without reading); one that decodes keeps every promise of
// chunk_codec.h (valid geometry of shard_bytes bytes, byte range inside the shard, a payload of
// payload_len bytes inside the value whose XXH3-128 is payload_hash), and re-encoding it gives a
// value that decodes to the same chunk and re-encodes to the same bytes. A decode of a misaligned
// copy from its first 64 bytes only (DecodeChunkHead) succeeds only where DecodeChunk does, with
// the same chunk and the payload at the same place.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "dcpkv/core/hash.h"
#include "dcpkv/store/chunk_codec.h"
#include "tests/fuzz/fuzz_check.h"

namespace dcpkv {
namespace {

using fuzzing::AlignedBytes;
using fuzzing::CheckCode;

bool SameInfo(const ChunkInfo& a, const ChunkInfo& b) {
  return a.format_version == b.format_version && a.geometry.dtype == b.geometry.dtype &&
         a.geometry.offsets == b.geometry.offsets && a.geometry.sizes == b.geometry.sizes &&
         a.byte_offset == b.byte_offset && a.shard_bytes == b.shard_bytes &&
         a.payload_len == b.payload_len && a.payload_hash == b.payload_hash && a.codec == b.codec;
}

void CheckDecoded(const ChunkView& view, std::string_view value) {
  const ChunkInfo& info = view.info;
  DCPKV_FUZZ_CHECK(info.geometry.Validate().ok());
  StatusOr<uint64_t> shard_bytes = info.geometry.ByteSize();
  DCPKV_FUZZ_CHECK(shard_bytes.ok() && *shard_bytes == info.shard_bytes);
  DCPKV_FUZZ_CHECK(info.byte_offset <= info.shard_bytes &&
                   info.payload_len <= info.shard_bytes - info.byte_offset);
  DCPKV_FUZZ_CHECK(view.payload_size == info.payload_len);
  if (view.payload_size > 0) {
    const auto* begin = reinterpret_cast<const uint8_t*>(value.data());
    DCPKV_FUZZ_CHECK(view.payload >= begin &&
                     view.payload_size <= static_cast<size_t>(begin + value.size() - view.payload));
  }
  DCPKV_FUZZ_CHECK(HashBytes(view.payload, view.payload_size) == info.payload_hash);
}

void FuzzChunkValue(std::string_view input) {
  const AlignedBytes value(input);

  // An unaligned buffer is refused before it is read.
  if (input.size() > 1) {
    const AlignedBytes shifted(std::string(1, '\0') + std::string(input));
    CheckCode(DecodeChunk(shifted.view().substr(1)).status(), StatusCode::kInternal,
              "DecodeChunk of an unaligned buffer");
  }

  StatusOr<ChunkView> decoded = DecodeChunk(value.view());
  // A decode from a copy of the head only (the store's way with large misaligned values) never
  // accepts what a whole copy rejects, nor reads it differently.
  if (input.size() >= 8) {
    const AlignedBytes shifted(std::string(1, '\0') + std::string(input));
    const std::string_view misaligned = shifted.view().substr(1);
    std::vector<uint64_t> window((input.size() + 7) / 8, 0);
    const size_t head = std::min<size_t>(input.size(), 64);
    std::memcpy(window.data(), input.data(), head);
    std::optional<ChunkView> from_head =
        DecodeChunkHead(misaligned, reinterpret_cast<const uint8_t*>(window.data()), head);
    if (from_head) {
      DCPKV_FUZZ_CHECK(decoded.ok());
      DCPKV_FUZZ_CHECK(SameInfo(from_head->info, decoded->info));
      DCPKV_FUZZ_CHECK(from_head->payload_size == decoded->payload_size);
      DCPKV_FUZZ_CHECK(from_head->payload_size == 0 ||
                       reinterpret_cast<const char*>(from_head->payload) - misaligned.data() ==
                           reinterpret_cast<const char*>(decoded->payload) - value.view().data());
    }
  }
  if (!decoded.ok()) {
    CheckCode(decoded.status(), StatusCode::kDataLoss, "DecodeChunk");
    return;
  }
  CheckDecoded(*decoded, value.view());

  const ChunkInfo& info = decoded->info;
  const std::string again =
      EncodeChunk(info.geometry, info.byte_offset, decoded->payload, decoded->payload_size);
  const AlignedBytes again_value(again);
  StatusOr<ChunkView> redecoded = DecodeChunk(again_value.view());
  DCPKV_FUZZ_CHECK(redecoded.ok());
  CheckDecoded(*redecoded, again_value.view());
  DCPKV_FUZZ_CHECK(SameInfo(redecoded->info, info));
  DCPKV_FUZZ_CHECK(redecoded->payload_size == 0 ||
                   std::memcmp(redecoded->payload, decoded->payload, decoded->payload_size) == 0);
  const ChunkInfo& re = redecoded->info;
  DCPKV_FUZZ_CHECK(EncodeChunk(re.geometry, re.byte_offset, redecoded->payload,
                               redecoded->payload_size) == again);
}

}  // namespace
}  // namespace dcpkv

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  dcpkv::FuzzChunkValue(dcpkv::fuzzing::AsView(data, size));
  return 0;
}

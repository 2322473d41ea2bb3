// Fuzzes the key decoders (store/include/dcpkv/store/key_encoding.h): keys met while iterating a
// database that may hold anything.
//
// Invariants: a key that fails to decode is DATA_LOSS; the encoding is canonical, so a key that
// decodes re-encodes to exactly its bytes; a chunk key lies inside the ranges of its checkpoint
// and shard prefixes; and bytewise order of two chunk keys is the order of (checkpoint id, fqn,
// dimension count, shard offsets, byte offset), which the range scans rely on.
#include <algorithm>
#include <cstdint>
#include <string>
#include <tuple>

#include "dcpkv/store/key_encoding.h"
#include "tests/fuzz/fuzz_check.h"

namespace dcpkv {
namespace {

using fuzzing::CheckCode;

int Sign(int v) { return (v > 0) - (v < 0); }

template <typename T>
int Compare(const T& a, const T& b) {
  return a < b ? -1 : (b < a ? 1 : 0);
}

// The order of chunk keys that their encoding must have.
int CompareChunkKeys(const ChunkKey& a, const ChunkKey& b) {
  if (int c = Compare(std::tie(a.checkpoint_id, a.fqn), std::tie(b.checkpoint_id, b.fqn)); c != 0) {
    return c;
  }
  if (int c = Compare(a.shard_offsets.size(), b.shard_offsets.size()); c != 0) return c;
  if (int c = Compare(a.shard_offsets, b.shard_offsets); c != 0) return c;
  return Compare(a.byte_offset, b.byte_offset);
}

bool StartsWith(std::string_view s, std::string_view prefix) {
  return s.substr(0, prefix.size()) == prefix;
}

// Decodes `key` as a chunk key; checks the round trip and the prefix ranges if it decodes.
StatusOr<ChunkKey> CheckChunkKey(std::string_view key) {
  StatusOr<ChunkKey> decoded = DecodeChunkKey(key);
  if (!decoded.ok()) {
    CheckCode(decoded.status(), StatusCode::kDataLoss, "DecodeChunkKey");
    return decoded;
  }
  StatusOr<std::string> encoded = EncodeChunkKey(*decoded);
  if (!encoded.ok()) CheckCode(encoded.status(), StatusCode::kOk, "EncodeChunkKey(decoded)");
  DCPKV_FUZZ_CHECK(*encoded == key);
  const std::string checkpoint = ChunkKeyCheckpointPrefix(decoded->checkpoint_id);
  const std::string shard =
      ChunkKeyShardPrefix(decoded->checkpoint_id, decoded->fqn, decoded->shard_offsets);
  DCPKV_FUZZ_CHECK(StartsWith(shard, checkpoint) && StartsWith(key, shard));
  DCPKV_FUZZ_CHECK(key < PrefixUpperBound(shard));
  DCPKV_FUZZ_CHECK(PrefixUpperBound(shard) <= PrefixUpperBound(checkpoint));
  DCPKV_FUZZ_CHECK(!DescribeChunkKey(*decoded).empty());
  return decoded;
}

// Decodes `key` with one of the id-key decoders and checks the round trip.
void CheckIdKey(std::string_view key, StatusOr<std::string> (*decode)(std::string_view),
                StatusOr<std::string> (*encode)(std::string_view), const char* what) {
  StatusOr<std::string> id = decode(key);
  if (!id.ok()) {
    CheckCode(id.status(), StatusCode::kDataLoss, what);
    return;
  }
  StatusOr<std::string> encoded = encode(*id);
  if (!encoded.ok()) CheckCode(encoded.status(), StatusCode::kOk, what);
  DCPKV_FUZZ_CHECK(*encoded == key);
}

void FuzzKeys(std::string_view input) {
  CheckChunkKey(input).status().IgnoreError();  // the checks are what matter
  CheckIdKey(input, DecodeManifestKey, EncodeManifestKey, "manifest key");
  CheckIdKey(input, DecodeTrashKey, EncodeTrashKey, "trash key");
  CheckIdKey(input, DecodeReclaimKey, EncodeReclaimKey, "reclaim key");

  // Two chunk keys: the first byte says where the rest splits.
  if (input.size() < 2) return;
  const size_t split = static_cast<unsigned char>(input[0]) % input.size();
  const std::string_view rest = input.substr(1);
  const std::string_view first = rest.substr(0, split);
  const std::string_view second = rest.substr(std::min(split, rest.size()));
  StatusOr<ChunkKey> a = CheckChunkKey(first);
  StatusOr<ChunkKey> b = CheckChunkKey(second);
  if (a.ok() && b.ok()) {
    DCPKV_FUZZ_CHECK(Sign(first.compare(second)) == CompareChunkKeys(*a, *b));
  }
}

}  // namespace
}  // namespace dcpkv

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  dcpkv::FuzzKeys(dcpkv::fuzzing::AsView(data, size));
  return 0;
}

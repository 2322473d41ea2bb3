// Chunk value layout (docs/format.md, "Chunk values"): a FlatBuffer with file identifier "DKVC"
// and root table dcpkv.format.Chunk:
//   format_version u16 | dtype u8 | shard_offsets [u64] | shard_sizes [u64] | byte_offset u64 |
//   shard_bytes u64 | payload_len u64 | payload_hash Hash128{lo,hi} | codec u8 | payload [u8]
// The payload vector is created first, so it lies at the end of the buffer, after the small
// table: a reader touches the metadata in one cache-friendly run before streaming the payload.
#include "dcpkv/store/chunk_codec.h"

#include <cstring>
#include <limits>
#include <optional>

#include "chunk_generated.h"
#include "dcpkv/core/names.h"

namespace dcpkv {
namespace {

namespace fb = ::dcpkv::format;

// Verifier limits: a chunk has one table and three vectors; generous bounds still stop
// malicious inputs from making verification expensive.
constexpr flatbuffers::uoffset_t kMaxVerifierDepth = 16;
constexpr flatbuffers::uoffset_t kMaxVerifierTables = 64;

Status Corrupt(const std::string& what) { return DataLossError("corrupt chunk: " + what); }

bool MulOverflows(uint64_t a, uint64_t b, uint64_t* out) {
  return __builtin_mul_overflow(a, b, out);
}

// True if the elements of `v` are aligned for their type (or there are none). The FlatBuffers 2.0
// Verifier checks a vector's 4-byte length field but not that the 8-byte elements after it are
// 8-byte aligned; a crafted value could otherwise make 8-byte reads misaligned (undefined
// behaviour). Encoders align every non-empty vector; an empty one may be misaligned.
template <typename T>
bool ElementsAligned(const flatbuffers::Vector<T>* v) {
  return v == nullptr || v->size() == 0 || reinterpret_cast<uintptr_t>(v->Data()) % alignof(T) == 0;
}

}  // namespace

StatusOr<uint64_t> ShardGeometry::ByteSize() const {
  DCPKV_RETURN_IF_ERROR(Validate());
  uint64_t total = ElementSize(dtype);
  for (uint64_t s : sizes) {
    if (MulOverflows(total, s, &total)) {
      return InvalidArgumentError("shard byte size overflows 64 bits");
    }
  }
  return total;
}

Status ShardGeometry::Validate() const {
  if (!IsValidDType(static_cast<uint8_t>(dtype))) {
    return InvalidArgumentError("invalid dtype value " + std::to_string(static_cast<int>(dtype)));
  }
  if (offsets.size() != sizes.size()) {
    return InvalidArgumentError("shard has " + std::to_string(offsets.size()) + " offsets but " +
                                std::to_string(sizes.size()) + " sizes");
  }
  if (sizes.size() > kMaxTensorDims) {
    return InvalidArgumentError("shard has " + std::to_string(sizes.size()) +
                                " dimensions; the limit is " + std::to_string(kMaxTensorDims));
  }
  for (size_t i = 0; i < sizes.size(); ++i) {
    uint64_t end;
    if (__builtin_add_overflow(offsets[i], sizes[i], &end)) {
      return InvalidArgumentError("shard offset + size overflows in dimension " +
                                  std::to_string(i));
    }
  }
  return Status::Ok();
}

struct ChunkEncoder::Impl {
  flatbuffers::FlatBufferBuilder builder{1024};
};

ChunkEncoder::ChunkEncoder() : impl_(std::make_unique<Impl>()) {}
ChunkEncoder::~ChunkEncoder() = default;

std::string_view ChunkEncoder::Encode(const ShardGeometry& geometry, uint64_t byte_offset,
                                      const void* payload, size_t size, Hash128* hash_out) {
  return Encode(
      geometry, byte_offset, size,
      [&](uint8_t* dst) {
        if (size > 0) std::memcpy(dst, payload, size);
      },
      hash_out);
}

std::string_view ChunkEncoder::Encode(const ShardGeometry& geometry, uint64_t byte_offset,
                                      size_t size, const std::function<void(uint8_t*)>& fill,
                                      Hash128* hash_out) {
  flatbuffers::FlatBufferBuilder& b = impl_->builder;
  b.Clear();
  uint8_t* dst = nullptr;
  auto payload_vec = b.CreateUninitializedVector(size, 1, &dst);
  fill(dst);
  Hash128 hash = HashBytes(dst, size);
  if (hash_out) *hash_out = hash;
  auto offsets = b.CreateVector(geometry.offsets);
  auto sizes = b.CreateVector(geometry.sizes);
  StatusOr<uint64_t> byte_size = geometry.ByteSize();
  uint64_t shard_bytes = byte_size.ok() ? *byte_size : 0;
  fb::Hash128 fb_hash(hash.lo, hash.hi);
  fb::ChunkBuilder cb(b);
  cb.add_byte_offset(byte_offset);
  cb.add_shard_bytes(shard_bytes);
  cb.add_payload_len(size);
  cb.add_payload_hash(&fb_hash);
  cb.add_shard_offsets(offsets);
  cb.add_shard_sizes(sizes);
  cb.add_payload(payload_vec);
  cb.add_format_version(kChunkFormatVersion);
  cb.add_dtype(static_cast<uint8_t>(geometry.dtype));
  cb.add_codec(fb::Codec_None);
  b.Finish(cb.Finish(), fb::ChunkIdentifier());
  return std::string_view(reinterpret_cast<const char*>(b.GetBufferPointer()), b.GetSize());
}

std::string EncodeChunk(const ShardGeometry& geometry, uint64_t byte_offset, const void* payload,
                        size_t size) {
  ChunkEncoder encoder;
  return std::string(encoder.Encode(geometry, byte_offset, payload, size));
}

namespace {

// Checks the fields of a chunk table `c` that the Verifier passed and reads them; the payload's
// bytes are read at `payload` (the vector's data, or where the same bytes lie elsewhere).
StatusOr<ChunkView> ReadVerifiedChunk(const fb::Chunk* c, const uint8_t* payload) {
  if (!ElementsAligned(c->shard_offsets()) || !ElementsAligned(c->shard_sizes())) {
    return Corrupt("misaligned shard_offsets or shard_sizes vector");
  }

  ChunkView view;
  ChunkInfo& info = view.info;
  info.format_version = c->format_version();
  if (info.format_version == 0 || info.format_version > kChunkFormatVersion) {
    return Corrupt("unsupported format version " + std::to_string(info.format_version) +
                   " (this build reads up to " + std::to_string(kChunkFormatVersion) + ")");
  }
  if (!IsValidDType(c->dtype())) return Corrupt("invalid dtype " + std::to_string(c->dtype()));
  info.geometry.dtype = static_cast<DType>(c->dtype());
  if (c->shard_offsets()) {
    info.geometry.offsets.assign(c->shard_offsets()->begin(), c->shard_offsets()->end());
  }
  if (c->shard_sizes()) {
    info.geometry.sizes.assign(c->shard_sizes()->begin(), c->shard_sizes()->end());
  }
  StatusOr<uint64_t> shard_bytes = info.geometry.ByteSize();
  if (!shard_bytes.ok()) return Corrupt(shard_bytes.status().message());
  info.byte_offset = c->byte_offset();
  info.shard_bytes = c->shard_bytes();
  info.payload_len = c->payload_len();
  if (info.shard_bytes != *shard_bytes) {
    return Corrupt("shard_bytes " + std::to_string(info.shard_bytes) +
                   " does not match its geometry (" + std::to_string(*shard_bytes) + ")");
  }
  uint64_t end;
  if (__builtin_add_overflow(info.byte_offset, info.payload_len, &end) || end > info.shard_bytes) {
    return Corrupt("byte range [" + std::to_string(info.byte_offset) + ", +" +
                   std::to_string(info.payload_len) + ") exceeds the shard's " +
                   std::to_string(info.shard_bytes) + " bytes");
  }
  if (c->codec() != fb::Codec_None) {
    return Corrupt("unsupported codec " + std::to_string(c->codec()));
  }
  info.codec = ChunkCodec::kNone;
  if (!c->payload_hash()) return Corrupt("missing payload hash");
  info.payload_hash = Hash128{c->payload_hash()->lo(), c->payload_hash()->hi()};
  size_t stored = c->payload() ? c->payload()->size() : 0;
  if (stored != info.payload_len) {
    return Corrupt("payload is " + std::to_string(stored) + " bytes but payload_len says " +
                   std::to_string(info.payload_len));
  }
  view.payload = c->payload() ? payload : nullptr;
  view.payload_size = stored;
  Hash128 actual = HashBytes(view.payload, view.payload_size);
  if (actual != info.payload_hash) {
    return Corrupt("payload checksum mismatch (stored xxh3-128 " + HashToHex(info.payload_hash) +
                   ", computed " + HashToHex(actual) + ")");
  }
  return view;
}

// True if [p, p + n) lies within the first `limit` bytes at `base`.
bool Within(const uint8_t* base, size_t limit, const void* p, size_t n) {
  const auto* at = static_cast<const uint8_t*>(p);
  return at >= base && static_cast<size_t>(at - base) <= limit &&
         n <= limit - static_cast<size_t>(at - base);
}

}  // namespace

StatusOr<ChunkView> DecodeChunk(std::string_view value) {
  const auto* data = reinterpret_cast<const uint8_t*>(value.data());
  if (reinterpret_cast<uintptr_t>(data) % 8 != 0) {
    return InternalError("DecodeChunk called with a buffer that is not 8-byte aligned");
  }
  if (value.size() < 8) {
    return Corrupt("value is " + std::to_string(value.size()) + " bytes, too short");
  }
  if (!fb::ChunkBufferHasIdentifier(data)) return Corrupt("missing file identifier \"DKVC\"");
  flatbuffers::Verifier verifier(data, value.size(), kMaxVerifierDepth, kMaxVerifierTables);
  if (!fb::VerifyChunkBuffer(verifier)) return Corrupt("FlatBuffers verification failed");
  const fb::Chunk* c = fb::GetChunk(data);
  return ReadVerifiedChunk(c, c->payload() ? c->payload()->data() : nullptr);
}

std::optional<ChunkView> DecodeChunkHead(std::string_view value, const uint8_t* head,
                                         size_t head_bytes) {
  if (reinterpret_cast<uintptr_t>(head) % 8 != 0 || value.size() < 8 || head_bytes < 8 ||
      head_bytes > value.size() || !fb::ChunkBufferHasIdentifier(head)) {
    return std::nullopt;
  }
  flatbuffers::Verifier verifier(head, value.size(), kMaxVerifierDepth, kMaxVerifierTables);
  if (!fb::VerifyChunkBuffer(verifier)) return std::nullopt;
  const fb::Chunk* c = fb::GetChunk(head);
  // Everything read besides the payload's bytes must lie in the copied head: the vtable, the
  // table (with the hash struct inline), the two small vectors and the payload's length.
  const auto* table = reinterpret_cast<const uint8_t*>(c);
  const uint8_t* vtable = table - flatbuffers::ReadScalar<flatbuffers::soffset_t>(table);
  if (!Within(head, head_bytes, vtable, 2 * sizeof(flatbuffers::voffset_t))) return std::nullopt;
  const size_t vtable_bytes = flatbuffers::ReadScalar<flatbuffers::voffset_t>(vtable);
  const size_t table_bytes =
      flatbuffers::ReadScalar<flatbuffers::voffset_t>(vtable + sizeof(flatbuffers::voffset_t));
  if (!Within(head, head_bytes, vtable, vtable_bytes) ||
      !Within(head, head_bytes, table, table_bytes)) {
    return std::nullopt;
  }
  for (const flatbuffers::Vector<uint64_t>* v : {c->shard_offsets(), c->shard_sizes()}) {
    if (v != nullptr &&
        !Within(head, head_bytes, v,
                sizeof(flatbuffers::uoffset_t) + size_t{v->size()} * sizeof(uint64_t))) {
      return std::nullopt;
    }
  }
  const flatbuffers::Vector<uint8_t>* payload = c->payload();
  if (payload != nullptr && !Within(head, head_bytes, payload, sizeof(flatbuffers::uoffset_t))) {
    return std::nullopt;
  }
  const uint8_t* in_place = payload == nullptr ? nullptr
                                               : reinterpret_cast<const uint8_t*>(value.data()) +
                                                     (payload->data() - head);
  StatusOr<ChunkView> view = ReadVerifiedChunk(c, in_place);
  if (!view.ok()) return std::nullopt;
  return std::move(view).value();
}

}  // namespace dcpkv

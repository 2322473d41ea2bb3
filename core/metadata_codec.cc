// Checkpoint metadata layout (docs/format.md, "Checkpoint metadata (manifest payload)"): a
// FlatBuffer with file identifier "DKVD" and root table dcpkv.format.CheckpointMetadata:
//   format_version u16 | checkpoint_id string | world_size i32 | coordinator_rank i32 |
//   committed_unix_micros i64 | entries [Entry], sorted by fqn, unique | per_rank_commit bool |
//   data_sources [string] | base_checkpoint_id string | stored_bytes u64 | tags [Tag] |
//   torch_dcp TorchDcpMetadata
// Entry (shards stored column-wise; n = len(global_shape), s = len(shard_ranks)):
//   fqn string (required, key) | dtype u8 | global_shape [u64]{n} | shard_ranks [i32]{s} |
//   shard_offsets [u64]{s*n} | shard_sizes [u64]{s*n} | shard_bytes [u64]{s} |
//   shard_chunks [u32]{s} | chunk_lengths, chunk_hashes, chunk_sources, chunk_source_ranks |
//   torch_properties TorchTensorProperties | bytes_encoding u8
// Shard i's offsets and sizes are elements [i*n, i*n+n) of shard_offsets and shard_sizes.
#include "dcpkv/core/metadata_codec.h"

#include <cstring>
#include <functional>
#include <map>
#include <optional>
#include <string_view>
#include <utility>
#include <vector>

#include "dcpkv/core/names.h"
#include "dcpkv/core/schema/metadata_generated.h"

namespace dcpkv {
namespace {

namespace fb = ::dcpkv::format;

// Verifier limits: the root table, per entry one table and one of torch properties, the tags,
// the torch metadata and one table per flattened name; at most three levels deep.
constexpr flatbuffers::uoffset_t kMaxVerifierDepth = 16;
constexpr flatbuffers::uoffset_t kMaxVerifierTables = 3 * kMaxMetadataEntries + kMaxTags + 16;

Status Corrupt(const std::string& what) {
  return DataLossError("corrupt checkpoint metadata: " + what);
}

// A name for a message: quoted, non-printable bytes escaped, at most kMaxFqnLength characters
// (names read from damaged bytes may be anything).
std::string Quoted(std::string_view s) {
  std::string out = "\"";
  size_t n = 0;
  for (unsigned char c : s) {
    if (++n > kMaxFqnLength) {
      out += "...";
      break;
    }
    if (c >= 0x20 && c < 0x7F && c != '"' && c != '\\') {
      out += static_cast<char>(c);
    } else {
      static constexpr char kHex[] = "0123456789abcdef";
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out + "\"";
}

std::string ShapeString(const Shape& shape) {
  std::string out = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) out += ", ";
    out += std::to_string(shape[i]);
  }
  return out + "]";
}

template <typename T>
size_t Len(const flatbuffers::Vector<T>* v) {
  return v ? v->size() : 0;
}

// True if the elements of `v` are aligned for their type (or there are none). The FlatBuffers 2.0
// Verifier checks a vector's 4-byte length field but not that the 8-byte elements after it are
// 8-byte aligned; a crafted encoding could otherwise make 8-byte reads misaligned (undefined
// behaviour). Encoders align every non-empty vector (and DecodeAligned's buffer is 8-byte
// aligned); an empty one may be misaligned.
template <typename T>
bool ElementsAligned(const flatbuffers::Vector<T>* v) {
  return v == nullptr || v->size() == 0 || reinterpret_cast<uintptr_t>(v->Data()) % alignof(T) == 0;
}

bool IsKnownBytesEncoding(uint8_t value) {
  return value <= static_cast<uint8_t>(BytesEncoding::kTorchSave);
}

std::string BytesEncodingName(BytesEncoding encoding) {
  switch (encoding) {
    case BytesEncoding::kRaw: return "raw";
    case BytesEncoding::kTorchSave: return "torch.save";
  }
  return std::to_string(static_cast<int>(encoding));
}

// Chunks are recorded for an entry when every shard lists all of its chunks.
size_t RecordedChunks(const EntryMetadata& e) {
  size_t c = 0;
  for (const SavedShard& s : e.shards) {
    if (s.chunk_list.size() != s.chunks) return 0;
    c += s.chunk_list.size();
  }
  return c;
}

flatbuffers::Offset<fb::TorchTensorProperties> EncodeTorchProperties(
    flatbuffers::FlatBufferBuilder& b, const TorchTensorProperties& p) {
  auto layout = b.CreateString(p.layout);
  auto memory_format = b.CreateString(p.memory_format);
  flatbuffers::Offset<flatbuffers::Vector<int64_t>> strides;
  const bool write_strides = p.has_strides || !p.strides.empty();
  if (write_strides) strides = b.CreateVector(p.strides);
  fb::TorchTensorPropertiesBuilder pb(b);
  if (write_strides) pb.add_strides(strides);
  pb.add_memory_format(memory_format);
  pb.add_layout(layout);
  pb.add_requires_grad(p.requires_grad);
  pb.add_pin_memory(p.pin_memory);
  pb.add_has_strides(p.has_strides);
  return pb.Finish();
}

flatbuffers::Offset<fb::TorchDcpMetadata> EncodeTorchDcp(flatbuffers::FlatBufferBuilder& b,
                                                         const TorchDcpMetadata& t) {
  // std::map's order is bytewise, as FlatBuffers' string keys compare.
  std::vector<flatbuffers::Offset<fb::FlattenedName>> names;
  names.reserve(t.flatten_mapping.size());
  for (const auto& [fqn, path] : t.flatten_mapping) {
    std::vector<flatbuffers::Offset<flatbuffers::String>> keys;
    std::vector<int64_t> indices;
    keys.reserve(path.size());
    indices.reserve(path.size());
    for (const TorchPathElement& element : path) {
      keys.push_back(b.CreateString(element.key));
      indices.push_back(element.index);
    }
    auto keys_vec = b.CreateVector(keys);
    auto indices_vec = b.CreateVector(indices);
    auto fqn_str = b.CreateString(fqn);
    names.push_back(fb::CreateFlattenedName(b, fqn_str, keys_vec, indices_vec));
  }
  auto mapping = b.CreateVector(names);
  auto version = b.CreateString(t.version);
  auto storage_id = b.CreateString(t.storage_checkpoint_id);
  auto save_id = b.CreateString(t.save_id);
  auto load_id = b.CreateString(t.load_id);
  auto modules = b.CreateVectorOfStrings(t.modules);
  fb::TorchDcpMetadataBuilder tb(b);
  tb.add_version(version);
  tb.add_flatten_mapping(mapping);
  tb.add_storage_checkpoint_id(storage_id);
  tb.add_save_id(save_id);
  tb.add_load_id(load_id);
  tb.add_modules(modules);
  tb.add_has_flatten_mapping(t.has_flatten_mapping);
  tb.add_has_storage_meta(t.has_storage_meta);
  return tb.Finish();
}

flatbuffers::Offset<fb::Entry> EncodeEntry(flatbuffers::FlatBufferBuilder& b,
                                           const std::string& fqn, const EntryMetadata& e,
                                           const std::map<std::string, uint32_t>& sources) {
  const size_t n = e.global_shape.size();
  const size_t s = e.shards.size();
  uint64_t* offsets = nullptr;
  uint64_t* sizes = nullptr;
  uint64_t* bytes = nullptr;
  int32_t* ranks = nullptr;
  uint32_t* chunks = nullptr;
  // Each column is filled right after it is created (a later allocation may move the buffer).
  // The stride of shard_offsets and shard_sizes must stay n for the columns to line up, so a
  // shard whose offsets or sizes do not have n values is written truncated or zero-padded.
  auto offsets_vec = b.CreateUninitializedVector(s * n, &offsets);
  for (size_t i = 0; i < s; ++i) {
    for (size_t d = 0; d < n; ++d) {
      const Shape& o = e.shards[i].offsets;
      flatbuffers::WriteScalar(offsets + i * n + d, d < o.size() ? o[d] : uint64_t{0});
    }
  }
  auto sizes_vec = b.CreateUninitializedVector(s * n, &sizes);
  for (size_t i = 0; i < s; ++i) {
    for (size_t d = 0; d < n; ++d) {
      const Shape& z = e.shards[i].sizes;
      flatbuffers::WriteScalar(sizes + i * n + d, d < z.size() ? z[d] : uint64_t{0});
    }
  }
  auto bytes_vec = b.CreateUninitializedVector(s, &bytes);
  for (size_t i = 0; i < s; ++i) flatbuffers::WriteScalar(bytes + i, e.shards[i].bytes);
  auto chunks_vec = b.CreateUninitializedVector(s, &chunks);
  for (size_t i = 0; i < s; ++i) flatbuffers::WriteScalar(chunks + i, e.shards[i].chunks);
  auto ranks_vec = b.CreateUninitializedVector(s, &ranks);
  for (size_t i = 0; i < s; ++i) flatbuffers::WriteScalar(ranks + i, e.shards[i].rank);
  const size_t c = RecordedChunks(e);
  flatbuffers::Offset<flatbuffers::Vector<uint64_t>> lengths_vec, hashes_vec;
  flatbuffers::Offset<flatbuffers::Vector<uint32_t>> sources_vec;
  flatbuffers::Offset<flatbuffers::Vector<int32_t>> source_ranks_vec;
  if (c > 0) {
    uint64_t* lengths = nullptr;
    uint64_t* hashes = nullptr;
    uint32_t* source = nullptr;
    int32_t* source_ranks = nullptr;
    lengths_vec = b.CreateUninitializedVector(c, &lengths);
    size_t k = 0;
    for (const SavedShard& s : e.shards) {
      for (const SavedChunk& ch : s.chunk_list) flatbuffers::WriteScalar(lengths + k++, ch.length);
    }
    hashes_vec = b.CreateUninitializedVector(2 * c, &hashes);
    k = 0;
    for (const SavedShard& s : e.shards) {
      for (const SavedChunk& ch : s.chunk_list) {
        flatbuffers::WriteScalar(hashes + k++, ch.hash_low);
        flatbuffers::WriteScalar(hashes + k++, ch.hash_high);
      }
    }
    sources_vec = b.CreateUninitializedVector(c, &source);
    k = 0;
    for (const SavedShard& s : e.shards) {
      for (const SavedChunk& ch : s.chunk_list) {
        auto it = sources.find(ch.source);
        flatbuffers::WriteScalar(
            source + k++, ch.source.empty() || it == sources.end() ? uint32_t{0} : it->second + 1);
      }
    }
    source_ranks_vec = b.CreateUninitializedVector(c, &source_ranks);
    k = 0;
    for (const SavedShard& s : e.shards) {
      for (const SavedChunk& ch : s.chunk_list) {
        flatbuffers::WriteScalar(source_ranks + k++, ch.source_rank);
      }
    }
  }
  auto shape_vec = b.CreateVector(e.global_shape);
  flatbuffers::Offset<fb::TorchTensorProperties> properties;
  if (e.torch_properties) properties = EncodeTorchProperties(b, *e.torch_properties);
  auto fqn_str = b.CreateString(fqn);
  fb::EntryBuilder eb(b);
  if (c > 0) {
    eb.add_chunk_lengths(lengths_vec);
    eb.add_chunk_hashes(hashes_vec);
    eb.add_chunk_sources(sources_vec);
    eb.add_chunk_source_ranks(source_ranks_vec);
  }
  eb.add_shard_chunks(chunks_vec);
  eb.add_shard_bytes(bytes_vec);
  eb.add_shard_sizes(sizes_vec);
  eb.add_shard_offsets(offsets_vec);
  eb.add_shard_ranks(ranks_vec);
  eb.add_global_shape(shape_vec);
  if (e.torch_properties) eb.add_torch_properties(properties);
  eb.add_fqn(fqn_str);
  eb.add_dtype(static_cast<uint8_t>(e.dtype));
  eb.add_bytes_encoding(static_cast<fb::BytesEncoding>(e.bytes_encoding));
  return eb.Finish();
}

// Checks a shard's chunk list (if recorded): one record per chunk, lengths adding up to the
// shard's bytes, valid sources and ranks.
Status ValidateChunkList(const SavedShard& shard, int32_t world_size, const std::string& self,
                         const std::function<Status(const std::string&)>& error) {
  if (shard.chunk_list.empty()) return Status::Ok();
  if (shard.chunk_list.size() != shard.chunks) {
    return error(std::to_string(shard.chunk_list.size()) + " chunk records for " +
                 std::to_string(shard.chunks) + " chunks");
  }
  uint64_t total = 0;
  for (size_t k = 0; k < shard.chunk_list.size(); ++k) {
    const SavedChunk& c = shard.chunk_list[k];
    const std::string which = "chunk " + std::to_string(k) + ": ";
    if (__builtin_add_overflow(total, c.length, &total)) return error(which + "lengths overflow");
    if (c.source_rank < 0 || c.source_rank >= world_size) {
      // A source checkpoint may have been saved by a larger world.
      if (c.source.empty() || c.source_rank < 0) {
        return error(which + "rank " + std::to_string(c.source_rank) + " is invalid");
      }
    }
    if (!c.source.empty()) {
      if (c.source == self) return error(which + "refers to its own checkpoint by name");
      if (Status s = ValidateCheckpointId(c.source); !s.ok()) return error(which + s.message());
    } else if (c.source_rank != shard.rank) {
      return error(which + "stored under this checkpoint in rank " + std::to_string(c.source_rank) +
                   " but the shard is rank " + std::to_string(shard.rank) + "'s");
    }
  }
  if (total != shard.bytes) {
    return error("chunk lengths add up to " + std::to_string(total) + " bytes, not " +
                 std::to_string(shard.bytes));
  }
  return Status::Ok();
}

// Checks one entry's meaning; `where` ("checkpoint ...: fqn ...: ") prefixes every message.
Status ValidateEntry(const EntryMetadata& e, int32_t world_size, const std::string& self,
                     const std::string& where) {
  if (!IsValidDType(static_cast<uint8_t>(e.dtype))) {
    return InvalidArgumentError(where + "invalid dtype " +
                                std::to_string(static_cast<int>(e.dtype)));
  }
  const Shape& global = e.global_shape;
  const size_t n = global.size();
  if (n > kMaxTensorDims) {
    return InvalidArgumentError(where + "global shape has " + std::to_string(n) +
                                " dimensions; the limit is " + std::to_string(kMaxTensorDims));
  }
  const size_t element_size = ElementSize(e.dtype);
  // The global tensor's byte size must fit 64 bits unless it is empty. Then every shard's true
  // byte size (at most the global one, or 0) fits too, and the modular product below is exact.
  bool empty = false;
  for (uint64_t g : global) empty |= g == 0;
  uint64_t global_bytes = element_size;
  for (uint64_t g : global) {
    if (!empty && __builtin_mul_overflow(global_bytes, g, &global_bytes)) {
      return InvalidArgumentError(where + "global shape " + ShapeString(global) +
                                  " overflows 64 bits");
    }
  }
  for (size_t i = 0; i < e.shards.size(); ++i) {
    const SavedShard& shard = e.shards[i];
    auto error = [&](const std::string& what) {
      return InvalidArgumentError(where + "shard " + std::to_string(i) + ": " + what);
    };
    if (shard.offsets.size() != n || shard.sizes.size() != n) {
      return error(std::to_string(shard.offsets.size()) + " offsets and " +
                   std::to_string(shard.sizes.size()) + " sizes for a global shape of " +
                   std::to_string(n) + " dimensions");
    }
    uint64_t bytes = element_size;
    for (size_t d = 0; d < n; ++d) {
      const uint64_t off = shard.offsets[d];
      const uint64_t size = shard.sizes[d];
      if (off > global[d] || size > global[d] - off) {
        return error("offset " + std::to_string(off) + " + size " + std::to_string(size) +
                     " exceeds global dimension " + std::to_string(d) + " of " +
                     ShapeString(global));
      }
      bytes *= size;  // modular; exact in the end (see above)
    }
    if (shard.bytes != bytes) {
      return error("bytes " + std::to_string(shard.bytes) + " do not match sizes " +
                   ShapeString(shard.sizes) + " of " + std::string(DTypeName(e.dtype)) + " (" +
                   std::to_string(bytes) + ")");
    }
    if (shard.rank < 0 || shard.rank >= world_size) {
      return error("rank " + std::to_string(shard.rank) + " is outside [0, " +
                   std::to_string(world_size) + ")");
    }
    DCPKV_RETURN_IF_ERROR(ValidateChunkList(shard, world_size, self, error));
  }
  if (!IsKnownBytesEncoding(static_cast<uint8_t>(e.bytes_encoding))) {
    return InvalidArgumentError(where + "unknown bytes_encoding " +
                                std::to_string(static_cast<int>(e.bytes_encoding)));
  }
  if (e.bytes_encoding != BytesEncoding::kRaw && !e.is_bytes()) {
    return InvalidArgumentError(where + "bytes_encoding " + BytesEncodingName(e.bytes_encoding) +
                                " on a tensor (bytes entries only)");
  }
  if (const std::optional<TorchTensorProperties>& p = e.torch_properties; p.has_value()) {
    if (!p->has_strides && !p->strides.empty()) {
      return InvalidArgumentError(where + "torch properties: strides without has_strides");
    }
    if (p->strides.size() > kMaxTensorDims) {
      return InvalidArgumentError(where + "torch properties: " + std::to_string(p->strides.size()) +
                                  " strides; the limit is " + std::to_string(kMaxTensorDims));
    }
  }
  return Status::Ok();
}

// Checks the torch.distributed.checkpoint metadata; `ctx` ("checkpoint ...: ") prefixes every
// message.
Status ValidateTorchDcp(const TorchDcpMetadata& t, const std::string& ctx) {
  const std::string where = ctx + "torch metadata: ";
  if (!t.has_flatten_mapping && !t.flatten_mapping.empty()) {
    return InvalidArgumentError(where + "flatten mapping without has_flatten_mapping");
  }
  if (t.flatten_mapping.size() > kMaxMetadataEntries) {
    return InvalidArgumentError(where + std::to_string(t.flatten_mapping.size()) +
                                " flattened names; the limit is " +
                                std::to_string(kMaxMetadataEntries));
  }
  for (const auto& [fqn, path] : t.flatten_mapping) {
    if (Status s = ValidateFqn(fqn); !s.ok()) {
      return s.WithContext(where.substr(0, where.size() - 2) + ": flatten mapping");
    }
    for (size_t i = 0; i < path.size(); ++i) {
      if (path[i].index < -1) {
        return InvalidArgumentError(
            where + "flatten mapping: fqn " + Quoted(fqn) + ": path element " + std::to_string(i) +
            " has index " + std::to_string(path[i].index) + " (a list index is >= 0, a key -1)");
      }
    }
  }
  if (!t.has_storage_meta && (!t.storage_checkpoint_id.empty() || !t.save_id.empty() ||
                              !t.load_id.empty() || !t.modules.empty())) {
    return InvalidArgumentError(where + "storage meta fields without has_storage_meta");
  }
  return Status::Ok();
}

// Decodes one entry's columns into `out` (its meaning is checked by ValidateMetadata).
// `budget` is the number of buffer bytes not yet accounted to a decoded vector or string: the
// encoder never shares data between vectors, so the data decoded from one buffer cannot exceed
// its size, and a crafted buffer whose entries all point at the same large vectors is rejected
// before it can make decoding time or memory explode.
Status DecodeEntry(const fb::Entry& e, const std::string& where,
                   const std::vector<std::string>& sources, size_t* budget, EntryMetadata* out) {
  const size_t n = Len(e.global_shape());
  if (n > kMaxTensorDims) {
    return Corrupt(where + "global shape has " + std::to_string(n) + " dimensions; the limit is " +
                   std::to_string(kMaxTensorDims));
  }
  const size_t s = Len(e.shard_ranks());
  // s < 2^31 / 4 and n <= 64, so s * n cannot overflow.
  const size_t want[] = {s * n, s * n, s, s};
  const size_t have[] = {Len(e.shard_offsets()), Len(e.shard_sizes()), Len(e.shard_bytes()),
                         Len(e.shard_chunks())};
  const char* const names[] = {"shard_offsets", "shard_sizes", "shard_bytes", "shard_chunks"};
  for (size_t c = 0; c < 4; ++c) {
    if (have[c] != want[c]) {
      return Corrupt(where + names[c] + " has " + std::to_string(have[c]) + " values; " +
                     std::to_string(s) + " shards of " + std::to_string(n) + " dimensions need " +
                     std::to_string(want[c]));
    }
  }
  if (!ElementsAligned(e.global_shape()) || !ElementsAligned(e.shard_offsets()) ||
      !ElementsAligned(e.shard_sizes()) || !ElementsAligned(e.shard_bytes()) ||
      !ElementsAligned(e.chunk_lengths()) || !ElementsAligned(e.chunk_hashes()) ||
      (e.torch_properties() && !ElementsAligned(e.torch_properties()->strides()))) {
    return Corrupt(where + "misaligned vector of 8-byte values");
  }
  const size_t data_bytes = e.fqn()->size() + 8 * n + s * (8 * n * 2 + 4 + 8 + 4);
  if (data_bytes > *budget) {
    return Corrupt(where + "vectors overlap other data (decoded size exceeds the buffer)");
  }
  *budget -= data_bytes;

  out->dtype = static_cast<DType>(e.dtype());
  const uint8_t encoding = static_cast<uint8_t>(e.bytes_encoding());
  if (!IsKnownBytesEncoding(encoding)) {
    return Corrupt(where + "unknown bytes_encoding " + std::to_string(encoding));
  }
  out->bytes_encoding = static_cast<BytesEncoding>(encoding);
  if (const fb::TorchTensorProperties* p = e.torch_properties(); p != nullptr) {
    const size_t strides = Len(p->strides());
    if (strides > kMaxTensorDims) {
      return Corrupt(where + "torch properties: " + std::to_string(strides) +
                     " strides; the limit is " + std::to_string(kMaxTensorDims));
    }
    const size_t bytes = (p->layout() ? p->layout()->size() : 0) +
                         (p->memory_format() ? p->memory_format()->size() : 0) + 8 * strides;
    if (bytes > *budget) {
      return Corrupt(where + "vectors overlap other data (decoded size exceeds the buffer)");
    }
    *budget -= bytes;
    TorchTensorProperties& props = out->torch_properties.emplace();
    if (p->layout()) props.layout = p->layout()->str();
    if (p->memory_format()) props.memory_format = p->memory_format()->str();
    props.requires_grad = p->requires_grad();
    props.pin_memory = p->pin_memory();
    props.has_strides = p->has_strides();
    if (strides > 0) props.strides.assign(p->strides()->begin(), p->strides()->end());
  }
  if (n > 0) out->global_shape.assign(e.global_shape()->begin(), e.global_shape()->end());
  out->shards.resize(s);
  for (size_t i = 0; i < s; ++i) {
    SavedShard& shard = out->shards[i];
    shard.offsets.resize(n);
    shard.sizes.resize(n);
    for (size_t d = 0; d < n; ++d) {
      shard.offsets[d] = e.shard_offsets()->Get(i * n + d);
      shard.sizes[d] = e.shard_sizes()->Get(i * n + d);
    }
    shard.rank = e.shard_ranks()->Get(i);
    shard.bytes = e.shard_bytes()->Get(i);
    shard.chunks = e.shard_chunks()->Get(i);
  }
  const size_t c = Len(e.chunk_lengths());
  if (c == 0) {
    if (Len(e.chunk_hashes()) + Len(e.chunk_sources()) + Len(e.chunk_source_ranks()) != 0) {
      return Corrupt(where + "chunk columns without chunk_lengths");
    }
    return Status::Ok();
  }
  uint64_t recorded = 0;
  for (const SavedShard& shard : out->shards) recorded += shard.chunks;
  if (recorded != c || Len(e.chunk_hashes()) != 2 * c || Len(e.chunk_sources()) != c ||
      Len(e.chunk_source_ranks()) != c) {
    return Corrupt(where + "chunk columns of " + std::to_string(c) + ", " +
                   std::to_string(Len(e.chunk_hashes())) + ", " +
                   std::to_string(Len(e.chunk_sources())) + ", " +
                   std::to_string(Len(e.chunk_source_ranks())) + " values for " +
                   std::to_string(recorded) + " chunks");
  }
  if (c * 32 > *budget) {
    return Corrupt(where + "vectors overlap other data (decoded size exceeds the buffer)");
  }
  *budget -= c * 32;
  size_t k = 0;
  for (SavedShard& shard : out->shards) {
    shard.chunk_list.resize(shard.chunks);
    for (SavedChunk& chunk : shard.chunk_list) {
      chunk.length = e.chunk_lengths()->Get(k);
      chunk.hash_low = e.chunk_hashes()->Get(2 * k);
      chunk.hash_high = e.chunk_hashes()->Get(2 * k + 1);
      const uint32_t source = e.chunk_sources()->Get(k);
      if (source > sources.size()) {
        return Corrupt(where + "chunk " + std::to_string(k) + " names data source " +
                       std::to_string(source) + " of " + std::to_string(sources.size()));
      }
      if (source > 0) chunk.source = sources[source - 1];
      chunk.source_rank = e.chunk_source_ranks()->Get(k);
      ++k;
    }
  }
  return Status::Ok();
}

// Charges the bytes of string `s` (if any) to the budget (see DecodeEntry); false if they do not
// fit.
bool Take(const flatbuffers::String* s, size_t* budget) {
  const size_t n = s ? s->size() : 0;
  if (n > *budget) return false;
  *budget -= n;
  return true;
}

// Decodes the torch.distributed.checkpoint metadata into `out` (its meaning is checked by
// ValidateMetadata); `ctx` ("checkpoint ...: ") prefixes every message, `budget` as for
// DecodeEntry.
Status DecodeTorchDcp(const fb::TorchDcpMetadata& t, const std::string& ctx, size_t* budget,
                      TorchDcpMetadata* out) {
  const std::string where = ctx + "torch metadata: ";
  const auto overlap = [&] {
    return Corrupt(where + "vectors overlap other data (decoded size exceeds the buffer)");
  };
  if (!Take(t.version(), budget) || !Take(t.storage_checkpoint_id(), budget) ||
      !Take(t.save_id(), budget) || !Take(t.load_id(), budget)) {
    return overlap();
  }
  out->version = t.version() ? t.version()->str() : "";
  out->has_flatten_mapping = t.has_flatten_mapping();
  out->has_storage_meta = t.has_storage_meta();
  out->storage_checkpoint_id = t.storage_checkpoint_id() ? t.storage_checkpoint_id()->str() : "";
  out->save_id = t.save_id() ? t.save_id()->str() : "";
  out->load_id = t.load_id() ? t.load_id()->str() : "";
  for (size_t i = 0; i < Len(t.modules()); ++i) {
    const flatbuffers::String* module = t.modules()->Get(i);
    if (module == nullptr) return Corrupt(where + "bad module " + std::to_string(i));
    if (!Take(module, budget)) return overlap();
    out->modules.push_back(module->str());
  }
  const size_t count = Len(t.flatten_mapping());
  if (count > kMaxMetadataEntries) {
    return Corrupt(where + std::to_string(count) + " flattened names; the limit is " +
                   std::to_string(kMaxMetadataEntries));
  }
  std::string_view previous;
  for (size_t i = 0; i < count; ++i) {
    const fb::FlattenedName* name = t.flatten_mapping()->Get(i);
    const std::string_view fqn = name->fqn()->string_view();
    if (i > 0 && fqn <= previous) {
      return Corrupt(where + "flatten mapping: " +
                     (fqn == previous
                          ? "duplicate fqn " + Quoted(fqn)
                          : "fqn " + Quoted(fqn) + " out of order after " + Quoted(previous)));
    }
    previous = fqn;
    const std::string name_where = where + "flatten mapping: fqn " + Quoted(fqn) + ": ";
    const size_t n = Len(name->path_keys());
    if (Len(name->path_indices()) != n) {
      return Corrupt(name_where + std::to_string(n) + " path_keys for " +
                     std::to_string(Len(name->path_indices())) + " path_indices");
    }
    if (!ElementsAligned(name->path_indices())) {
      return Corrupt(name_where + "misaligned vector of 8-byte values");
    }
    // n < 2^31 / 4: no overflow.
    if (fqn.size() + 8 * n > *budget) return overlap();
    *budget -= fqn.size() + 8 * n;
    std::vector<TorchPathElement> path(n);
    for (size_t k = 0; k < n; ++k) {
      const flatbuffers::String* key = name->path_keys()->Get(k);
      if (key == nullptr) return Corrupt(name_where + "bad path key " + std::to_string(k));
      if (!Take(key, budget)) return overlap();
      path[k].key = key->str();
      path[k].index = name->path_indices()->Get(k);
    }
    out->flatten_mapping.emplace_hint(out->flatten_mapping.end(), std::string(fqn),
                                      std::move(path));
  }
  return Status::Ok();
}

StatusOr<Metadata> DecodeAligned(const uint8_t* data, size_t size) {
  if (!fb::CheckpointMetadataBufferHasIdentifier(data)) {
    return Corrupt("missing file identifier \"DKVD\"");
  }
  flatbuffers::Verifier verifier(data, size, kMaxVerifierDepth, kMaxVerifierTables);
  if (!fb::VerifyCheckpointMetadataBuffer(verifier)) {
    return Corrupt("FlatBuffers verification failed");
  }
  const fb::CheckpointMetadata* m = fb::GetCheckpointMetadata(data);
  if (m->format_version() == 0 || m->format_version() > kMetadataFormatVersion) {
    return Corrupt("unsupported format version " + std::to_string(m->format_version()) +
                   " (this build reads up to " + std::to_string(kMetadataFormatVersion) + ")");
  }
  if (!m->checkpoint_id()) return Corrupt("missing checkpoint id");
  Metadata md;
  md.checkpoint_id = m->checkpoint_id()->str();
  md.world_size = m->world_size();
  md.coordinator_rank = m->coordinator_rank();
  md.committed_unix_micros = m->committed_unix_micros();
  md.per_rank_commit = m->per_rank_commit();
  const std::string ctx = "checkpoint " + Quoted(md.checkpoint_id) + ": ";
  const size_t count = Len(m->entries());
  if (count > kMaxMetadataEntries) {
    return Corrupt(ctx + std::to_string(count) + " entries; the limit is " +
                   std::to_string(kMaxMetadataEntries));
  }
  md.base_checkpoint_id = m->base_checkpoint_id() ? m->base_checkpoint_id()->str() : "";
  md.stored_bytes = m->stored_bytes();
  size_t budget = size - md.checkpoint_id.size();
  std::vector<std::string> sources;
  for (size_t i = 0; i < Len(m->data_sources()); ++i) {
    const flatbuffers::String* id = m->data_sources()->Get(i);
    if (id == nullptr || id->size() > budget)
      return Corrupt(ctx + "bad data source " + std::to_string(i));
    budget -= id->size();
    sources.push_back(id->str());
  }
  for (size_t i = 0; i < Len(m->tags()); ++i) {
    const fb::Tag* tag = m->tags()->Get(i);
    std::string value = tag->value() ? tag->value()->str() : "";
    if (!md.tags.emplace(tag->key()->str(), std::move(value)).second) {
      return Corrupt(ctx + "duplicate tag " + Quoted(tag->key()->string_view()));
    }
  }
  if (const fb::TorchDcpMetadata* t = m->torch_dcp(); t != nullptr) {
    DCPKV_RETURN_IF_ERROR(DecodeTorchDcp(*t, ctx, &budget, &md.torch_dcp.emplace()));
  }
  std::string_view previous;
  for (size_t i = 0; i < count; ++i) {
    const fb::Entry* e = m->entries()->Get(i);
    const std::string_view fqn = e->fqn()->string_view();
    if (i > 0 && fqn <= previous) {
      return Corrupt(ctx + (fqn == previous ? "duplicate fqn " + Quoted(fqn)
                                            : "fqn " + Quoted(fqn) + " out of order after " +
                                                  Quoted(previous)));
    }
    previous = fqn;
    EntryMetadata entry;
    DCPKV_RETURN_IF_ERROR(
        DecodeEntry(*e, ctx + "fqn " + Quoted(fqn) + ": ", sources, &budget, &entry));
    md.entries.emplace_hint(md.entries.end(), std::string(fqn), std::move(entry));
  }
  if (Status s = ValidateMetadata(md); !s.ok()) return Corrupt(s.message());
  return md;
}

}  // namespace

Status ValidateMetadata(const Metadata& metadata) {
  if (Status s = ValidateCheckpointId(metadata.checkpoint_id); !s.ok()) return s;
  const std::string ctx = "checkpoint " + Quoted(metadata.checkpoint_id) + ": ";
  if (metadata.world_size < 1) {
    return InvalidArgumentError(ctx + "world_size " + std::to_string(metadata.world_size) +
                                " is not positive");
  }
  if (metadata.coordinator_rank < 0 || metadata.coordinator_rank >= metadata.world_size) {
    return InvalidArgumentError(ctx + "coordinator_rank " +
                                std::to_string(metadata.coordinator_rank) + " is outside [0, " +
                                std::to_string(metadata.world_size) + ")");
  }
  if (metadata.entries.size() > kMaxMetadataEntries) {
    return InvalidArgumentError(ctx + std::to_string(metadata.entries.size()) +
                                " entries; the limit is " + std::to_string(kMaxMetadataEntries));
  }
  if (!metadata.base_checkpoint_id.empty()) {
    if (Status s = ValidateCheckpointId(metadata.base_checkpoint_id); !s.ok()) {
      return s.WithContext(ctx + "base checkpoint");
    }
  }
  if (metadata.tags.size() > kMaxTags) {
    return InvalidArgumentError(ctx + std::to_string(metadata.tags.size()) +
                                " tags; the limit is " + std::to_string(kMaxTags));
  }
  for (const auto& [key, value] : metadata.tags) {
    if (key.empty() || key.size() > kMaxTagKeyLength || value.size() > kMaxTagValueLength) {
      return InvalidArgumentError(ctx + "tag " + Quoted(key) + ": keys must have 1.." +
                                  std::to_string(kMaxTagKeyLength) + " bytes and values at most " +
                                  std::to_string(kMaxTagValueLength));
    }
  }
  for (const auto& [fqn, entry] : metadata.entries) {
    if (Status s = ValidateFqn(fqn); !s.ok()) return s.WithContext(ctx.substr(0, ctx.size() - 2));
    DCPKV_RETURN_IF_ERROR(ValidateEntry(entry, metadata.world_size, metadata.checkpoint_id,
                                        ctx + "fqn " + Quoted(fqn) + ": "));
  }
  if (metadata.torch_dcp) DCPKV_RETURN_IF_ERROR(ValidateTorchDcp(*metadata.torch_dcp, ctx));
  return Status::Ok();
}

std::string EncodeMetadata(const Metadata& metadata) {
  size_t estimate = 256 + metadata.checkpoint_id.size();
  for (const auto& [fqn, e] : metadata.entries) {
    estimate += 64 + fqn.size() + 8 * e.global_shape.size() +
                e.shards.size() * (16 * e.global_shape.size() + 16);
  }
  std::map<std::string, uint32_t> source_index;
  std::vector<std::string> sources;
  for (const auto& [fqn, e] : metadata.entries) {
    estimate += 32 * RecordedChunks(e);
    for (const SavedShard& s : e.shards) {
      for (const SavedChunk& c : s.chunk_list) {
        if (!c.source.empty() && source_index.emplace(c.source, sources.size()).second) {
          sources.push_back(c.source);
        }
      }
    }
  }
  flatbuffers::FlatBufferBuilder b(estimate);
  std::vector<flatbuffers::Offset<fb::Entry>> entries;
  entries.reserve(metadata.entries.size());
  for (const auto& [fqn, e] : metadata.entries) {
    entries.push_back(EncodeEntry(b, fqn, e, source_index));
  }
  auto entries_vec = b.CreateVector(entries);
  auto id = b.CreateString(metadata.checkpoint_id);
  auto sources_vec = b.CreateVectorOfStrings(sources);
  flatbuffers::Offset<flatbuffers::String> base;
  if (!metadata.base_checkpoint_id.empty()) base = b.CreateString(metadata.base_checkpoint_id);
  std::vector<flatbuffers::Offset<fb::Tag>> tags;
  for (const auto& [key, value] : metadata.tags) {
    auto k = b.CreateString(key);
    auto v = b.CreateString(value);
    tags.push_back(fb::CreateTag(b, k, v));
  }
  auto tags_vec = b.CreateVector(tags);
  flatbuffers::Offset<fb::TorchDcpMetadata> torch_dcp;
  if (metadata.torch_dcp) torch_dcp = EncodeTorchDcp(b, *metadata.torch_dcp);
  fb::CheckpointMetadataBuilder mb(b);
  mb.add_data_sources(sources_vec);
  if (!metadata.base_checkpoint_id.empty()) mb.add_base_checkpoint_id(base);
  mb.add_stored_bytes(metadata.stored_bytes);
  mb.add_tags(tags_vec);
  if (metadata.torch_dcp) mb.add_torch_dcp(torch_dcp);
  mb.add_committed_unix_micros(metadata.committed_unix_micros);
  mb.add_checkpoint_id(id);
  mb.add_world_size(metadata.world_size);
  mb.add_coordinator_rank(metadata.coordinator_rank);
  mb.add_entries(entries_vec);
  mb.add_format_version(kMetadataFormatVersion);
  mb.add_per_rank_commit(metadata.per_rank_commit);
  b.Finish(mb.Finish(), fb::CheckpointMetadataIdentifier());
  return std::string(reinterpret_cast<const char*>(b.GetBufferPointer()), b.GetSize());
}

StatusOr<Metadata> DecodeMetadata(std::string_view bytes) {
  if (bytes.size() < 8) {
    return Corrupt("encoding is " + std::to_string(bytes.size()) + " bytes, too short");
  }
  if (bytes.size() >= FLATBUFFERS_MAX_BUFFER_SIZE) {
    return Corrupt("encoding is " + std::to_string(bytes.size()) + " bytes, over 2 GiB");
  }
  // FlatBuffers reads 8-byte scalars in place: decode unaligned input from an aligned copy.
  if (reinterpret_cast<uintptr_t>(bytes.data()) % 8 == 0) {
    return DecodeAligned(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
  }
  std::vector<uint64_t> aligned((bytes.size() + 7) / 8);
  std::memcpy(aligned.data(), bytes.data(), bytes.size());
  return DecodeAligned(reinterpret_cast<const uint8_t*>(aligned.data()), bytes.size());
}

}  // namespace dcpkv

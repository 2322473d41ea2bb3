// Plan wire layout (all integers little-endian; see plan_codec.h):
//   header        := magic:u8 (0xDC) kind:u8 version:u8 (2)
//                    kind: 'S' SavePlan | 'L' LoadPlan | 'W' write results | 'E' Status
//   varint        := unsigned LEB128, 1..10 bytes, minimal (no trailing 0x00 group), < 2^64
//   svarint       := zigzag(int32) as varint, < 2^32
//   bytes         := len:varint u8{len}
//   shape         := ndim:varint (<= 64) dim:varint{ndim}
//   SavePlan      := header('S') n:varint WriteItem{n} planner_data:bytes storage_data:bytes
//   WriteItem     := fqn:bytes type:u8 (WriteItemType) dtype:u8 (DType)
//                    global_shape:shape offsets:shape sizes:shape
//   LoadPlan      := header('L') n:varint ReadItem{n} planner_data:bytes storage_data:bytes
//   ReadItem      := fqn:bytes type:u8 dtype:u8 dest_offsets:shape source:SavedShard
//                    overlap_offsets:shape overlap_sizes:shape
//   SavedShard    := offsets:shape sizes:shape rank:svarint bytes:varint chunks:varint (< 2^32)
//                    chunk_list:ChunkList
//   ChunkList     := n:varint SavedChunk{n}          (n is 0 or chunks)
//   SavedChunk    := length:varint hash_low:varint hash_high:varint source:bytes
//                    source_rank:svarint
//   WriteResults  := header('W') n:varint WriteResult{n}
//   WriteResult   := fqn:bytes offsets:shape rank:svarint bytes:varint chunks:varint (< 2^32)
//                    chunk_list:ChunkList
//   Status        := header('E') code:u8 (StatusCode) message:bytes (empty when code is OK)
// An encoding ends exactly after its last field. Header bytes and enum values DO NOT CHANGE; a
// changed layout gets a new version.
#include "dcpkv/core/plan_codec.h"

#include <cstddef>
#include <limits>
#include <utility>

#include "dcpkv/core/hash.h"
#include "dcpkv/core/names.h"

namespace dcpkv {
namespace {

constexpr uint8_t kKindSavePlan = 'S';
constexpr uint8_t kKindLoadPlan = 'L';
constexpr uint8_t kKindWriteResults = 'W';
constexpr uint8_t kKindStatus = 'E';

// Largest StatusCode value this build knows (keep in step with status.h).
constexpr uint8_t kMaxStatusCode = static_cast<uint8_t>(StatusCode::kInternal);
constexpr uint8_t kMaxWriteItemType = static_cast<uint8_t>(WriteItemType::kBytes);

// Fewest bytes one encoded element can take (every field at its one-byte minimum); a count is
// rejected unless that many elements fit in the remaining input.
constexpr size_t kMinWriteItemBytes = 6;   // fqn, type, dtype, 3 shapes
constexpr size_t kMinSavedShardBytes = 6;  // 2 shapes, rank, bytes, chunks, chunk count
constexpr size_t kMinSavedChunkBytes = 5;  // length, 2 hash halves, source, rank
constexpr size_t kMinReadItemBytes = 6 + kMinSavedShardBytes;  // fqn, type, dtype, 3 shapes
constexpr size_t kMinWriteResultBytes = 6;                     // fqn, shape, rank, bytes, chunks

class ByteWriter {
 public:
  explicit ByteWriter(uint8_t kind) {
    out_.push_back(static_cast<char>(kPlanWireMagic));
    out_.push_back(static_cast<char>(kind));
    out_.push_back(static_cast<char>(kPlanWireVersion));
  }

  void U8(uint8_t v) { out_.push_back(static_cast<char>(v)); }
  void Varint(uint64_t v) {
    while (v >= 0x80) {
      out_.push_back(static_cast<char>((v & 0x7F) | 0x80));
      v >>= 7;
    }
    out_.push_back(static_cast<char>(v));
  }
  void Svarint(int32_t v) {
    const uint32_t u = static_cast<uint32_t>(v);
    Varint((u << 1) ^ (v < 0 ? 0xFFFFFFFFu : 0u));
  }
  void Bytes(std::string_view s) {
    Varint(s.size());
    out_.append(s);
  }
  void ShapeField(const Shape& shape) {
    Varint(shape.size());
    for (uint64_t d : shape) Varint(d);
  }

  std::string Take() && { return std::move(out_); }

 private:
  std::string out_;
};

// Reads fields in order. Each read checks bounds first; an error names the field and the byte
// offset where it starts.
class ByteReader {
 public:
  explicit ByteReader(std::string_view in) : in_(in) {}

  size_t remaining() const { return in_.size() - pos_; }

  Status Header(uint8_t kind) {
    if (in_.size() < 3) {
      return DataLossError("encoding is " + std::to_string(in_.size()) + " bytes, too short");
    }
    const auto magic = static_cast<uint8_t>(in_[0]);
    const auto got_kind = static_cast<uint8_t>(in_[1]);
    const auto version = static_cast<uint8_t>(in_[2]);
    if (magic != kPlanWireMagic) return DataLossError("bad magic byte " + std::to_string(magic));
    if (got_kind != kind) {
      return DataLossError("message kind " + KindName(got_kind) + ", expected " + KindName(kind));
    }
    if (version != kPlanWireVersion) {
      return DataLossError("unsupported version " + std::to_string(version) +
                           " (this build reads " + std::to_string(kPlanWireVersion) + ")");
    }
    pos_ = 3;
    return Status::Ok();
  }

  Status U8(const char* what, uint8_t* out) {
    if (remaining() < 1) return Error(what, "truncated");
    *out = static_cast<uint8_t>(in_[pos_++]);
    return Status::Ok();
  }

  Status Varint(const char* what, uint64_t* out) {
    const size_t start = pos_;
    uint64_t v = 0;
    for (int i = 0;; ++i) {
      if (pos_ >= in_.size()) return Error(what, "truncated varint", start);
      const auto b = static_cast<uint8_t>(in_[pos_++]);
      if (i == 9 && b > 1) return Error(what, "varint overflows 64 bits", start);
      v |= static_cast<uint64_t>(b & 0x7F) << (7 * i);
      if ((b & 0x80) == 0) {
        if (b == 0 && i > 0) return Error(what, "varint is not minimally encoded", start);
        *out = v;
        return Status::Ok();
      }
    }
  }

  Status U32(const char* what, uint32_t* out) {
    const size_t start = pos_;
    uint64_t v = 0;
    DCPKV_RETURN_IF_ERROR(Varint(what, &v));
    if (v > std::numeric_limits<uint32_t>::max()) {
      return Error(what, "value " + std::to_string(v) + " exceeds 32 bits", start);
    }
    *out = static_cast<uint32_t>(v);
    return Status::Ok();
  }

  Status Svarint(const char* what, int32_t* out) {
    uint32_t z = 0;
    DCPKV_RETURN_IF_ERROR(U32(what, &z));
    *out = static_cast<int32_t>((z >> 1) ^ (0u - (z & 1u)));
    return Status::Ok();
  }

  Status Bytes(const char* what, std::string* out) {
    const size_t start = pos_;
    uint64_t len = 0;
    DCPKV_RETURN_IF_ERROR(Varint(what, &len));
    if (len > remaining()) {
      return Error(what,
                   "length " + std::to_string(len) + " exceeds the " + std::to_string(remaining()) +
                       " remaining bytes",
                   start);
    }
    out->assign(in_.data() + pos_, static_cast<size_t>(len));
    pos_ += static_cast<size_t>(len);
    return Status::Ok();
  }

  Status ShapeField(const char* what, Shape* out) {
    const size_t start = pos_;
    uint64_t n = 0;
    DCPKV_RETURN_IF_ERROR(Varint(what, &n));
    if (n > kMaxTensorDims) {
      return Error(
          what, std::to_string(n) + " dimensions; the limit is " + std::to_string(kMaxTensorDims),
          start);
    }
    if (n > remaining()) {
      return Error(what,
                   std::to_string(n) + " dimensions exceed the " + std::to_string(remaining()) +
                       " remaining bytes",
                   start);
    }
    out->resize(static_cast<size_t>(n));
    for (uint64_t& d : *out) DCPKV_RETURN_IF_ERROR(Varint(what, &d));
    return Status::Ok();
  }

  // Reads an element count and checks that `count` elements of at least `min_bytes` each fit in
  // the remaining input, so that the caller may reserve() it.
  Status Count(const char* what, size_t min_bytes, size_t* out) {
    const size_t start = pos_;
    uint64_t n = 0;
    DCPKV_RETURN_IF_ERROR(Varint(what, &n));
    if (n > remaining() / min_bytes) {
      return Error(what,
                   "count " + std::to_string(n) + " cannot fit in the " +
                       std::to_string(remaining()) + " remaining bytes",
                   start);
    }
    *out = static_cast<size_t>(n);
    return Status::Ok();
  }

  Status DTypeField(const char* what, DType* out) {
    const size_t start = pos_;
    uint8_t v = 0;
    DCPKV_RETURN_IF_ERROR(U8(what, &v));
    if (!IsValidDType(v)) return Error(what, "invalid dtype " + std::to_string(v), start);
    *out = static_cast<DType>(v);
    return Status::Ok();
  }

  Status ItemType(const char* what, WriteItemType* out) {
    const size_t start = pos_;
    uint8_t v = 0;
    DCPKV_RETURN_IF_ERROR(U8(what, &v));
    if (v > kMaxWriteItemType) {
      return Error(what, "invalid WriteItemType " + std::to_string(v), start);
    }
    *out = static_cast<WriteItemType>(v);
    return Status::Ok();
  }

  Status Finish() const {
    if (remaining() != 0) {
      return DataLossError(std::to_string(remaining()) + " trailing bytes at byte " +
                           std::to_string(pos_));
    }
    return Status::Ok();
  }

 private:
  static std::string KindName(uint8_t kind) {
    switch (kind) {
      case kKindSavePlan: return "SavePlan";
      case kKindLoadPlan: return "LoadPlan";
      case kKindWriteResults: return "WriteResults";
      case kKindStatus: return "Status";
    }
    return std::to_string(kind);
  }

  Status Error(const char* what, const std::string& problem) const {
    return Error(what, problem, pos_);
  }
  static Status Error(const char* what, const std::string& problem, size_t at) {
    return DataLossError(std::string(what) + ": " + problem + " at byte " + std::to_string(at));
  }

  std::string_view in_;
  size_t pos_ = 0;
};

std::string ItemContext(const char* kind, size_t i) {
  return std::string(kind) + " " + std::to_string(i);
}

void WriteChunkList(ByteWriter& w, const std::vector<SavedChunk>& chunks) {
  w.Varint(chunks.size());
  for (const SavedChunk& c : chunks) {
    w.Varint(c.length);
    w.Varint(c.hash_low);
    w.Varint(c.hash_high);
    w.Bytes(c.source);
    w.Svarint(c.source_rank);
  }
}

Status ReadChunkList(ByteReader& r, uint32_t chunks, std::vector<SavedChunk>* out) {
  size_t n = 0;
  DCPKV_RETURN_IF_ERROR(r.Count("chunk list", kMinSavedChunkBytes, &n));
  if (n != 0 && n != chunks) {
    return DataLossError("chunk list of " + std::to_string(n) + " records for " +
                         std::to_string(chunks) + " chunks");
  }
  out->resize(n);
  for (SavedChunk& c : *out) {
    DCPKV_RETURN_IF_ERROR(r.Varint("chunk.length", &c.length));
    DCPKV_RETURN_IF_ERROR(r.Varint("chunk.hash_low", &c.hash_low));
    DCPKV_RETURN_IF_ERROR(r.Varint("chunk.hash_high", &c.hash_high));
    DCPKV_RETURN_IF_ERROR(r.Bytes("chunk.source", &c.source));
    DCPKV_RETURN_IF_ERROR(r.Svarint("chunk.source_rank", &c.source_rank));
  }
  return Status::Ok();
}

void WriteSavedShard(ByteWriter& w, const SavedShard& s) {
  w.ShapeField(s.offsets);
  w.ShapeField(s.sizes);
  w.Svarint(s.rank);
  w.Varint(s.bytes);
  w.Varint(s.chunks);
  WriteChunkList(w, s.chunk_list);
}

Status ReadSavedShard(ByteReader& r, SavedShard* s) {
  DCPKV_RETURN_IF_ERROR(r.ShapeField("source.offsets", &s->offsets));
  DCPKV_RETURN_IF_ERROR(r.ShapeField("source.sizes", &s->sizes));
  DCPKV_RETURN_IF_ERROR(r.Svarint("source.rank", &s->rank));
  DCPKV_RETURN_IF_ERROR(r.Varint("source.bytes", &s->bytes));
  DCPKV_RETURN_IF_ERROR(r.U32("source.chunks", &s->chunks));
  return ReadChunkList(r, s->chunks, &s->chunk_list);
}

Status ReadWriteItem(ByteReader& r, WriteItem* item) {
  DCPKV_RETURN_IF_ERROR(r.Bytes("fqn", &item->fqn));
  DCPKV_RETURN_IF_ERROR(r.ItemType("type", &item->type));
  DCPKV_RETURN_IF_ERROR(r.DTypeField("dtype", &item->dtype));
  DCPKV_RETURN_IF_ERROR(r.ShapeField("global_shape", &item->global_shape));
  DCPKV_RETURN_IF_ERROR(r.ShapeField("offsets", &item->offsets));
  DCPKV_RETURN_IF_ERROR(r.ShapeField("sizes", &item->sizes));
  return Status::Ok();
}

Status ReadReadItem(ByteReader& r, ReadItem* item) {
  DCPKV_RETURN_IF_ERROR(r.Bytes("fqn", &item->fqn));
  DCPKV_RETURN_IF_ERROR(r.ItemType("type", &item->type));
  DCPKV_RETURN_IF_ERROR(r.DTypeField("dtype", &item->dtype));
  DCPKV_RETURN_IF_ERROR(r.ShapeField("dest_offsets", &item->dest_offsets));
  DCPKV_RETURN_IF_ERROR(ReadSavedShard(r, &item->source));
  DCPKV_RETURN_IF_ERROR(r.ShapeField("overlap_offsets", &item->overlap_offsets));
  DCPKV_RETURN_IF_ERROR(r.ShapeField("overlap_sizes", &item->overlap_sizes));
  return Status::Ok();
}

Status ReadWriteResult(ByteReader& r, WriteResult* result) {
  DCPKV_RETURN_IF_ERROR(r.Bytes("fqn", &result->fqn));
  DCPKV_RETURN_IF_ERROR(r.ShapeField("offsets", &result->offsets));
  DCPKV_RETURN_IF_ERROR(r.Svarint("rank", &result->rank));
  DCPKV_RETURN_IF_ERROR(r.Varint("bytes", &result->bytes));
  DCPKV_RETURN_IF_ERROR(r.U32("chunks", &result->chunks));
  return ReadChunkList(r, result->chunks, &result->chunk_list);
}

// Decodes the items and the two private strings shared by SavePlan and LoadPlan.
template <typename Plan, typename ReadItemFn>
Status ReadPlan(std::string_view bytes, uint8_t kind, const char* item_name, size_t min_item_bytes,
                ReadItemFn read_item, Plan* plan) {
  ByteReader r(bytes);
  DCPKV_RETURN_IF_ERROR(r.Header(kind));
  size_t n = 0;
  DCPKV_RETURN_IF_ERROR(r.Count("item count", min_item_bytes, &n));
  plan->items.resize(n);
  for (size_t i = 0; i < n; ++i) {
    if (Status s = read_item(r, &plan->items[i]); !s.ok()) {
      return s.WithContext(ItemContext(item_name, i));
    }
  }
  DCPKV_RETURN_IF_ERROR(r.Bytes("planner_data", &plan->planner_data));
  DCPKV_RETURN_IF_ERROR(r.Bytes("storage_data", &plan->storage_data));
  return r.Finish();
}

}  // namespace

std::string EncodeSavePlan(const SavePlan& plan) {
  ByteWriter w(kKindSavePlan);
  w.Varint(plan.items.size());
  for (const WriteItem& item : plan.items) {
    w.Bytes(item.fqn);
    w.U8(static_cast<uint8_t>(item.type));
    w.U8(static_cast<uint8_t>(item.dtype));
    w.ShapeField(item.global_shape);
    w.ShapeField(item.offsets);
    w.ShapeField(item.sizes);
  }
  w.Bytes(plan.planner_data);
  w.Bytes(plan.storage_data);
  return std::move(w).Take();
}

StatusOr<SavePlan> DecodeSavePlan(std::string_view bytes) {
  SavePlan plan;
  if (Status s =
          ReadPlan(bytes, kKindSavePlan, "write item", kMinWriteItemBytes, ReadWriteItem, &plan);
      !s.ok()) {
    return s.WithContext("corrupt SavePlan encoding");
  }
  return plan;
}

std::string EncodeLoadPlan(const LoadPlan& plan) {
  ByteWriter w(kKindLoadPlan);
  w.Varint(plan.items.size());
  for (const ReadItem& item : plan.items) {
    w.Bytes(item.fqn);
    w.U8(static_cast<uint8_t>(item.type));
    w.U8(static_cast<uint8_t>(item.dtype));
    w.ShapeField(item.dest_offsets);
    WriteSavedShard(w, item.source);
    w.ShapeField(item.overlap_offsets);
    w.ShapeField(item.overlap_sizes);
  }
  w.Bytes(plan.planner_data);
  w.Bytes(plan.storage_data);
  return std::move(w).Take();
}

StatusOr<LoadPlan> DecodeLoadPlan(std::string_view bytes) {
  LoadPlan plan;
  if (Status s =
          ReadPlan(bytes, kKindLoadPlan, "read item", kMinReadItemBytes, ReadReadItem, &plan);
      !s.ok()) {
    return s.WithContext("corrupt LoadPlan encoding");
  }
  return plan;
}

std::string EncodeWriteResults(const std::vector<WriteResult>& results) {
  ByteWriter w(kKindWriteResults);
  w.Varint(results.size());
  for (const WriteResult& result : results) {
    w.Bytes(result.fqn);
    w.ShapeField(result.offsets);
    w.Svarint(result.rank);
    w.Varint(result.bytes);
    w.Varint(result.chunks);
    WriteChunkList(w, result.chunk_list);
  }
  return std::move(w).Take();
}

StatusOr<std::vector<WriteResult>> DecodeWriteResults(std::string_view bytes) {
  auto decode = [&](std::vector<WriteResult>* results) -> Status {
    ByteReader r(bytes);
    DCPKV_RETURN_IF_ERROR(r.Header(kKindWriteResults));
    size_t n = 0;
    DCPKV_RETURN_IF_ERROR(r.Count("result count", kMinWriteResultBytes, &n));
    results->resize(n);
    for (size_t i = 0; i < n; ++i) {
      if (Status s = ReadWriteResult(r, &(*results)[i]); !s.ok()) {
        return s.WithContext(ItemContext("write result", i));
      }
    }
    return r.Finish();
  };
  std::vector<WriteResult> results;
  if (Status s = decode(&results); !s.ok()) {
    return s.WithContext("corrupt WriteResults encoding");
  }
  return results;
}

std::string EncodeStatus(const Status& status) {
  ByteWriter w(kKindStatus);
  w.U8(static_cast<uint8_t>(status.code()));
  w.Bytes(status.message());
  return std::move(w).Take();
}

Status DecodeStatus(std::string_view bytes, Status* out) {
  auto decode = [&](Status* decoded) -> Status {
    ByteReader r(bytes);
    DCPKV_RETURN_IF_ERROR(r.Header(kKindStatus));
    uint8_t code = 0;
    DCPKV_RETURN_IF_ERROR(r.U8("code", &code));
    if (code > kMaxStatusCode)
      return DataLossError("code: invalid StatusCode " + std::to_string(code));
    std::string message;
    DCPKV_RETURN_IF_ERROR(r.Bytes("message", &message));
    if (code == static_cast<uint8_t>(StatusCode::kOk) && !message.empty()) {
      return DataLossError("message: an OK status carries no message");
    }
    DCPKV_RETURN_IF_ERROR(r.Finish());
    *decoded = Status(static_cast<StatusCode>(code), message);
    return Status::Ok();
  };
  Status decoded;
  if (Status s = decode(&decoded); !s.ok()) return s.WithContext("corrupt Status encoding");
  *out = std::move(decoded);
  return Status::Ok();
}

uint64_t HashSavePlan(const SavePlan& plan) {
  const std::string bytes = EncodeSavePlan(plan);
  return HashBytes(bytes.data(), bytes.size()).lo;
}

}  // namespace dcpkv

#include "manifest_tail.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <string_view>

namespace dcpkv {
namespace {

// RocksDB's log format (db/log_format.h), which the MANIFEST is written in: 32 KiB blocks of
// records, each a 7-byte header (masked CRC32C of the type byte and the payload, little-endian;
// the payload's length, 2 bytes little-endian; the type) and the payload. A logical record is
// one kFull record or a kFirst, kMiddle..., kLast run. Fewer than 7 bytes left in a block are
// zeros.
constexpr uint64_t kBlockSize = 32768;
constexpr uint64_t kHeaderSize = 7;
enum RecordType : uint8_t { kFull = 1, kFirst = 2, kMiddle = 3, kLast = 4 };
// The torn part RocksDB can leave: what it appended since its last sync, a record or a few.
constexpr uint64_t kMaxTornBytes = 4 * kBlockSize;

uint32_t Crc32c(uint32_t crc, std::string_view data) {
  static const std::array<uint32_t, 256> table = [] {
    std::array<uint32_t, 256> t{};
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c >> 1) ^ (0x82F63B78u & (0u - (c & 1u)));
      t[i] = c;
    }
    return t;
  }();
  crc = ~crc;
  for (unsigned char b : data) crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8);
  return ~crc;
}

uint32_t Unmask(uint32_t masked) {
  const uint32_t rot = masked - 0xa282ead8u;
  return (rot >> 17) | (rot << 15);
}

uint32_t Fixed32(const char* p) {
  uint32_t v = 0;
  std::memcpy(&v, p, 4);  // little-endian hosts only, as RocksDB's own files
  return v;
}

// The record at `pos`, if one reads back there: its type and length.
bool RecordAt(std::string_view file, uint64_t pos, uint8_t* type, uint64_t* length) {
  const uint64_t left_in_block = kBlockSize - pos % kBlockSize;
  if (left_in_block < kHeaderSize || pos + kHeaderSize > file.size()) return false;
  const char* h = file.data() + pos;
  *length = static_cast<uint8_t>(h[4]) | (static_cast<uint64_t>(static_cast<uint8_t>(h[5])) << 8);
  *type = static_cast<uint8_t>(h[6]);
  if (*type < kFull || *type > kLast) return false;
  if (kHeaderSize + *length > left_in_block || pos + kHeaderSize + *length > file.size()) {
    return false;
  }
  const uint32_t crc = Crc32c(0, file.substr(pos + 6, 1 + *length));
  return crc == Unmask(Fixed32(h));
}

}  // namespace

StatusOr<TornManifestTail> FindTornManifestTail(rocksdb::FileSystem* fs, const std::string& dir) {
  std::string current;
  rocksdb::IOStatus s = rocksdb::ReadFileToString(fs, dir + "/CURRENT", &current);
  if (!s.ok()) return NotFoundError("cannot read " + dir + "/CURRENT: " + s.ToString());
  while (!current.empty() && (current.back() == '\n' || current.back() == '\r')) current.pop_back();
  if (current.rfind("MANIFEST-", 0) != 0 || current.find('/') != std::string::npos) {
    return NotFoundError(dir + "/CURRENT names no MANIFEST");
  }
  TornManifestTail tail;
  tail.path = dir + "/" + current;
  std::string file;
  s = rocksdb::ReadFileToString(fs, tail.path, &file);
  if (!s.ok()) return NotFoundError("cannot read " + tail.path + ": " + s.ToString());
  tail.file_bytes = file.size();

  // Walk the records; `valid` ends the last whole logical record.
  uint64_t pos = 0, valid = 0;
  bool in_fragments = false;
  while (pos < file.size()) {
    const uint64_t left_in_block = kBlockSize - pos % kBlockSize;
    if (left_in_block < kHeaderSize) {
      pos += left_in_block;  // a block's trailer
      continue;
    }
    uint8_t type = 0;
    uint64_t length = 0;
    if (!RecordAt(file, pos, &type, &length)) break;
    const bool starts = type == kFull || type == kFirst;
    if (starts == in_fragments) break;  // a record out of its order
    pos += kHeaderSize + length;
    in_fragments = type == kFirst || type == kMiddle;
    if (!in_fragments) valid = pos;
  }
  if (valid == file.size() || (pos >= file.size() && !in_fragments)) {
    return NotFoundError(tail.path + " reads back to its end");
  }
  // Torn only if nothing after the last whole record (and the fragments of a record cut short,
  // in their order) reads back.
  for (uint64_t p = pos; p < file.size(); ++p) {
    uint8_t type = 0;
    uint64_t length = 0;
    if (RecordAt(file, p, &type, &length)) {
      return DataLossError(tail.path + " is damaged at byte " + std::to_string(valid) +
                           ", before a record that reads back at byte " + std::to_string(p));
    }
  }
  if (file.size() - valid > kMaxTornBytes) {
    return DataLossError(tail.path + " is damaged from byte " + std::to_string(valid) + " on (" +
                         std::to_string(file.size() - valid) + " bytes: more than a torn append)");
  }
  tail.valid_bytes = valid;
  return tail;
}

namespace {

// The MANIFEST's reader, stopping at the end of its valid records.
class ShortenedFile : public rocksdb::FSSequentialFileOwnerWrapper {
 public:
  ShortenedFile(std::unique_ptr<rocksdb::FSSequentialFile> file, uint64_t size)
      : FSSequentialFileOwnerWrapper(std::move(file)), left_(size) {}

  rocksdb::IOStatus Read(size_t n, const rocksdb::IOOptions& o, rocksdb::Slice* result,
                         char* scratch, rocksdb::IODebugContext* dbg) override {
    rocksdb::IOStatus s = target()->Read(std::min<uint64_t>(n, left_), o, result, scratch, dbg);
    if (s.ok()) left_ -= result->size();
    return s;
  }
  rocksdb::IOStatus Skip(uint64_t n) override {
    n = std::min(n, left_);
    left_ -= n;
    return target()->Skip(n);
  }
  bool use_direct_io() const override { return false; }

 private:
  uint64_t left_;
};

class HidingFileSystem : public rocksdb::FileSystemWrapper {
 public:
  HidingFileSystem(std::shared_ptr<rocksdb::FileSystem> base, TornManifestTail tail)
      : FileSystemWrapper(std::move(base)), tail_(std::move(tail)) {}
  const char* Name() const override { return "DcpkvTornManifestTail"; }

  rocksdb::IOStatus NewSequentialFile(const std::string& f, const rocksdb::FileOptions& o,
                                      std::unique_ptr<rocksdb::FSSequentialFile>* r,
                                      rocksdb::IODebugContext* dbg) override {
    rocksdb::FileOptions plain = o;
    if (f == tail_.path) plain.use_direct_reads = false;
    rocksdb::IOStatus s = target()->NewSequentialFile(f, plain, r, dbg);
    if (s.ok() && f == tail_.path) {
      *r = std::make_unique<ShortenedFile>(std::move(*r), tail_.valid_bytes);
    }
    return s;
  }
  rocksdb::IOStatus GetFileSize(const std::string& f, const rocksdb::IOOptions& o, uint64_t* size,
                                rocksdb::IODebugContext* dbg) override {
    rocksdb::IOStatus s = target()->GetFileSize(f, o, size, dbg);
    if (s.ok() && f == tail_.path) *size = std::min(*size, tail_.valid_bytes);
    return s;
  }

 private:
  TornManifestTail tail_;
};

}  // namespace

std::unique_ptr<rocksdb::Env> HideTornManifestTail(rocksdb::Env* base,
                                                   const TornManifestTail& tail) {
  return rocksdb::NewCompositeEnv(std::make_shared<HidingFileSystem>(base->GetFileSystem(), tail));
}

rocksdb::Status RetryPastTornManifestTail(
    const std::string& dir, rocksdb::Env* base,
    const std::function<rocksdb::Status(rocksdb::Env*)>& attempt,
    std::unique_ptr<rocksdb::Env>* hidden) {
  hidden->reset();
  rocksdb::Status s = attempt(base);
  if (!s.IsCorruption() || s.ToString().find("MANIFEST-") == std::string::npos) return s;
  StatusOr<TornManifestTail> tail = FindTornManifestTail(base->GetFileSystem().get(), dir);
  if (tail.ok()) {
    std::unique_ptr<rocksdb::Env> env = HideTornManifestTail(base, *tail);
    s = attempt(env.get());
    *hidden = std::move(env);
  } else if (tail.status().code() == StatusCode::kDataLoss) {
    s = rocksdb::Status::Corruption(s.getState() != nullptr ? s.getState() : "",
                                    tail.status().message());
  }
  return s;
}

}  // namespace dcpkv

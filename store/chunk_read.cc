// ChunkStore read path: point reads, shard reassembly and iteration. Every value read is
// verified (FlatBuffers Verifier, field consistency, XXH3-128 of the payload) and checked
// against the key it was stored under.
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <optional>

#include "chunk_store_internal.h"
#include "dcpkv/core/names.h"
#include "rocksdb_status.h"

#include <rocksdb/convenience.h>

namespace dcpkv {

namespace {

// A misaligned value at least this large is decoded from a copy of its first kHeadBytes only.
constexpr size_t kHeadCopyMinBytes = size_t{64} << 10;
constexpr size_t kHeadBytes = size_t{4} << 10;

// Checks that a decoded chunk describes the key it was found under.
Status CheckChunkKey(const ChunkKey& key, const ChunkView& view) {
  const ChunkInfo& info = view.info;
  if (info.geometry.offsets != key.shard_offsets || info.byte_offset != key.byte_offset) {
    ChunkKey described{key.checkpoint_id, key.fqn, info.geometry.offsets, info.byte_offset};
    return DataLossError(DescribeChunkKey(key) + ": corrupt chunk: value describes " +
                         DescribeChunkKey(described));
  }
  return Status::Ok();
}

}  // namespace

ZeroWindow::~ZeroWindow() {
  if (data_ != nullptr) munmap(data_, size_);
}

bool ZeroWindow::Reserve(size_t bytes) {
  if (bytes <= size_) return true;
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  const size_t size = (bytes + page - 1) / page * page;
  void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return false;
  if (data_ != nullptr) munmap(data_, size_);
  data_ = static_cast<uint8_t*>(p);
  size_ = size;
  return true;
}

StatusOr<ChunkView> ChunkValueDecoder::Decode(const ChunkKey& key, std::string_view value) {
  if (reinterpret_cast<uintptr_t>(value.data()) % 8 == 0) return DecodeStoredChunk(key, value);
  // Only the window's first kHeadBytes are ever written: the rest stays zero from value to value.
  if (value.size() >= kHeadCopyMinBytes && head_window_.Reserve(value.size())) {
    std::memcpy(head_window_.data(), value.data(), kHeadBytes);
    std::optional<ChunkView> view = DecodeChunkHead(value, head_window_.data(), kHeadBytes);
    if (view) {
      DCPKV_RETURN_IF_ERROR(CheckChunkKey(key, *view));
      return std::move(*view);
    }
  }
  const size_t words = (value.size() + 7) / 8;
  if (words > scratch_words_) {
    scratch_.reset(new uint64_t[words]);
    scratch_words_ = words;
  }
  std::memcpy(scratch_.get(), value.data(), value.size());
  return DecodeStoredChunk(
      key, std::string_view(reinterpret_cast<const char*>(scratch_.get()), value.size()));
}

StatusOr<ChunkView> DecodeStoredChunk(const ChunkKey& key, std::string_view aligned_value) {
  StatusOr<ChunkView> view = DecodeChunk(aligned_value);
  if (!view.ok()) return view.status().WithContext(DescribeChunkKey(key));
  DCPKV_RETURN_IF_ERROR(CheckChunkKey(key, *view));
  return view;
}

StatusOr<bool> ChunkStore::Impl::VerifyChunkTables(std::string_view lower, std::string_view upper) {
  std::vector<rocksdb::LiveFileMetaData> files;
  db->GetLiveFilesMetaData(&files);
  std::vector<const rocksdb::LiveFileMetaData*> touched;
  for (const rocksdb::LiveFileMetaData& f : files) {
    if (f.column_family_name != kChunksColumnFamily) continue;
    // An iterator positions itself in every level-0 file, whatever its key range; in deeper
    // levels only in the files whose range holds the target.
    if (f.level > 0 && (std::string_view(f.largestkey) < lower ||
                        (!upper.empty() && std::string_view(f.smallestkey) >= upper))) {
      continue;
    }
    // A table without blob references holds its chunk values inline (ingested table files):
    // verifying it whole first would read every chunk twice, so the reads check its blocks.
    if (f.oldest_blob_file_number == 0) return false;
    touched.push_back(&f);
  }
  for (const rocksdb::LiveFileMetaData* file : touched) {
    const rocksdb::LiveFileMetaData& f = *file;
    {
      std::lock_guard<std::mutex> lock(verified_tables_mu);
      if (verified_tables.count(f.file_number) != 0) continue;
    }
    const rocksdb::Options table_options(db->GetDBOptions(), db->GetOptions(chunks_cf));
    rocksdb::ReadOptions ro;
    ro.fill_cache = false;
    const std::string path = f.db_path + f.name;
    rocksdb::Status s = rocksdb::VerifySstFileChecksum(
        table_options, rocksdb::EnvOptions(table_options), ro, path, f.largest_seqno);
    DCPKV_RETURN_IF_ERROR(FromRocksDB(s, "checking table file " + path));
    std::lock_guard<std::mutex> lock(verified_tables_mu);
    verified_tables.insert(f.file_number);
  }
  return true;
}

struct ChunkHandle::Storage {
  rocksdb::PinnableSlice pinned;
  ChunkValueDecoder decoder;
};

ChunkHandle::ChunkHandle() = default;
ChunkHandle::~ChunkHandle() = default;
ChunkHandle::ChunkHandle(ChunkHandle&&) noexcept = default;
ChunkHandle& ChunkHandle::operator=(ChunkHandle&&) noexcept = default;

StatusOr<ChunkHandle> ChunkStore::GetChunk(const ChunkKey& key) {
  DCPKV_ASSIGN_OR_RETURN(std::string encoded, EncodeChunkKey(key));
  DCPKV_RETURN_IF_ERROR(impl_->CheckOpen());
  ChunkHandle handle;
  handle.storage_ = std::make_unique<ChunkHandle::Storage>();
  rocksdb::PinnableSlice& pinned = handle.storage_->pinned;
  rocksdb::Status s = impl_->db->Get(rocksdb::ReadOptions(), impl_->chunks_cf, encoded, &pinned);
  if (s.IsNotFound()) return NotFoundError("no chunk " + DescribeChunkKey(key));
  DCPKV_RETURN_IF_ERROR(FromRocksDB(s, "reading chunk " + DescribeChunkKey(key)));
  DCPKV_ASSIGN_OR_RETURN(handle.view_, handle.storage_->decoder.Decode(
                                           key, std::string_view(pinned.data(), pinned.size())));
  return handle;
}

struct ChunkIterator::Impl {
  std::string lower;
  std::string upper;
  rocksdb::Slice lower_slice;
  rocksdb::Slice upper_slice;
  std::unique_ptr<rocksdb::Iterator> it;
  std::string store_dir;
  // What the range holds, for errors that name no key (a table failing its checksum).
  std::string what;
  ChunkKey key;
  ChunkValueDecoder decoder;
  ChunkView view;
  Status status;
  bool valid = false;

  // Decodes the entry under `it`, or records why it cannot and stops.
  void Load() {
    valid = false;
    if (!it->Valid()) {
      status = FromRocksDB(
          it->status(), "iterating chunks of " + (what.empty() ? "" : what + " in ") + store_dir);
      return;
    }
    StatusOr<ChunkKey> k = DecodeChunkKey(std::string_view(it->key().data(), it->key().size()));
    if (!k.ok()) {
      status = k.status().WithContext(store_dir);
      return;
    }
    key = std::move(k).value();
    StatusOr<ChunkView> v =
        decoder.Decode(key, std::string_view(it->value().data(), it->value().size()));
    if (!v.ok()) {
      status = v.status();
      return;
    }
    view = std::move(v).value();
    valid = true;
  }
};

ChunkIterator::ChunkIterator(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
ChunkIterator::~ChunkIterator() = default;
bool ChunkIterator::Valid() const { return impl_->valid; }
void ChunkIterator::Next() {
  impl_->it->Next();
  impl_->Load();
}
const ChunkKey& ChunkIterator::key() const { return impl_->key; }
const ChunkView& ChunkIterator::chunk() const { return impl_->view; }
Status ChunkIterator::status() const { return impl_->status; }

namespace {

// An iterator over the keys that start with `lower`. If `seek_for_prev` is not empty the
// iterator is positioned at the last key <= it (within the range), else at the first key.
// `what` describes the range in errors.
StatusOr<std::unique_ptr<ChunkIterator::Impl>> NewRangeIterator(ChunkStore::Impl* store,
                                                                std::string lower,
                                                                std::string seek_for_prev = "",
                                                                std::string what = "") {
  auto impl = std::make_unique<ChunkIterator::Impl>();
  impl->what = std::move(what);
  impl->lower = std::move(lower);
  impl->upper = PrefixUpperBound(impl->lower);
  impl->lower_slice = rocksdb::Slice(impl->lower);
  impl->upper_slice = rocksdb::Slice(impl->upper);
  impl->store_dir = store->dir;
  rocksdb::ReadOptions ro;
  ro.iterate_lower_bound = &impl->lower_slice;
  ro.iterate_upper_bound = &impl->upper_slice;
  ro.fill_cache = false;  // bulk reads must not evict hot index blocks
  // Every chunk carries the XXH3-128 of its payload, checked on every read (DecodeStoredChunk),
  // and its own key and geometry, checked against the key it was found under: RocksDB's CRC32c
  // of the blob values (Debian's build computes it table-driven, at a fraction of the disk's
  // speed) adds nothing but time. The table blocks that hold the keys have only RocksDB's
  // checksums, so the table files the range may touch are verified first, once per file: a
  // damaged block is then DATA_LOSS, never parsed unchecked (which a librocksdb built with
  // assertions answers by aborting). `dcpkv verify` (chunk_verify.cc) keeps every check.
  DCPKV_ASSIGN_OR_RETURN(const bool tables_verified,
                         store->VerifyChunkTables(impl->lower, impl->upper));
  ro.verify_checksums = !tables_verified;
  // Table files that hold chunk values inline (ingested) have a block per chunk: each is read
  // with one read of its own, straight into the block's buffer, where RocksDB's readahead would
  // read it into a prefetch buffer first and copy it from there (and cap cold loads near 1 GB/s
  // here). Tables of keys and blob references are small: read ahead.
  ro.readahead_size = tables_verified ? (2 << 20) : 0;
  impl->it.reset(store->db->NewIterator(ro, store->chunks_cf));
  if (seek_for_prev.empty()) {
    impl->it->Seek(impl->lower);
  } else {
    // A key exactly at the target (a read from a chunk's start, as every read of whole chunks
    // is) is found going forward; only a target inside a chunk steps back to it, which also
    // reads the entry before it.
    impl->it->Seek(seek_for_prev);
    if (!impl->it->Valid() || impl->it->key() != rocksdb::Slice(seek_for_prev)) {
      impl->it->SeekForPrev(seek_for_prev);
      if (!impl->it->Valid() && impl->it->status().ok()) impl->it->Seek(impl->lower);
    }
  }
  impl->Load();
  return impl;
}

}  // namespace

StatusOr<std::unique_ptr<ChunkIterator>> ChunkStore::NewChunkIterator(
    std::string_view checkpoint_id) {
  DCPKV_RETURN_IF_ERROR(ValidateCheckpointId(checkpoint_id));
  DCPKV_RETURN_IF_ERROR(impl_->CheckOpen());
  DCPKV_ASSIGN_OR_RETURN(auto impl,
                         NewRangeIterator(impl_.get(), ChunkKeyCheckpointPrefix(checkpoint_id)));
  return std::unique_ptr<ChunkIterator>(new ChunkIterator(std::move(impl)));
}

Status ChunkStore::ReadShard(std::string_view checkpoint_id, std::string_view fqn,
                             const ShardGeometry& geometry, void* dest, size_t size) {
  DCPKV_RETURN_IF_ERROR(ValidateCheckpointId(checkpoint_id));
  DCPKV_RETURN_IF_ERROR(ValidateFqn(fqn));
  DCPKV_ASSIGN_OR_RETURN(uint64_t expected_size, geometry.ByteSize());
  if (expected_size != size) {
    return InvalidArgumentError("ReadShard of \"" + std::string(fqn) + "\": destination is " +
                                std::to_string(size) + " bytes but the shard is " +
                                std::to_string(expected_size));
  }
  DCPKV_RETURN_IF_ERROR(impl_->CheckOpen());
  ChunkKey shard_key{std::string(checkpoint_id), std::string(fqn), geometry.offsets, 0};
  DCPKV_ASSIGN_OR_RETURN(
      auto it,
      NewRangeIterator(impl_.get(), ChunkKeyShardPrefix(checkpoint_id, fqn, geometry.offsets)));
  uint64_t next = 0;
  bool any = false;
  for (; it->valid; it->it->Next(), it->Load()) {
    const ChunkInfo& info = it->view.info;
    if (info.geometry.dtype != geometry.dtype || info.geometry.sizes != geometry.sizes) {
      return DataLossError(DescribeChunkKey(it->key) +
                           ": stored chunk belongs to a shard of another dtype or shape");
    }
    if (info.byte_offset != next) {
      shard_key.byte_offset = next;
      return DataLossError("missing chunk " + DescribeChunkKey(shard_key) + " (next stored: byte " +
                           std::to_string(info.byte_offset) + ")");
    }
    if (it->view.payload_size > 0) {
      std::memcpy(static_cast<char*>(dest) + next, it->view.payload, it->view.payload_size);
    }
    next += it->view.payload_size;
    any = true;
  }
  DCPKV_RETURN_IF_ERROR(it->status);
  if (!any) return NotFoundError("no chunks for " + DescribeChunkKey(shard_key));
  if (next != size) {
    shard_key.byte_offset = next;
    return DataLossError("missing chunk " + DescribeChunkKey(shard_key) + ": chunks cover " +
                         std::to_string(next) + " of " + std::to_string(size) + " bytes");
  }
  return Status::Ok();
}

Status ChunkStore::ReadShardRange(std::string_view checkpoint_id, std::string_view fqn,
                                  const ShardGeometry& geometry, uint64_t begin, uint64_t end,
                                  void* dest) {
  DCPKV_RETURN_IF_ERROR(ValidateCheckpointId(checkpoint_id));
  DCPKV_RETURN_IF_ERROR(ValidateFqn(fqn));
  DCPKV_ASSIGN_OR_RETURN(uint64_t shard_size, geometry.ByteSize());
  if (begin > end || end > shard_size) {
    return InvalidArgumentError(
        "ReadShardRange of \"" + std::string(fqn) + "\": range [" + std::to_string(begin) + ", " +
        std::to_string(end) + ") is outside the shard's " + std::to_string(shard_size) + " bytes");
  }
  DCPKV_RETURN_IF_ERROR(impl_->CheckOpen());
  ChunkKey shard_key{std::string(checkpoint_id), std::string(fqn), geometry.offsets, begin};
  DCPKV_ASSIGN_OR_RETURN(std::string target, EncodeChunkKey(shard_key));
  DCPKV_ASSIGN_OR_RETURN(
      auto it,
      NewRangeIterator(impl_.get(), ChunkKeyShardPrefix(checkpoint_id, fqn, geometry.offsets),
                       target, DescribeChunkKey(shard_key)));
  uint64_t next = begin;  // first byte not yet copied
  bool any = false;
  // Stops as soon as the range is copied: the chunk after it is neither read nor checked.
  for (; it->valid; it->it->Next(), it->Load()) {
    const ChunkInfo& info = it->view.info;
    if (info.geometry.dtype != geometry.dtype || info.geometry.sizes != geometry.sizes) {
      return DataLossError(DescribeChunkKey(it->key) +
                           ": stored chunk belongs to a shard of another dtype or shape");
    }
    const uint64_t chunk_end = info.byte_offset + it->view.payload_size;
    if (info.byte_offset > next || (chunk_end <= next && next < end)) {
      shard_key.byte_offset = next;
      return DataLossError("missing chunk " + DescribeChunkKey(shard_key) + " (next stored: byte " +
                           std::to_string(info.byte_offset) + ")");
    }
    const uint64_t copy_end = std::min(chunk_end, end);
    if (copy_end > next) {
      std::memcpy(static_cast<char*>(dest) + (next - begin),
                  it->view.payload + (next - info.byte_offset), copy_end - next);
      next = copy_end;
    }
    any = true;
    if (next >= end) break;
  }
  if (!it->status.ok()) {
    // A table that fails its block checksum says only which file: name what was being read.
    if (it->status.message().find("\"" + std::string(fqn) + "\"") != std::string::npos) {
      return it->status;
    }
    shard_key.byte_offset = next;
    return it->status.WithContext("reading " + DescribeChunkKey(shard_key));
  }
  if (!any) return NotFoundError("no chunks for " + DescribeChunkKey(shard_key));
  if (next != end) {
    shard_key.byte_offset = next;
    return DataLossError("missing chunk " + DescribeChunkKey(shard_key) + ": chunks cover up to " +
                         std::to_string(next) + " of " + std::to_string(end) + " bytes");
  }
  return Status::Ok();
}

}  // namespace dcpkv

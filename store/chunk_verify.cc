// ChunkStore::VerifyShard: a scan of one shard's chunks (or of those in a byte range of it) that
// reports every problem it meets and carries on past it, for `dcpkv verify`.
//
// RocksDB's iterator stops (invalid, with an error status) on an entry it cannot read, e.g. one
// whose blob file is damaged or gone, and the key of that entry is not available. The scan then
// probes forward with Seek at growing distances from the last byte offset known to be readable
// until it lands on a readable chunk (or the end of the shard), bisects the last step back to the
// first readable chunk after the damage, and reports the bytes in between as unreadable. Keys
// order chunks by byte offset, so each probe skips the failing entries before its target; the
// number of probes per damaged region is logarithmic in its size. Finally the range's first chunk
// is read as a load reads it (see the end of VerifyShard).
#include <algorithm>
#include <optional>

#include "chunk_store_internal.h"
#include "dcpkv/core/names.h"
#include "rocksdb_status.h"

namespace dcpkv {
namespace {

class ShardScan {
 public:
  // Scans the chunks at byte offsets [begin, end) of a shard of `shard_size` bytes.
  ShardScan(ChunkStore::Impl* store, ChunkKey shard_key, const ShardGeometry& geometry,
            uint64_t shard_size, uint64_t begin, uint64_t end,
            const std::function<void(uint64_t)>& progress)
      : store_(store),
        key_(std::move(shard_key)),
        geometry_(geometry),
        shard_size_(shard_size),
        begin_(begin),
        end_(end),
        progress_(progress),
        expected_(begin) {}

  StatusOr<ShardVerification> Run() {
    // The whole shard: every key under its prefix, so that stray keys past its end are seen too.
    const std::string prefix =
        ChunkKeyShardPrefix(key_.checkpoint_id, key_.fqn, key_.shard_offsets);
    ChunkKey bound = key_;
    if (begin_ == 0) {
      lower_ = prefix;
    } else {
      bound.byte_offset = begin_;
      DCPKV_ASSIGN_OR_RETURN(lower_, EncodeChunkKey(bound));
    }
    if (end_ == shard_size_) {
      upper_ = PrefixUpperBound(prefix);
    } else {
      bound.byte_offset = end_;
      DCPKV_ASSIGN_OR_RETURN(upper_, EncodeChunkKey(bound));
    }
    lower_slice_ = rocksdb::Slice(lower_);
    upper_slice_ = rocksdb::Slice(upper_);
    rocksdb::ReadOptions ro;
    ro.iterate_lower_bound = &lower_slice_;
    ro.iterate_upper_bound = &upper_slice_;
    ro.fill_cache = false;
    ro.verify_checksums = true;  // chunk blocks are read whole, one read each (chunk_read.cc)
    it_.reset(store_->db->NewIterator(ro, store_->chunks_cf));
    it_->Seek(lower_);
    bool any_entry = false;
    while (true) {
      if (!it_->Valid()) {
        if (it_->status().ok()) break;
        any_entry = true;
        DCPKV_ASSIGN_OR_RETURN(bool more, SkipUnreadable());
        if (!more) break;
        continue;
      }
      any_entry = true;
      Visit();
      it_->Next();
    }
    if (!any_entry) {
      result_.problems.push_back({begin_, end_,
                                  whole()
                                      ? "no chunks stored for this shard"
                                      : "no chunks stored for bytes [" + std::to_string(begin_) +
                                            ", " + std::to_string(end_) + ") of this shard"});
      return std::move(result_);
    }
    if (damaged_at_) {
      result_.problems.push_back({*damaged_at_, end_, damaged_what_});
    } else if (expected_ < end_) {
      Gap(expected_, end_, "missing chunk");
    }
    return std::move(result_);
  }

 private:
  bool whole() const { return begin_ == 0 && end_ == shard_size_; }

  void Gap(uint64_t begin, uint64_t end, const std::string& what) {
    result_.problems.push_back({begin, end,
                                what + ": bytes [" + std::to_string(begin) + ", " +
                                    std::to_string(end) + ") of the shard are not stored"});
  }

  // A damaged chunk's extent is known only when the next readable chunk is found.
  void EndDamaged(uint64_t end) {
    if (!damaged_at_) return;
    result_.problems.push_back({*damaged_at_, std::max(end, *damaged_at_), damaged_what_});
    damaged_at_.reset();
  }

  // Checks the entry under the iterator.
  void Visit() {
    std::string_view raw_key(it_->key().data(), it_->key().size());
    StatusOr<ChunkKey> key = DecodeChunkKey(raw_key);
    if (!key.ok()) {
      if (!damaged_at_) damaged_at_ = expected_;
      damaged_what_ = "malformed chunk key: " + key.status().message();
      return;
    }
    const uint64_t offset = key->byte_offset;
    StatusOr<ChunkView> view =
        decoder_.Decode(*key, std::string_view(it_->value().data(), it_->value().size()));
    Status bad;
    if (!view.ok()) {
      bad = view.status();
    } else if (view->info.geometry.dtype != geometry_.dtype ||
               view->info.geometry.sizes != geometry_.sizes ||
               view->info.shard_bytes != shard_size_) {
      bad = DataLossError(DescribeChunkKey(*key) +
                          ": stored chunk belongs to a shard of another dtype or shape");
    } else if (offset + view->payload_size > end_) {
      bad =
          DataLossError(DescribeChunkKey(*key) +
                        (end_ == shard_size_ ? ": chunk extends past the end of the shard"
                                             : ": chunk extends past byte " + std::to_string(end_) +
                                                   ", the end of the range verified"));
    }
    EndDamaged(offset);
    if (offset > expected_ && !resync_) Gap(expected_, offset, "missing chunk");
    if (!bad.ok()) {
      damaged_at_ = offset;
      damaged_what_ = bad.message();
      resync_ = true;
      expected_ = std::max(expected_, offset);
      return;
    }
    if (offset < expected_ && !resync_) {
      result_.problems.push_back(
          {offset, expected_, DescribeChunkKey(*key) + ": chunk overlaps the one before it"});
    }
    resync_ = false;
    expected_ = std::max(expected_, offset + view->payload_size);
    ++result_.chunks;
    result_.bytes += view->payload_size;
    result_.intact.push_back({offset, view->payload_size, view->info.payload_hash});
    if (progress_) progress_(view->payload_size);
  }

  // The iterator stopped on an entry RocksDB could not read. Probes forward for the next
  // readable one; returns false when none is left in the shard.
  StatusOr<bool> SkipUnreadable() {
    const std::string error = it_->status().ToString();
    const StatusCode code = FromRocksDB(it_->status(), "").code();
    const uint64_t from = std::max(expected_, damaged_at_.value_or(0));
    // Probes at growing distances until one lands past the damage (on a readable entry or the
    // end of the shard); `failed` is the last probe that still met an unreadable entry.
    uint64_t failed = from;
    uint64_t target = from;
    uint64_t step = 1;
    while (true) {
      if (failed >= end_) {
        EndDamaged(from);
        result_.problems.push_back({from, end_, "unreadable: " + error, code});
        expected_ = end_;
        resync_ = true;
        return false;
      }
      target = end_ - from > step ? from + step : end_;
      DCPKV_ASSIGN_OR_RETURN(bool readable, SeekTo(target));
      if (readable) break;
      failed = target;
      step = step > (UINT64_MAX >> 1) ? UINT64_MAX : step * 2;
    }
    // The growing steps may have jumped over readable chunks right after the damage: bisect
    // (failed, target] for the first probe that lands past it (exact when the unreadable entries
    // are consecutive), so that intact chunks are neither skipped nor reported as unreadable.
    bool at_target = true;
    while (target - failed > 1) {
      const uint64_t mid = failed + (target - failed) / 2;
      DCPKV_ASSIGN_OR_RETURN(bool readable, SeekTo(mid));
      if (readable) {
        target = mid;
      } else {
        failed = mid;
      }
      at_target = readable;
    }
    if (!at_target) {
      DCPKV_ASSIGN_OR_RETURN(bool readable, SeekTo(target));
      if (!readable) {  // the same seek failed this time: give up on the rest of the shard
        EndDamaged(from);
        result_.problems.push_back({from, end_, "unreadable: " + error, code});
        expected_ = end_;
        resync_ = true;
        return false;
      }
    }
    uint64_t end = end_;  // where the next readable chunk starts
    if (it_->Valid()) {
      StatusOr<ChunkKey> landed =
          DecodeChunkKey(std::string_view(it_->key().data(), it_->key().size()));
      end = landed.ok() ? std::max(landed->byte_offset, from) : target;
    }
    EndDamaged(from);
    result_.problems.push_back({from, end, "unreadable: " + error, code});
    expected_ = std::max(expected_, end);
    resync_ = true;  // the next readable chunk starts wherever it starts
    return it_->Valid();
  }

  // Seeks to the key of byte `target` of the shard; true if the iterator then stands on an entry
  // RocksDB could read, or past the shard's last entry.
  StatusOr<bool> SeekTo(uint64_t target) {
    ChunkKey probe = key_;
    probe.byte_offset = target;
    DCPKV_ASSIGN_OR_RETURN(std::string encoded, EncodeChunkKey(probe));
    it_->Seek(encoded);
    return it_->Valid() || it_->status().ok();
  }

  ChunkStore::Impl* store_;
  ChunkKey key_;
  const ShardGeometry& geometry_;
  uint64_t shard_size_;  // bytes of the whole shard
  uint64_t begin_;       // the range verified: [begin_, end_)
  uint64_t end_;
  const std::function<void(uint64_t)>& progress_;
  std::string lower_, upper_;
  rocksdb::Slice lower_slice_, upper_slice_;
  std::unique_ptr<rocksdb::Iterator> it_;
  ShardVerification result_;
  uint64_t expected_;          // first byte not yet covered by an intact chunk
  ChunkValueDecoder decoder_;  // of the entry being checked
  bool resync_ = false;  // after a damaged or unreadable entry: no gap report for what follows
  std::optional<uint64_t> damaged_at_;
  std::string damaged_what_;
};

}  // namespace

StatusOr<ShardVerification> ChunkStore::VerifyShard(std::string_view checkpoint_id,
                                                    std::string_view fqn,
                                                    const ShardGeometry& geometry,
                                                    const std::function<void(uint64_t)>& progress) {
  DCPKV_RETURN_IF_ERROR(ValidateCheckpointId(checkpoint_id));
  DCPKV_RETURN_IF_ERROR(ValidateFqn(fqn));
  DCPKV_RETURN_IF_ERROR(geometry.Validate());
  DCPKV_ASSIGN_OR_RETURN(uint64_t size, geometry.ByteSize());
  return VerifyShard(checkpoint_id, fqn, geometry, 0, size, progress);
}

StatusOr<ShardVerification> ChunkStore::VerifyShard(std::string_view checkpoint_id,
                                                    std::string_view fqn,
                                                    const ShardGeometry& geometry, uint64_t begin,
                                                    uint64_t end,
                                                    const std::function<void(uint64_t)>& progress) {
  DCPKV_RETURN_IF_ERROR(ValidateCheckpointId(checkpoint_id));
  DCPKV_RETURN_IF_ERROR(ValidateFqn(fqn));
  DCPKV_RETURN_IF_ERROR(geometry.Validate());
  DCPKV_ASSIGN_OR_RETURN(uint64_t size, geometry.ByteSize());
  if (begin > end || end > size || (begin == end && size != 0)) {
    return InvalidArgumentError("VerifyShard of \"" + std::string(fqn) + "\": range [" +
                                std::to_string(begin) + ", " + std::to_string(end) +
                                ") is empty or outside the shard's " + std::to_string(size) +
                                " bytes");
  }
  DCPKV_RETURN_IF_ERROR(impl_->CheckOpen());
  ShardScan scan(impl_.get(),
                 ChunkKey{std::string(checkpoint_id), std::string(fqn), geometry.offsets, 0},
                 geometry, size, begin, end, progress);
  DCPKV_ASSIGN_OR_RETURN(ShardVerification result, scan.Run());
  // The scan reads forward from `begin`. A read of the range (ReadShardRange, as a load does)
  // positions its iterator backwards instead, on the chunk that holds `begin` (SeekForPrev), and
  // RocksDB's backward step reads the entry stored before that chunk too: one of another shard or
  // checkpoint, maybe in an SST data block the scan never reads. If that block is damaged, no read
  // of the range can start although every chunk in it is intact. So unless the scan already found
  // the first chunk bad, read it the way a load does. Where the scan's first intact chunk starts
  // at `begin` that read finds its key exactly and steps no further back, and in tables that hold
  // their chunk values inline it reads with the same checks as the scan: nothing to add.
  const bool start_reported =
      std::any_of(result.problems.begin(), result.problems.end(), [&](const ShardProblem& p) {
        return p.byte_offset <= begin && (begin < p.end || p.byte_offset == p.end);
      });
  bool read_as_scanned = false;
  if (!start_reported && !result.intact.empty() && result.intact.front().byte_offset == begin) {
    const std::string prefix = ChunkKeyShardPrefix(checkpoint_id, fqn, geometry.offsets);
    StatusOr<bool> tables_verified = impl_->VerifyChunkTables(prefix, PrefixUpperBound(prefix));
    read_as_scanned = tables_verified.ok() && !*tables_verified;
  }
  if (!start_reported && !read_as_scanned) {
    char first = 0;
    const Status read =
        ReadShardRange(checkpoint_id, fqn, geometry, begin, begin == end ? end : begin + 1, &first);
    if (!read.ok()) {
      result.problems.insert(
          result.problems.begin(),
          {begin, end,
           "unreadable: a read from byte " + std::to_string(begin) +
               " fails although a forward scan finds its chunks intact: " + read.ToString(),
           read.code() == StatusCode::kIOError ? StatusCode::kIOError : StatusCode::kDataLoss});
    }
  }
  return result;
}

}  // namespace dcpkv

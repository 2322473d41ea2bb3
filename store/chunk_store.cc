// ChunkStore: opening, closing, manifests, listing and deletion. Reads are in chunk_read.cc,
// batched writes in chunk_batch_writer.cc.
#include "dcpkv/store/chunk_store.h"

#include <fcntl.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <set>
#include <system_error>
#include <thread>

#include <rocksdb/convenience.h>
#include <rocksdb/write_batch.h>

#include "chunk_store_internal.h"
#include "dcpkv/core/names.h"
#include "dcpkv/store/file_ops.h"
#include "lock_state.h"
#include "manifest_tail.h"
#include "process_identity.h"
#include "rocksdb_status.h"

namespace dcpkv {
namespace {

Status CheckStoreOptions(const ChunkStoreOptions& o) {
  if (o.chunk_size < (uint64_t{1} << 10) || o.chunk_size > (uint64_t{1} << 30)) {
    return InvalidArgumentError("chunk_size " + std::to_string(o.chunk_size) +
                                " is outside the allowed range [1 KiB, 1 GiB]");
  }
  if (o.write_batch_bytes == 0) return InvalidArgumentError("write_batch_bytes must be positive");
  if (o.table_file_bytes == 0) return InvalidArgumentError("table_file_bytes must be positive");
  if (o.max_open_files < 20) {
    return InvalidArgumentError("max_open_files " + std::to_string(o.max_open_files) +
                                " is below 20, the least RocksDB keeps open");
  }
  return Status::Ok();
}

// Ids of the keys `tag` checkpoint_id in the default column family, in byte order.
StatusOr<std::vector<std::string>> ListIdKeys(ChunkStore::Impl* impl, char tag,
                                              StatusOr<std::string> (*decode)(std::string_view),
                                              std::string_view what) {
  DCPKV_RETURN_IF_ERROR(impl->CheckOpen());
  std::vector<std::string> ids;
  const std::string begin(1, tag);
  const std::string end = PrefixUpperBound(begin);
  rocksdb::Slice upper(end);
  rocksdb::ReadOptions ro;
  ro.iterate_upper_bound = &upper;
  std::unique_ptr<rocksdb::Iterator> it(impl->db->NewIterator(ro, impl->default_cf));
  for (it->Seek(begin); it->Valid(); it->Next()) {
    DCPKV_ASSIGN_OR_RETURN(std::string id,
                           decode(std::string_view(it->key().data(), it->key().size())));
    ids.push_back(std::move(id));
  }
  DCPKV_RETURN_IF_ERROR(
      FromRocksDB(it->status(), "listing " + std::string(what) + " in " + impl->dir));
  return ids;
}

// The ids of checkpoints with chunks in the database, found by seeking from one checkpoint's
// chunks to the next: reads the first chunk of each. For stores older than version 3, which have
// no data markers.
StatusOr<std::vector<std::string>> ScanChunkCheckpointIds(ChunkStore::Impl* impl) {
  std::vector<std::string> ids;
  std::unique_ptr<rocksdb::Iterator> it(
      impl->db->NewIterator(rocksdb::ReadOptions(), impl->chunks_cf));
  const std::string tag(1, kChunkKeyTag);
  for (it->Seek(tag); it->Valid();) {
    std::string_view key(it->key().data(), it->key().size());
    if (key.empty() || key[0] != kChunkKeyTag) break;
    size_t end = key.find('\0');
    if (end == std::string_view::npos) {
      return DataLossError("malformed chunk key in " + impl->dir + ": unterminated checkpoint id");
    }
    std::string id(key.substr(1, end - 1));
    ids.push_back(id);
    it->Seek(PrefixUpperBound(ChunkKeyCheckpointPrefix(id)));
  }
  DCPKV_RETURN_IF_ERROR(FromRocksDB(it->status(), "listing checkpoints in " + impl->dir));
  return ids;
}

// Raises a store older than version 3, opened read-write, to version 3: the data markers of every
// checkpoint found with chunks first (synced, in one write), the version after them.
Status AddDataMarkers(ChunkStore::Impl* impl) {
  DCPKV_ASSIGN_OR_RETURN(std::vector<std::string> ids, ScanChunkCheckpointIds(impl));
  rocksdb::WriteBatch batch;
  for (const std::string& id : ids) {
    DCPKV_ASSIGN_OR_RETURN(std::string key, EncodeDataMarkerKey(id));
    DCPKV_RETURN_IF_ERROR(FromRocksDB(batch.Put(impl->default_cf, key, ""), "data marker"));
  }
  if (batch.Count() > 0) {
    rocksdb::WriteOptions wo;
    wo.sync = true;
    std::lock_guard<std::mutex> write_lock(impl->write_mu);
    DCPKV_RETURN_IF_ERROR(
        FromRocksDB(impl->db->Write(wo, &batch), "writing data markers in " + impl->dir));
  }
  return impl->RequireFormatVersion(kDataMarkerStoreFormatVersion);
}

// Records the store format on first open (the newest version: an empty store has every data
// marker it needs); refuses formats newer than this build; raises older ones opened read-write
// to version 3.
Status CheckStoreFormat(ChunkStore::Impl* impl) {
  std::string value;
  rocksdb::Status s =
      impl->db->Get(rocksdb::ReadOptions(), impl->default_cf, kStoreFormatKey, &value);
  if (s.IsNotFound()) {
    if (impl->options.mode != OpenMode::kReadWrite) {
      return FailedPreconditionError(impl->dir + " is not a dcpkv store (no format marker)")
          .WithReason(ErrorReason::kNotADcpkvStore);
    }
    impl->format_version = 0;  // none yet
    return impl->RequireFormatVersion(kStoreFormatVersion);
  }
  DCPKV_RETURN_IF_ERROR(FromRocksDB(s, "reading store format marker in " + impl->dir));
  for (int version = kFirstStoreFormatVersion; version <= kStoreFormatVersion; ++version) {
    if (value == std::to_string(version)) {
      impl->format_version = version;
      if (version < kDataMarkerStoreFormatVersion && impl->options.mode == OpenMode::kReadWrite) {
        return AddDataMarkers(impl);
      }
      return Status::Ok();
    }
  }
  return FailedPreconditionError(
      "store " + impl->dir + " has format version \"" + value + "\"; this build reads versions " +
      std::to_string(kFirstStoreFormatVersion) + " to " + std::to_string(kStoreFormatVersion));
}

}  // namespace

Status ChunkStore::Impl::MarkChunkData(std::string_view checkpoint_id) {
  DCPKV_ASSIGN_OR_RETURN(std::string key, EncodeDataMarkerKey(checkpoint_id));
  std::lock_guard<std::mutex> lock(marked_mu);
  if (marked_ids.count(key) != 0) return Status::Ok();
  rocksdb::WriteOptions wo;
  wo.sync = true;
  {
    std::lock_guard<std::mutex> write_lock(write_mu);
    DCPKV_RETURN_IF_ERROR(FromRocksDB(
        db->Put(wo, default_cf, key, ""),
        "writing data marker of checkpoint \"" + std::string(checkpoint_id) + "\" in " + dir));
  }
  marked_ids.insert(std::move(key));
  return Status::Ok();
}

Status ChunkStore::Impl::WriteUnmarking(rocksdb::WriteBatch* batch, const std::string& marker,
                                        const std::string& what) {
  rocksdb::WriteOptions wo;
  wo.sync = true;
  std::lock_guard<std::mutex> lock(marked_mu);
  std::lock_guard<std::mutex> write_lock(write_mu);
  DCPKV_RETURN_IF_ERROR(FromRocksDB(db->Write(wo, batch), what));
  marked_ids.erase(marker);
  return Status::Ok();
}

Status ChunkStore::Impl::RequireFormatVersion(int version) {
  std::lock_guard<std::mutex> lock(format_mu);
  if (format_version >= version) return Status::Ok();
  rocksdb::WriteOptions wo;
  wo.sync = true;
  std::lock_guard<std::mutex> write_lock(write_mu);
  DCPKV_RETURN_IF_ERROR(FromRocksDB(
      db->Put(wo, default_cf, kStoreFormatKey, std::to_string(version)),
      "writing store format marker (version " + std::to_string(version) + ") in " + dir));
  format_version = version;
  return Status::Ok();
}

namespace {

// What a read-only open depends on that a live writer may change under it: the CURRENT pointer
// and the write-ahead logs.
struct DirectorySnapshot {
  std::string current;
  std::set<std::string> logs;
};

DirectorySnapshot SnapshotDirectory(const std::string& dir) {
  DirectorySnapshot snap;
  std::ifstream current(std::filesystem::path(dir) / "CURRENT");
  std::getline(current, snap.current);
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    if (entry.path().extension() == ".log") snap.logs.insert(entry.path().filename().string());
  }
  return snap;
}

// A read-only open reads CURRENT and the MANIFEST, then lists and replays the WALs. A writer's
// flush that lands in between (new version in the MANIFEST after it was read, old WAL deleted
// before it was listed) would leave the opened view without the flushed data. A WAL present
// before the open and gone after it, or a new CURRENT, means the open may have raced: try again.
bool OpenWasStable(const DirectorySnapshot& before, const DirectorySnapshot& after) {
  if (before.current != after.current) return false;
  for (const std::string& log : before.logs) {
    if (after.logs.count(log) == 0) return false;
  }
  return true;
}

constexpr int kReadOnlyOpenAttempts = 20;

// Makes the parent directory's entries (a rename into it) durable.
Status SyncParentDirectory(const std::filesystem::path& path) {
  return SyncDirectory(path.parent_path().empty() ? "." : path.parent_path().string());
}

// The prefix of the temporary directories in which databases for `dir` are made.
std::string CreatingPrefix(const std::string& dir) { return dir + ".creating"; }

// Removes temporary directories of creations of `dir` that can no longer finish: made on this
// machine by a process that is gone, or (made elsewhere, or by an earlier version, whose names
// hold no process) not modified for an hour. Another creator's directory in progress is left.
void RemoveAbandonedCreations(const std::string& dir) {
  namespace fs = std::filesystem;
  const fs::path target(dir);
  const std::string prefix = target.filename().string() + ".creating";
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(target.parent_path(), ec)) {
    const std::string name = e.path().filename().string();
    if (name.rfind(prefix, 0) != 0) continue;
    if (ScratchIsAbandoned(e.path(), prefix + ".")) RemoveTree(e.path().string());
  }
}

// A new database is made in a temporary directory of its creator's own, "<dir>.creating.<host>.
// <pid>.<start time>.<nonce>", and renamed into place once it holds the format marker: a crash
// while it is made leaves no half-made store at `dir` (which read-only opens would refuse as not
// a dcpkv store until a writer opened it again), only the temporary directory, which a later
// creation removes once its process is gone. Creators racing (two jobs started on one fresh
// root) each make their own; the first rename wins (rename(2) does not replace a directory that
// is not empty), and the others open the database it put in place. An existing directory that is
// not empty (nor a database) is used in place, as before.
Status CreateStore(ChunkStore::Impl* impl) {
  namespace fs = std::filesystem;
  std::string& dir = impl->dir;
  const fs::path target(dir);
  auto open_in_place = [&] {
    DCPKV_RETURN_IF_ERROR(impl->OpenDB());
    Status format = CheckStoreFormat(impl);
    if (!format.ok()) impl->CloseInternal().IgnoreError();
    return format;
  };
  std::error_code ec;
  if (fs::exists(target, ec) && !fs::is_empty(target, ec)) return open_in_place();
  RemoveAbandonedCreations(dir);
  const std::string final_dir = dir;
  const std::string temporary = CreatingPrefix(dir) + "." + MakerTag();
  if (const int rc = MakeDirectories(temporary); rc != 0) {
    return IOError("cannot create store directory " + temporary + ": " + std::strerror(rc));
  }
  dir = temporary;
  Status made = impl->OpenDB();
  if (made.ok()) made = CheckStoreFormat(impl);
  Status closed = impl->CloseInternal();
  dir = final_dir;
  if (made.ok()) made = closed;
  bool lost_the_race = false;
  if (made.ok()) {
    // Replaces an empty directory, never a full one.
    const int rc = CurrentFileOps().Rename(temporary, dir);
    if (rc == ENOTEMPTY || rc == EEXIST) {
      lost_the_race = true;  // another creator's database is in place
    } else if (rc != 0) {
      made = IOError("cannot move " + temporary + " to " + dir + ": " + std::strerror(rc));
    }
  }
  if (!made.ok() || lost_the_race) RemoveTree(temporary);
  if (made.ok() && !lost_the_race) made = SyncParentDirectory(target);
  if (!made.ok()) return made;
  return open_in_place();
}

}  // namespace

Status ChunkStore::Impl::OpenTableFiles() {
  for (rocksdb::ColumnFamilyHandle* h : {default_cf, manifests_cf}) {
    rocksdb::ColumnFamilyMetaData meta;
    db->GetColumnFamilyMetaData(h, &meta);
    rocksdb::ReadOptions ro;
    ro.fill_cache = false;
    // Creating the iterator opens every level-0 file; a seek to a file's first key opens a file
    // of a deeper level.
    std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(ro, h));
    for (const rocksdb::LevelMetaData& level : meta.levels) {
      if (level.level == 0) continue;
      for (const rocksdb::SstFileMetaData& f : level.files) it->Seek(f.smallestkey);
    }
    DCPKV_RETURN_IF_ERROR(FromRocksDB(it->status(), "opening the table files of " + dir));
  }
  return Status::Ok();
}

Status ChunkStore::Impl::OpenReadOnlyStable() {
  Status last;
  auto backoff = std::chrono::milliseconds(1);
  for (int attempt = 0; attempt < kReadOnlyOpenAttempts; ++attempt) {
    if (attempt > 0) {
      std::this_thread::sleep_for(backoff);
      backoff = std::min(backoff * 2, std::chrono::milliseconds(50));
    }
    const DirectorySnapshot before = SnapshotDirectory(dir);
    // Errors here may be transient while a writer creates the store or flushes (a column family
    // or the format marker not there yet, a WAL deleted while being listed): retried.
    last = OpenDB();
    if (last.ok()) last = OpenTableFiles();  // a file compacted away meanwhile: retried
    if (last.ok()) {
      last = CheckStoreFormat(this);
      if (!last.ok() && last.reason() != ErrorReason::kNotADcpkvStore) {
        CloseDB().IgnoreError();
        return last;  // a format this build cannot read: not transient
      }
    }
    if (last.ok()) {
      if (OpenWasStable(before, SnapshotDirectory(dir))) return Status::Ok();
      last = UnavailableError("opening " + dir + " raced with its writer " +
                              std::to_string(kReadOnlyOpenAttempts) + " times");
    }
    CloseDB().IgnoreError();
  }
  return last;
}

Status ChunkStore::Impl::CheckOpen() const {
  if (db == nullptr) return FailedPreconditionError("store " + dir + " is closed");
  return Status::Ok();
}

Status ChunkStore::Impl::CheckWritable(std::string_view operation) const {
  DCPKV_RETURN_IF_ERROR(CheckOpen());
  if (options.mode != OpenMode::kReadWrite) {
    return FailedPreconditionError(std::string(operation) + ": store " + dir +
                                   " is opened read-only");
  }
  return Status::Ok();
}

Status ChunkStore::Impl::CheckFreeSpace(uint64_t bytes) const {
  if (options.free_space_reserve_bytes == 0) return Status::Ok();
  struct statvfs fs {};
  if (::statvfs(dir.c_str(), &fs) != 0) return Status::Ok();  // unknown: the write will tell
  const uint64_t total = static_cast<uint64_t>(fs.f_blocks) * fs.f_frsize;
  const uint64_t free = static_cast<uint64_t>(fs.f_bavail) * fs.f_frsize;
  uint64_t reserve = options.free_space_reserve_bytes;
  if (reserve == ChunkStoreOptions::kAutoFreeSpaceReserve) {
    reserve = std::clamp<uint64_t>(total / 50, uint64_t{4} << 20, uint64_t{256} << 20);
    if (free < reserve + bytes + (uint64_t{1} << 30) && db != nullptr) {
      // Near full: garbage collection rewrites what a table file with dead chunks still holds
      // before it deletes the file, so the reserve covers the largest table file too.
      rocksdb::ColumnFamilyMetaData meta;
      db->GetColumnFamilyMetaData(chunks_cf, &meta);
      uint64_t largest = 0;
      for (const rocksdb::LevelMetaData& level : meta.levels) {
        for (const rocksdb::SstFileMetaData& f : level.files) largest = std::max(largest, f.size);
      }
      reserve = std::max(reserve, largest + largest / 8 + (uint64_t{1} << 20));
    }
  }
  if (free >= reserve && free - reserve >= bytes) return Status::Ok();
  auto mib = [](uint64_t b) {
    char text[32];
    std::snprintf(text, sizeof(text), "%.1f MiB", static_cast<double>(b) / (1 << 20));
    return std::string(text);
  };
  return ResourceExhaustedError("not enough free space for " + dir + ": " + mib(free) +
                                " free, writing " + mib(bytes) + " more would eat into the " +
                                mib(reserve) +
                                " kept free so that `dcpkv rm` and `gc` can reclaim space");
}

Status ChunkStore::Impl::OpenDB() {
  RocksDBConfig config = MakeRocksDBConfig(options);
  // A MANIFEST whose last append a power cut tore opens as of its last synced record.
  rocksdb::Status s = RetryPastTornManifestTail(
      dir, config.db.env,
      [&](rocksdb::Env* env) {
        CloseDB().IgnoreError();
        config.db.env = env;
        if (options.mode == OpenMode::kReadWrite) {
          return rocksdb::DB::Open(config.db, dir, config.column_families, &handles, &db);
        }
        return rocksdb::DB::OpenForReadOnly(config.db, dir, config.column_families, &handles, &db);
      },
      &torn_tail_env);
  if (!s.ok()) {
    CloseDB().IgnoreError();
    Status error = FromRocksDB(s, "opening chunk store " + dir);
    // RocksDB takes the LOCK first: if it is held, that is why a read-write open failed.
    if (options.mode == OpenMode::kReadWrite && error.code() == StatusCode::kIOError &&
        FileIsLocked(dir + "/LOCK")) {
      error = Status(error.code(), "opening chunk store " + dir +
                                       ": its lock is held by another process or open handle (" +
                                       s.ToString() + ")")
                  .WithReason(ErrorReason::kLockHeld);
    }
    return error;
  }
  default_cf = handles[0];
  chunks_cf = handles[1];
  manifests_cf = handles[2];
  if (options.mode == OpenMode::kReadWrite) {
    // Table files a batch writer built and never ingested (a failed save, a crash): this open
    // holds the database's lock, so no writer is building one now.
    RemoveTree(IngestDirectory(dir));
  }
  return Status::Ok();
}

Status ChunkStore::Impl::CloseDB() {
  Status result;
  if (db == nullptr) return result;
  for (rocksdb::ColumnFamilyHandle* h : handles) {
    rocksdb::Status s = db->DestroyColumnFamilyHandle(h);
    if (result.ok()) result = FromRocksDB(s, "closing column family of " + dir);
  }
  handles.clear();
  default_cf = chunks_cf = manifests_cf = nullptr;
  rocksdb::Status s = db->Close();
  if (result.ok() && !s.ok() && !s.IsAborted()) result = FromRocksDB(s, "closing " + dir);
  delete db;
  db = nullptr;
  return result;
}

namespace {

// How long a close waits for RocksDB's compactions at most; one still running then is cancelled
// and the next read-write open schedules it again.
constexpr auto kCloseCompactionWait = std::chrono::seconds(30);

// True while RocksDB has a compaction running, or one it wants to run, in any column family,
// unless a background error (a full disk) keeps it from running any.
bool CompactionsOutstanding(rocksdb::DB* db,
                            const std::vector<rocksdb::ColumnFamilyHandle*>& handles) {
  uint64_t n = 0;
  if (db->GetIntProperty(rocksdb::DB::Properties::kBackgroundErrors, &n) && n > 0) return false;
  if (db->GetIntProperty(rocksdb::DB::Properties::kNumRunningCompactions, &n) && n > 0) {
    return true;
  }
  for (rocksdb::ColumnFamilyHandle* h : handles) {
    if (db->GetIntProperty(h, rocksdb::DB::Properties::kCompactionPending, &n) && n > 0) {
      return true;
    }
  }
  return false;
}

// Table files smaller than this are merged with their small neighbours (ConsolidateSmallFiles).
constexpr uint64_t kSmallTableFileBytes = uint64_t{16} << 20;
// A run of small neighbours is merged once it has this many files...
constexpr size_t kConsolidateRunFiles = 8;
// ...and at most this many bytes are merged at a time.
constexpr uint64_t kConsolidateRunBytes = uint64_t{256} << 20;

}  // namespace

void ChunkStore::Impl::ConsolidateSmallFiles() {
  if (db == nullptr || options.mode != OpenMode::kReadWrite) return;
  // Calls `merge` for every run of adjacent small files worth merging.
  auto for_each_run = [&](const std::function<void(rocksdb::ColumnFamilyHandle*,
                                                   const std::vector<std::string>&, int)>& merge) {
    for (rocksdb::ColumnFamilyHandle* cf : handles) {
      rocksdb::ColumnFamilyMetaData meta;
      db->GetColumnFamilyMetaData(cf, &meta);
      for (const rocksdb::LevelMetaData& level : meta.levels) {
        if (level.level == 0) continue;  // RocksDB's own compactions take level 0 down
        // Files of a level >= 1 are sorted and disjoint: a run of adjacent small files merges
        // into files that overlap nothing else in the level.
        std::vector<std::string> run;
        uint64_t run_bytes = 0;
        auto end_run = [&] {
          if (run.size() >= kConsolidateRunFiles) merge(cf, run, level.level);
          run.clear();
          run_bytes = 0;
        };
        for (const rocksdb::SstFileMetaData& f : level.files) {
          // A table that refers to blob files (the first layout) is small however much data it
          // stands for: merging it would also rewrite blobs (blob garbage collection).
          const bool mergeable =
              f.size < kSmallTableFileBytes && !f.being_compacted && f.oldest_blob_file_number == 0;
          if (!mergeable || run_bytes + f.size > kConsolidateRunBytes) {
            end_run();
            if (!mergeable) continue;
          }
          run.push_back(f.db_path + "/" + f.name);
          run_bytes += f.size;
        }
        end_run();
      }
    }
  };
  size_t runs = 0;
  for_each_run([&](auto*, const auto&, int) { ++runs; });
  if (runs == 0) return;  // the common case: nothing to merge, nothing paused
  // One consolidation at a time, with RocksDB's background work paused meanwhile: Debian's
  // librocksdb (built with assertions) aborted the process when a background compaction was
  // picked whose range overlapped a CompactFiles output in the same level (3 in 100 runs of a
  // replica taking manifests from 8 clients at once, under load; still 13 in 160 with only the
  // consolidations serialized). Pausing waits for the background jobs running: only when there
  // is something to merge.
  std::unique_lock<std::mutex> lock(consolidate_mu, std::try_to_lock);
  if (!lock.owns_lock()) return;  // another thread consolidates now; the next call goes on
  if (!db->PauseBackgroundWork().ok()) return;
  struct Resume {
    rocksdb::DB* db;
    ~Resume() { db->ContinueBackgroundWork().PermitUncheckedError(); }
  } resume{db};
  for_each_run(
      [&](rocksdb::ColumnFamilyHandle* cf, const std::vector<std::string>& run, int level) {
        rocksdb::CompactionOptions co;
        co.compression = rocksdb::kNoCompression;
        // Best effort: a failed call leaves the files as they are; the next consolidation finds the
        // run again.
        db->CompactFiles(co, cf, run, level).PermitUncheckedError();
      });
}

Status ChunkStore::Impl::CloseInternal() {
  if (db == nullptr) return Status::Ok();
  Status result;
  if (options.mode == OpenMode::kReadWrite) {
    // Every column family into table files (the write-ahead logs are then deleted), then the
    // compactions those files call for: a process that opens, commits and closes (a short job,
    // `dcpkv import`) would otherwise leave a few table files per commit that no compaction
    // ever merged, and the files of a store would grow with its commits, not its data.
    rocksdb::FlushOptions fo;
    fo.wait = true;
    result = FromRocksDB(db->Flush(fo, handles), "flushing " + dir + " on close");
    if (result.ok()) {
      const auto deadline = std::chrono::steady_clock::now() + kCloseCompactionWait;
      while (CompactionsOutstanding(db, handles) && std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
      }
      ConsolidateSmallFiles();
    }
  }
  Status closed = CloseDB();
  return result.ok() ? closed : result;
}

namespace {

// True for the names of the files a RocksDB database is made of (its info LOG and LOCK aside,
// which an open that failed may leave in any directory).
bool IsDatabaseFileName(const std::string& name) {
  auto ends_with = [&](std::string_view suffix) {
    return name.size() > suffix.size() &&
           std::string_view(name).substr(name.size() - suffix.size()) == suffix;
  };
  return name == "CURRENT" || name == "IDENTITY" || name.rfind("MANIFEST-", 0) == 0 ||
         name.rfind("OPTIONS-", 0) == 0 || ends_with(".sst") || ends_with(".blob") ||
         ends_with(".log");
}

// A directory without CURRENT holds no database: absent or empty, none was made yet. If it holds
// a database's files, its database lost CURRENT (or is half made by something else): DATA_LOSS,
// never treated as absent (which hid its checkpoints) nor made anew over them (which would orphan
// them).
Status CheckNoDatabaseFiles(const std::string& dir) {
  std::error_code ec;
  std::vector<std::string> found;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    if (IsDatabaseFileName(name)) found.push_back(name);
  }
  if (found.empty()) return Status::Ok();
  std::sort(found.begin(), found.end());
  std::string listed;
  for (size_t i = 0; i < found.size() && i < 4; ++i) listed += (i > 0 ? ", " : "") + found[i];
  if (found.size() > 4) listed += ", ... (" + std::to_string(found.size()) + " files)";
  return DataLossError("the database in " + dir +
                       " cannot be opened: it has no CURRENT file, but holds a database's "
                       "files (" +
                       listed + ")");
}

// Read-write opens of an existing database first check, without writing anything, that it has
// a chunk store's column families: RocksDB would add them to any other database.
Status CheckChunkStoreColumnFamilies(const std::string& dir) {
  std::vector<std::string> families;
  std::unique_ptr<rocksdb::Env> hidden;
  rocksdb::Status s = RetryPastTornManifestTail(
      dir, rocksdb::Env::Default(),
      [&](rocksdb::Env* env) {
        rocksdb::DBOptions o;
        o.env = env;
        return rocksdb::DB::ListColumnFamilies(o, dir, &families);
      },
      &hidden);
  DCPKV_RETURN_IF_ERROR(FromRocksDB(s, "reading the column families of " + dir));
  const bool chunks = std::count(families.begin(), families.end(), kChunksColumnFamily) > 0;
  const bool manifests = std::count(families.begin(), families.end(), kManifestsColumnFamily) > 0;
  if (chunks && manifests) return Status::Ok();
  std::string listed;
  for (const std::string& f : families) listed += (listed.empty() ? "" : ", ") + f;
  return FailedPreconditionError(dir +
                                 " is a RocksDB database but not a dcpkv store (column "
                                 "families: " +
                                 listed + "); nothing was written to it")
      .WithReason(ErrorReason::kNotADcpkvStore);
}

}  // namespace

Status ChunkStore::Open(const std::string& dir, const ChunkStoreOptions& options,
                        std::unique_ptr<ChunkStore>* store) {
  DCPKV_RETURN_IF_ERROR(CheckStoreOptions(options));
  std::error_code ec;
  bool exists = std::filesystem::exists(std::filesystem::path(dir) / "CURRENT", ec);
  if (!exists) DCPKV_RETURN_IF_ERROR(CheckNoDatabaseFiles(dir));
  if (!exists && (options.mode != OpenMode::kReadWrite || !options.create_if_missing)) {
    return NotFoundError("no chunk store at " + dir);
  }
  auto impl = std::make_unique<Impl>();
  impl->dir = dir;
  impl->options = options;
  if (!exists) {
    DCPKV_RETURN_IF_ERROR(CreateStore(impl.get()));
  } else if (options.mode == OpenMode::kReadWrite) {
    DCPKV_RETURN_IF_ERROR(CheckChunkStoreColumnFamilies(dir));
    DCPKV_RETURN_IF_ERROR(impl->OpenDB());
    if (Status st = CheckStoreFormat(impl.get()); !st.ok()) {
      impl->CloseInternal().IgnoreError();
      return st;
    }
  } else {
    DCPKV_RETURN_IF_ERROR(impl->OpenReadOnlyStable());
  }
  store->reset(new ChunkStore(std::move(impl)));
  return Status::Ok();
}

ChunkStore::ChunkStore(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

ChunkStore::~ChunkStore() {
  ReportDiagnostic(impl_->options.diagnostics, DiagnosticSeverity::kWarning,
                   "closing chunk store " + impl_->dir, impl_->CloseInternal());
}

const std::string& ChunkStore::directory() const { return impl_->dir; }
OpenMode ChunkStore::mode() const { return impl_->options.mode; }
const ChunkStoreOptions& ChunkStore::options() const { return impl_->options; }

Status ChunkStore::Close() { return impl_->CloseInternal(); }

Status ChunkStore::Recover() {
  if (impl_->options.mode != OpenMode::kReadWrite) {
    return FailedPreconditionError("Recover: store " + impl_->dir + " is opened read-only");
  }
  // Not RocksDB's Resume(): it refuses while its own recovery from a full disk runs, and after a
  // failed write-ahead log write with nothing to flush it returns OK but keeps the broken log,
  // whose next write Debian's RocksDB (built with assertions) aborts on.
  if (impl_->db != nullptr) impl_->CloseDB().IgnoreError();  // the error is known already
  if (Status s = impl_->OpenDB(); !s.ok()) {
    return s.WithContext("reopening " + impl_->dir + " after a write error");
  }
  Status format = CheckStoreFormat(impl_.get());
  if (!format.ok()) impl_->CloseDB().IgnoreError();
  return format;
}

Status ChunkStore::PutShard(std::string_view checkpoint_id, std::string_view fqn,
                            const ShardGeometry& geometry, const void* data, size_t size) {
  ChunkBatchWriter writer(this);
  DCPKV_RETURN_IF_ERROR(writer.AddShard(checkpoint_id, fqn, geometry, data, size));
  return writer.Finish();
}

Status ChunkStore::Flush() {
  DCPKV_RETURN_IF_ERROR(impl_->CheckWritable("Flush"));
  rocksdb::FlushOptions fo;
  fo.wait = true;
  fo.allow_write_stall = true;
  return FromRocksDB(impl_->db->Flush(fo, impl_->chunks_cf), "flushing chunks of " + impl_->dir);
}

Status ChunkStore::DeleteCheckpointChunks(std::string_view checkpoint_id) {
  DCPKV_RETURN_IF_ERROR(ValidateCheckpointId(checkpoint_id));
  DCPKV_RETURN_IF_ERROR(impl_->CheckWritable("DeleteCheckpointChunks"));
  DCPKV_ASSIGN_OR_RETURN(std::string marker, EncodeDataMarkerKey(checkpoint_id));
  std::string begin = ChunkKeyCheckpointPrefix(checkpoint_id);
  std::string end = PrefixUpperBound(begin);
  const std::string what = "deleting chunks of checkpoint \"" + std::string(checkpoint_id) + "\"";
  // Without a data marker there is nothing to delete (a read-write open has made every store
  // version 3). Not writing the range tombstone then matters: a save deletes its id's leftovers
  // first, and a tombstone over the range would make RocksDB ingest the save's table files into
  // level 0 above it, to be rewritten by compaction, instead of into the bottom level.
  std::string present;
  rocksdb::Status found =
      impl_->db->Get(rocksdb::ReadOptions(), impl_->default_cf, marker, &present);
  if (found.IsNotFound()) return Status::Ok();
  DCPKV_RETURN_IF_ERROR(FromRocksDB(found, what));
  rocksdb::WriteBatch batch;  // chunks and marker go together
  DCPKV_RETURN_IF_ERROR(FromRocksDB(batch.DeleteRange(impl_->chunks_cf, begin, end), what));
  DCPKV_RETURN_IF_ERROR(FromRocksDB(batch.Delete(impl_->default_cf, marker), what));
  return impl_->WriteUnmarking(&batch, marker, what);
}

StatusOr<std::vector<std::string>> ChunkStore::ListChunkCheckpointIds() {
  DCPKV_RETURN_IF_ERROR(impl_->CheckOpen());
  int version;
  {
    std::lock_guard<std::mutex> lock(impl_->format_mu);
    version = impl_->format_version;
  }
  if (version < kDataMarkerStoreFormatVersion) return ScanChunkCheckpointIds(impl_.get());
  return ListIdKeys(impl_.get(), kDataMarkerKeyTag, &DecodeDataMarkerKey, "data markers");
}

StatusOr<bool> ChunkStore::DeleteDataMarkerIfNoChunks(std::string_view checkpoint_id) {
  DCPKV_RETURN_IF_ERROR(ValidateCheckpointId(checkpoint_id));
  DCPKV_RETURN_IF_ERROR(impl_->CheckWritable("DeleteDataMarkerIfNoChunks"));
  DCPKV_ASSIGN_OR_RETURN(std::string marker, EncodeDataMarkerKey(checkpoint_id));
  const std::string begin = ChunkKeyCheckpointPrefix(checkpoint_id);
  DCPKV_ASSIGN_OR_RETURN(bool any, HasChunksInRange(ChunkKeyRange{begin, PrefixUpperBound(begin)}));
  if (any) return false;
  const std::string what =
      "deleting data marker of checkpoint \"" + std::string(checkpoint_id) + "\"";
  rocksdb::WriteBatch batch;
  DCPKV_RETURN_IF_ERROR(FromRocksDB(batch.Delete(impl_->default_cf, marker), what));
  DCPKV_RETURN_IF_ERROR(impl_->WriteUnmarking(&batch, marker, what));
  return true;
}

Status ChunkStore::PutManifest(const ManifestRecord& record) {
  DCPKV_ASSIGN_OR_RETURN(std::string key, EncodeManifestKey(record.checkpoint_id));
  DCPKV_RETURN_IF_ERROR(impl_->CheckWritable("PutManifest"));
  rocksdb::WriteOptions wo;
  wo.sync = true;
  {
    std::lock_guard<std::mutex> write_lock(impl_->write_mu);  // not held for the flush below
    DCPKV_RETURN_IF_ERROR(
        FromRocksDB(impl_->db->Put(wo, impl_->manifests_cf, key, EncodeManifestRecord(record)),
                    "writing manifest of checkpoint \"" + record.checkpoint_id + "\""));
  }
  // The synced write commits the checkpoint. Flushing the manifests into a table file as well
  // keeps it committed if the write-ahead log is damaged later (RocksDB's recovery drops a
  // damaged log's records from the damage on, silently). Best effort: the commit stands either
  // way.
  rocksdb::FlushOptions fo;
  fo.wait = true;
  impl_->db->Flush(fo, impl_->manifests_cf).PermitUncheckedError();
  impl_->ConsolidateSmallFiles();
  return Status::Ok();
}

namespace {

// Reads and decodes the manifest record stored under `key` in `cf` (a manifest, or its copy in
// trash); `what` names it in errors.
StatusOr<ManifestRecord> GetRecord(ChunkStore::Impl* impl, rocksdb::ColumnFamilyHandle* cf,
                                   const std::string& key, std::string_view checkpoint_id,
                                   const std::string& what) {
  DCPKV_RETURN_IF_ERROR(impl->CheckOpen());
  rocksdb::PinnableSlice value;
  rocksdb::Status s = impl->db->Get(rocksdb::ReadOptions(), cf, key, &value);
  if (s.IsNotFound()) return NotFoundError("no " + what + " in " + impl->dir);
  DCPKV_RETURN_IF_ERROR(FromRocksDB(s, "reading " + what));
  StatusOr<ManifestRecord> record =
      DecodeManifestRecord(std::string_view(value.data(), value.size()));
  if (!record.ok()) return record.status().WithContext(what + " in " + impl->dir);
  if (record->checkpoint_id != checkpoint_id) {
    return DataLossError(what + " in " + impl->dir + " names checkpoint \"" +
                         record->checkpoint_id + "\"");
  }
  return record;
}

}  // namespace

StatusOr<ManifestRecord> ChunkStore::GetManifest(std::string_view checkpoint_id) {
  DCPKV_ASSIGN_OR_RETURN(std::string key, EncodeManifestKey(checkpoint_id));
  return GetRecord(impl_.get(), impl_->manifests_cf, key, checkpoint_id,
                   "manifest of checkpoint \"" + std::string(checkpoint_id) + "\"");
}

StatusOr<std::vector<std::string>> ChunkStore::ListManifestIds() {
  DCPKV_RETURN_IF_ERROR(impl_->CheckOpen());
  std::vector<std::string> ids;
  std::unique_ptr<rocksdb::Iterator> it(
      impl_->db->NewIterator(rocksdb::ReadOptions(), impl_->manifests_cf));
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    DCPKV_ASSIGN_OR_RETURN(std::string id,
                           DecodeManifestKey(std::string_view(it->key().data(), it->key().size())));
    ids.push_back(std::move(id));
  }
  DCPKV_RETURN_IF_ERROR(FromRocksDB(it->status(), "listing manifests in " + impl_->dir));
  return ids;
}

Status ChunkStore::DeleteManifest(std::string_view checkpoint_id) {
  DCPKV_ASSIGN_OR_RETURN(std::string key, EncodeManifestKey(checkpoint_id));
  DCPKV_RETURN_IF_ERROR(impl_->CheckWritable("DeleteManifest"));
  rocksdb::WriteOptions wo;
  wo.sync = true;
  std::lock_guard<std::mutex> write_lock(impl_->write_mu);
  return FromRocksDB(impl_->db->Delete(wo, impl_->manifests_cf, key),
                     "deleting manifest of checkpoint \"" + std::string(checkpoint_id) + "\"");
}

Status ChunkStore::MoveManifestToTrash(std::string_view checkpoint_id) {
  DCPKV_ASSIGN_OR_RETURN(std::string manifest_key, EncodeManifestKey(checkpoint_id));
  DCPKV_ASSIGN_OR_RETURN(std::string trash_key, EncodeTrashKey(checkpoint_id));
  DCPKV_RETURN_IF_ERROR(impl_->CheckWritable("MoveManifestToTrash"));
  const std::string what = "manifest of checkpoint \"" + std::string(checkpoint_id) + "\"";
  std::string value;
  rocksdb::Status s =
      impl_->db->Get(rocksdb::ReadOptions(), impl_->manifests_cf, manifest_key, &value);
  if (s.IsNotFound()) return NotFoundError("no " + what + " in " + impl_->dir);
  DCPKV_RETURN_IF_ERROR(FromRocksDB(s, "reading " + what));
  rocksdb::WriteBatch batch;
  DCPKV_RETURN_IF_ERROR(FromRocksDB(batch.Delete(impl_->manifests_cf, manifest_key), what));
  DCPKV_RETURN_IF_ERROR(FromRocksDB(batch.Put(impl_->default_cf, trash_key, value), what));
  rocksdb::WriteOptions wo;
  wo.sync = true;
  std::lock_guard<std::mutex> write_lock(impl_->write_mu);
  return FromRocksDB(impl_->db->Write(wo, &batch), "moving " + what + " to trash in " + impl_->dir);
}

StatusOr<std::vector<std::string>> ChunkStore::ListTrashIds() {
  return ListIdKeys(impl_.get(), kTrashKeyTag, &DecodeTrashKey, "trash records");
}

StatusOr<ManifestRecord> ChunkStore::GetTrashRecord(std::string_view checkpoint_id) {
  DCPKV_ASSIGN_OR_RETURN(std::string key, EncodeTrashKey(checkpoint_id));
  return GetRecord(impl_.get(), impl_->default_cf, key, checkpoint_id,
                   "trash record of checkpoint \"" + std::string(checkpoint_id) + "\"");
}

Status ChunkStore::PutStoreValue(std::string_view key, std::string_view value) {
  DCPKV_RETURN_IF_ERROR(impl_->CheckWritable("PutStoreValue"));
  if (key.size() < 7 || key.substr(0, 6) != "dcpkv." || key == kStoreFormatKey) {
    return InvalidArgumentError("store value keys start with \"dcpkv.\": \"" + std::string(key) +
                                "\"");
  }
  rocksdb::WriteOptions wo;
  wo.sync = true;
  std::lock_guard<std::mutex> write_lock(impl_->write_mu);
  return FromRocksDB(impl_->db->Put(wo, impl_->default_cf, key, value),
                     "writing \"" + std::string(key) + "\" in " + impl_->dir);
}

StatusOr<std::string> ChunkStore::GetStoreValue(std::string_view key) {
  DCPKV_RETURN_IF_ERROR(impl_->CheckOpen());
  std::string value;
  rocksdb::Status s = impl_->db->Get(rocksdb::ReadOptions(), impl_->default_cf, key, &value);
  if (s.IsNotFound()) return NotFoundError("no \"" + std::string(key) + "\" in " + impl_->dir);
  DCPKV_RETURN_IF_ERROR(FromRocksDB(s, "reading \"" + std::string(key) + "\" in " + impl_->dir));
  return value;
}

Status ChunkStore::DeleteTrashRecord(std::string_view checkpoint_id) {
  DCPKV_ASSIGN_OR_RETURN(std::string key, EncodeTrashKey(checkpoint_id));
  DCPKV_RETURN_IF_ERROR(impl_->CheckWritable("DeleteTrashRecord"));
  rocksdb::WriteOptions wo;
  wo.sync = true;
  std::lock_guard<std::mutex> write_lock(impl_->write_mu);
  return FromRocksDB(impl_->db->Delete(wo, impl_->default_cf, key),
                     "deleting trash record of checkpoint \"" + std::string(checkpoint_id) + "\"");
}

StatusOr<std::string> ChunkStore::GetReclaimMarker(std::string_view checkpoint_id) {
  DCPKV_ASSIGN_OR_RETURN(std::string key, EncodeReclaimKey(checkpoint_id));
  DCPKV_RETURN_IF_ERROR(impl_->CheckOpen());
  std::string value;
  std::string what = "reclaim marker of checkpoint \"" + std::string(checkpoint_id) + "\"";
  rocksdb::Status s = impl_->db->Get(rocksdb::ReadOptions(), impl_->default_cf, key, &value);
  if (s.IsNotFound()) return NotFoundError("no " + what + " in " + impl_->dir);
  DCPKV_RETURN_IF_ERROR(FromRocksDB(s, "reading " + what));
  return value;
}

Status ChunkStore::PutReclaimMarker(std::string_view checkpoint_id, std::string_view value) {
  DCPKV_ASSIGN_OR_RETURN(std::string key, EncodeReclaimKey(checkpoint_id));
  DCPKV_RETURN_IF_ERROR(impl_->CheckWritable("PutReclaimMarker"));
  rocksdb::WriteOptions wo;
  wo.sync = true;
  std::lock_guard<std::mutex> write_lock(impl_->write_mu);
  return FromRocksDB(impl_->db->Put(wo, impl_->default_cf, key, value),
                     "writing reclaim marker of checkpoint \"" + std::string(checkpoint_id) + "\"");
}

Status ChunkStore::DeleteReclaimMarker(std::string_view checkpoint_id) {
  DCPKV_ASSIGN_OR_RETURN(std::string key, EncodeReclaimKey(checkpoint_id));
  DCPKV_RETURN_IF_ERROR(impl_->CheckWritable("DeleteReclaimMarker"));
  rocksdb::WriteOptions wo;
  wo.sync = true;
  std::lock_guard<std::mutex> write_lock(impl_->write_mu);
  return FromRocksDB(
      impl_->db->Delete(wo, impl_->default_cf, key),
      "deleting reclaim marker of checkpoint \"" + std::string(checkpoint_id) + "\"");
}

StatusOr<std::vector<std::string>> ChunkStore::ListReclaimMarkerIds() {
  return ListIdKeys(impl_.get(), kReclaimKeyTag, &DecodeReclaimKey, "reclaim markers");
}

Status ChunkStore::DeleteChunkRanges(const std::vector<ChunkKeyRange>& ranges) {
  DCPKV_RETURN_IF_ERROR(impl_->CheckWritable("DeleteChunkRanges"));
  rocksdb::WriteBatch batch;
  for (const ChunkKeyRange& r : ranges) {
    if (r.begin.empty() || r.begin[0] != kChunkKeyTag || !(r.begin < r.end)) {
      return InvalidArgumentError("DeleteChunkRanges: not a non-empty range of chunk keys");
    }
    DCPKV_RETURN_IF_ERROR(
        FromRocksDB(batch.DeleteRange(impl_->chunks_cf, r.begin, r.end), "DeleteChunkRanges"));
  }
  if (batch.Count() == 0) return Status::Ok();
  rocksdb::WriteOptions wo;
  wo.sync = true;
  std::lock_guard<std::mutex> write_lock(impl_->write_mu);
  return FromRocksDB(impl_->db->Write(wo, &batch), "deleting chunk ranges in " + impl_->dir);
}

StatusOr<bool> ChunkStore::HasChunksInRange(const ChunkKeyRange& range) {
  DCPKV_RETURN_IF_ERROR(impl_->CheckOpen());
  if (!(range.begin < range.end)) return false;
  // With the upper bound, the iterator stops before it would read (and so fetch the blob
  // value of) a key past the range.
  rocksdb::Slice upper(range.end);
  rocksdb::ReadOptions ro;
  ro.iterate_upper_bound = &upper;
  std::unique_ptr<rocksdb::Iterator> it(impl_->db->NewIterator(ro, impl_->chunks_cf));
  it->Seek(range.begin);
  bool found = it->Valid();
  DCPKV_RETURN_IF_ERROR(FromRocksDB(it->status(), "looking for chunks in " + impl_->dir));
  return found;
}

Status ChunkStore::CompactChunks(const ChunkKeyRange& range) {
  DCPKV_RETURN_IF_ERROR(impl_->CheckWritable("CompactChunks"));
  DCPKV_RETURN_IF_ERROR(Flush());
  rocksdb::CompactRangeOptions o;
  o.exclusive_manual_compaction = false;
  o.bottommost_level_compaction = rocksdb::BottommostLevelCompaction::kForce;
  o.blob_garbage_collection_policy = rocksdb::BlobGarbageCollectionPolicy::kForce;
  o.blob_garbage_collection_age_cutoff = 1.0;
  rocksdb::Slice begin(range.begin), end(range.end);
  return FromRocksDB(impl_->db->CompactRange(o, impl_->chunks_cf, &begin, &end),
                     "compacting chunks of " + impl_->dir);
}

Status ChunkStore::ReclaimChunkRanges(const std::vector<ChunkKeyRange>& dead) {
  DCPKV_RETURN_IF_ERROR(impl_->CheckWritable("ReclaimChunkRanges"));
  if (dead.empty()) return Status::Ok();
  DCPKV_RETURN_IF_ERROR(Flush());
  std::vector<rocksdb::Slice> bounds;
  bounds.reserve(2 * dead.size());
  for (const ChunkKeyRange& r : dead) {
    bounds.emplace_back(r.begin);
    bounds.emplace_back(r.end);
  }
  std::vector<rocksdb::RangePtr> ranges;
  for (size_t i = 0; i < dead.size(); ++i) ranges.emplace_back(&bounds[2 * i], &bounds[2 * i + 1]);
  DCPKV_RETURN_IF_ERROR(FromRocksDB(
      rocksdb::DeleteFilesInRanges(impl_->db, impl_->chunks_cf, ranges.data(), ranges.size(),
                                   /*include_end=*/false),
      "dropping the table files of deleted chunks in " + impl_->dir));
  return CompactChunks(ChunkKeyRange{dead.front().begin, dead.back().end});
}

Status ChunkStore::TryCatchUpWithPrimary() {
  DCPKV_RETURN_IF_ERROR(impl_->CheckOpen());
  if (impl_->options.mode != OpenMode::kSecondary) {
    return FailedPreconditionError("TryCatchUpWithPrimary: store " + impl_->dir +
                                   " is not opened as a secondary");
  }
  DCPKV_RETURN_IF_ERROR(impl_->CloseDB());
  return impl_->OpenReadOnlyStable();
}

}  // namespace dcpkv

// A RocksDB FileSystem that fails writes on demand: a full disk (NoSpace, "No space left on
// device") or an I/O error, after a number of bytes or on the n-th write operation, in the files
// whose names match. Also tears a write and kills the process, for crash tests.
//
//   auto fs = std::make_shared<testing::FaultInjectionFileSystem>();
//   std::unique_ptr<rocksdb::Env> env = rocksdb::NewCompositeEnv(fs);
//   ChunkStoreOptions options;
//   options.env = env.get();                    // env and fs must outlive the store
//   fs->Arm({.kind = FaultKind::kNoSpace, .after_bytes = 1 << 20});
//   ... saves fail ...
//   fs->Disarm();                               // space is back
//
// Reads, directory operations and renames are never failed. Thread-safe (RocksDB writes from its
// background threads).
#ifndef DCPKV_TESTS_CRASH_FAULT_INJECTION_FS_H_
#define DCPKV_TESTS_CRASH_FAULT_INJECTION_FS_H_

#include <rocksdb/env.h>
#include <rocksdb/file_system.h>
#include <signal.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace dcpkv::testing {

enum class FaultKind {
  kNoSpace,  // IOStatus::NoSpace: a full disk
  kIOError,  // a plain IOStatus::IOError
  // The failing append writes only its first half, then the process SIGKILLs itself: a write
  // torn by a crash.
  kTornWriteThenKill,
};

struct FaultSpec {
  FaultKind kind = FaultKind::kNoSpace;
  // Files concerned: those whose name contains one of these (".sst", ".blob", ".log",
  // "MANIFEST-"). Empty: every file.
  std::vector<std::string> files;
  // Fail the write that takes the bytes appended (to the files concerned) since Arm past this
  // many; that append first writes the bytes up to the limit, as a filling disk does.
  uint64_t after_bytes = std::numeric_limits<uint64_t>::max();
  // Fail the n-th write operation (append or sync of a file concerned) since Arm; 0: no count.
  uint64_t on_op = 0;
  // Once failed, every later write (and file creation) concerned fails too, as a full disk does,
  // until Disarm. False: only the one operation fails.
  bool sticky = true;
};

class FaultInjectionFileSystem : public rocksdb::FileSystemWrapper {
 public:
  explicit FaultInjectionFileSystem(
      std::shared_ptr<rocksdb::FileSystem> base = rocksdb::FileSystem::Default())
      : FileSystemWrapper(std::move(base)) {}

  const char* Name() const override { return "DcpkvFaultInjectionFileSystem"; }

  void Arm(const FaultSpec& spec) {
    std::lock_guard<std::mutex> lock(mu_);
    spec_ = spec;
    armed_ = true;
    failing_ = false;
    bytes_ = 0;
    ops_ = 0;
  }
  void Disarm() {
    std::lock_guard<std::mutex> lock(mu_);
    armed_ = false;
    failing_ = false;
  }
  // Operations failed since construction.
  uint64_t faults() const {
    std::lock_guard<std::mutex> lock(mu_);
    return faults_;
  }

  // Decides about a write of `size` bytes (0 for a sync) to `fname`: OK, or the error, with
  // `*allowed` the bytes to write before failing.
  rocksdb::IOStatus CheckWrite(const std::string& fname, size_t size, size_t* allowed) {
    std::lock_guard<std::mutex> lock(mu_);
    *allowed = size;
    if (!armed_ || !Concerns(fname)) return rocksdb::IOStatus::OK();
    if (!failing_) {
      ++ops_;
      const bool by_count = spec_.on_op != 0 && ops_ == spec_.on_op;
      const bool by_bytes = size > spec_.after_bytes - std::min(bytes_, spec_.after_bytes);
      if (!by_count && !by_bytes) {
        bytes_ += size;
        return rocksdb::IOStatus::OK();
      }
      *allowed = by_count ? 0 : static_cast<size_t>(spec_.after_bytes - bytes_);
      bytes_ += *allowed;
      failing_ = spec_.sticky;
    } else {
      *allowed = 0;
    }
    ++faults_;
    if (spec_.kind == FaultKind::kTornWriteThenKill) {
      *allowed = size / 2;
      return rocksdb::IOStatus::Aborted("torn");  // the caller writes half and dies
    }
    return Error(fname);
  }

  // A file creation fails while a sticky fault is failing.
  rocksdb::IOStatus CheckCreate(const std::string& fname) {
    std::lock_guard<std::mutex> lock(mu_);
    if (armed_ && failing_ && Concerns(fname) && spec_.kind != FaultKind::kTornWriteThenKill) {
      ++faults_;
      return Error(fname);
    }
    return rocksdb::IOStatus::OK();
  }

  rocksdb::IOStatus NewWritableFile(const std::string& f, const rocksdb::FileOptions& o,
                                    std::unique_ptr<rocksdb::FSWritableFile>* r,
                                    rocksdb::IODebugContext* dbg) override {
    rocksdb::IOStatus s = CheckCreate(f);
    if (s.ok()) s = target()->NewWritableFile(f, o, r, dbg);
    if (s.ok()) Wrap(f, r);
    return s;
  }
  rocksdb::IOStatus ReopenWritableFile(const std::string& f, const rocksdb::FileOptions& o,
                                       std::unique_ptr<rocksdb::FSWritableFile>* r,
                                       rocksdb::IODebugContext* dbg) override {
    rocksdb::IOStatus s = CheckCreate(f);
    if (s.ok()) s = target()->ReopenWritableFile(f, o, r, dbg);
    if (s.ok()) Wrap(f, r);
    return s;
  }
  rocksdb::IOStatus ReuseWritableFile(const std::string& f, const std::string& old,
                                      const rocksdb::FileOptions& o,
                                      std::unique_ptr<rocksdb::FSWritableFile>* r,
                                      rocksdb::IODebugContext* dbg) override {
    rocksdb::IOStatus s = CheckCreate(f);
    if (s.ok()) s = target()->ReuseWritableFile(f, old, o, r, dbg);
    if (s.ok()) Wrap(f, r);
    return s;
  }

 private:
  class File : public rocksdb::FSWritableFileOwnerWrapper {
   public:
    File(FaultInjectionFileSystem* fs, std::string fname,
         std::unique_ptr<rocksdb::FSWritableFile> file)
        : FSWritableFileOwnerWrapper(std::move(file)), fs_(fs), fname_(std::move(fname)) {}

    rocksdb::IOStatus Append(const rocksdb::Slice& data, const rocksdb::IOOptions& o,
                             rocksdb::IODebugContext* dbg) override {
      size_t allowed = 0;
      rocksdb::IOStatus s = fs_->CheckWrite(fname_, data.size(), &allowed);
      if (s.ok()) return target()->Append(data, o, dbg);
      return Partial(rocksdb::Slice(data.data(), allowed), s, o, dbg);
    }
    rocksdb::IOStatus Append(const rocksdb::Slice& data, const rocksdb::IOOptions& o,
                             const rocksdb::DataVerificationInfo&,
                             rocksdb::IODebugContext* dbg) override {
      return Append(data, o, dbg);
    }
    rocksdb::IOStatus PositionedAppend(const rocksdb::Slice& data, uint64_t offset,
                                       const rocksdb::IOOptions& o,
                                       rocksdb::IODebugContext* dbg) override {
      size_t allowed = 0;
      rocksdb::IOStatus s = fs_->CheckWrite(fname_, data.size(), &allowed);
      if (s.ok()) return target()->PositionedAppend(data, offset, o, dbg);
      return Partial(rocksdb::Slice(), s, o, dbg);  // direct I/O only: nothing written
    }
    rocksdb::IOStatus PositionedAppend(const rocksdb::Slice& data, uint64_t offset,
                                       const rocksdb::IOOptions& o,
                                       const rocksdb::DataVerificationInfo&,
                                       rocksdb::IODebugContext* dbg) override {
      return PositionedAppend(data, offset, o, dbg);
    }
    rocksdb::IOStatus Sync(const rocksdb::IOOptions& o, rocksdb::IODebugContext* dbg) override {
      size_t allowed = 0;
      rocksdb::IOStatus s = fs_->CheckWrite(fname_, 0, &allowed);
      return s.ok() ? target()->Sync(o, dbg) : SyncFailure(s);
    }
    rocksdb::IOStatus Fsync(const rocksdb::IOOptions& o, rocksdb::IODebugContext* dbg) override {
      size_t allowed = 0;
      rocksdb::IOStatus s = fs_->CheckWrite(fname_, 0, &allowed);
      return s.ok() ? target()->Fsync(o, dbg) : SyncFailure(s);
    }

   private:
    rocksdb::IOStatus Partial(const rocksdb::Slice& part, const rocksdb::IOStatus& s,
                              const rocksdb::IOOptions& o, rocksdb::IODebugContext* dbg) {
      if (!part.empty()) target()->Append(part, o, dbg).PermitUncheckedError();
      if (s.IsAborted()) {  // kTornWriteThenKill
        target()->Flush(o, dbg).PermitUncheckedError();
        ::raise(SIGKILL);
      }
      return s;
    }
    rocksdb::IOStatus SyncFailure(const rocksdb::IOStatus& s) {
      if (s.IsAborted()) ::raise(SIGKILL);  // a torn sync: nothing more to write
      return s;
    }

    FaultInjectionFileSystem* fs_;
    std::string fname_;
  };

  void Wrap(const std::string& fname, std::unique_ptr<rocksdb::FSWritableFile>* r) {
    *r = std::make_unique<File>(this, fname, std::move(*r));
  }

  bool Concerns(const std::string& fname) const {  // REQUIRES: mu_ held
    if (spec_.files.empty()) return true;
    const std::string base = fname.substr(fname.rfind('/') + 1);
    for (const std::string& f : spec_.files) {
      if (base.find(f) != std::string::npos) return true;
    }
    return false;
  }

  rocksdb::IOStatus Error(const std::string& fname) const {
    if (spec_.kind == FaultKind::kIOError) {
      return rocksdb::IOStatus::IOError("injected write error on", fname);
    }
    return rocksdb::IOStatus::NoSpace("injected: disk full writing", fname);
  }

  mutable std::mutex mu_;
  FaultSpec spec_;
  bool armed_ = false;
  bool failing_ = false;
  uint64_t bytes_ = 0;
  uint64_t ops_ = 0;
  uint64_t faults_ = 0;
};

}  // namespace dcpkv::testing

#endif  // DCPKV_TESTS_CRASH_FAULT_INJECTION_FS_H_

// File operations of dcpkv's own outside RocksDB: the directories a rank database is made in and
// renamed from, the ingest directory and its table files' removal, the writer lease. They go
// through one FileOps object, the POSIX calls by default, which a test may replace with a layer
// of its own (tests/crash/power_loss.h records what each operation made durable, and a simulated
// power cut throws away the rest). RocksDB's own files go through its FileSystem
// (ChunkStoreOptions::env) instead.
//
// Not installed: store/ and tests only. Thread-safe: the default is stateless;
// SetFileOpsForTesting must be called before any store is opened, and the object must outlive
// every use.
#ifndef DCPKV_STORE_FILE_OPS_H_
#define DCPKV_STORE_FILE_OPS_H_

#include <string>

#include "dcpkv/status.h"

namespace dcpkv {

// Each call returns 0 or an errno value (file creation: a descriptor, or -errno).
class FileOps {
 public:
  virtual ~FileOps() = default;

  virtual int MakeDirectory(const std::string& path);  // mkdir(path, 0755)
  virtual int Rename(const std::string& from, const std::string& to);
  virtual int Link(const std::string& from, const std::string& to);
  virtual int Unlink(const std::string& path);
  virtual int RemoveDirectory(const std::string& path);  // an empty one
  // open(path, O_CREAT | flags | O_CLOEXEC, 0644): a descriptor, or -errno. The data written to
  // it is durable once SyncFile returns.
  virtual int CreateFile(const std::string& path, int flags);
  virtual int SyncFile(int fd, const std::string& path);  // fsync; `path` names the file
  virtual int SyncDirectory(const std::string& path);     // fsync of the directory
};

// The operations in use: the test's (SetFileOpsForTesting), else the POSIX calls.
FileOps& CurrentFileOps();
// Test hook: `ops` (null for the default) is used from now on.
void SetFileOpsForTesting(FileOps* ops);

// mkdir -p through CurrentFileOps: every missing directory of `path`. 0 or an errno value.
int MakeDirectories(const std::string& path);
// rm -r through CurrentFileOps: `path` and, if a directory, everything in it. Missing is fine.
// 0 or the errno value of the first failure.
int RemoveTree(const std::string& path);

// fsync of a directory, making its entries (files created or renamed into it, removed from it)
// durable.
Status SyncDirectory(const std::string& dir);

}  // namespace dcpkv

#endif  // DCPKV_STORE_FILE_OPS_H_

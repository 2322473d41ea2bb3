// How read-only opens read table files: through the page cache, or with O_DIRECT into RocksDB's
// buffers (ChunkStoreOptions::table_read_io). Internal to store/ and its tests.
#ifndef DCPKV_STORE_TABLE_READ_IO_H_
#define DCPKV_STORE_TABLE_READ_IO_H_

#include <rocksdb/env.h>
#include <rocksdb/file_system.h>

#include <cstdint>
#include <memory>
#include <string>

#include "dcpkv/store/chunk_store.h"

namespace dcpkv {

// Table files smaller than this are always read through the page cache.
inline constexpr uint64_t kMinDirectTableFileBytes = uint64_t{1} << 20;

// The fraction of the file open as `fd` (of `size` bytes) that is in the page cache, from
// mincore(2) on a read-only mapping of it; -1 if that cannot be told.
double PageCacheResidency(int fd, uint64_t size);

// A FileSystem that opens table files (*.sst) for random access with O_DIRECT, by `mode`:
// kDirect every one of at least kMinDirectTableFileBytes, kAuto those of them less than half of
// which is in the page cache. A file system that refuses O_DIRECT gets a buffered open.
class TableReadIoFileSystem : public rocksdb::FileSystemWrapper {
 public:
  TableReadIoFileSystem(const std::shared_ptr<rocksdb::FileSystem>& target, TableReadIo mode);
  const char* Name() const override { return "DcpkvTableReadIo"; }
  rocksdb::IOStatus NewRandomAccessFile(const std::string& fname,
                                        const rocksdb::FileOptions& options,
                                        std::unique_ptr<rocksdb::FSRandomAccessFile>* result,
                                        rocksdb::IODebugContext* dbg) override;

  // Whether `fname` should be read with O_DIRECT (by the mode, its size and residency).
  bool WantsDirect(const std::string& fname) const;

 private:
  const TableReadIo mode_;
};

// The process's Env over rocksdb::Env::Default() whose file system is a TableReadIoFileSystem
// in `mode` (kAuto or kDirect). Never destroyed, like Env::Default().
rocksdb::Env* TableReadIoEnv(TableReadIo mode);

}  // namespace dcpkv

#endif  // DCPKV_STORE_TABLE_READ_IO_H_

// A RocksDB MANIFEST whose end a power cut tore. RocksDB appends a record to the MANIFEST and
// syncs it before the change it describes counts (a flush, an ingestion, a compaction): a cut
// in between leaves the record's bytes unsynced, and a file system may keep the file's new length
// with other bytes in it (zeros, or old blocks, on some file systems). RocksDB's open then fails
// with "Corruption: checksum mismatch in file MANIFEST-...", for a record that never counted,
// and the whole rank database, every committed checkpoint in it, cannot be opened. (The write-ahead
// log's torn tail, by contrast, RocksDB's point-in-time recovery drops.)
//
// A torn tail here is: from the first record that does not read back (a bad checksum, length or
// type, or one cut short) to the end of the file, no valid record at all. The open is then
// retried with the MANIFEST read up to that record: the database as of its last synced change.
// A read-write open writes a new MANIFEST (as every open does) and the torn one goes; a read-only
// open changes nothing. Damage before valid records is not a torn tail: the open fails as before.
// Internal to store/.
#ifndef DCPKV_STORE_MANIFEST_TAIL_H_
#define DCPKV_STORE_MANIFEST_TAIL_H_

#include <rocksdb/env.h>
#include <rocksdb/file_system.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "dcpkv/status.h"

namespace dcpkv {

struct TornManifestTail {
  std::string path;      // the MANIFEST CURRENT names
  uint64_t valid_bytes;  // its records up to here read back
  uint64_t file_bytes;   // its length
};

// The torn tail of `dir`'s current MANIFEST; NOT_FOUND if it reads back to its end, DATA_LOSS if
// it is damaged before records that read back (or the torn part is longer than a few blocks).
StatusOr<TornManifestTail> FindTornManifestTail(rocksdb::FileSystem* fs, const std::string& dir);

// An environment over `base` (its file system; threads and clock of the default environment)
// in which `tail.path` ends at `tail.valid_bytes`.
std::unique_ptr<rocksdb::Env> HideTornManifestTail(rocksdb::Env* base,
                                                   const TornManifestTail& tail);

// Runs `attempt` (an open, a listing of column families) with the environment `base`; if that
// fails with a corruption of the MANIFEST and the MANIFEST has a torn tail, once more with the
// tail hidden, `*hidden` then owning that environment (to keep for as long as what `attempt`
// opened). A MANIFEST damaged elsewhere: the corruption, saying where.
rocksdb::Status RetryPastTornManifestTail(
    const std::string& dir, rocksdb::Env* base,
    const std::function<rocksdb::Status(rocksdb::Env*)>& attempt,
    std::unique_ptr<rocksdb::Env>* hidden);

}  // namespace dcpkv

#endif  // DCPKV_STORE_MANIFEST_TAIL_H_

// The store's StorageWriter and StorageReader, for a save or load protocol run by someone else
// (torch.distributed.checkpoint through dcpkv.torch): the same steps dcpkv's own Save and Load
// take, one call per DCP hook.
//
// A writer writes one rank's items into <root>/rank-NNNNN and, on the coordinator, commits the
// manifest; a reader reads any committed checkpoint of the root, verifying every chunk. The
// caller builds the Metadata it commits from the global plan and the ranks' WriteResults and
// completes it with FillCommitMetadata before StorageWriter::Finish.
#ifndef DCPKV_KV_STORAGE_FACTORY_H_
#define DCPKV_KV_STORAGE_FACTORY_H_

#include <cstdint>
#include <memory>
#include <string>

#include "dcpkv/export.h"
#include "dcpkv/metadata.h"
#include "dcpkv/status.h"
#include "dcpkv/storage.h"

namespace dcpkv {

struct DCPKV_EXPORT KvStorageConfig {
  // Directory that holds the rank databases. Required.
  std::string root;
  // Payload bytes per stored chunk. 0: the default (4 MiB).
  uint64_t chunk_size = 0;
  // Threads a rank writes with (0: the default, see KvStorageOptions::write_threads).
  int write_threads = 0;
  // Threads a rank reads with (0: the default, see KvStorageOptions::read_threads).
  int read_threads = 0;
  // How a reader reads the rank databases' table files.
  enum class ReadIo {
    // Per file: with O_DIRECT when less than half of it is in the page cache (a cold load),
    // else through the page cache (a checkpoint just saved).
    kAuto,
    // Through the page cache.
    kBuffered,
    // With O_DIRECT (files of 1 MiB or more, where the file system takes it).
    kDirect,
  };
  ReadIo read_io = ReadIo::kAuto;
};

DCPKV_EXPORT std::unique_ptr<StorageWriter> CreateKvStorageWriter(const KvStorageConfig& config);
DCPKV_EXPORT std::unique_ptr<StorageReader> CreateKvStorageReader(const KvStorageConfig& config);

// Fills what the store's Finish expects beyond the entries: the payload bytes stored under the
// checkpoint's own keys (stored_bytes) and, through `writer`, the incremental base.
DCPKV_EXPORT void FillCommitMetadata(StorageWriter& writer, Metadata* metadata);

// Reclaims this rank's share of checkpoints that retention deleted (a protocol that gives
// non-coordinator ranks no hook after the commit calls it before the next save). `writer` must
// be a writer of CreateKvStorageWriter that has been set up.
DCPKV_EXPORT Status ReclaimKvRankGarbage(StorageWriter& writer);

}  // namespace dcpkv

#endif  // DCPKV_KV_STORAGE_FACTORY_H_

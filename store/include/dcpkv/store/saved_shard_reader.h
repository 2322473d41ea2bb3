// Reading a saved shard whose chunks may be stored under other checkpoints' keys.
//
// An incremental checkpoint records, per saved shard, every chunk in byte order (SavedShard::
// chunk_list): a chunk is stored either under the checkpoint's own keys in the database of the
// shard's rank, or, if it equals the chunk at the same place in an earlier checkpoint, under
// that checkpoint's keys (same fqn, shard offsets and byte offset) in the database of the
// rank that stored it there. A shard without a chunk list (an older manifest) has all its
// chunks under the checkpoint's own keys in the shard's rank's database.
//
// The helpers here split a byte range of such a shard into runs of consecutive chunks stored
// under the same (checkpoint, rank), and read each run with ChunkStore::ReadShardRange.
//
// Thread safety: pure functions of their arguments; the callbacks decide the rest.
#ifndef DCPKV_STORE_SAVED_SHARD_READER_H_
#define DCPKV_STORE_SAVED_SHARD_READER_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "dcpkv/metadata.h"
#include "dcpkv/status.h"
#include "dcpkv/store/chunk_store.h"

namespace dcpkv {

// Consecutive chunks of a saved shard stored under one checkpoint in one rank's database.
struct ChunkRun {
  std::string checkpoint_id;  // the checkpoint whose keys hold the chunks
  int32_t rank = 0;           // the database that holds them
  bool referenced = false;    // stored under an earlier checkpoint (a chunk_list source)
  // Bytes [begin, end) of the shard: the run's chunks, clipped to the range asked for.
  uint64_t begin = 0;
  uint64_t end = 0;
  // Indices [first_chunk, end_chunk) into shard.chunk_list; 0, 0 for a shard without one.
  size_t first_chunk = 0;
  size_t end_chunk = 0;
};

// The runs that hold bytes [begin, end) of `shard` of checkpoint `checkpoint_id`, in byte
// order, each clipped to [begin, end). For an empty range the one run holding the chunk at
// `begin` (the last chunk if begin == shard.bytes), so that reading it still checks that the
// shard is stored. INVALID_ARGUMENT if the range is not within the shard; DATA_LOSS if the
// chunk list's lengths do not add up to shard.bytes.
StatusOr<std::vector<ChunkRun>> SplitIntoChunkRuns(std::string_view checkpoint_id,
                                                   const SavedShard& shard, uint64_t begin,
                                                   uint64_t end);

// "checkpoint \"a\" in rank 1's database" for a referenced run, "rank 0's database" otherwise.
std::string DescribeChunkRunLocation(const ChunkRun& run);

// Resolves the database of a rank.
using RankStoreResolver = std::function<StatusOr<ChunkStore*>(int rank)>;

// Runs `read` on the database of `rank`; lets a caller retry (e.g. reopen on IO_ERROR).
using RankReadRunner =
    std::function<Status(int rank, const std::function<Status(ChunkStore*)>& read)>;

// Reads bytes [begin, end) of `shard` (tensor or bytes entry `fqn` of dtype `dtype` of
// checkpoint `checkpoint_id`) into `dest` (end - begin bytes): one ChunkStore::ReadShardRange
// per run, in the run's checkpoint and database. Every chunk read is verified. A failure of a
// referenced run says where the chunks are stored; a referenced run whose chunks or database
// are gone is DATA_LOSS (the checkpoint is committed, its data is not there), not NOT_FOUND.
Status ReadSavedShardRange(std::string_view checkpoint_id, std::string_view fqn, DType dtype,
                           const SavedShard& shard, uint64_t begin, uint64_t end, void* dest,
                           const RankStoreResolver& stores);

// As above, with each run's read made through `runner` (which may retry it).
Status ReadSavedShardRange(std::string_view checkpoint_id, std::string_view fqn, DType dtype,
                           const SavedShard& shard, uint64_t begin, uint64_t end, void* dest,
                           const RankReadRunner& runner);

}  // namespace dcpkv

#endif  // DCPKV_STORE_SAVED_SHARD_READER_H_

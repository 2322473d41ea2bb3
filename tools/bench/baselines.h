// Baselines: what the same bytes cost without dcpkv. Each function is one rank's part; run
// them on every rank with TimeOnRanks.
#ifndef DCPKV_TOOLS_BENCH_BASELINES_H_
#define DCPKV_TOOLS_BENCH_BASELINES_H_

#include <cstdint>
#include <string>
#include <vector>

#include "dcpkv/status.h"
#include "state.h"

namespace dcpkv::bench {

// raw_write: the state's shards written one after another with plain write() into `path`
// (created or truncated), then fdatasync and close.
Status RawWrite(const std::string& path, const RankState& state);

// raw_write_parallel: the same bytes written by `writers` threads, each its share of the shards
// (round robin) into a file of its own, `path_prefix`.<i>, then fdatasync and close; done when the
// last is. What a writer with that many threads (torch DCP's FileSystemWriter with thread_count)
// can get from the disk.
Status RawWriteParallel(const std::string& path_prefix, const RankState& state, int writers);

// raw_read: `path` read back with plain read() into the state's shards, one after another.
// Drop the file's page cache first (DropPageCache) for a cold read.
Status RawRead(const std::string& path, RankState& state);

// raw_scan: `path` read whole with plain read() into one reused buffer of `buffer` bytes (what
// a reader that only checks the bytes, like verify, needs from the disk); adds its size to
// `*bytes`.
Status RawScan(const std::string& path, std::vector<char>& buffer, uint64_t* bytes);

// memcpy: every shard of `from` copied into the same shard of `to` (same shape).
void CopyState(const RankState& from, RankState& to);

}  // namespace dcpkv::bench

#endif  // DCPKV_TOOLS_BENCH_BASELINES_H_

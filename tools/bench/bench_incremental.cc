// incremental: an incremental Save in which 10% of the chunks changed since its base, against a
// full Save of the same state, in the same run and interleaved. Reports the time ratio and, in
// `bytes_ratio`, the payload bytes the incremental save stored against the full one's.
#include <algorithm>

#include "baselines.h"
#include "benchmarks.h"
#include "io_steps.h"
#include "page_cache.h"
#include "stats.h"

namespace dcpkv::bench {
namespace {

// Flips one byte in every tenth chunk (counted over all ranks' shards, in order, at the
// store's chunk boundaries). Returns the chunks touched and the chunks there are.
std::pair<uint64_t, uint64_t> TouchEveryTenthChunk(std::vector<RankState>& states,
                                                   uint64_t chunk_size) {
  uint64_t index = 0, touched = 0;
  for (RankState& s : states) {
    for (Shard& shard : s.shards) {
      const uint64_t bytes = shard.tensor.nbytes();
      const uint64_t element = ElementSize(shard.tensor.dtype());
      const uint64_t chunk = std::max<uint64_t>(element, chunk_size / element * element);
      auto* p = static_cast<uint8_t*>(shard.tensor.data());
      for (uint64_t offset = 0; offset < bytes || (offset == 0 && bytes == 0); offset += chunk) {
        if (index++ % 10 == 0 && bytes > 0) {
          p[offset] ^= 0x5A;
          ++touched;
        }
        if (bytes == 0) break;
      }
    }
  }
  return {touched, index};
}

}  // namespace

StatusOr<std::vector<Result>> RunIncremental(BenchContext& ctx) {
  const Config& c = ctx.config;
  Workspace& ws = ctx.workspace;
  std::vector<RankState> states = PatternStates(c, 0);
  std::string base;
  uint64_t full_stored = 0, incremental_stored = 0, touched = 0, chunks = 0;
  uint64_t full_disk = 0, incremental_disk = 0;
  auto save = [&](bool incremental) -> StatusOr<double> {
    const std::string id = ws.NewId(incremental ? "incr" : "full");
    Metadata md;
    const uint64_t before = FileBytes(ws.StoreRoot());
    StatusOr<double> seconds = TimeOnRanks(c.world, [&](const Rank& r) {
      return SaveStep(r, states[r.rank], ws.StoreRoot(), id, StoreOptions(c), c.write_threads,
                      incremental ? base : "", r.rank == 0 ? &md : nullptr);
    });
    DCPKV_RETURN_IF_ERROR(seconds.status());
    const uint64_t disk = FileBytes(ws.StoreRoot()) - before;
    if (incremental) {
      incremental_stored = md.stored_bytes;
      incremental_disk = std::max(incremental_disk, disk);
    } else {
      full_stored = md.stored_bytes;
      full_disk = std::max(full_disk, disk);
      base = id;
    }
    DCPKV_RETURN_IF_ERROR(DropPageCache(ws.path()));
    return seconds;
  };
  // Each pair: a full save (the base), 10% of the chunks change, the incremental save.
  auto full = [&](int) { return save(false); };
  auto incremental = [&](int) -> StatusOr<double> {
    std::tie(touched, chunks) = TouchEveryTenthChunk(states, c.chunk_size);
    return save(true);
  };
  DCPKV_ASSIGN_OR_RETURN(PairedRuns runs, Interleave(c.repetitions, full, incremental));
  Result r = MakeResult("incremental", RunShape(c).total_bytes(), runs.measured, "full_save",
                        runs.baseline);
  r.note = "incremental Save, 10% of chunks changed, vs full Save of the same state";
  const double bytes_ratio = full_stored == 0 ? 0 : double(incremental_stored) / full_stored;
  r.extra = {{"changed_chunks", double(touched)},
             {"chunks", double(chunks)},
             {"stored_bytes", double(incremental_stored)},
             {"full_stored_bytes", double(full_stored)},
             {"bytes_ratio", bytes_ratio},
             {"time_ratio", runs.baseline.empty() ? 0 : r.seconds / r.baseline_seconds},
             {"disk_bytes", double(incremental_disk)},
             {"full_disk_bytes", double(full_disk)}};
  return std::vector<Result>{r};
}

}  // namespace dcpkv::bench

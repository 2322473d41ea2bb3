// save, load and load_reshard: dcpkv::Save and dcpkv::Load of the run's state on `world` ranks
// (threads over gloo), against plain files and against each other. Every run starts with no file
// of the workspace in the page cache (dropped, untimed, before each read and after each write):
// loads and reads are cold, and no run pays for the cache another left behind. Every destination
// is first filled with a sentinel (which also faults its pages in), then checked after the load.
#include <algorithm>
#include <atomic>

#include "baselines.h"
#include "benchmarks.h"
#include "io_steps.h"
#include "page_cache.h"
#include "stats.h"

namespace dcpkv::bench {
namespace {

void FillSentinels(std::vector<RankState>& states) {
  for (RankState& s : states) FillSentinel(s);
}

// A cold dcpkv::Load of `id` into fresh sentinel-filled states on `world` ranks; checks them.
// `resident` gets the store's bytes still cached when the load started.
StatusOr<double> ColdLoad(BenchContext& ctx, int world, const std::string& id, uint64_t* resident) {
  const std::string root = ctx.workspace.StoreRoot();
  std::vector<RankState> targets = MakeWorldStates(RunShape(ctx.config), world);
  FillSentinels(targets);
  DCPKV_RETURN_IF_ERROR(DropPageCache(ctx.workspace.path()));
  *resident = std::max(*resident, ResidentBytes(root));
  DCPKV_ASSIGN_OR_RETURN(double seconds, TimeOnRanks(world, [&](const Rank& r) {
                           return LoadStep(r, targets[r.rank], root, id, ctx.config.read_threads);
                         }));
  DCPKV_RETURN_IF_ERROR(CheckStates(targets, 0, "load of " + id));
  return seconds;
}

}  // namespace

StatusOr<std::vector<Result>> RunSave(BenchContext& ctx) {
  const Config& c = ctx.config;
  Workspace& ws = ctx.workspace;
  std::vector<RankState> states = PatternStates(c, 0);
  const uint64_t store_before = FileBytes(ws.StoreRoot());
  std::string last_id;
  auto raw_write = [&](int) -> StatusOr<double> {
    StatusOr<double> seconds = TimeOnRanks(
        c.world, [&](const Rank& r) { return RawWrite(ws.RawFile(r.rank), states[r.rank]); });
    DCPKV_RETURN_IF_ERROR(DropPageCache(ws.path()));
    return seconds;
  };
  auto raw_write_parallel = [&](int) -> StatusOr<double> {
    StatusOr<double> seconds = TimeOnRanks(c.world, [&](const Rank& r) {
      return RawWriteParallel(ws.RawFile(r.rank) + ".part", states[r.rank], c.raw_writers);
    });
    DCPKV_RETURN_IF_ERROR(DropPageCache(ws.path()));
    return seconds;
  };
  // Each save's peak resident memory above the process's just before Save(), the largest of any
  // process (with --processes, of any rank); the peak counts only where it can be reset.
  std::vector<double> rss_growth;
  bool rss_peak_reset = true;
  auto save = [&](int) -> StatusOr<double> {
    last_id = ws.NewId("save");
    double largest = 0;
    StatusOr<double> seconds = TimeSaveWithRssGrowth(
        c.world,
        [&](const Rank& r) {
          return SaveStep(r, states[r.rank], ws.StoreRoot(), last_id, StoreOptions(c),
                          c.write_threads);
        },
        &largest, &rss_peak_reset);
    DCPKV_RETURN_IF_ERROR(seconds.status());
    rss_growth.push_back(largest);
    DCPKV_RETURN_IF_ERROR(DropPageCache(ws.path()));
    return seconds;
  };
  DCPKV_ASSIGN_OR_RETURN(std::vector<std::vector<double>> runs,
                         InterleaveAll(c.repetitions, {raw_write, raw_write_parallel, save}));
  RegisterRawFiles(ctx);  // both hold pattern 0 of this run's shape
  RegisterSavedCheckpoint(ctx, last_id);

  // The disk's limit is the faster of one writer per rank and several.
  const bool parallel_faster = Median(runs[1]) < Median(runs[0]);
  Result r = MakeResult("save", RunShape(c).total_bytes(), runs[2],
                        parallel_faster ? "raw_write_parallel" : "raw_write",
                        parallel_faster ? runs[1] : runs[0]);
  r.note =
      "sync Save incl. durable flush + commit vs the faster of write()+fdatasync with one "
      "file per rank and with --raw-writers files per rank";
  const double disk = double(FileBytes(ws.StoreRoot()) - store_before) / c.repetitions;
  r.extra = {{"store_bytes_per_save", disk},
             {"raw_write_seconds", Median(runs[0])},
             {"raw_write_parallel_seconds", Median(runs[1])},
             {"raw_writers", double(c.raw_writers)}};
  if (rss_peak_reset) {
    r.extra.push_back({"save_rss_growth_median_bytes", Median(rss_growth)});
    r.extra.push_back(
        {"save_rss_growth_max_bytes", *std::max_element(rss_growth.begin(), rss_growth.end())});
  }
  return std::vector<Result>{r};
}

StatusOr<std::vector<Result>> RunLoad(BenchContext& ctx) {
  const Config& c = ctx.config;
  Workspace& ws = ctx.workspace;
  DCPKV_ASSIGN_OR_RETURN(const std::string id, SavedCheckpoint(ctx));
  DCPKV_RETURN_IF_ERROR(EnsureRawFiles(ctx));
  uint64_t store_resident = 0, raw_resident = 0;
  auto raw_read = [&](int) -> StatusOr<double> {
    std::vector<RankState> targets = MakeWorldStates(RunShape(c), c.world);
    FillSentinels(targets);
    DCPKV_RETURN_IF_ERROR(DropPageCache(ws.path()));
    raw_resident = std::max(raw_resident, ResidentBytes(ws.RawDir()));
    DCPKV_ASSIGN_OR_RETURN(double seconds, TimeOnRanks(c.world, [&](const Rank& r) {
                             return RawRead(ws.RawFile(r.rank), targets[r.rank]);
                           }));
    DCPKV_RETURN_IF_ERROR(CheckStates(targets, 0, "raw read"));
    return seconds;
  };
  auto load = [&](int) { return ColdLoad(ctx, c.world, id, &store_resident); };
  DCPKV_ASSIGN_OR_RETURN(PairedRuns runs, Interleave(c.repetitions, raw_read, load));

  Result r =
      MakeResult("load", RunShape(c).total_bytes(), runs.measured, "raw_read", runs.baseline);
  r.note = "cold Load (page cache dropped) vs cold read() of the raw files";
  r.extra = {{"store_cached_bytes_at_start", double(store_resident)},
             {"raw_cached_bytes_at_start", double(raw_resident)}};
  return std::vector<Result>{r};
}

StatusOr<std::vector<Result>> RunLoadReshard(BenchContext& ctx) {
  const Config& c = ctx.config;
  DCPKV_ASSIGN_OR_RETURN(const std::string id, SavedCheckpoint(ctx));
  uint64_t resident = 0;
  auto load = [&](int) { return ColdLoad(ctx, c.world, id, &resident); };
  auto reshard = [&](int) { return ColdLoad(ctx, c.world + 1, id, &resident); };
  DCPKV_ASSIGN_OR_RETURN(PairedRuns runs, Interleave(c.repetitions, load, reshard));

  Result r =
      MakeResult("load_reshard", RunShape(c).total_bytes(), runs.measured, "load", runs.baseline);
  r.note = "cold Load on world+1 ranks of a save on world ranks; baseline: cold Load on world";
  r.extra = {{"load_world", double(c.world + 1)},
             {"store_cached_bytes_at_start", double(resident)}};
  return std::vector<Result>{r};
}

}  // namespace dcpkv::bench

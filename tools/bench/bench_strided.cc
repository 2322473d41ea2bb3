// save_strided: a Save whose shards are strided views (each a column half of a row-major buffer
// twice as wide, as a column-sharded weight is) against a Save of the same bytes held
// contiguously, interleaved in the same run. The views are saved where they lie: each chunk
// gathers its rows into its value, with no staging copy of the tensor.
#include <algorithm>
#include <cstring>

#include "benchmarks.h"
#include "io_steps.h"
#include "page_cache.h"
#include "stats.h"

namespace dcpkv::bench {
namespace {

// The views: for each shard of `contiguous`, a buffer of twice its columns holding the shard's
// bytes in its left half, and a strided view of that half in place of the shard.
struct StridedState {
  RankState state;
  std::vector<std::vector<float>> buffers;
};

StridedState MakeStridedState(const RankState& contiguous) {
  StridedState s;
  for (size_t t = 0; t < contiguous.shards.size(); ++t) {
    const Shard& shard = contiguous.shards[t];
    const uint64_t rows = shard.tensor.shape()[0], cols = shard.tensor.shape()[1];
    std::vector<float>& buffer = s.buffers.emplace_back(rows * cols * 2, 0.0f);
    for (uint64_t r = 0; r < rows; ++r) {
      std::memcpy(buffer.data() + r * cols * 2, shard.tensor.data_as<float>() + r * cols,
                  cols * sizeof(float));
    }
    Shard view{shard.offsets,
               Tensor::WrapStrided(DType::kFloat32, {rows, cols}, {cols * 2, 1}, buffer.data())};
    const auto* global = std::get_if<ShardedTensor>(contiguous.dict.Find(contiguous.fqns[t]));
    s.state.dict.Set(contiguous.fqns[t],
                     ShardedTensor{DType::kFloat32, global->global_shape, {view}});
    s.state.fqns.push_back(contiguous.fqns[t]);
    s.state.shards.push_back(std::move(view));
    s.state.bytes += shard.tensor.nbytes();
  }
  return s;
}

}  // namespace

StatusOr<std::vector<Result>> RunSaveStrided(BenchContext& ctx) {
  const Config& c = ctx.config;
  Workspace& ws = ctx.workspace;
  std::vector<RankState> states = PatternStates(c, 0);
  std::vector<StridedState> views;
  for (const RankState& s : states) views.push_back(MakeStridedState(s));
  // The largest peak resident memory of a strided save above the RSS just before it (a staging
  // copy of the views would show as the state's size).
  double rss_growth = 0;
  bool rss_peak_reset = true;
  auto save = [&](bool strided) -> StatusOr<double> {
    const std::string id = ws.NewId(strided ? "strided" : "contiguous");
    double largest = 0;
    StatusOr<double> seconds = TimeSaveWithRssGrowth(
        c.world,
        [&](const Rank& r) {
          RankState& state = strided ? views[r.rank].state : states[r.rank];
          return SaveStep(r, state, ws.StoreRoot(), id, StoreOptions(c), c.write_threads);
        },
        &largest, &rss_peak_reset);
    DCPKV_RETURN_IF_ERROR(seconds.status());
    if (strided) rss_growth = std::max(rss_growth, largest);
    DCPKV_RETURN_IF_ERROR(DropPageCache(ws.path()));
    return seconds;
  };
  DCPKV_ASSIGN_OR_RETURN(PairedRuns runs, Interleave(
                                              c.repetitions, [&](int) { return save(false); },
                                              [&](int) { return save(true); }));
  Result r = MakeResult("save_strided", RunShape(c).total_bytes(), runs.measured, "save_contiguous",
                        runs.baseline);
  r.note = "sync Save of column-half views (strided rows) vs the same bytes contiguous";
  if (rss_peak_reset) r.extra = {{"strided_save_rss_growth_max_bytes", rss_growth}};
  return std::vector<Result>{r};
}

}  // namespace dcpkv::bench

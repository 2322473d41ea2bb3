// memcpy, async_block and async_block_lazy: how long AsyncSave keeps the caller (the training
// loop) blocked, against a memcpy of the same bytes into memory that is already faulted in.
// Each rank uses one DefaultStager (pageable memory) for every save, as a Checkpointer would;
// one untimed save first fills its pool. The upload is waited for after the clock stops.
#include <mutex>

#include "baselines.h"
#include "benchmarks.h"
#include "dcpkv/api/kv_storage.h"
#include "dcpkv/async_save.h"
#include "io_steps.h"
#include "stats.h"

namespace dcpkv::bench {
namespace {

// Largest value reported by several ranks.
class SharedMax {
 public:
  void Add(double v) {
    std::lock_guard<std::mutex> lock(mu_);
    max_ = std::max(max_, v);
  }
  double TakeMax() {
    std::lock_guard<std::mutex> lock(mu_);
    const double v = max_;
    max_ = 0;
    return v;
  }

 private:
  std::mutex mu_;
  double max_ = 0;
};

StatusOr<double> TimedCopy(const Config& c, const std::vector<RankState>& from,
                           std::vector<RankState>& to) {
  return TimeOnRanks(c.world, [&](const Rank& r) {
    CopyState(from[r.rank], to[r.rank]);
    return Status::Ok();
  });
}

AsyncSaveOptions AsyncOptions(const Rank& r, const std::string& root, const std::string& id,
                              const ChunkStoreOptions& store_options,
                              std::shared_ptr<AsyncStager> stager) {
  KvStorageOptions storage{root, store_options};
  AsyncSaveOptions o;
  o.save.checkpoint_id = id;
  o.save.storage_writer = std::make_shared<KvStorageWriter>(storage);
  o.save.process_group = r.group;
  o.async_stager = std::move(stager);
  return o;
}

// One rank's AsyncSave: returns the seconds it blocked; `staged` gets the seconds until
// staging_completion. Waits for the upload after the clock stops.
StatusOr<double> AsyncSaveStep(const Rank& r, RankState& state, const AsyncSaveOptions& o,
                               SharedMax& staged) {
  if (r.group != nullptr) DCPKV_RETURN_IF_ERROR(r.group->Barrier());
  Stopwatch watch;
  StatusOr<AsyncSaveResponse> response = AsyncSave(state.dict, o);
  const double blocked = watch.Seconds();
  if (!response.ok()) return response.status();
  DCPKV_RETURN_IF_ERROR(response->staging_completion.get());
  staged.Add(watch.Seconds());
  DCPKV_RETURN_IF_ERROR(response->upload_completion.get().status());
  return blocked;
}

}  // namespace

StatusOr<std::vector<Result>> RunMemcpy(BenchContext& ctx) {
  const Config& c = ctx.config;
  std::vector<RankState> from = PatternStates(c, 0);
  std::vector<RankState> to = MakeWorldStates(RunShape(c), c.world);
  for (RankState& s : to) FillSentinel(s);
  std::vector<double> runs;
  for (int rep = 0; rep < c.repetitions; ++rep) {
    DCPKV_ASSIGN_OR_RETURN(double s, TimedCopy(c, from, to));
    runs.push_back(s);
  }
  Result r = MakeResult("memcpy", RunShape(c).total_bytes(), runs);
  r.note = "memcpy of every rank's shards into faulted-in memory";
  return std::vector<Result>{r};
}

StatusOr<std::vector<Result>> RunAsyncBlock(BenchContext& ctx, bool lazy) {
  const Config& c = ctx.config;
  std::vector<RankState> states = PatternStates(c, 0);
  std::vector<RankState> copies = MakeWorldStates(RunShape(c), c.world);
  for (RankState& s : copies) FillSentinel(s);
  std::vector<std::shared_ptr<DefaultStager>> stagers;
  for (int r = 0; r < c.world; ++r) {
    stagers.push_back(std::make_shared<DefaultStager>(
        StagingOptions{.use_pinned_memory = false, .use_async_staging = lazy}));
  }
  const std::string root = ctx.workspace.Path(lazy ? "async-lazy" : "async");
  SharedMax staged;
  std::vector<double> staged_runs;
  auto async_save = [&](int rep) -> StatusOr<double> {
    const std::string id = ctx.workspace.NewId("async");
    StatusOr<double> blocked = MaxOnRanks(c.world, [&](const Rank& r) {
      return AsyncSaveStep(r, states[r.rank],
                           AsyncOptions(r, root, id, StoreOptions(c), stagers[r.rank]), staged);
    });
    const double staged_seconds = staged.TakeMax();
    if (rep >= 0) staged_runs.push_back(staged_seconds);
    return blocked;
  };
  DCPKV_RETURN_IF_ERROR(async_save(-1).status());  // fills the staging pools
  auto copy = [&](int) { return TimedCopy(c, states, copies); };
  DCPKV_ASSIGN_OR_RETURN(PairedRuns runs, Interleave(c.repetitions, copy, async_save));
  for (auto& stager : stagers) stager->Close();

  Result r = MakeResult(lazy ? "async_block_lazy" : "async_block", RunShape(c).total_bytes(),
                        runs.measured, "memcpy", runs.baseline);
  r.note = lazy ? "time AsyncSave blocks the caller, staging on the upload thread"
                : "time AsyncSave blocks the caller, staging inside the call";
  r.extra = {{"staged_seconds", Median(staged_runs)}};
  return std::vector<Result>{r};
}

}  // namespace dcpkv::bench

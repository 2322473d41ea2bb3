#include "io_steps.h"

#include <atomic>

#include "baselines.h"
#include "dcpkv/api/kv_storage.h"
#include "dcpkv/checkpoint.h"
#include "stats.h"

namespace dcpkv::bench {
namespace {

constexpr char kCheckpointFixture[] = "checkpoint";
constexpr char kRawFixture[] = "raw_files";

}  // namespace

StateShape RunShape(const Config& config) {
  return ShapeFor(config.size, config.tensors, config.world + 1);
}

std::vector<RankState> PatternStates(const Config& config, uint32_t seed) {
  std::vector<RankState> states = MakeWorldStates(RunShape(config), config.world);
  for (RankState& s : states) FillPattern(s, seed);
  return states;
}

ChunkStoreOptions StoreOptions(const Config& config) {
  ChunkStoreOptions o;
  o.chunk_size = config.chunk_size;
  o.write_path = config.write_path;
  return o;
}

StatusOr<double> TimeSaveWithRssGrowth(int world, const std::function<Status(const Rank&)>& save,
                                       double* growth, bool* peak_reset) {
  std::atomic<uint64_t> largest{0};
  std::atomic<bool> reset{true};
  StatusOr<double> seconds = TimeOnRanks(world, [&](const Rank& r) {
    const uint64_t before = CurrentRssBytes();
    if ((r.rank == 0 || InProcessWorld()) && !ResetPeakRss()) reset = false;
    Status s = save(r);
    const uint64_t peak = PeakRssBytes();
    uint64_t seen = largest.load();
    while (peak > before && peak - before > seen &&
           !largest.compare_exchange_weak(seen, peak - before)) {
    }
    return s;
  });
  DCPKV_RETURN_IF_ERROR(seconds.status());
  DCPKV_ASSIGN_OR_RETURN(*growth, MaxOnRanks(world, [&](const Rank&) -> StatusOr<double> {
    return double(largest.load());
  }));
  if (!reset.load()) *peak_reset = false;
  return seconds;
}

Status SaveStep(const Rank& r, RankState& state, const std::string& root, const std::string& id,
                const ChunkStoreOptions& store_options, int write_threads,
                const std::string& incremental_base, Metadata* committed) {
  KvStorageOptions storage{root, store_options};
  storage.write_threads = write_threads;
  SaveOptions o;
  o.checkpoint_id = id;
  o.storage_writer = std::make_shared<KvStorageWriter>(storage);
  o.process_group = r.group;
  o.incremental = !incremental_base.empty();
  o.incremental_base = incremental_base;
  StatusOr<Metadata> md = Save(state.dict, o);
  if (md.ok() && committed != nullptr) *committed = std::move(md).value();
  return md.status();
}

Status LoadStep(const Rank& r, RankState& state, const std::string& root, const std::string& id,
                int read_threads) {
  KvStorageOptions storage{root, {}};
  storage.read_threads = read_threads;
  LoadOptions o;
  o.checkpoint_id = id;
  o.storage_reader = std::make_shared<KvStorageReader>(storage);
  o.process_group = r.group;
  return Load(state.dict, o);
}

Status CheckStates(const std::vector<RankState>& states, uint32_t seed, std::string_view what) {
  for (size_t r = 0; r < states.size(); ++r) {
    if (IsLocalRank(static_cast<int>(r)) && !MatchesPattern(states[r], seed)) {
      return DataLossError(std::string(what) + ": rank " + std::to_string(r) +
                           " does not hold the saved values");
    }
  }
  return Status::Ok();
}

StatusOr<std::string> SavedCheckpoint(BenchContext& ctx) {
  auto& fixtures = ctx.workspace.fixtures();
  if (auto it = fixtures.find(kCheckpointFixture); it != fixtures.end()) return it->second;
  std::vector<RankState> states = PatternStates(ctx.config, 0);
  const std::string id = ctx.workspace.NewId("fixture");
  DCPKV_RETURN_IF_ERROR(RunRanks(ctx.config.world, [&](const Rank& r) {
    return SaveStep(r, states[r.rank], ctx.workspace.StoreRoot(), id, StoreOptions(ctx.config),
                    ctx.config.write_threads);
  }));
  RegisterSavedCheckpoint(ctx, id);
  return id;
}

void RegisterSavedCheckpoint(BenchContext& ctx, const std::string& id) {
  ctx.workspace.fixtures()[kCheckpointFixture] = id;
}

Status EnsureRawFiles(BenchContext& ctx) {
  if (ctx.workspace.fixtures().contains(kRawFixture)) return Status::Ok();
  std::vector<RankState> states = PatternStates(ctx.config, 0);
  DCPKV_RETURN_IF_ERROR(RunRanks(ctx.config.world, [&](const Rank& r) {
    return RawWrite(ctx.workspace.RawFile(r.rank), states[r.rank]);
  }));
  RegisterRawFiles(ctx);
  return Status::Ok();
}

void RegisterRawFiles(BenchContext& ctx) { ctx.workspace.fixtures()[kRawFixture] = "written"; }

}  // namespace dcpkv::bench

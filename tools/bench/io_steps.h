// Steps and fixtures of the I/O benchmarks: one rank's save or load, the run's state shape, and
// the checkpoint and raw files that several benchmarks read (made once per run).
#ifndef DCPKV_TOOLS_BENCH_IO_STEPS_H_
#define DCPKV_TOOLS_BENCH_IO_STEPS_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "bench.h"
#include "dcpkv/metadata.h"
#include "dcpkv/store/chunk_store.h"
#include "ranks.h"
#include "state.h"
#include "workspace.h"

namespace dcpkv::bench {

// The state of this run: config.size bytes in config.tensors tensors, with rows enough for
// config.world + 1 ranks (load_reshard).
StateShape RunShape(const Config& config);

// Every rank of the run's world holding its part of the state, filled with pattern `seed`.
std::vector<RankState> PatternStates(const Config& config, uint32_t seed);

// The rank databases' options of this run: --chunk-size and --write-path.
ChunkStoreOptions StoreOptions(const Config& config);

// One rank's dcpkv::Save of `state` as checkpoint `id` under `root`, through a fresh
// KvStorageWriter whose databases use `store_options` (what Save with store_root does). A full
// save unless `incremental_base` names the base of an incremental one. `write_threads` as
// KvStorageOptions::write_threads. `committed`, if not null,
// receives the committed Metadata.
// Runs `save` on every rank, timed as TimeOnRanks, and returns in *growth the largest peak
// resident memory of any rank (with --processes, of any process) above its RSS just before its
// `save`; *peak_reset turns false where the peak could not be reset (the growth is then not a
// save's own).
StatusOr<double> TimeSaveWithRssGrowth(int world, const std::function<Status(const Rank&)>& save,
                                       double* growth, bool* peak_reset);

Status SaveStep(const Rank& r, RankState& state, const std::string& root, const std::string& id,
                const ChunkStoreOptions& store_options, int write_threads = 0,
                const std::string& incremental_base = "", Metadata* committed = nullptr);

// One rank's dcpkv::Load of checkpoint `id` under `root` into `state`, through a fresh
// KvStorageReader reading with `read_threads` (KvStorageOptions::read_threads).
Status LoadStep(const Rank& r, RankState& state, const std::string& root, const std::string& id,
                int read_threads = 0);

// DATA_LOSS naming `what` unless every state holds pattern `seed` (sampled rows).
Status CheckStates(const std::vector<RankState>& states, uint32_t seed, std::string_view what);

// The fixture checkpoint: pattern 0 saved on config.world ranks into the workspace's store,
// once per run (a save benchmark that ran before registers its own). Returns its id.
StatusOr<std::string> SavedCheckpoint(BenchContext& ctx);
void RegisterSavedCheckpoint(BenchContext& ctx, const std::string& id);

// The raw baseline files (one per rank) hold pattern 0, written once per run.
Status EnsureRawFiles(BenchContext& ctx);
void RegisterRawFiles(BenchContext& ctx);

}  // namespace dcpkv::bench

#endif  // DCPKV_TOOLS_BENCH_IO_STEPS_H_

// plan: the coordinator's planning work for `sim_ranks` ranks, in one process, no I/O and no
// network. Each simulated rank's local plan holds `plan_tensors` row-sharded items (what
// DefaultSavePlanner::CreateLocalPlan makes of one local shard per tensor). Figures:
//   plan                  DefaultSavePlanner::CreateGlobalPlan(all local plans), called as
//                         Saver does (the decoded plans handed over): dedup, validation, Metadata.
//   plan_miss             the coordinator's whole step of a first save with plan caching on, as
//                         Saver::GlobalPlan does it: decode the gathered plans, CreateGlobalPlan,
//                         hash and encode the replies, fill the cache.
//   plan_cache_hit        the same step when every rank sent "cached, hash h" (Saver::GlobalPlan's
//                         all-cached path) and the writer changes only storage data: compare
//                         each hash with the stored local plan hash, use the cached global plan
//                         in place, reply "cached" with the stored final hashes. Baseline:
//                         plan_miss.
//   plan_cache_hit_rehash the same with a writer that may change the final plans: each final
//                         plan is hashed to find those it changed. Baseline: plan_miss.
//   plan_cache_hit_floor  the least a hit has to do: compare the received hashes with stored ones
//                         (the cached global plan is used in place, not copied). Baseline:
//                         plan_miss.
// Saver's StorageWriter::PrepareGlobalPlan (a manifest lookup) is left out: it is I/O.
// `bytes` of every figure: the encoded local plans, what the coordinator receives on a miss.
#include "benchmarks.h"
#include "dcpkv/core/hash.h"
#include "dcpkv/core/plan_codec.h"
#include "dcpkv/core/protocol_messages.h"
#include "dcpkv/planner.h"
#include "stats.h"

namespace dcpkv::bench {
namespace {

constexpr uint64_t kRowsPerRank = 8;
constexpr uint64_t kCols = 4096;

SavePlan SimulatedLocalPlan(int rank, int ranks, int tensors) {
  SavePlan plan;
  plan.items.reserve(tensors);
  const uint64_t first = static_cast<uint64_t>(rank) * kRowsPerRank;
  for (int t = 0; t < tensors; ++t) {
    plan.items.push_back(WriteItem{"model.layers." + std::to_string(t) + ".weight",
                                   WriteItemType::kShard,
                                   DType::kFloat32,
                                   {kRowsPerRank * ranks, kCols},
                                   {first, 0},
                                   {kRowsPerRank, kCols}});
  }
  return plan;
}

// What the coordinator holds and receives.
struct PlanFixture {
  std::vector<std::string> payloads;   // gathered messages of a miss: every local plan
  std::vector<std::string> cached;     // gathered messages of a hit: every plan's hash
  std::vector<uint64_t> local_hashes;  // for the floor
  SavePlanCache cache;                 // after one save with caching on
  uint64_t payload_bytes = 0;
};

// Saver::GlobalPlan's reply step: one message per rank, "cached" where the final plan did not
// change since the previous save.
std::vector<std::string> Replies(const GlobalSavePlan& global,
                                 const std::vector<uint64_t>& previous_final,
                                 std::vector<uint64_t>* hashes) {
  std::vector<std::string> replies(global.plans.size());
  hashes->resize(global.plans.size());
  for (size_t r = 0; r < global.plans.size(); ++r) {
    (*hashes)[r] = HashSavePlan(global.plans[r]);
    const bool unchanged = r < previous_final.size() && previous_final[r] == (*hashes)[r];
    replies[r] =
        unchanged ? CachedMessage((*hashes)[r]) : PayloadMessage(EncodeSavePlan(global.plans[r]));
  }
  return replies;
}

// A first save's coordinator step (no valid cache yet); fills `cache`.
StatusOr<std::vector<std::string>> CoordinatorMiss(const std::vector<std::string>& gathered,
                                                   SavePlanner& planner, SavePlanCache* cache) {
  GatheredMessages g = DecodeGathered(gathered);
  std::vector<SavePlan> plans = DecodePayloads<SavePlan>(g, DecodeSavePlan, true);
  if (g.any_failed) return AggregateFailures("plan", g.failures);
  DCPKV_ASSIGN_OR_RETURN(GlobalSavePlan global, planner.CreateGlobalPlan(std::move(plans)));
  std::vector<uint64_t> hashes;
  std::vector<std::string> replies = Replies(global, {}, &hashes);
  cache->valid = true;
  cache->local_plan_hashes.clear();
  cache->local_plan_payloads.clear();
  for (Message& m : g.messages) {
    cache->local_plan_hashes.push_back(HashBytes(m.payload.data(), m.payload.size()).lo);
    cache->local_plan_payloads.push_back(std::move(m.payload));
  }
  cache->final_plan_hashes = std::move(hashes);
  cache->global = std::move(global);
  return replies;
}

// Saver::GlobalPlan when every rank sent "cached", with a storage writer that changes only the
// plans' storage data (KvStorageWriter): the final plans' hashes are the cached ones, and every
// reply is "cached, hash h" plus the storage data.
StatusOr<std::vector<std::string>> CoordinatorHit(const std::vector<std::string>& gathered,
                                                  SavePlanCache* cache) {
  GatheredMessages g = DecodeGathered(gathered);
  for (size_t r = 0; r < g.messages.size(); ++r) {
    if (g.messages[r].kind != MessageKind::kCached || r >= cache->local_plan_hashes.size() ||
        g.messages[r].hash != cache->local_plan_hashes[r]) {
      return AbortedError("plan cache out of sync");
    }
  }
  // The cached global plan is used where it is (Saver keeps a pointer to it).
  std::vector<std::string> replies(cache->global.plans.size());
  for (size_t r = 0; r < replies.size(); ++r) {
    replies[r] = CachedMessage(cache->final_plan_hashes[r], cache->global.plans[r].storage_data);
  }
  return replies;
}

// The same when the writer may change more than storage data: every final plan is hashed to
// find those it changed.
StatusOr<std::vector<std::string>> CoordinatorHitRehash(const std::vector<std::string>& gathered,
                                                        SavePlanCache* cache) {
  GatheredMessages g = DecodeGathered(gathered);
  for (size_t r = 0; r < g.messages.size(); ++r) {
    if (g.messages[r].kind != MessageKind::kCached || r >= cache->local_plan_hashes.size() ||
        g.messages[r].hash != cache->local_plan_hashes[r]) {
      return AbortedError("plan cache out of sync");
    }
  }
  std::vector<uint64_t> hashes;
  std::vector<std::string> replies = Replies(cache->global, cache->final_plan_hashes, &hashes);
  cache->final_plan_hashes = std::move(hashes);
  return replies;
}

// The floor of a hit: hash comparisons against stored hashes and one copy of the global plan.
StatusOr<const GlobalSavePlan*> CoordinatorHitFloor(const std::vector<std::string>& gathered,
                                                    const std::vector<uint64_t>& local_hashes,
                                                    const SavePlanCache& cache) {
  for (size_t r = 0; r < gathered.size(); ++r) {
    DCPKV_ASSIGN_OR_RETURN(Message m, DecodeMessage(gathered[r]));
    if (m.kind != MessageKind::kCached || m.hash != local_hashes[r]) {
      return AbortedError("plan cache out of sync");
    }
  }
  return &cache.global;
}

StatusOr<PlanFixture> MakeFixture(const Config& c, SavePlanner& planner) {
  PlanFixture f;
  for (int r = 0; r < c.sim_ranks; ++r) {
    const SavePlan plan = SimulatedLocalPlan(r, c.sim_ranks, c.plan_tensors);
    f.payloads.push_back(PayloadMessage(EncodeSavePlan(plan)));
    f.payload_bytes += f.payloads.back().size();
    f.local_hashes.push_back(HashSavePlan(plan));
    f.cached.push_back(CachedMessage(f.local_hashes.back()));
  }
  DCPKV_RETURN_IF_ERROR(CoordinatorMiss(f.payloads, planner, &f.cache).status());
  return f;
}

// Times fn(), whose result is destroyed after the clock stops.
template <typename Fn>
StatusOr<double> Time(Fn fn) {
  Stopwatch watch;
  auto result = fn();
  const double seconds = watch.Seconds();
  if (!result.ok()) return result.status();
  return seconds;
}

}  // namespace

StatusOr<std::vector<Result>> RunPlan(BenchContext& ctx) {
  const Config& c = ctx.config;
  DefaultSavePlanner planner(DefaultSavePlannerOptions{.enable_plan_caching = true});
  DCPKV_ASSIGN_OR_RETURN(PlanFixture f, MakeFixture(c, planner));
  std::vector<double> plan, miss, hit, rehash, floor;
  for (int rep = 0; rep < c.repetitions; ++rep) {
    // Saver hands the decoded plans over (untimed here: the decode is part of plan_miss).
    std::vector<SavePlan> plans;
    for (const std::string& payload : f.cache.local_plan_payloads) {
      DCPKV_ASSIGN_OR_RETURN(SavePlan plan, DecodeSavePlan(payload));
      plans.push_back(std::move(plan));
    }
    DCPKV_ASSIGN_OR_RETURN(double p,
                           Time([&] { return planner.CreateGlobalPlan(std::move(plans)); }));
    plan.push_back(p);
    SavePlanCache fresh;  // a first save: destroyed after the clock stops
    DCPKV_ASSIGN_OR_RETURN(double m,
                           Time([&] { return CoordinatorMiss(f.payloads, planner, &fresh); }));
    miss.push_back(m);
    DCPKV_ASSIGN_OR_RETURN(double h, Time([&] { return CoordinatorHit(f.cached, &f.cache); }));
    hit.push_back(h);
    DCPKV_ASSIGN_OR_RETURN(double rh,
                           Time([&] { return CoordinatorHitRehash(f.cached, &f.cache); }));
    rehash.push_back(rh);
    DCPKV_ASSIGN_OR_RETURN(
        double fl, Time([&] { return CoordinatorHitFloor(f.cached, f.local_hashes, f.cache); }));
    floor.push_back(fl);
  }
  const std::string shape = std::to_string(c.sim_ranks) + " ranks x " +
                            std::to_string(c.plan_tensors) + " row-sharded tensors";
  std::vector<Result> out = {
      MakeResult("plan", f.payload_bytes, plan), MakeResult("plan_miss", f.payload_bytes, miss),
      MakeResult("plan_cache_hit", f.payload_bytes, hit, "plan_miss", miss),
      MakeResult("plan_cache_hit_rehash", f.payload_bytes, rehash, "plan_miss", miss),
      MakeResult("plan_cache_hit_floor", f.payload_bytes, floor, "plan_miss", miss)};
  out[0].note = "CreateGlobalPlan, " + shape;
  out[1].note = "coordinator step of a first save (decode, plan, encode replies), " + shape;
  out[2].note =
      "coordinator step when all ranks sent cached hashes, with a writer that "
      "changes only storage data (KvStorageWriter; as Saver), " +
      shape;
  out[3].note =
      "the same with a writer that may change final plans: every final plan "
      "rehashed, " +
      shape;
  out[4].note = "hash compare against stored hashes, " + shape;
  for (Result& r : out)
    r.extra = {{"sim_ranks", double(c.sim_ranks)}, {"plan_tensors", double(c.plan_tensors)}};
  return out;
}

}  // namespace dcpkv::bench

// The save protocol (REFERENCE.md "save"): local plan -> gather -> global plan on the
// coordinator -> scatter -> write -> gather results -> commit -> broadcast of the outcome.
// Every message carries success or the rank's error (protocol.h), so a failure anywhere reaches
// the coordinator and then every rank; a collective that times out fails on its own.
#include <chrono>
#include <map>
#include <mutex>

#include "dcpkv/api/kv_storage.h"
#include "dcpkv/checkpoint.h"
#include "dcpkv/core/hash.h"
#include "dcpkv/core/metadata_codec.h"
#include "dcpkv/core/names.h"
#include "dcpkv/core/plan_codec.h"
#include "dcpkv/kv_storage_factory.h"
#include "plan_metadata.h"
#include "protocol.h"
#include "save_internal.h"

namespace dcpkv {
namespace {

// The hash by which a final plan is recognised as unchanged: its items and planner data.
uint64_t HashPlanWithoutStorageData(SavePlan& plan) {
  std::string storage_data = std::move(plan.storage_data);
  plan.storage_data.clear();
  const uint64_t hash = HashSavePlan(plan);
  plan.storage_data = std::move(storage_data);
  return hash;
}

int64_t NowMicros() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

class Saver {
 public:
  Saver(StateDict& state, const SaveOptions& options, ProcessGroup& group)
      : state_(state), options_(options), group_(group) {}
  // Saves an already flattened (e.g. staged) state instead of flattening state_; a non-OK
  // `flat` is this rank's local failure, reported through the protocol.
  void UseFlattened(const StatusOr<FlatStateDict>* flat) { preflattened_ = flat; }

  StatusOr<Metadata> Run();

 private:
  Status LocalStep(SavePlan* plan);
  // Coordinator: turns the gathered local plans into one reply per rank.
  std::vector<std::string> PlanReplies(const std::vector<std::string>& gathered);
  StatusOr<std::vector<std::string>> GlobalPlan(const std::vector<std::string>& gathered);
  StatusOr<SavePlan> CentralPlan(const std::string& reply);
  StatusOr<std::vector<WriteResult>> WriteStep(const SavePlan& central);
  // Coordinator: commits if every rank wrote; returns the outcome message to broadcast.
  std::string Commit(const std::vector<std::string>& gathered);
  StatusOr<Metadata> SaveWithoutCollectives();
  // This rank's part of a save without collectives.
  StatusOr<Metadata> SavePart();
  // Coordinator (or each rank without collectives), before Finish: tags, stored bytes, and what
  // the writer adds.
  void FinishMetadata(Metadata* md);
  // Every rank after a successful commit.
  void AfterCommit(const Metadata& committed);
  void InvalidateCache() {
    if (cache_ != nullptr) cache_->valid = false;
  }

  StateDict& state_;
  const SaveOptions& options_;
  ProcessGroup& group_;
  int rank_ = 0;
  int world_ = 1;
  bool is_coordinator_ = true;
  std::string what_;
  std::shared_ptr<SavePlanner> planner_;
  std::shared_ptr<StorageWriter> writer_;
  SavePlanCache* cache_ = nullptr;
  FlatStateDict flat_;
  std::vector<StatefulBinding> bindings_;
  uint64_t local_hash_ = 0;
  GlobalSavePlan global_;  // coordinator
  // Coordinator: the global plan of this save: global_, or the plan cache's (kept there without
  // a copy).
  GlobalSavePlan* global_ref_ = &global_;
  const StatusOr<FlatStateDict>* preflattened_ = nullptr;
};

Status Saver::LocalStep(SavePlan* plan) {
  if (preflattened_ != nullptr) {
    DCPKV_RETURN_IF_ERROR(preflattened_->status());
    flat_ = **preflattened_;
  } else {
    DCPKV_RETURN_IF_ERROR(FlattenStateDict(state_, &flat_, &bindings_));
  }
  writer_->ConfigureSave(StorageSaveOptions{options_.incremental, options_.incremental_base,
                                            options_.keep_last, options_.replication,
                                            options_.diagnostics});
  DCPKV_RETURN_IF_ERROR(writer_->Reset(options_.checkpoint_id));
  DCPKV_RETURN_IF_ERROR(planner_->SetUpPlanner(&flat_, is_coordinator_));
  DCPKV_RETURN_IF_ERROR(
      writer_->SetUpStorageWriter(is_coordinator_, rank_, world_, options_.use_collectives));
  DCPKV_ASSIGN_OR_RETURN(*plan, planner_->CreateLocalPlan());
  DCPKV_ASSIGN_OR_RETURN(*plan, writer_->PrepareLocalPlan(std::move(*plan)));
  return Status::Ok();
}

StatusOr<std::vector<std::string>> Saver::GlobalPlan(const std::vector<std::string>& gathered) {
  GatheredMessages g = DecodeGathered(gathered);
  std::vector<SavePlan> plans =
      DecodePayloads<SavePlan>(g, DecodeSavePlan, /*cached_allowed=*/true);
  // The hash of every rank's local plan: the one it sent, or that of the plan it sent (a plan's
  // hash is that of its encoding, which is the payload: no re-encoding).
  std::vector<uint64_t> local_hashes(world_, 0);
  bool all_cached = true;
  for (int r = 0; r < world_; ++r) {
    if (!g.failures[r].ok()) {
      all_cached = false;
    } else if (g.messages[r].kind != MessageKind::kCached) {
      all_cached = false;
      const std::string& payload = g.messages[r].payload;
      local_hashes[r] = HashBytes(payload.data(), payload.size()).lo;
    } else if (cache_ == nullptr || !cache_->valid ||
               static_cast<size_t>(r) >= cache_->local_plan_hashes.size() ||
               g.messages[r].hash != cache_->local_plan_hashes[r]) {
      g.failures[r] = AbortedError("plan cache out of sync with the coordinator; retry the save");
      g.any_failed = true;
    } else {
      local_hashes[r] = g.messages[r].hash;
    }
  }
  if (g.any_failed) return AggregateFailures(what_, g.failures);

  std::vector<uint64_t> previous_final;
  if (all_cached) {
    // Nothing changed: reuse the cached global plan and Metadata where they are.
    global_ref_ = &cache_->global;
    previous_final = cache_->final_plan_hashes;
  } else {
    for (int r = 0; r < world_; ++r) {
      if (g.messages[r].kind != MessageKind::kCached) continue;
      StatusOr<SavePlan> cached = DecodeSavePlan(cache_->local_plan_payloads[r]);
      if (!cached.ok())
        return cached.status().WithContext(what_ + ": cached plan of rank " + std::to_string(r));
      plans[r] = std::move(cached).value();
    }
    StatusOr<GlobalSavePlan> global = planner_->CreateGlobalPlan(std::move(plans));
    if (!global.ok()) return global.status().WithContext(what_ + ": global plan");
    global_ = std::move(global).value();
    global_ref_ = &global_;
    if (global_.plans.size() != static_cast<size_t>(world_)) {
      return InternalError(what_ + ": the global plan has " + std::to_string(global_.plans.size()) +
                           " plans for " + std::to_string(world_) + " ranks");
    }
    if (cache_ != nullptr && cache_->valid) previous_final = cache_->final_plan_hashes;
  }
  // The plans move through the writer and back (a failure invalidates the cache that held them).
  StatusOr<std::vector<SavePlan>> final_plans =
      writer_->PrepareGlobalPlan(std::move(global_ref_->plans));
  if (!final_plans.ok()) return final_plans.status().WithContext(what_);
  global_ref_->plans = std::move(final_plans).value();
  if (global_ref_->plans.size() != static_cast<size_t>(world_)) {
    return InternalError(what_ + ": the storage writer returned " +
                         std::to_string(global_ref_->plans.size()) + " plans for " +
                         std::to_string(world_) + " ranks");
  }
  // Every final plan is the previous save's but for its storage data when every local plan was
  // and the writer changes nothing else: its hash is known.
  const bool final_known = all_cached && previous_final.size() == static_cast<size_t>(world_) &&
                           writer_->PrepareGlobalPlanChangesOnlyStorageData();

  std::vector<std::string> replies(world_);
  std::vector<uint64_t> hashes(world_);
  for (int r = 0; r < world_; ++r) {
    // The storage data (e.g. an incremental save's base) may change while the plan does not: it
    // travels with the "unchanged" reply instead of defeating the cache.
    SavePlan& plan = global_ref_->plans[r];
    hashes[r] = final_known ? previous_final[r] : HashPlanWithoutStorageData(plan);
    const bool unchanged = cache_ != nullptr && r < static_cast<int>(previous_final.size()) &&
                           previous_final[r] == hashes[r];
    replies[r] = unchanged ? CachedMessage(hashes[r], plan.storage_data)
                           : PayloadMessage(EncodeSavePlan(plan));
  }
  if (cache_ != nullptr) {
    if (!all_cached) {
      cache_->local_plan_payloads.resize(world_);
      for (int r = 0; r < world_; ++r) {
        if (g.messages[r].kind != MessageKind::kCached) {
          cache_->local_plan_payloads[r] = std::move(g.messages[r].payload);
        }
      }
      cache_->global = std::move(global_);
      global_ref_ = &cache_->global;
    }
    cache_->local_plan_hashes = std::move(local_hashes);
    cache_->final_plan_hashes = std::move(hashes);
  }
  return replies;
}

std::vector<std::string> Saver::PlanReplies(const std::vector<std::string>& gathered) {
  StatusOr<std::vector<std::string>> replies = GlobalPlan(gathered);
  if (replies.ok()) return std::move(replies).value();
  InvalidateCache();
  return std::vector<std::string>(world_, FailureMessage(replies.status()));
}

StatusOr<SavePlan> Saver::CentralPlan(const std::string& reply) {
  DCPKV_ASSIGN_OR_RETURN(Message m, DecodeMessage(reply));
  if (m.kind == MessageKind::kFailure) return m.status;
  if (m.kind == MessageKind::kCached) {
    if (cache_ == nullptr || !cache_->valid ||
        HashPlanWithoutStorageData(cache_->final_plan) != m.hash) {
      return AbortedError("plan cache out of sync with the coordinator; retry the save");
    }
    SavePlan plan = cache_->final_plan;
    plan.storage_data = std::move(m.payload);
    return plan;
  }
  return DecodeSavePlan(m.payload);
}

StatusOr<std::vector<WriteResult>> Saver::WriteStep(const SavePlan& central) {
  DCPKV_ASSIGN_OR_RETURN(SavePlan plan, planner_->FinishPlan(central));
  return writer_->WriteData(plan, *planner_).get();
}

std::string Saver::Commit(const std::vector<std::string>& gathered) {
  GatheredMessages g = DecodeGathered(gathered);
  std::vector<std::vector<WriteResult>> results =
      DecodePayloads<std::vector<WriteResult>>(g, DecodeWriteResults, /*cached_allowed=*/false);
  std::vector<Status>& failures = g.failures;
  if (g.any_failed) return FailureMessage(AggregateFailures(what_, failures));

  Metadata md = global_ref_->metadata;
  md.checkpoint_id = options_.checkpoint_id;
  md.world_size = world_;
  md.coordinator_rank = options_.coordinator_rank;
  md.committed_unix_micros = NowMicros();
  std::map<std::pair<std::string, Shape>, std::map<int, SavedShard*>> shards;
  for (auto& [fqn, entry] : md.entries) {
    for (SavedShard& s : entry.shards) shards[{fqn, s.offsets}][s.rank] = &s;
  }
  for (int r = 0; r < world_; ++r) {
    for (const WriteResult& w : results[r]) {
      auto it = shards.find({w.fqn, w.offsets});
      if (it == shards.end() || !it->second.count(r)) {
        return FailureMessage(InternalError(what_ + ": rank " + std::to_string(r) +
                                            " reports writing \"" + w.fqn +
                                            "\" which it was not asked to"));
      }
      it->second[r]->chunks = w.chunks;
      it->second[r]->chunk_list = w.chunk_list;
    }
  }
  FinishMetadata(&md);
  Status committed = writer_->Finish(md, results);
  if (!committed.ok()) {
    failures[rank_] = committed.WithContext("commit");
    return FailureMessage(AggregateFailures(what_, failures));
  }
  Status replicated = writer_->AfterFinish(md);
  if (!replicated.ok()) {
    return FailureMessage(replicated.WithContext(
        what_ + ": the checkpoint is committed and loadable, but its replication failed"));
  }
  return PayloadMessage(EncodeMetadata(md));
}

StatusOr<Metadata> Saver::Run() {
  DCPKV_ASSIGN_OR_RETURN(is_coordinator_, CheckProtocolOptions(options_.checkpoint_id,
                                                               options_.coordinator_rank, group_));
  rank_ = group_.rank();
  world_ = group_.size();
  what_ = "save of checkpoint \"" + options_.checkpoint_id + "\"";
  planner_ = options_.planner ? options_.planner : std::make_shared<DefaultSavePlanner>();
  writer_ = options_.storage_writer;
  if (!writer_ && !options_.store_root.empty()) {
    KvStorageOptions storage{options_.store_root, {}};
    storage.store_options.diagnostics = options_.diagnostics;
    if (options_.chunk_size != 0) storage.store_options.chunk_size = options_.chunk_size;
    writer_ = std::make_shared<KvStorageWriter>(storage);
  }
  if (!writer_) {
    return InvalidArgumentError(what_ + ": neither storage_writer nor store_root is given");
  }
  if (!options_.use_collectives) return SaveWithoutCollectives();
  cache_ = planner_->plan_cache();
  if (cache_ != nullptr && cache_->valid &&
      (cache_->world_size != world_ || cache_->coordinator_rank != options_.coordinator_rank)) {
    cache_->valid = false;
  }

  // 1. Local plan on every rank, gathered at the coordinator.
  SavePlan local;
  Status local_status = LocalStep(&local);
  std::string message;
  if (!local_status.ok()) {
    message = FailureMessage(local_status);
  } else {
    local_hash_ = HashSavePlan(local);
    const bool cached =
        cache_ != nullptr && cache_->valid && cache_->local_plan_hash == local_hash_;
    message = cached ? CachedMessage(local_hash_) : PayloadMessage(EncodeSavePlan(local));
  }
  StatusOr<std::vector<std::string>> gathered = group_.Gather(message, options_.coordinator_rank);
  if (!gathered.ok()) return gathered.status().WithContext(what_ + ": gathering plans");

  // 2. Global plan on the coordinator, final plans scattered back.
  std::vector<std::string> replies;
  if (is_coordinator_) replies = PlanReplies(*gathered);
  StatusOr<std::string> reply = group_.Scatter(replies, options_.coordinator_rank);
  if (!reply.ok()) {
    InvalidateCache();
    return reply.status().WithContext(what_ + ": scattering plans");
  }
  StatusOr<SavePlan> central = CentralPlan(*reply);
  if (central.ok() && cache_ != nullptr) {
    cache_->valid = true;
    cache_->world_size = world_;
    cache_->coordinator_rank = options_.coordinator_rank;
    cache_->local_plan_hash = local_hash_;
    cache_->final_plan = *central;
  }
  if (!central.ok() && DecodeMessage(*reply).ok() &&
      DecodeMessage(*reply)->kind == MessageKind::kFailure) {
    InvalidateCache();
    return central.status();  // the planning failure, the same on every rank
  }

  // 3. Every rank writes; results (or the error) go to the coordinator.
  StatusOr<std::vector<WriteResult>> written =
      central.ok() ? WriteStep(*central) : StatusOr<std::vector<WriteResult>>(central.status());
  message = written.ok() ? PayloadMessage(EncodeWriteResults(*written))
                         : FailureMessage(written.status());
  gathered = group_.Gather(message, options_.coordinator_rank);
  if (!gathered.ok()) {
    InvalidateCache();
    return gathered.status().WithContext(what_ + ": gathering write results");
  }

  // 4. The coordinator commits; the outcome goes to every rank.
  std::string outcome;
  if (is_coordinator_) outcome = Commit(*gathered);
  StatusOr<std::string> final_message = group_.Broadcast(outcome, options_.coordinator_rank);
  if (!final_message.ok()) {
    InvalidateCache();
    return final_message.status().WithContext(what_ + ": broadcasting the outcome");
  }
  DCPKV_ASSIGN_OR_RETURN(Message m, DecodeMessage(*final_message));
  if (m.kind != MessageKind::kPayload) {
    InvalidateCache();
    return m.status;
  }
  DCPKV_ASSIGN_OR_RETURN(Metadata committed, DecodeMetadata(m.payload));
  AfterCommit(committed);
  return committed;
}

void Saver::FinishMetadata(Metadata* md) {
  md->tags = options_.tags;
  FillCommitMetadata(*writer_, md);
}

void Saver::AfterCommit(const Metadata& committed) {
  Status s = writer_->AfterCommit(committed);
  ReportDiagnostic(options_.diagnostics, DiagnosticSeverity::kWarning,
                   what_ + " (committed): housekeeping after the commit failed", s);
}

StatusOr<Metadata> Saver::SaveWithoutCollectives() {
  // Each rank plans, writes and commits its own part in its own database; a barrier, which a
  // failed rank joins too, ends the save. There is no exchange to carry errors, so each rank
  // returns its own; a load needs every rank's part (per_rank_commit), so a part missing
  // because its rank failed is an error there, never a silent hole.
  StatusOr<Metadata> part = SavePart();
  Status barrier = group_.Barrier();
  if (!part.ok()) return part.status();
  if (!barrier.ok()) return barrier.WithContext(what_ + ": final barrier");
  return part;
}

StatusOr<Metadata> Saver::SavePart() {
  SavePlan local;
  DCPKV_RETURN_IF_ERROR(LocalStep(&local));
  DCPKV_ASSIGN_OR_RETURN(std::vector<SavePlan> plans, writer_->PrepareGlobalPlan({local}));
  DCPKV_ASSIGN_OR_RETURN(SavePlan plan, planner_->FinishPlan(std::move(plans.at(0))));
  StatusOr<Metadata> part = MetadataFromPlans({plan}, /*validate_coverage=*/false);
  if (!part.ok()) return part.status().WithContext(what_);
  DCPKV_ASSIGN_OR_RETURN(std::vector<WriteResult> written,
                         writer_->WriteData(plan, *planner_).get());
  Metadata md = std::move(part).value();
  md.checkpoint_id = options_.checkpoint_id;
  md.world_size = world_;
  md.coordinator_rank = rank_;
  md.committed_unix_micros = NowMicros();
  md.per_rank_commit = true;
  std::map<std::pair<std::string, Shape>, const WriteResult*> results;
  for (const WriteResult& w : written) results[{w.fqn, w.offsets}] = &w;
  for (auto& [fqn, entry] : md.entries) {
    for (SavedShard& shard : entry.shards) {
      shard.rank = rank_;
      if (const WriteResult* w = results[{fqn, shard.offsets}]; w != nullptr) {
        shard.chunks = w->chunks;
        shard.chunk_list = w->chunk_list;
      }
    }
  }
  FinishMetadata(&md);
  DCPKV_RETURN_IF_ERROR(writer_->Finish(md, {written}).WithContext(what_ + ": commit"));
  DCPKV_RETURN_IF_ERROR(writer_->AfterFinish(md).WithContext(
      what_ + ": this rank's part is committed, but its replication failed"));
  AfterCommit(md);
  return md;
}

}  // namespace

StatusOr<Metadata> Save(StateDict& state_dict, const SaveOptions& options) {
  ProcessGroup* group = options.process_group;
  if (group == nullptr || options.no_dist) group = &SingleProcessGroupInstance();
  Saver saver(state_dict, options, *group);
  return saver.Run();
}

StatusOr<Metadata> SaveFlattened(const StatusOr<FlatStateDict>& flat, const SaveOptions& options) {
  ProcessGroup* group = options.process_group;
  if (group == nullptr || options.no_dist) group = &SingleProcessGroupInstance();
  StateDict unused;
  Saver saver(unused, options, *group);
  saver.UseFlattened(&flat);
  return saver.Run();
}

StatusOr<Metadata> SaveStateDict(StateDict& state_dict, const SaveOptions& options) {
  static std::once_flag once;
  std::call_once(once, [&options] {
    ReportDiagnostic(options.diagnostics, DiagnosticSeverity::kInfo, "SaveStateDict",
                     FailedPreconditionError("SaveStateDict is deprecated; use dcpkv::Save"));
  });
  return Save(state_dict, options);
}

}  // namespace dcpkv

// The load protocol: every rank reads the Metadata, plans the reads of what it holds now (any
// sharding), the coordinator sees every plan (a hook for custom planners), every rank reads and
// copies the overlaps into its tensors and calls load_state_dict() on Stateful values, and an
// all-gather of the outcome makes a failure on any rank the error of every rank.
#include "dcpkv/api/kv_storage.h"
#include "dcpkv/checkpoint.h"
#include "dcpkv/core/names.h"
#include "dcpkv/core/plan_codec.h"
#include "protocol.h"

namespace dcpkv {
namespace {

class Loader {
 public:
  Loader(StateDict& state, const LoadOptions& options, ProcessGroup& group)
      : state_(state), options_(options), group_(group) {}

  Status Run();

 private:
  Status LocalStep(LoadPlan* plan);
  std::vector<std::string> PlanReplies(const std::vector<std::string>& gathered);
  Status ReadStep(const std::string& reply);

  StateDict& state_;
  const LoadOptions& options_;
  ProcessGroup& group_;
  int rank_ = 0;
  int world_ = 1;
  bool is_coordinator_ = true;
  std::string what_;
  std::shared_ptr<LoadPlanner> planner_;
  std::shared_ptr<StorageReader> reader_;
  FlatStateDict flat_;
  std::vector<StatefulBinding> bindings_;
  Metadata metadata_;
};

Status Loader::LocalStep(LoadPlan* plan) {
  DCPKV_RETURN_IF_ERROR(FlattenStateDict(state_, &flat_, &bindings_));
  DCPKV_RETURN_IF_ERROR(reader_->Reset(options_.checkpoint_id));
  DCPKV_ASSIGN_OR_RETURN(metadata_, reader_->ReadMetadata());
  DCPKV_RETURN_IF_ERROR(reader_->SetUpStorageReader(metadata_, is_coordinator_, rank_));
  DCPKV_RETURN_IF_ERROR(planner_->SetUpPlanner(&flat_, &metadata_, is_coordinator_));
  DCPKV_ASSIGN_OR_RETURN(*plan, planner_->CreateLocalPlan());
  DCPKV_ASSIGN_OR_RETURN(*plan, reader_->PrepareLocalPlan(std::move(*plan)));
  return Status::Ok();
}

std::vector<std::string> Loader::PlanReplies(const std::vector<std::string>& gathered) {
  GatheredMessages g = DecodeGathered(gathered);
  std::vector<LoadPlan> plans =
      DecodePayloads<LoadPlan>(g, DecodeLoadPlan, /*cached_allowed=*/false);
  Status error;
  if (g.any_failed) {
    error = AggregateFailures(what_, g.failures);
  } else {
    StatusOr<std::vector<LoadPlan>> global = planner_->CreateGlobalPlan(std::move(plans));
    if (global.ok()) global = reader_->PrepareGlobalPlan(std::move(global).value());
    if (global.ok() && global->size() != static_cast<size_t>(world_)) {
      global = InternalError("the global load plan has the wrong number of plans");
    }
    if (global.ok()) {
      std::vector<std::string> replies;
      for (const LoadPlan& p : *global) replies.push_back(PayloadMessage(EncodeLoadPlan(p)));
      return replies;
    }
    error = global.status().WithContext(what_ + ": global plan");
  }
  return std::vector<std::string>(world_, FailureMessage(error));
}

Status Loader::ReadStep(const std::string& reply) {
  DCPKV_ASSIGN_OR_RETURN(Message m, DecodeMessage(reply));
  if (m.kind != MessageKind::kPayload) return m.status;
  DCPKV_ASSIGN_OR_RETURN(LoadPlan central, DecodeLoadPlan(m.payload));
  DCPKV_ASSIGN_OR_RETURN(LoadPlan plan, planner_->FinishPlan(std::move(central)));
  // The planner completes its copies into device tensors even when the read failed, so that
  // nothing writes into the caller's tensors after Load returns.
  Status read = reader_->ReadData(plan, *planner_).get();
  Status finished = planner_->FinishLoad();
  DCPKV_RETURN_IF_ERROR(read);
  DCPKV_RETURN_IF_ERROR(finished);
  for (StatefulBinding& b : bindings_) {
    DCPKV_RETURN_IF_ERROR(b.object->load_state_dict(*b.state).WithContext("load_state_dict()"));
  }
  return Status::Ok();
}

Status Loader::Run() {
  DCPKV_ASSIGN_OR_RETURN(is_coordinator_, CheckProtocolOptions(options_.checkpoint_id,
                                                               options_.coordinator_rank, group_));
  rank_ = group_.rank();
  world_ = group_.size();
  what_ = "load of checkpoint \"" + options_.checkpoint_id + "\"";
  planner_ = options_.planner ? options_.planner : std::make_shared<DefaultLoadPlanner>();
  reader_ = options_.storage_reader;
  if (!reader_ && !options_.store_root.empty()) {
    reader_ = std::make_shared<KvStorageReader>(KvStorageOptions{options_.store_root, {}});
  }
  if (!reader_) {
    return InvalidArgumentError(what_ + ": neither storage_reader nor store_root is given");
  }

  LoadPlan local;
  Status local_status = LocalStep(&local);
  std::string message =
      local_status.ok() ? PayloadMessage(EncodeLoadPlan(local)) : FailureMessage(local_status);
  StatusOr<std::vector<std::string>> gathered = group_.Gather(message, options_.coordinator_rank);
  if (!gathered.ok()) return gathered.status().WithContext(what_ + ": gathering plans");
  std::vector<std::string> replies;
  if (is_coordinator_) replies = PlanReplies(*gathered);
  StatusOr<std::string> reply = group_.Scatter(replies, options_.coordinator_rank);
  if (!reply.ok()) return reply.status().WithContext(what_ + ": scattering plans");
  if (auto m = DecodeMessage(*reply); m.ok() && m->kind == MessageKind::kFailure) {
    return m->status;  // a planning failure, the same on every rank
  }

  Status read = ReadStep(*reply);
  StatusOr<std::vector<std::string>> outcomes =
      group_.AllGather(read.ok() ? PayloadMessage("") : FailureMessage(read));
  if (!outcomes.ok()) return outcomes.status().WithContext(what_ + ": gathering outcomes");
  GatheredMessages g = DecodeGathered(*outcomes);
  return g.any_failed ? AggregateFailures(what_, g.failures) : Status::Ok();
}

}  // namespace

Status Load(StateDict& state_dict, const LoadOptions& options) {
  ProcessGroup* group = options.process_group;
  if (group == nullptr || options.no_dist) group = &SingleProcessGroupInstance();
  Loader loader(state_dict, options, *group);
  return loader.Run();
}

}  // namespace dcpkv

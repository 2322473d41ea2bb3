// DefaultLoadPlanner: for every tensor (or local shard) the caller asks for, one ReadItem per
// saved shard that overlaps it; the saved and requested shardings need not match. Checks dtype
// and global shape, and that the saved shards cover every requested element.
#include "box.h"
#include "dcpkv/planner.h"

namespace dcpkv {
namespace {

struct Requested {
  Shape offsets;
  Tensor tensor;
};

Status CheckCompatible(const std::string& fqn, const EntryMetadata& saved, DType dtype,
                       const Shape& global_shape) {
  if (saved.is_bytes()) {
    return InvalidArgumentError(
        "fqn \"" + fqn + "\" is a bytes entry in the checkpoint but a tensor in the state dict");
  }
  if (saved.dtype != dtype) {
    return InvalidArgumentError("fqn \"" + fqn + "\" has dtype " +
                                std::string(DTypeName(saved.dtype)) + " in the checkpoint but " +
                                std::string(DTypeName(dtype)) + " in the state dict");
  }
  if (saved.global_shape != global_shape) {
    return InvalidArgumentError("fqn \"" + fqn + "\" has global shape " +
                                ShapeToString(saved.global_shape) + " in the checkpoint but " +
                                ShapeToString(global_shape) + " in the state dict");
  }
  return Status::Ok();
}

// Appends one ReadItem per saved shard overlapping `want`; fails if they do not cover it.
Status PlanTensor(const std::string& fqn, const EntryMetadata& saved, const Requested& want,
                  WriteItemType type, LoadPlan* plan) {
  const Box want_box{want.offsets, want.tensor.shape()};
  uint64_t covered = 0;
  for (const SavedShard& shard : saved.shards) {
    Box overlap;
    if (!Intersect(Box{shard.offsets, shard.sizes}, want_box, &overlap)) continue;
    covered += Volume(overlap);
    plan->items.push_back(
        ReadItem{fqn, type, saved.dtype, want.offsets, shard, overlap.offsets, overlap.sizes});
  }
  if (covered != want.tensor.numel()) {
    return DataLossError("checkpoint covers " + std::to_string(covered) + " of the " +
                         std::to_string(want.tensor.numel()) + " elements of \"" + fqn +
                         "\" at offsets " + ShapeToString(want.offsets));
  }
  return Status::Ok();
}

}  // namespace

DefaultLoadPlanner::DefaultLoadPlanner(DefaultLoadPlannerOptions options) : options_(options) {}

Status DefaultLoadPlanner::SetUpPlanner(FlatStateDict* state, const Metadata* metadata,
                                        bool is_coordinator) {
  state_ = state;
  metadata_ = metadata;
  return Status::Ok();
}

StatusOr<LoadPlan> DefaultLoadPlanner::CreateLocalPlan() {
  if (state_ == nullptr) return FailedPreconditionError("CreateLocalPlan before SetUpPlanner");
  LoadPlan plan;
  for (auto& [fqn, value] : *state_) {
    auto it = metadata_->entries.find(fqn);
    if (it == metadata_->entries.end()) {
      if (options_.allow_partial_load) continue;
      return NotFoundError("fqn \"" + fqn + "\" is not in checkpoint \"" +
                           metadata_->checkpoint_id + "\"");
    }
    const EntryMetadata& saved = it->second;
    if (auto* t = std::get_if<Tensor>(&value)) {
      DCPKV_RETURN_IF_ERROR(CheckCompatible(fqn, saved, t->dtype(), t->shape()));
      DCPKV_RETURN_IF_ERROR(
          PlanTensor(fqn, saved, {Shape(t->shape().size(), 0), *t}, WriteItemType::kTensor, &plan));
    } else if (auto* st = std::get_if<ShardedTensor>(&value)) {
      DCPKV_RETURN_IF_ERROR(CheckCompatible(fqn, saved, st->dtype, st->global_shape));
      for (const Shard& shard : st->local_shards) {
        DCPKV_RETURN_IF_ERROR(
            PlanTensor(fqn, saved, {shard.offsets, shard.tensor}, WriteItemType::kShard, &plan));
      }
    } else {
      if (!saved.is_bytes() || saved.shards.size() != 1) {
        return InvalidArgumentError("fqn \"" + fqn +
                                    "\" is a bytes entry in the state dict but a tensor in the "
                                    "checkpoint");
      }
      const SavedShard& shard = saved.shards[0];
      plan.items.push_back(ReadItem{
          fqn, WriteItemType::kBytes, DType::kBytes, {0}, shard, shard.offsets, shard.sizes});
    }
  }
  return plan;
}

StatusOr<std::vector<LoadPlan>> DefaultLoadPlanner::CreateGlobalPlan(
    std::vector<LoadPlan> all_plans) {
  return all_plans;
}

StatusOr<LoadPlan> DefaultLoadPlanner::FinishPlan(LoadPlan central_plan) { return central_plan; }

StatusOr<Tensor> DefaultLoadPlanner::ResolveTensor(const ReadItem& item) {
  auto it = state_->find(item.fqn);
  if (it == state_->end()) return NotFoundError("no fqn \"" + item.fqn + "\" in the state dict");
  if (auto* t = std::get_if<Tensor>(&it->second)) return *t;
  if (auto* st = std::get_if<ShardedTensor>(&it->second)) {
    for (const Shard& shard : st->local_shards) {
      if (shard.offsets == item.dest_offsets) return shard.tensor;
    }
  }
  return NotFoundError("no local tensor for \"" + item.fqn + "\" at offsets " +
                       ShapeToString(item.dest_offsets));
}

Status DefaultLoadPlanner::CommitTensor(const ReadItem& item, const Tensor& tensor) {
  return Status::Ok();
}

Status DefaultLoadPlanner::LoadBytes(const ReadItem& item, std::string data) {
  auto it = state_->find(item.fqn);
  Bytes** bytes = it == state_->end() ? nullptr : std::get_if<Bytes*>(&it->second);
  if (bytes == nullptr)
    return NotFoundError("no bytes entry \"" + item.fqn + "\" in the state dict");
  (*bytes)->data = std::move(data);
  return Status::Ok();
}

}  // namespace dcpkv

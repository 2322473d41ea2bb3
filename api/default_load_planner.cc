// DefaultLoadPlanner: for every tensor (or local shard) the caller asks for, one ReadItem per
// saved shard that overlaps it; the saved and requested shardings need not match. Checks dtype
// and global shape, and that the saved shards cover every requested element.
#include "dcpkv/api/cuda_device.h"
#include "dcpkv/api/cuda_staging.h"
#include "dcpkv/core/box.h"
#include "dcpkv/core/strided.h"
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

// The key of the local tensor an item is copied into.
std::string DestinationKey(const ReadItem& item) {
  return item.fqn + "@" + ShapeToString(item.dest_offsets);
}

Status CheckDestination(const std::string& fqn, const Shape& offsets, const Tensor& t,
                        bool sharded) {
  std::string what = "tensor \"" + fqn + "\"";
  if (sharded) what += " (shard at " + ShapeToString(offsets) + ")";
  DCPKV_RETURN_IF_ERROR(CheckDistinctElements(t, what));
  return t.is_cuda() ? cuda::CheckTensor(t, what) : Status::Ok();
}

}  // namespace

DefaultLoadPlanner::DefaultLoadPlanner(DefaultLoadPlannerOptions options) : options_(options) {}

DefaultLoadPlanner::~DefaultLoadPlanner() = default;

StatusOr<cuda::LoadStaging*> DefaultLoadPlanner::DeviceStaging() {
  if (device_staging_ == nullptr) {
    device_staging_ = std::make_unique<cuda::LoadStaging>(options_.device_staging_bytes);
  }
  return device_staging_.get();
}

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
      DCPKV_RETURN_IF_ERROR(CheckDestination(fqn, {}, *t, /*sharded=*/false));
      DCPKV_RETURN_IF_ERROR(CheckCompatible(fqn, saved, t->dtype(), t->shape()));
      DCPKV_RETURN_IF_ERROR(
          PlanTensor(fqn, saved, {Shape(t->shape().size(), 0), *t}, WriteItemType::kTensor, &plan));
    } else if (auto* st = std::get_if<ShardedTensor>(&value)) {
      DCPKV_RETURN_IF_ERROR(CheckCompatible(fqn, saved, st->dtype, st->global_shape));
      for (const Shard& shard : st->local_shards) {
        DCPKV_RETURN_IF_ERROR(CheckDestination(fqn, shard.offsets, shard.tensor, true));
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

StatusOr<LoadPlan> DefaultLoadPlanner::FinishPlan(LoadPlan central_plan) {
  // How many regions of each device tensor will be committed: its host stand-in is given back
  // after the last one.
  std::map<std::string, size_t> expected;
  bool any_device = false;
  if (state_ != nullptr) {
    for (const ReadItem& item : central_plan.items) {
      if (item.type == WriteItemType::kBytes) continue;
      auto it = state_->find(item.fqn);
      if (it == state_->end()) continue;
      const Tensor* t = std::get_if<Tensor>(&it->second);
      if (const auto* st = std::get_if<ShardedTensor>(&it->second)) {
        for (const Shard& shard : st->local_shards) {
          if (shard.offsets == item.dest_offsets) t = &shard.tensor;
        }
      }
      if (t == nullptr || !t->is_cuda()) continue;
      ++expected[DestinationKey(item)];
      any_device = true;
    }
  }
  if (any_device || device_staging_ != nullptr) {
    DCPKV_ASSIGN_OR_RETURN(cuda::LoadStaging * staging, DeviceStaging());
    staging->Reset(std::move(expected));
  }
  return central_plan;
}

StatusOr<Tensor> DefaultLoadPlanner::ResolveTensor(const ReadItem& item) {
  auto it = state_->find(item.fqn);
  if (it == state_->end()) return NotFoundError("no fqn \"" + item.fqn + "\" in the state dict");
  const Tensor* found = std::get_if<Tensor>(&it->second);
  if (auto* st = std::get_if<ShardedTensor>(&it->second)) {
    for (const Shard& shard : st->local_shards) {
      if (shard.offsets == item.dest_offsets) found = &shard.tensor;
    }
  }
  if (found == nullptr) {
    return NotFoundError("no local tensor for \"" + item.fqn + "\" at offsets " +
                         ShapeToString(item.dest_offsets));
  }
  if (!found->is_cuda()) return *found;
  // A device tensor: the reader fills a host stand-in, CommitTensor copies it over.
  DCPKV_RETURN_IF_ERROR(CheckDestination(item.fqn, item.dest_offsets, *found,
                                         std::holds_alternative<ShardedTensor>(it->second)));
  DCPKV_ASSIGN_OR_RETURN(cuda::LoadStaging * staging, DeviceStaging());
  return staging->Resolve(DestinationKey(item), *found);
}

Status DefaultLoadPlanner::CommitTensor(const ReadItem& item, const Tensor& tensor) {
  if (device_staging_ == nullptr) return Status::Ok();
  Shape offsets(item.overlap_offsets.size());
  for (size_t d = 0; d < offsets.size(); ++d) {
    offsets[d] = item.overlap_offsets[d] - item.dest_offsets[d];
  }
  return device_staging_->Commit(DestinationKey(item), offsets, item.overlap_sizes)
      .WithContext("copying \"" + item.fqn + "\" to its device");
}

Status DefaultLoadPlanner::FinishLoad() {
  if (device_staging_ == nullptr) return Status::Ok();
  return device_staging_->Finish().WithContext("copying tensors to their devices");
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

// DefaultSavePlanner: one WriteItem per dense tensor, local shard and bytes entry; the
// coordinator deduplicates replicated items (same fqn and offsets on several ranks) so that
// exactly one rank writes each, choosing the candidate with the fewest bytes so far, validates
// the result per tensor in O(n log n) and builds the Metadata.
#include <algorithm>
#include <map>
#include <numeric>
#include <tuple>

#include "dcpkv/planner.h"
#include "plan_metadata.h"

namespace dcpkv {
namespace {

WriteItem TensorItem(const std::string& fqn, const Tensor& t) {
  return WriteItem{fqn,       WriteItemType::kTensor,     t.dtype(),
                   t.shape(), Shape(t.shape().size(), 0), t.shape()};
}

std::string DescribeItem(const WriteItem& item) {
  return "fqn \"" + item.fqn + "\" at offsets " + ShapeToString(item.offsets) + " (dtype " +
         std::string(DTypeName(item.dtype)) + ", sizes " + ShapeToString(item.sizes) +
         ", global shape " + ShapeToString(item.global_shape) + ")";
}

// Every rank holding a copy of one item, and the item itself.
struct Candidates {
  WriteItem item;
  std::vector<int> ranks;
};

using ItemKey = std::pair<std::string, Shape>;

// Assigns each replicated item to one rank, balancing bytes: items are taken largest first and
// given to the candidate with the least bytes assigned so far (ties: lowest rank).
StatusOr<std::vector<SavePlan>> Deduplicate(const std::vector<SavePlan>& plans) {
  std::map<ItemKey, Candidates> by_key;
  for (size_t r = 0; r < plans.size(); ++r) {
    for (const WriteItem& item : plans[r].items) {
      auto [it, inserted] = by_key.try_emplace(ItemKey{item.fqn, item.offsets});
      if (inserted) {
        it->second.item = item;
      } else if (!(it->second.item == item)) {
        return InvalidArgumentError("replicated " + DescribeItem(item) + " on rank " +
                                    std::to_string(r) + " differs from " +
                                    DescribeItem(it->second.item) + " on rank " +
                                    std::to_string(it->second.ranks.front()));
      }
      it->second.ranks.push_back(static_cast<int>(r));
    }
  }
  std::vector<uint64_t> load(plans.size(), 0);
  std::vector<const Candidates*> replicated;
  for (const auto& [key, c] : by_key) {
    if (c.ranks.size() == 1) {
      load[c.ranks[0]] += c.item.nbytes();
    } else {
      replicated.push_back(&c);
    }
  }
  std::stable_sort(
      replicated.begin(), replicated.end(),
      [](const Candidates* a, const Candidates* b) { return a->item.nbytes() > b->item.nbytes(); });
  std::map<ItemKey, int> owner;
  for (const Candidates* c : replicated) {
    int best = c->ranks.front();
    for (int r : c->ranks) {
      if (load[r] < load[best]) best = r;
    }
    load[best] += c->item.nbytes();
    owner[ItemKey{c->item.fqn, c->item.offsets}] = best;
  }
  std::vector<SavePlan> out = plans;
  for (size_t r = 0; r < out.size(); ++r) {
    auto& items = out[r].items;
    items.erase(std::remove_if(items.begin(), items.end(),
                               [&](const WriteItem& item) {
                                 auto it = owner.find(ItemKey{item.fqn, item.offsets});
                                 return it != owner.end() && it->second != static_cast<int>(r);
                               }),
                items.end());
  }
  return out;
}

}  // namespace

uint64_t WriteItem::nbytes() const {
  StatusOr<uint64_t> n = NumElements(sizes);
  return n.ok() ? *n * ElementSize(dtype) : 0;
}

DefaultSavePlanner::DefaultSavePlanner(DefaultSavePlannerOptions options) : options_(options) {}

Status DefaultSavePlanner::SetUpPlanner(const FlatStateDict* state, bool is_coordinator) {
  state_ = state;
  return Status::Ok();
}

StatusOr<SavePlan> DefaultSavePlanner::CreateLocalPlan() {
  if (state_ == nullptr) return FailedPreconditionError("CreateLocalPlan before SetUpPlanner");
  SavePlan plan;
  for (const auto& [fqn, value] : *state_) {
    if (const auto* t = std::get_if<Tensor>(&value)) {
      plan.items.push_back(TensorItem(fqn, *t));
    } else if (const auto* st = std::get_if<ShardedTensor>(&value)) {
      for (const Shard& shard : st->local_shards) {
        plan.items.push_back(WriteItem{fqn, WriteItemType::kShard, st->dtype, st->global_shape,
                                       shard.offsets, shard.tensor.shape()});
      }
    } else if (const auto* b = std::get_if<Bytes*>(&value)) {
      const uint64_t n = (*b)->data.size();
      plan.items.push_back(WriteItem{fqn, WriteItemType::kBytes, DType::kBytes, {n}, {0}, {n}});
    }
  }
  return plan;
}

StatusOr<GlobalSavePlan> DefaultSavePlanner::CreateGlobalPlan(std::vector<SavePlan> all_plans) {
  GlobalSavePlan global;
  if (options_.dedup_replicated_tensors) {
    DCPKV_ASSIGN_OR_RETURN(global.plans, Deduplicate(all_plans));
  } else {
    global.plans = std::move(all_plans);
  }
  DCPKV_ASSIGN_OR_RETURN(global.metadata,
                         MetadataFromPlans(global.plans, /*validate_coverage=*/true));
  return global;
}

StatusOr<SavePlan> DefaultSavePlanner::FinishPlan(SavePlan central_plan) { return central_plan; }

StatusOr<ConstBytes> DefaultSavePlanner::ResolveData(const WriteItem& item) {
  if (state_ == nullptr) return FailedPreconditionError("ResolveData before SetUpPlanner");
  auto it = state_->find(item.fqn);
  if (it == state_->end()) return NotFoundError("no fqn \"" + item.fqn + "\" in the state dict");
  const FlatValue& value = it->second;
  if (const auto* t = std::get_if<Tensor>(&value)) return ConstBytes{t->data(), t->nbytes()};
  if (const auto* b = std::get_if<Bytes*>(&value)) {
    return ConstBytes{(*b)->data.data(), (*b)->data.size()};
  }
  const auto& st = std::get<ShardedTensor>(value);
  for (const Shard& shard : st.local_shards) {
    if (shard.offsets == item.offsets)
      return ConstBytes{shard.tensor.data(), shard.tensor.nbytes()};
  }
  return NotFoundError("no local shard of \"" + item.fqn + "\" at offsets " +
                       ShapeToString(item.offsets));
}

SavePlanCache* DefaultSavePlanner::plan_cache() {
  return options_.enable_plan_caching ? &cache_ : nullptr;
}

}  // namespace dcpkv

// DefaultSavePlanner: one WriteItem per dense tensor, local shard and bytes entry; the
// coordinator deduplicates replicated items (same fqn and offsets on several ranks) so that
// exactly one rank writes each, choosing the candidate with the fewest bytes so far, validates
// the result per tensor in O(n log n) and builds the Metadata.
#include <algorithm>
#include <map>
#include <numeric>
#include <string_view>
#include <tuple>
#include <unordered_map>

#include "dcpkv/api/cuda_device.h"
#include "dcpkv/api/cuda_staging.h"
#include "dcpkv/core/strided.h"
#include "dcpkv/planner.h"
#include "plan_metadata.h"

namespace dcpkv {
namespace {

WriteItem TensorItem(const std::string& fqn, const Tensor& t) {
  return WriteItem{fqn,       WriteItemType::kTensor,     t.dtype(),
                   t.shape(), Shape(t.shape().size(), 0), t.shape()};
}

std::string DescribeTensor(const std::string& fqn) { return "tensor \"" + fqn + "\""; }

// The tensor (or local shard) of `state` an item of a tensor refers to; null if there is none.
const Tensor* FindTensor(const FlatStateDict& state, const std::string& fqn, const Shape& offsets) {
  auto it = state.find(fqn);
  if (it == state.end()) return nullptr;
  if (const auto* t = std::get_if<Tensor>(&it->second)) return t;
  if (const auto* st = std::get_if<ShardedTensor>(&it->second)) {
    for (const Shard& shard : st->local_shards) {
      if (shard.offsets == offsets) return &shard.tensor;
    }
  }
  return nullptr;
}

cuda::DeviceSource SourceOf(const Tensor& t) {
  cuda::DeviceSource source{t.device().index, t.data(), static_cast<size_t>(t.nbytes()), {}};
  if (!t.is_contiguous()) {  // a strided view: packed into the host buffer by pitched copies
    source.copies = PlanPackingCopies(t);
  }
  return source;
}

std::string DescribeItem(const WriteItem& item) {
  return "fqn \"" + item.fqn + "\" at offsets " + ShapeToString(item.offsets) + " (dtype " +
         std::string(DTypeName(item.dtype)) + ", sizes " + ShapeToString(item.sizes) +
         ", global shape " + ShapeToString(item.global_shape) + ")";
}

// Every rank holding a copy of one item, and the item itself.
// 64-bit FNV-1a over the offsets: a cheap sort key that groups equal offsets together.
uint64_t HashOffsets(const Shape& offsets) {
  uint64_t h = 1469598103934665603ull;
  for (uint64_t v : offsets) {
    for (int b = 0; b < 8; ++b) {
      h ^= (v >> (8 * b)) & 0xFF;
      h *= 1099511628211ull;
    }
  }
  return h;
}

// Assigns each replicated item (the same fqn and offsets on several ranks) to one rank,
// balancing bytes: items are taken largest first and given to the candidate with the least
// bytes assigned so far (ties: lowest rank); removes it from the other ranks' plans.
//
// Runs in O(n log k) for n items of at most k shards per fqn without a per-item heap key: items
// are grouped by fqn through views of their names, and within an fqn sorted by a hash of their
// offsets, equal hashes compared exactly.
StatusOr<std::vector<SavePlan>> Deduplicate(std::vector<SavePlan> plans) {
  struct Ref {
    uint64_t hash;
    uint32_t rank;
    uint32_t index;
  };
  std::unordered_map<std::string_view, std::vector<Ref>> by_fqn;
  for (size_t r = 0; r < plans.size(); ++r) {
    const std::vector<WriteItem>& items = plans[r].items;
    for (size_t i = 0; i < items.size(); ++i) {
      by_fqn[items[i].fqn].push_back(
          Ref{HashOffsets(items[i].offsets), static_cast<uint32_t>(r), static_cast<uint32_t>(i)});
    }
  }
  auto item_of = [&](const Ref& ref) -> const WriteItem& {
    return plans[ref.rank].items[ref.index];
  };
  // Items held by one rank, and each group of copies of one replicated item (in rank order).
  std::vector<Ref> singles;
  std::vector<std::vector<Ref>> replicated;
  for (auto& [fqn, refs] : by_fqn) {
    if (refs.size() == 1) {
      singles.push_back(refs[0]);
      continue;
    }
    std::sort(refs.begin(), refs.end(), [](const Ref& a, const Ref& b) {
      return std::tie(a.hash, a.rank, a.index) < std::tie(b.hash, b.rank, b.index);
    });
    for (size_t begin = 0; begin < refs.size();) {
      size_t end = begin + 1;
      while (end < refs.size() && refs[end].hash == refs[begin].hash) ++end;
      // Within equal hashes, group equal offsets exactly (a collision keeps them apart).
      std::vector<bool> taken(end - begin, false);
      for (size_t a = begin; a < end; ++a) {
        if (taken[a - begin]) continue;
        std::vector<Ref> group = {refs[a]};
        const WriteItem& first = item_of(refs[a]);
        for (size_t b = a + 1; b < end; ++b) {
          if (taken[b - begin] || item_of(refs[b]).offsets != first.offsets) continue;
          taken[b - begin] = true;
          const WriteItem& other = item_of(refs[b]);
          if (!(other == first)) {
            return InvalidArgumentError("replicated " + DescribeItem(other) + " on rank " +
                                        std::to_string(refs[b].rank) + " differs from " +
                                        DescribeItem(first) + " on rank " +
                                        std::to_string(refs[a].rank));
          }
          group.push_back(refs[b]);
        }
        if (group.size() == 1) {
          singles.push_back(group[0]);
        } else {
          replicated.push_back(std::move(group));
        }
      }
      begin = end;
    }
  }
  if (replicated.empty()) return plans;  // nothing to balance: the plans stand as they are
  // The bytes each rank writes anyway (computed only now: it reads every item's sizes).
  std::vector<uint64_t> load(plans.size(), 0);
  for (const Ref& ref : singles) load[ref.rank] += item_of(ref).nbytes();
  // Largest first; among equal sizes, in (fqn, offsets) order so the result is deterministic.
  std::sort(replicated.begin(), replicated.end(),
            [&](const std::vector<Ref>& a, const std::vector<Ref>& b) {
              const WriteItem& x = item_of(a[0]);
              const WriteItem& y = item_of(b[0]);
              const uint64_t nx = x.nbytes(), ny = y.nbytes();
              if (nx != ny) return nx > ny;
              return std::tie(x.fqn, x.offsets) < std::tie(y.fqn, y.offsets);
            });
  std::vector<std::vector<bool>> drop(plans.size());
  for (size_t r = 0; r < plans.size(); ++r) drop[r].assign(plans[r].items.size(), false);
  for (const std::vector<Ref>& group : replicated) {
    uint32_t best = group[0].rank;
    for (const Ref& ref : group) {
      if (load[ref.rank] < load[best] || (load[ref.rank] == load[best] && ref.rank < best)) {
        best = ref.rank;
      }
    }
    load[best] += item_of(group[0]).nbytes();
    for (const Ref& ref : group) {
      if (ref.rank != best) drop[ref.rank][ref.index] = true;
    }
  }
  for (size_t r = 0; r < plans.size(); ++r) {
    std::vector<WriteItem>& items = plans[r].items;
    size_t kept = 0;
    for (size_t i = 0; i < items.size(); ++i) {
      if (drop[r][i]) continue;
      if (kept != i) items[kept] = std::move(items[i]);
      ++kept;
    }
    items.resize(kept);
  }
  return plans;
}

}  // namespace

uint64_t WriteItem::nbytes() const {
  StatusOr<uint64_t> n = NumElements(sizes);
  return n.ok() ? *n * ElementSize(dtype) : 0;
}

DefaultSavePlanner::DefaultSavePlanner(DefaultSavePlannerOptions options) : options_(options) {}

DefaultSavePlanner::~DefaultSavePlanner() = default;

Status DefaultSavePlanner::SetUpPlanner(const FlatStateDict* state, bool is_coordinator) {
  state_ = state;
  // Host copies of the previous save's device items refer to its state: drop them.
  device_order_.clear();
  if (device_staging_ != nullptr) device_staging_->Release();
  contiguous_copies_.clear();
  return Status::Ok();
}

StatusOr<SavePlan> DefaultSavePlanner::CreateLocalPlan() {
  if (state_ == nullptr) return FailedPreconditionError("CreateLocalPlan before SetUpPlanner");
  SavePlan plan;
  for (const auto& [fqn, value] : *state_) {
    if (const auto* t = std::get_if<Tensor>(&value)) {
      DCPKV_RETURN_IF_ERROR(cuda::CheckTensor(*t, DescribeTensor(fqn)));
      plan.items.push_back(TensorItem(fqn, *t));
    } else if (const auto* st = std::get_if<ShardedTensor>(&value)) {
      for (const Shard& shard : st->local_shards) {
        DCPKV_RETURN_IF_ERROR(cuda::CheckTensor(
            shard.tensor,
            DescribeTensor(fqn) + " (shard at " + ShapeToString(shard.offsets) + ")"));
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
    DCPKV_ASSIGN_OR_RETURN(global.plans, Deduplicate(std::move(all_plans)));
  } else {
    global.plans = std::move(all_plans);
  }
  DCPKV_ASSIGN_OR_RETURN(global.metadata,
                         MetadataFromPlans(global.plans, /*validate_coverage=*/true));
  return global;
}

StatusOr<SavePlan> DefaultSavePlanner::FinishPlan(SavePlan central_plan) {
  // The device items in the order the writer will ask for them: their copies run ahead.
  device_order_.clear();
  std::vector<cuda::DeviceSource> order;
  if (state_ != nullptr) {
    for (const WriteItem& item : central_plan.items) {
      if (item.type == WriteItemType::kBytes) continue;
      const Tensor* t = FindTensor(*state_, item.fqn, item.offsets);
      if (t == nullptr || !t->is_cuda()) continue;
      device_order_.emplace(std::make_pair(item.fqn, item.offsets), order.size());
      order.push_back(SourceOf(*t));
    }
  }
  if (!order.empty() && device_staging_ == nullptr) {
    device_staging_ = std::make_unique<cuda::SaveStaging>();
  }
  if (device_staging_ != nullptr) DCPKV_RETURN_IF_ERROR(device_staging_->Reset(std::move(order)));
  return central_plan;
}

StatusOr<ConstBytes> DefaultSavePlanner::ResolveData(const WriteItem& item) {
  if (state_ == nullptr) return FailedPreconditionError("ResolveData before SetUpPlanner");
  auto it = state_->find(item.fqn);
  if (it == state_->end()) return NotFoundError("no fqn \"" + item.fqn + "\" in the state dict");
  if (const auto* b = std::get_if<Bytes*>(&it->second)) {
    return ConstBytes{(*b)->data.data(), (*b)->data.size()};
  }
  const Tensor* t = FindTensor(*state_, item.fqn, item.offsets);
  if (t == nullptr) {
    return NotFoundError("no local shard of \"" + item.fqn + "\" at offsets " +
                         ShapeToString(item.offsets));
  }
  if (!t->is_cuda() && t->is_contiguous()) return ConstBytes{t->data(), t->nbytes()};
  if (!t->is_cuda()) {
    std::vector<uint8_t>& copy = contiguous_copies_[{item.fqn, item.offsets}];
    if (copy.size() != t->nbytes()) {
      copy.resize(t->nbytes());
      GatherBytes(t->data(), LayoutOf(*t), 0, t->nbytes(), copy.data());
    }
    return ConstBytes{copy.data(), copy.size()};
  }
  // A device item: its host copy.
  if (device_staging_ == nullptr) device_staging_ = std::make_unique<cuda::SaveStaging>();
  auto order = device_order_.find({item.fqn, item.offsets});
  StatusOr<const void*> host = order != device_order_.end()
                                   ? device_staging_->Resolve(order->second)
                                   : device_staging_->ResolveOther(SourceOf(*t));
  if (!host.ok()) {
    return host.status().WithContext("copying " + DescribeTensor(item.fqn) + " from " +
                                     t->device().ToString());
  }
  return ConstBytes{*host, t->nbytes()};
}

StatusOr<ConstStridedBytes> DefaultSavePlanner::ResolveStridedData(const WriteItem& item) {
  // Anything but a strided host tensor of this planner's state (and whatever a subclass that
  // keeps its own state resolves) is ResolveData's.
  const Tensor* t = item.type == WriteItemType::kBytes || state_ == nullptr
                        ? nullptr
                        : FindTensor(*state_, item.fqn, item.offsets);
  if (t == nullptr || t->is_cuda() || t->is_contiguous()) {
    return SavePlanner::ResolveStridedData(item);
  }
  return ConstStridedBytes{t->data(), t->nbytes(), t->shape(), t->strides(),
                           ElementSize(t->dtype())};
}

StatusOr<ConstStridedBytes> SavePlanner::ResolveStridedData(const WriteItem& item) {
  DCPKV_ASSIGN_OR_RETURN(ConstBytes bytes, ResolveData(item));
  return ConstStridedBytes{bytes.data, bytes.size};
}

SavePlanCache* DefaultSavePlanner::plan_cache() {
  return options_.enable_plan_caching ? &cache_ : nullptr;
}

}  // namespace dcpkv

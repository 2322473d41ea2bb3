// Metadata from final save plans: shared by DefaultSavePlanner and saves without collectives.
#include "plan_metadata.h"

#include <algorithm>
#include <string_view>
#include <unordered_map>

#include "dcpkv/core/plan_validation.h"

namespace dcpkv {

StatusOr<Metadata> MetadataFromPlans(const std::vector<SavePlan>& plans, bool validate_coverage) {
  Metadata md;
  md.world_size = static_cast<int32_t>(plans.size());
  // fqn -> entry through views of the names (the plans outlive this function): one hash lookup
  // per item instead of a tree walk of string comparisons.
  std::unordered_map<std::string_view, std::pair<EntryMetadata*, bool>> index;
  for (size_t r = 0; r < plans.size(); ++r) {
    for (const WriteItem& item : plans[r].items) {
      auto [slot, fresh] = index.try_emplace(item.fqn, nullptr, false);
      if (fresh) slot->second = {&md.entries[item.fqn], true};
      const bool inserted = slot->second.second;
      slot->second.second = false;
      EntryMetadata& entry = *slot->second.first;
      if (inserted) {
        entry.dtype = item.dtype;
        entry.global_shape = item.global_shape;
      } else if (entry.dtype != item.dtype || entry.global_shape != item.global_shape) {
        return InvalidArgumentError(
            "fqn \"" + item.fqn + "\" is " + std::string(DTypeName(entry.dtype)) + " " +
            ShapeToString(entry.global_shape) + " on one rank but " +
            std::string(DTypeName(item.dtype)) + " " + ShapeToString(item.global_shape) +
            " on rank " + std::to_string(r));
      }
      entry.shards.push_back(
          SavedShard{item.offsets, item.sizes, static_cast<int32_t>(r), item.nbytes(), 0});
    }
  }
  for (auto& [fqn, entry] : md.entries) {
    std::sort(entry.shards.begin(), entry.shards.end(),
              [](const SavedShard& a, const SavedShard& b) { return a.offsets < b.offsets; });
    if (entry.is_bytes()) {
      if (entry.shards.size() != 1) {
        return InvalidArgumentError("bytes entry \"" + fqn + "\" is saved by " +
                                    std::to_string(entry.shards.size()) +
                                    " ranks with different contents");
      }
      continue;
    }
    if (validate_coverage) {
      DCPKV_RETURN_IF_ERROR(
          ValidateSavedShards(fqn, entry.dtype, entry.global_shape, entry.shards));
    }
  }
  return md;
}

}  // namespace dcpkv

// Building a checkpoint's Metadata from final save plans. Internal to api/.
#ifndef DCPKV_API_PLAN_METADATA_H_
#define DCPKV_API_PLAN_METADATA_H_

#include <vector>

#include "dcpkv/metadata.h"
#include "dcpkv/plan.h"

namespace dcpkv {

// One entry per fqn with one SavedShard per item (rank = index of its plan, chunks = 0),
// shards sorted by offsets. Checks that every item of an fqn agrees on dtype and global shape
// and that a bytes entry is saved once. With `validate_coverage`, also that each tensor's
// shards lie in bounds, do not overlap and cover it exactly (ValidateSavedShards); without it
// (one rank's part of a save without collectives) that check is left to the load that merges
// the parts.
StatusOr<Metadata> MetadataFromPlans(const std::vector<SavePlan>& plans, bool validate_coverage);

}  // namespace dcpkv

#endif  // DCPKV_API_PLAN_METADATA_H_

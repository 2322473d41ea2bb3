#include "protocol.h"

#include "dcpkv/core/names.h"

namespace dcpkv {

StatusOr<bool> CheckProtocolOptions(const std::string& checkpoint_id, int coordinator_rank,
                                    const ProcessGroup& group) {
  DCPKV_RETURN_IF_ERROR(ValidateCheckpointId(checkpoint_id));
  if (coordinator_rank < 0 || coordinator_rank >= group.size()) {
    return InvalidArgumentError("coordinator_rank " + std::to_string(coordinator_rank) +
                                " is outside the process group of size " +
                                std::to_string(group.size()));
  }
  return group.rank() == coordinator_rank;
}

ProcessGroup& SingleProcessGroupInstance() {
  static ProcessGroup* const group = NewSingleProcessGroup().release();
  return *group;
}

}  // namespace dcpkv

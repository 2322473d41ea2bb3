// The parts of the save and load protocols that need a process group. Internal to api/; the
// messages themselves are core's (dcpkv/core/protocol_messages.h).
#ifndef DCPKV_API_PROTOCOL_H_
#define DCPKV_API_PROTOCOL_H_

#include <string>

#include "dcpkv/core/protocol_messages.h"
#include "dcpkv/process_group.h"
#include "dcpkv/status.h"

namespace dcpkv {

// Checks what every save and load checks first: a valid checkpoint id and a coordinator inside
// the group. Returns whether this rank is the coordinator.
StatusOr<bool> CheckProtocolOptions(const std::string& checkpoint_id, int coordinator_rank,
                                    const ProcessGroup& group);

// A group of one rank for single-process saves and loads (no_dist).
ProcessGroup& SingleProcessGroupInstance();

}  // namespace dcpkv

#endif  // DCPKV_API_PROTOCOL_H_

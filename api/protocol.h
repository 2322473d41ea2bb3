// Messages and error aggregation shared by the save and load protocols. Internal to api/.
//
// Every message a rank sends through a collective says whether the rank's step succeeded:
//   message := kind:u8 body
//   kind 1 (payload): body is the step's payload (an encoded plan, write results, metadata)
//   kind 2 (cached):  body is u64le hash: "same plan as last time, with this hash" (plan caching)
//   kind 3 (failure): body is an encoded Status (plan_codec.h)
// so that a failure on any rank reaches the coordinator, which turns the set of failures into one
// error that every rank returns.
#ifndef DCPKV_API_PROTOCOL_H_
#define DCPKV_API_PROTOCOL_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "dcpkv/process_group.h"
#include "dcpkv/status.h"

namespace dcpkv {

enum class MessageKind : uint8_t { kPayload = 1, kCached = 2, kFailure = 3 };

struct Message {
  MessageKind kind = MessageKind::kPayload;
  Status status;        // kFailure only
  std::string payload;  // kPayload only
  uint64_t hash = 0;    // kCached only
};

std::string PayloadMessage(std::string_view payload);
std::string CachedMessage(uint64_t hash);
std::string FailureMessage(const Status& status);
StatusOr<Message> DecodeMessage(std::string_view bytes);

// One error for a step that failed on some ranks: the code of the lowest failing rank, and a
// message "<what> failed on ranks 1, 3 of 4: rank 1: <status>; rank 3: <status>".
// REQUIRES: at least one status is not OK.
Status AggregateFailures(std::string_view what, const std::vector<Status>& per_rank);

// A group of one rank for single-process saves and loads (no_dist).
ProcessGroup& SingleProcessGroupInstance();

}  // namespace dcpkv

#endif  // DCPKV_API_PROTOCOL_H_

// Messages and error aggregation shared by the save and load protocols (core: no I/O, no
// collectives; api/protocol.h adds what needs a process group).
//
// Every message a rank sends through a collective says whether the rank's step succeeded:
//   message := kind:u8 body
//   kind 1 (payload): body is the step's payload (an encoded plan, write results, metadata)
//   kind 2 (cached):  body is u64le hash: "same plan as last time, with this hash" (plan caching)
//   kind 3 (failure): body is an encoded Status (plan_codec.h)
// so that a failure on any rank reaches the coordinator, which turns the set of failures into one
// error that every rank returns.
#ifndef DCPKV_CORE_PROTOCOL_MESSAGES_H_
#define DCPKV_CORE_PROTOCOL_MESSAGES_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "dcpkv/status.h"

namespace dcpkv {

enum class MessageKind : uint8_t { kPayload = 1, kCached = 2, kFailure = 3 };

struct Message {
  MessageKind kind = MessageKind::kPayload;
  Status status;        // kFailure only
  std::string payload;  // kPayload; for kCached, data that goes with the cached item
  uint64_t hash = 0;    // kCached only
};

std::string PayloadMessage(std::string_view payload);
// "Unchanged, hash `hash`", with `extra` bytes that are not part of what the hash covers
// (e.g. a final plan's storage data, which changes from save to save).
std::string CachedMessage(uint64_t hash, std::string_view extra = {});
std::string FailureMessage(const Status& status);
StatusOr<Message> DecodeMessage(std::string_view bytes);

// One error for a step that failed on some ranks: the code of the lowest failing rank, and a
// message "<what> failed on ranks 1, 3 of 4: rank 1: <status>; rank 3: <status>".
// REQUIRES: at least one status is not OK.
Status AggregateFailures(std::string_view what, const std::vector<Status>& per_rank);

// The messages a collective gathered, one per rank, decoded: failures[r] is rank r's reported
// failure (or why its message could not be decoded), OK otherwise.
struct GatheredMessages {
  std::vector<Message> messages;
  std::vector<Status> failures;
  bool any_failed = false;
};
GatheredMessages DecodeGathered(const std::vector<std::string>& gathered);

// Decodes the payload of every rank that sent one with `decode` (StatusOr<T>(std::string_view));
// a payload that does not decode becomes that rank's failure. Ranks that failed, or that sent
// "cached" (only valid where `cached_allowed`), get a default T.
template <typename T, typename Decode>
std::vector<T> DecodePayloads(GatheredMessages& gathered, Decode decode, bool cached_allowed) {
  std::vector<T> out(gathered.messages.size());
  for (size_t r = 0; r < out.size(); ++r) {
    if (!gathered.failures[r].ok()) continue;
    const Message& m = gathered.messages[r];
    StatusOr<T> value = m.kind == MessageKind::kPayload ? decode(m.payload)
                        : cached_allowed
                            ? StatusOr<T>(T())
                            : StatusOr<T>(DataLossError("unexpected 'cached' message"));
    if (value.ok()) {
      out[r] = std::move(value).value();
    } else {
      gathered.failures[r] = value.status();
      gathered.any_failed = true;
    }
  }
  return out;
}

}  // namespace dcpkv

#endif  // DCPKV_CORE_PROTOCOL_MESSAGES_H_

// Wire encoding of what ranks exchange through collectives while saving and loading: SavePlans,
// LoadPlans, write results and Statuses. Internal to dcpkv (not installed).
//
// The encoding is compact little-endian binary: a three-byte header (magic, message kind,
// version) followed by LEB128 varints, length-prefixed strings and single-byte enums. Every value
// has exactly one encoding (varints are minimal), so equal values encode to equal bytes;
// HashSavePlan relies on that.
//
// The decoders treat their input as hostile (it comes from another process): they never read
// outside it, reject trailing bytes, check every count and length against the bytes that remain
// before allocating (memory is proportional to the input size), and validate enum values. Any
// failure is DATA_LOSS with a message naming the message kind, the item and the field at fault.
//
// Thread safety: all functions are pure and may be called concurrently.
#ifndef DCPKV_CORE_PLAN_CODEC_H_
#define DCPKV_CORE_PLAN_CODEC_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "dcpkv/plan.h"
#include "dcpkv/status.h"

namespace dcpkv {

// First byte of every encoding.
inline constexpr uint8_t kPlanWireMagic = 0xDC;
// Third byte: the layout version. Decoders reject other versions.
inline constexpr uint8_t kPlanWireVersion = 2;

std::string EncodeSavePlan(const SavePlan& plan);
StatusOr<SavePlan> DecodeSavePlan(std::string_view bytes);

std::string EncodeLoadPlan(const LoadPlan& plan);
StatusOr<LoadPlan> DecodeLoadPlan(std::string_view bytes);

std::string EncodeWriteResults(const std::vector<WriteResult>& results);
StatusOr<std::vector<WriteResult>> DecodeWriteResults(std::string_view bytes);

// A Status as it travels from one rank to another (code and message; an OK status has no
// message).
std::string EncodeStatus(const Status& status);
// Decodes a status into `*out`. The returned Status is the outcome of decoding itself: OK, or
// DATA_LOSS if `bytes` are malformed (then `*out` is unchanged).
Status DecodeStatus(std::string_view bytes, Status* out);

// 64-bit content hash of the plan (the low half of XXH3-128 of EncodeSavePlan(plan)): equal
// plans hash equal, so a hash match lets a cached plan be reused.
uint64_t HashSavePlan(const SavePlan& plan);

}  // namespace dcpkv

#endif  // DCPKV_CORE_PLAN_CODEC_H_

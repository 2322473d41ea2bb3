// Validation of the names that become parts of storage keys.
//
// Names are never rewritten: an invalid one is rejected with INVALID_ARGUMENT naming the
// offending character or limit, so that what the caller asked for is exactly what is stored.
#ifndef DCPKV_CORE_NAMES_H_
#define DCPKV_CORE_NAMES_H_

#include <cstddef>
#include <string_view>

#include "dcpkv/status.h"

namespace dcpkv {

inline constexpr size_t kMaxCheckpointIdLength = 128;
inline constexpr size_t kMaxFqnLength = 1024;
// Largest number of tensor dimensions a chunk may describe.
inline constexpr size_t kMaxTensorDims = 64;

// A checkpoint id is 1..128 characters from [A-Za-z0-9._-], does not start with '.' or '-',
// and is not the reserved word "latest" (which the tools resolve to the newest checkpoint).
Status ValidateCheckpointId(std::string_view id);

// An fqn ("model.layers.3.attn.wq") is 1..1024 printable ASCII characters without space
// (0x21..0x7E).
Status ValidateFqn(std::string_view fqn);

}  // namespace dcpkv

#endif  // DCPKV_CORE_NAMES_H_

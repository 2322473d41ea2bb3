// The shared bearer token of a replica: "authorization: Bearer <token>" metadata on every call.
#ifndef DCPKV_REPLICATION_AUTH_H_
#define DCPKV_REPLICATION_AUTH_H_

#include <string>
#include <string_view>

#include "dcpkv/status.h"

namespace dcpkv::replication {

inline constexpr char kAuthorizationKey[] = "authorization";
inline constexpr size_t kMaxTokenLength = 4096;

// A token is empty (none) or 1..4096 printable ASCII characters without space (0x21..0x7E), so
// that it is a valid metadata value. INVALID_ARGUMENT naming `what` otherwise.
Status ValidateToken(std::string_view token, std::string_view what);

// "Bearer <token>".
std::string BearerHeader(std::string_view token);

// True if `header` equals `expected` (a BearerHeader). Takes time that depends only on the
// lengths, not on where the two differ.
bool HeaderMatches(std::string_view header, std::string_view expected);

}  // namespace dcpkv::replication

#endif  // DCPKV_REPLICATION_AUTH_H_

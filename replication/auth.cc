#include "auth.h"

namespace dcpkv::replication {

Status ValidateToken(std::string_view token, std::string_view what) {
  if (token.size() > kMaxTokenLength) {
    return InvalidArgumentError(std::string(what) + " is " + std::to_string(token.size()) +
                                " characters, over " + std::to_string(kMaxTokenLength));
  }
  for (char c : token) {
    if (c < 0x21 || c > 0x7E) {
      return InvalidArgumentError(std::string(what) +
                                  " must be printable ASCII without spaces or control characters");
    }
  }
  return Status::Ok();
}

std::string BearerHeader(std::string_view token) { return "Bearer " + std::string(token); }

bool HeaderMatches(std::string_view header, std::string_view expected) {
  // Every byte of `expected` is compared whatever `header` holds; a length difference is folded
  // into the same accumulator. Volatile keeps the compiler from ending the loop early.
  volatile unsigned char diff = header.size() == expected.size() ? 0 : 1;
  for (size_t i = 0; i < expected.size(); ++i) {
    const char h = i < header.size() ? header[i] : 0;
    diff = diff | static_cast<unsigned char>(h ^ expected[i]);
  }
  return diff == 0;
}

}  // namespace dcpkv::replication

#include "dcpkv/core/names.h"

#include <cstdio>
#include <string>

namespace dcpkv {
namespace {

std::string Quoted(std::string_view s) {
  // Shows at most 64 characters, escaping non-printable bytes, so messages stay readable.
  std::string out = "\"";
  size_t n = 0;
  for (unsigned char c : s) {
    if (++n > 64) {
      out += "...";
      break;
    }
    if (c >= 0x20 && c < 0x7F && c != '"' && c != '\\') {
      out += static_cast<char>(c);
    } else {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\x%02x", c);
      out += buf;
    }
  }
  return out + "\"";
}

std::string CharDescription(unsigned char c, size_t pos) {
  char buf[64];
  if (c >= 0x21 && c < 0x7F) {
    std::snprintf(buf, sizeof(buf), "character '%c' at position %zu", c, pos);
  } else {
    std::snprintf(buf, sizeof(buf), "byte 0x%02x at position %zu", c, pos);
  }
  return buf;
}

}  // namespace

Status ValidateCheckpointId(std::string_view id) {
  if (id.empty()) return InvalidArgumentError("checkpoint id is empty");
  if (id.size() > kMaxCheckpointIdLength) {
    return InvalidArgumentError("checkpoint id " + Quoted(id) + " is " + std::to_string(id.size()) +
                                " characters long; the limit is " +
                                std::to_string(kMaxCheckpointIdLength));
  }
  if (id == "latest") {
    return InvalidArgumentError(
        "checkpoint id \"latest\" is reserved (it names the newest committed checkpoint)");
  }
  if (id[0] == '.' || id[0] == '-') {
    return InvalidArgumentError("checkpoint id " + Quoted(id) + " must not start with '" +
                                std::string(1, id[0]) + "'");
  }
  for (size_t i = 0; i < id.size(); ++i) {
    unsigned char c = static_cast<unsigned char>(id[i]);
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-';
    if (!ok) {
      return InvalidArgumentError("checkpoint id " + Quoted(id) + " has invalid " +
                                  CharDescription(c, i) + "; allowed are [A-Za-z0-9._-]");
    }
  }
  return Status::Ok();
}

Status ValidateFqn(std::string_view fqn) {
  if (fqn.empty()) return InvalidArgumentError("fqn is empty");
  if (fqn.size() > kMaxFqnLength) {
    return InvalidArgumentError("fqn " + Quoted(fqn) + " is " + std::to_string(fqn.size()) +
                                " bytes long; the limit is " + std::to_string(kMaxFqnLength));
  }
  for (size_t i = 0; i < fqn.size(); ++i) {
    unsigned char c = static_cast<unsigned char>(fqn[i]);
    if (c < 0x21 || c > 0x7E) {
      return InvalidArgumentError("fqn " + Quoted(fqn) + " has invalid " + CharDescription(c, i) +
                                  "; allowed are printable ASCII characters without space");
    }
  }
  return Status::Ok();
}

}  // namespace dcpkv

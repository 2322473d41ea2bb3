#include "namespaces.h"

#include <cstdio>

#include "dcpkv/replication/replica.h"

namespace dcpkv::replication {
namespace {

constexpr size_t kMaxNamespaceLength = 128;
// Hex digits that still fit in one file name after "ns-" (NAME_MAX is 255).
constexpr size_t kMaxFlatHexDigits = 252;
constexpr size_t kSplitHexDigits = 128;

bool IsNamespaceChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '_' || c == ':' || c == '@' || c == '/' || c == '-';
}

std::string Hex(std::string_view bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (char c : bytes) {
    const auto b = static_cast<unsigned char>(c);
    out.push_back(kDigits[b >> 4]);
    out.push_back(kDigits[b & 0xF]);
  }
  return out;
}

}  // namespace

Status ValidateNamespace(std::string_view ns) {
  if (ns.empty()) return InvalidArgumentError("namespace is empty");
  if (ns.size() > kMaxNamespaceLength) {
    return InvalidArgumentError("namespace is " + std::to_string(ns.size()) + " bytes, over " +
                                std::to_string(kMaxNamespaceLength));
  }
  for (size_t i = 0; i < ns.size(); ++i) {
    if (!IsNamespaceChar(ns[i])) {
      char byte[8];
      std::snprintf(byte, sizeof(byte), "0x%02x", static_cast<unsigned char>(ns[i]));
      return InvalidArgumentError("namespace has byte " + std::string(byte) + " at offset " +
                                  std::to_string(i) + "; allowed are [A-Za-z0-9._:@/-]");
    }
  }
  size_t begin = 0;
  while (begin <= ns.size()) {
    size_t end = ns.find('/', begin);
    if (end == std::string_view::npos) end = ns.size();
    const std::string_view segment = ns.substr(begin, end - begin);
    if (segment == "." || segment == "..") {
      return InvalidArgumentError("namespace \"" + std::string(ns) + "\" has a \"" +
                                  std::string(segment) + "\" segment");
    }
    begin = end + 1;
  }
  return Status::Ok();
}

std::string NamespaceDirectory(std::string_view ns) {
  const std::string hex = Hex(ns);
  if (hex.size() <= kMaxFlatHexDigits) return "ns-" + hex;
  return "ns+" + hex.substr(0, kSplitHexDigits) + "/" + hex.substr(kSplitHexDigits);
}

}  // namespace dcpkv::replication

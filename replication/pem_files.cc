#include "pem_files.h"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

namespace dcpkv::replication {
namespace {

constexpr size_t kMaxPemFileBytes = size_t{1} << 20;

}  // namespace

StatusOr<std::string> ReadPemFile(const std::string& path, std::string_view what) {
  const std::string name = std::string(what) + " \"" + path + "\"";
  std::ifstream in(path, std::ios::binary);
  if (!in) return InvalidArgumentError("cannot read " + name + ": " + std::strerror(errno));
  std::ostringstream contents;
  contents << in.rdbuf();
  if (in.bad()) return InvalidArgumentError("cannot read " + name);
  std::string pem = std::move(contents).str();
  if (pem.size() > kMaxPemFileBytes) {
    return InvalidArgumentError(name + " is over " + std::to_string(kMaxPemFileBytes) + " bytes");
  }
  if (pem.find("-----BEGIN ") == std::string::npos) {
    return InvalidArgumentError(name + " is not a PEM file (no \"-----BEGIN \" line)");
  }
  return pem;
}

}  // namespace dcpkv::replication

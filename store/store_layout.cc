#include "dcpkv/store/store_layout.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <system_error>

namespace dcpkv {

std::string RankDirectory(const std::string& root, int rank) {
  char name[32];
  std::snprintf(name, sizeof(name), "rank-%05d", rank);
  return (std::filesystem::path(root) / name).string();
}

StatusOr<std::vector<int>> ListRankDirectories(const std::string& root) {
  std::error_code ec;
  if (!std::filesystem::is_directory(root, ec)) {
    return NotFoundError("store root \"" + root + "\" does not exist or is not a directory");
  }
  std::vector<int> ranks;
  for (const auto& entry : std::filesystem::directory_iterator(root, ec)) {
    if (!entry.is_directory()) continue;
    std::string name = entry.path().filename().string();
    if (name.size() < 10 || name.compare(0, 5, "rank-") != 0) continue;
    std::string digits = name.substr(5);
    if (!std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; })) {
      continue;
    }
    if (digits.size() > 9) continue;
    ranks.push_back(std::stoi(digits));
  }
  if (ec) return IOError("listing store root \"" + root + "\": " + ec.message());
  std::sort(ranks.begin(), ranks.end());
  return ranks;
}

}  // namespace dcpkv

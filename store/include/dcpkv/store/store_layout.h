// Layout of a store root: one RocksDB directory per rank, `<root>/rank-NNNNN/` with the rank as
// at least five decimal digits (rank-00000, rank-00003, rank-123456).
#ifndef DCPKV_STORE_STORE_LAYOUT_H_
#define DCPKV_STORE_STORE_LAYOUT_H_

#include <string>
#include <vector>

#include "dcpkv/status.h"

namespace dcpkv {

// "<root>/rank-00003". REQUIRES: rank >= 0.
std::string RankDirectory(const std::string& root, int rank);

// Ranks that have a directory under `root`, ascending. NOT_FOUND if `root` does not exist.
StatusOr<std::vector<int>> ListRankDirectories(const std::string& root);

}  // namespace dcpkv

#endif  // DCPKV_STORE_STORE_LAYOUT_H_

#include "dcpkv/metadata.h"

namespace dcpkv {

uint64_t Metadata::logical_bytes() const {
  uint64_t total = 0;
  for (const auto& [fqn, entry] : entries) {
    for (const SavedShard& s : entry.shards) total += s.bytes;
  }
  return total;
}

}  // namespace dcpkv

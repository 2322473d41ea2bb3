// The end-to-end checksum of a record on the wire (PutRequest/GetResponse.record_xxh3_128).
#ifndef DCPKV_REPLICATION_INTERNAL_RECORD_HASH_H_
#define DCPKV_REPLICATION_INTERNAL_RECORD_HASH_H_

#include <string>
#include <string_view>

#include "dcpkv/core/hash.h"

namespace dcpkv::replication {

// 32 lower-case hex digits of the XXH3-128 of `bytes`, high half first.
inline std::string RecordHashHex(std::string_view bytes) {
  return HashToHex(HashBytes(bytes.data(), bytes.size()));
}

}  // namespace dcpkv::replication

#endif  // DCPKV_REPLICATION_INTERNAL_RECORD_HASH_H_

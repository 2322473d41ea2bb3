// Where a namespace's records live below a replica's root.
//
// A namespace maps to a directory by hex-encoding its bytes, so the mapping is reversible and no
// namespace can name a path outside the root, whatever characters ValidateNamespace allows:
//   <root>/ns-<hex>                          namespaces of up to 126 bytes
//   <root>/ns+<first 128 hex digits>/<rest>  longer ones, whose hex would not fit in one file
//                                            name (255 bytes); "+" keeps them apart from "ns-"
// The directory holds one ChunkStore (only its manifests column family is used).
#ifndef DCPKV_REPLICATION_NAMESPACES_H_
#define DCPKV_REPLICATION_NAMESPACES_H_

#include <string>
#include <string_view>

namespace dcpkv::replication {

// The directory of namespace `ns`, relative to the root.
// REQUIRES: ValidateNamespace(ns).ok()
std::string NamespaceDirectory(std::string_view ns);

}  // namespace dcpkv::replication

#endif  // DCPKV_REPLICATION_NAMESPACES_H_

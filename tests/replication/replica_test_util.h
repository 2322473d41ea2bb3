// Helpers of the replica tests: valid manifest records and servers on loopback.
#ifndef DCPKV_TESTS_REPLICATION_REPLICA_TEST_UTIL_H_
#define DCPKV_TESTS_REPLICATION_REPLICA_TEST_UTIL_H_

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "dcpkv/core/manifest_record_codec.h"
#include "dcpkv/core/metadata_codec.h"
#include "dcpkv/metadata.h"
#include "dcpkv/replication/replica.h"

namespace dcpkv::testing {

// A valid Metadata of checkpoint `id`; `variant` changes its content (a tensor's length and the
// commit time), so that records of one id can differ.
inline Metadata TestMetadata(const std::string& id, uint64_t variant = 0) {
  Metadata md;
  md.checkpoint_id = id;
  md.world_size = 2;
  md.coordinator_rank = 0;
  md.committed_unix_micros = 1764331200000000 + static_cast<int64_t>(variant);
  const uint64_t n = 16 + variant;
  md.entries["model.w"] = {DType::kFloat32, {n}, {SavedShard{{0}, {n}, 1, n * 4, 1}}};
  md.entries["step"] = {DType::kBytes, {8}, {SavedShard{{0}, {8}, 0, 8, 1}}};
  md.tags["variant"] = std::to_string(variant);
  return md;
}

// The manifest record of TestMetadata(id, variant).
inline ManifestRecord TestRecord(const std::string& id, uint64_t variant = 0) {
  const Metadata md = TestMetadata(id, variant);
  return ManifestRecord{id, md.committed_unix_micros, EncodeMetadata(md)};
}

inline bool SameRecord(const ManifestRecord& a, const ManifestRecord& b) {
  return a.checkpoint_id == b.checkpoint_id && a.committed_unix_micros == b.committed_unix_micros &&
         a.payload == b.payload;
}

inline std::string Loopback(const replication::ReplicaServer& server) {
  return "127.0.0.1:" + std::to_string(server.port());
}

// Names of the entries of `dir` (not recursive), sorted.
inline std::vector<std::string> DirectoryEntries(const std::string& dir) {
  std::vector<std::string> names;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    names.push_back(entry.path().filename().string());
  }
  std::sort(names.begin(), names.end());
  return names;
}

}  // namespace dcpkv::testing

#endif  // DCPKV_TESTS_REPLICATION_REPLICA_TEST_UTIL_H_

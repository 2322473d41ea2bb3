// The catalog of a store root: which checkpoints are committed and what they hold, read through
// read-only opens that never block or disturb a job that is writing.
#ifndef DCPKV_CATALOG_H_
#define DCPKV_CATALOG_H_

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "dcpkv/export.h"
#include "dcpkv/metadata.h"
#include "dcpkv/status.h"

namespace dcpkv {

struct DCPKV_EXPORT CheckpointSummary {
  std::string checkpoint_id;
  int64_t committed_unix_micros = 0;
  int32_t world_size = 0;
  int32_t coordinator_rank = 0;  // whose database holds the manifest
  uint64_t num_tensors = 0;      // fqns, bytes entries included
  uint64_t logical_bytes = 0;
  // Payload bytes stored under this checkpoint's own keys (less than logical_bytes for an
  // incremental checkpoint), its incremental base (empty for a full save) and its user tags.
  uint64_t stored_bytes = 0;
  std::string base_checkpoint_id;
  std::map<std::string, std::string> tags;
};

// A manifest that could not be read or decoded.
struct DCPKV_EXPORT DamagedManifest {
  std::string checkpoint_id;
  int32_t rank = 0;  // whose database holds it
  Status status;
};

// A rank directory whose database exists but cannot be opened (its CURRENT lost, a damaged
// MANIFEST, a database that is not a dcpkv store).
struct DCPKV_EXPORT DamagedRank {
  int32_t rank = 0;
  Status status;
};

// Every committed checkpoint under `root`, oldest commit first. NOT_FOUND if root does not exist.
// A damaged manifest is DATA_LOSS, unless `damaged` is given: then it is appended there and the
// listing goes on without it. A rank database that cannot be opened is its error, unless
// `damaged_ranks` is given: then it is appended there and the listing goes on without the
// manifests it may hold.
DCPKV_EXPORT StatusOr<std::vector<CheckpointSummary>> ListCommittedCheckpoints(
    const std::string& root, std::vector<DamagedManifest>* damaged = nullptr,
    std::vector<DamagedRank>* damaged_ranks = nullptr);

// The checkpoint `checkpoint_id` names under `root`: "latest" (a reserved id, never a
// checkpoint's own) is the newest committed checkpoint, NOT_FOUND if there is none; any other id
// is returned as it is.
DCPKV_EXPORT StatusOr<std::string> ResolveCheckpointId(const std::string& root,
                                                       std::string_view checkpoint_id);

// The committed Metadata of checkpoint `checkpoint_id` ("latest" allowed) under `root`: its
// entries with their dtypes, global shapes and saved shards, tags and sizes. NOT_FOUND if it is
// not committed; DATA_LOSS if its manifest is damaged.
DCPKV_EXPORT StatusOr<Metadata> ReadCommittedMetadata(const std::string& root,
                                                      std::string_view checkpoint_id);

// "1.5 GiB", "812 B"
DCPKV_EXPORT std::string HumanBytes(uint64_t bytes);

}  // namespace dcpkv

#endif  // DCPKV_CATALOG_H_

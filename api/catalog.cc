#include "dcpkv/catalog.h"

#include <algorithm>
#include <cstdio>
#include <map>
#include <memory>
#include <set>

#include "dcpkv/api/kv_storage.h"
#include "dcpkv/core/metadata_codec.h"
#include "dcpkv/store/chunk_store.h"
#include "dcpkv/store/store_layout.h"

namespace dcpkv {

StatusOr<std::vector<CheckpointSummary>> ListCommittedCheckpoints(
    const std::string& root, std::vector<DamagedManifest>* damaged,
    std::vector<DamagedRank>* damaged_ranks) {
  DCPKV_ASSIGN_OR_RETURN(std::vector<int> ranks, ListRankDirectories(root));
  std::vector<CheckpointSummary> out;
  // Checkpoints saved without collectives have one part per rank: summed here, listed once all
  // world_size parts are committed.
  std::map<std::string, std::pair<CheckpointSummary, std::set<std::string>>> parts;
  std::map<std::string, int> part_count;
  for (int rank : ranks) {
    std::unique_ptr<ChunkStore> store;
    Status opened =
        ChunkStore::Open(RankDirectory(root, rank), {.mode = OpenMode::kReadOnly}, &store);
    if (opened.code() == StatusCode::kNotFound) continue;  // a directory without a database yet
    if (!opened.ok() && damaged_ranks != nullptr) {
      damaged_ranks->push_back({rank, std::move(opened)});
      continue;
    }
    DCPKV_RETURN_IF_ERROR(opened);
    DCPKV_ASSIGN_OR_RETURN(std::vector<std::string> ids, store->ListManifestIds());
    for (const std::string& id : ids) {
      StatusOr<ManifestRecord> record = store->GetManifest(id);
      StatusOr<Metadata> md = record.ok() ? DecodeMetadata(record->payload) : record.status();
      if (!md.ok()) {
        Status s = md.status().WithContext("manifest of \"" + id + "\" in " + store->directory());
        if (damaged == nullptr) return s;
        damaged->push_back({id, rank, std::move(s)});
        continue;
      }
      CheckpointSummary summary{id,
                                record->committed_unix_micros,
                                md->world_size,
                                rank,
                                md->entries.size(),
                                md->logical_bytes(),
                                md->stored_bytes,
                                md->base_checkpoint_id,
                                md->tags};
      if (!md->per_rank_commit) {
        out.push_back(summary);
        continue;
      }
      auto& [total, fqns] = parts[id];
      if (part_count[id]++ == 0) total = summary;
      total.coordinator_rank = std::min(total.coordinator_rank, rank);
      total.committed_unix_micros =
          std::max(total.committed_unix_micros, summary.committed_unix_micros);
      for (const auto& [fqn, entry] : md->entries) fqns.insert(fqn);
      if (part_count[id] > 1) {
        total.logical_bytes += summary.logical_bytes;
        total.stored_bytes += summary.stored_bytes;
      }
    }
  }
  for (auto& [id, entry] : parts) {
    auto& [total, fqns] = entry;
    if (part_count[id] != total.world_size) continue;  // incomplete: not committed
    total.num_tensors = fqns.size();
    out.push_back(total);
  }
  std::sort(out.begin(), out.end(), [](const CheckpointSummary& a, const CheckpointSummary& b) {
    return std::tie(a.committed_unix_micros, a.checkpoint_id) <
           std::tie(b.committed_unix_micros, b.checkpoint_id);
  });
  return out;
}

StatusOr<std::string> ResolveCheckpointId(const std::string& root, std::string_view checkpoint_id) {
  if (checkpoint_id != "latest") return std::string(checkpoint_id);
  DCPKV_ASSIGN_OR_RETURN(std::vector<CheckpointSummary> all, ListCommittedCheckpoints(root));
  if (all.empty()) return NotFoundError("no committed checkpoint under " + root + " (\"latest\")");
  return all.back().checkpoint_id;
}

StatusOr<Metadata> ReadCommittedMetadata(const std::string& root, std::string_view checkpoint_id) {
  DCPKV_ASSIGN_OR_RETURN(std::string id, ResolveCheckpointId(root, checkpoint_id));
  KvStorageReader reader(KvStorageOptions{root, {}});
  DCPKV_RETURN_IF_ERROR(reader.Reset(id));
  return reader.ReadMetadata();
}

std::string HumanBytes(uint64_t bytes) {
  static const char* const kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
  double v = static_cast<double>(bytes);
  int unit = 0;
  while (v >= 1024 && unit < 5) {
    v /= 1024;
    ++unit;
  }
  char buf[32];
  if (unit == 0) {
    std::snprintf(buf, sizeof(buf), "%llu B", static_cast<unsigned long long>(bytes));
  } else {
    std::snprintf(buf, sizeof(buf), "%.1f %s", v, kUnits[unit]);
  }
  return buf;
}

}  // namespace dcpkv

// Metadata: a checkpoint's table of contents (DCP's Metadata).
//
// For every fqn: its dtype, global shape and the shards that were saved, each with its place in
// the global tensor and the rank whose database holds it. A bytes entry is an fqn of dtype kBytes
// with global shape {size} and one shard at offset {0}. The Metadata is built by the coordinator
// from the global plan and committed as the checkpoint's manifest (store/metadata_codec.h has the
// encoding; docs/format.md every byte of it).
#ifndef DCPKV_METADATA_H_
#define DCPKV_METADATA_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "dcpkv/dtype.h"
#include "dcpkv/export.h"
#include "dcpkv/tensor.h"

namespace dcpkv {

// One stored chunk of a saved shard. A shard's chunks follow each other from byte 0 in order;
// a chunk of an incremental checkpoint that equals the chunk at the same place in an earlier
// checkpoint is not stored again but refers to where that one is stored.
struct DCPKV_EXPORT SavedChunk {
  uint64_t length = 0;    // payload bytes
  uint64_t hash_low = 0;  // XXH3-128 of the payload, low and high 64 bits
  uint64_t hash_high = 0;
  // The checkpoint under whose keys the chunk is stored (same fqn, shard offsets and byte
  // offset); empty: this checkpoint. And the rank of the database holding it.
  std::string source;
  int32_t source_rank = 0;

  friend bool operator==(const SavedChunk&, const SavedChunk&) = default;
};

// One saved shard of a tensor (DCP's ChunkStorageMetadata plus its storage location).
struct DCPKV_EXPORT SavedShard {
  Shape offsets;        // N-d offsets in the global tensor
  Shape sizes;          // N-d sizes
  int32_t rank = 0;     // rank of the database (rank-NNNNN directory) that holds its chunks
  uint64_t bytes = 0;   // payload bytes (product(sizes) * element size)
  uint32_t chunks = 0;  // number of stored chunks (0 until the write results are known)
  // Every chunk, in byte order (chunk_list.size() == chunks), once the write results are known;
  // empty in manifests written before chunks were recorded.
  std::vector<SavedChunk> chunk_list;

  // True if every chunk is stored under the checkpoint's own keys.
  bool self_contained() const {
    for (const SavedChunk& c : chunk_list) {
      if (!c.source.empty()) return false;
    }
    return true;
  }

  friend bool operator==(const SavedShard& a, const SavedShard& b) {
    return a.offsets == b.offsets && a.sizes == b.sizes && a.rank == b.rank && a.bytes == b.bytes &&
           a.chunks == b.chunks && a.chunk_list == b.chunk_list;
  }
};

// How a bytes entry's payload is encoded. Numeric values are stored: DO NOT CHANGE.
enum class BytesEncoding : uint8_t {
  kRaw = 0,        // the bytes as saved (the C++ API, dcpkv's Python API)
  kTorchSave = 1,  // a torch.save payload (torch.distributed.checkpoint's bytes entries)
};

// torch.distributed.checkpoint's TensorProperties of an entry saved through dcpkv.torch.
struct DCPKV_EXPORT TorchTensorProperties {
  std::string layout = "strided";                   // torch.layout, without "torch."
  std::string memory_format = "contiguous_format";  // torch.memory_format, without "torch."
  bool requires_grad = false;
  bool pin_memory = false;
  bool has_strides = false;  // TensorProperties.strides is not None
  std::vector<int64_t> strides;
  friend bool operator==(const TorchTensorProperties&, const TorchTensorProperties&) = default;
};

// One element of the path of a flattened name in the nested state dict it came from: a dict
// key, or (index >= 0) a list index.
struct DCPKV_EXPORT TorchPathElement {
  std::string key;
  int64_t index = -1;
  friend bool operator==(const TorchPathElement&, const TorchPathElement&) = default;
};

// The parts of a torch.distributed.checkpoint Metadata that are not tensors' places (a
// checkpoint saved through dcpkv.torch.KVStorageWriter).
struct DCPKV_EXPORT TorchDcpMetadata {
  std::string version;  // Metadata.version ("" for None)
  // DefaultSavePlanner's planner_data: each flattened fqn's path in the nested state dict.
  bool has_flatten_mapping = false;
  std::map<std::string, std::vector<TorchPathElement>> flatten_mapping;
  // Metadata.storage_meta (StorageMeta), if set.
  bool has_storage_meta = false;
  std::string storage_checkpoint_id;
  std::string save_id;
  std::string load_id;
  std::vector<std::string> modules;
  friend bool operator==(const TorchDcpMetadata&, const TorchDcpMetadata&) = default;
};

// What was saved under one fqn.
struct DCPKV_EXPORT EntryMetadata {
  DType dtype = DType::kFloat32;  // kBytes for a bytes entry
  Shape global_shape;
  std::vector<SavedShard> shards;  // sorted by offsets
  // torch.distributed.checkpoint's TensorProperties: absent unless saved through DCP
  // (dcpkv.torch).
  std::optional<TorchTensorProperties> torch_properties;
  // How the payload is encoded (bytes entries only; kRaw for tensors).
  BytesEncoding bytes_encoding = BytesEncoding::kRaw;

  bool is_bytes() const { return dtype == DType::kBytes; }
  friend bool operator==(const EntryMetadata& a, const EntryMetadata& b) {
    return a.dtype == b.dtype && a.global_shape == b.global_shape && a.shards == b.shards &&
           a.torch_properties == b.torch_properties && a.bytes_encoding == b.bytes_encoding;
  }
};

struct DCPKV_EXPORT Metadata {
  std::string checkpoint_id;
  int32_t world_size = 1;        // ranks of the process group that saved
  int32_t coordinator_rank = 0;  // its database holds the manifest
  int64_t committed_unix_micros = 0;
  std::map<std::string, EntryMetadata> entries;  // by fqn
  // Saved with use_collectives=false: each rank committed its own part (a manifest in its own
  // database, coordinator_rank = that rank); a load merges the world_size parts.
  bool per_rank_commit = false;
  // Incremental saves: the checkpoint whose chunks were compared with this one's (empty for a
  // full save), and the payload bytes this checkpoint stored under its own keys (the rest are
  // references to earlier checkpoints' chunks).
  std::string base_checkpoint_id;
  uint64_t stored_bytes = 0;
  // User tags ("step" -> "1000", "note" -> "...", "keep" -> "" protects from retention).
  std::map<std::string, std::string> tags;
  // What a torch.distributed.checkpoint Metadata holds besides the tensors' places: absent
  // unless saved through dcpkv.torch.
  std::optional<TorchDcpMetadata> torch_dcp;

  // Sum of the bytes of every saved shard.
  uint64_t logical_bytes() const;

  friend bool operator==(const Metadata& a, const Metadata& b) {
    return a.checkpoint_id == b.checkpoint_id && a.world_size == b.world_size &&
           a.coordinator_rank == b.coordinator_rank &&
           a.committed_unix_micros == b.committed_unix_micros && a.entries == b.entries &&
           a.per_rank_commit == b.per_rank_commit && a.base_checkpoint_id == b.base_checkpoint_id &&
           a.stored_bytes == b.stored_bytes && a.tags == b.tags && a.torch_dcp == b.torch_dcp;
  }
};

}  // namespace dcpkv

#endif  // DCPKV_METADATA_H_

// Plans: what each rank writes on save (SavePlan of WriteItems) and reads on load (LoadPlan of
// ReadItems), as in DCP. Plans travel between ranks through the process group; their wire
// encoding is in core/include/dcpkv/core/plan_codec.h.
#ifndef DCPKV_PLAN_H_
#define DCPKV_PLAN_H_

#include <cstdint>
#include <string>
#include <vector>

#include "dcpkv/dtype.h"
#include "dcpkv/export.h"
#include "dcpkv/metadata.h"
#include "dcpkv/tensor.h"

namespace dcpkv {

// Numeric values travel in plans: DO NOT CHANGE.
enum class WriteItemType : uint8_t {
  kTensor = 0,  // a whole dense tensor (offsets all zero, sizes == global_shape)
  kShard = 1,   // one local shard of a sharded tensor
  kBytes = 2,   // a bytes entry
};

// One thing to write: a whole tensor, one shard, or a bytes entry. (fqn, offsets) identifies it;
// the same identity on several ranks means the item is replicated.
struct DCPKV_EXPORT WriteItem {
  std::string fqn;
  WriteItemType type = WriteItemType::kTensor;
  DType dtype = DType::kFloat32;
  Shape global_shape;  // {size} for bytes
  Shape offsets;       // in the global tensor; {0} for bytes
  Shape sizes;         // {size} for bytes

  // product(sizes) * element size. REQUIRES: a validated item.
  uint64_t nbytes() const;

  friend bool operator==(const WriteItem& a, const WriteItem& b) {
    return a.fqn == b.fqn && a.type == b.type && a.dtype == b.dtype &&
           a.global_shape == b.global_shape && a.offsets == b.offsets && a.sizes == b.sizes;
  }
};

struct DCPKV_EXPORT SavePlan {
  std::vector<WriteItem> items;
  std::string planner_data;  // private to the SavePlanner
  std::string storage_data;  // private to the StorageWriter

  friend bool operator==(const SavePlan& a, const SavePlan& b) {
    return a.items == b.items && a.planner_data == b.planner_data &&
           a.storage_data == b.storage_data;
  }
};

// One thing to read: the overlap between a saved shard and a shard this rank requests.
struct DCPKV_EXPORT ReadItem {
  std::string fqn;
  WriteItemType type = WriteItemType::kTensor;  // kBytes for bytes entries
  DType dtype = DType::kFloat32;
  Shape dest_offsets;     // global offsets of the requested (local) shard
  SavedShard source;      // the saved shard to read from (its rank, offsets, sizes)
  Shape overlap_offsets;  // global offsets of the overlap
  Shape overlap_sizes;    // sizes of the overlap

  friend bool operator==(const ReadItem& a, const ReadItem& b) {
    return a.fqn == b.fqn && a.type == b.type && a.dtype == b.dtype &&
           a.dest_offsets == b.dest_offsets && a.source == b.source &&
           a.overlap_offsets == b.overlap_offsets && a.overlap_sizes == b.overlap_sizes;
  }
};

struct DCPKV_EXPORT LoadPlan {
  std::vector<ReadItem> items;
  std::string planner_data;
  std::string storage_data;

  friend bool operator==(const LoadPlan& a, const LoadPlan& b) {
    return a.items == b.items && a.planner_data == b.planner_data &&
           a.storage_data == b.storage_data;
  }
};

// What a storage writer reports for one written item (DCP's WriteResult).
struct DCPKV_EXPORT WriteResult {
  std::string fqn;
  Shape offsets;
  int32_t rank = 0;     // whose database holds it
  uint64_t bytes = 0;   // payload bytes written
  uint32_t chunks = 0;  // chunks of the shard (written, or referring to a base checkpoint's)
  // Every chunk of the shard, in byte order (empty if the writer does not record them).
  std::vector<SavedChunk> chunk_list;

  friend bool operator==(const WriteResult& a, const WriteResult& b) {
    return a.fqn == b.fqn && a.offsets == b.offsets && a.rank == b.rank && a.bytes == b.bytes &&
           a.chunks == b.chunks && a.chunk_list == b.chunk_list;
  }
};

}  // namespace dcpkv

#endif  // DCPKV_PLAN_H_

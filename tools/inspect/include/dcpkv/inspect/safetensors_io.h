// Export of a committed checkpoint to one consolidated safetensors file, and import of a
// safetensors file as a checkpoint (`dcpkv export` / `dcpkv import`). Both stream: memory stays
// bounded by the slab size, whatever the checkpoint's size.
#ifndef DCPKV_INSPECT_SAFETENSORS_IO_H_
#define DCPKV_INSPECT_SAFETENSORS_IO_H_

#include <cstdint>
#include <string>

#include "dcpkv/inspect/store_view.h"
#include "dcpkv/inspect/tensor_stream.h"
#include "dcpkv/inspect/verify.h"
#include "dcpkv/metadata.h"
#include "dcpkv/status.h"

namespace dcpkv::inspect {

struct ExportSummary {
  std::string checkpoint_id;  // resolved
  uint64_t tensors = 0;       // bytes entries included
  uint64_t file_bytes = 0;
};

// Writes every fqn of checkpoint `id_or_latest`, in fqn order, each assembled from all ranks'
// shards, to `path` (created atomically; an existing file is replaced). The header's
// "__metadata__" is {"format": "pt"} plus the list of bytes entries, so exporting the import of
// an exported file reproduces it byte for byte.
StatusOr<ExportSummary> ExportSafetensors(StoreView& view, const std::string& id_or_latest,
                                          const std::string& path,
                                          const ProgressCallback& progress = nullptr,
                                          uint64_t max_slab_bytes = kDefaultSlabBytes);

// Saves the tensors of safetensors file `path` as checkpoint `checkpoint_id` of the store at
// `root` (created if missing), as one rank: each tensor is split into shards of at most
// `max_shard_bytes` (whole rows where they fit) read from the file one at a time. Bytes entries
// listed in the file's metadata become bytes entries; other "__metadata__" is not kept.
// ALREADY_EXISTS if the checkpoint is committed; INVALID_ARGUMENT for a malformed file or a
// tensor name that is not a valid fqn.
StatusOr<Metadata> ImportSafetensors(const std::string& path, const std::string& root,
                                     const std::string& checkpoint_id,
                                     const ProgressCallback& progress = nullptr,
                                     uint64_t max_shard_bytes = kDefaultSlabBytes);

}  // namespace dcpkv::inspect

#endif  // DCPKV_INSPECT_SAFETENSORS_IO_H_

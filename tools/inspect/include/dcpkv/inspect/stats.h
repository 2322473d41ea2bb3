// Per-tensor statistics of a committed checkpoint, for `dcpkv stats`: computed over the global
// tensor (all ranks' shards), streamed, so memory stays bounded whatever the tensor's size.
#ifndef DCPKV_INSPECT_STATS_H_
#define DCPKV_INSPECT_STATS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "dcpkv/inspect/store_view.h"
#include "dcpkv/inspect/verify.h"
#include "dcpkv/status.h"

namespace dcpkv::inspect {

struct TensorStats {
  std::string fqn;
  DType dtype = DType::kFloat32;
  Shape shape;
  uint64_t count = 0;  // elements (bytes for a bytes entry)
  // Numeric tensors only (bytes entries have none of these):
  uint64_t nan = 0;
  uint64_t inf = 0;    // +inf and -inf
  uint64_t zeros = 0;  // +0 and -0
  // Over the finite values; NaN when there are none (std also when there is only one).
  double min = 0;
  double max = 0;
  double mean = 0;
  double std = 0;  // sample standard deviation (n - 1 in the denominator), as torch.std
  // The first `head` values in row-major order (as doubles).
  std::vector<double> head;
};

// Statistics of the fqns in `fqns` (all if empty; NOT_FOUND naming an fqn the checkpoint lacks)
// of the committed checkpoint `id_or_latest`, each with its first `head` values.
StatusOr<std::vector<TensorStats>> ComputeStats(StoreView& view, const std::string& id_or_latest,
                                                const std::vector<std::string>& fqns,
                                                uint64_t head = 0,
                                                const ProgressCallback& progress = nullptr);

}  // namespace dcpkv::inspect

#endif  // DCPKV_INSPECT_STATS_H_

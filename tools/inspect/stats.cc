#include "dcpkv/inspect/stats.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "dcpkv/inspect/tensor_stream.h"
#include "dcpkv/inspect/values.h"

namespace dcpkv::inspect {
namespace {

// Running count, mean and sum of squared deviations, merged a block at a time (Chan et al.),
// which stays accurate over billions of values where a plain sum of squares would not.
struct Moments {
  uint64_t n = 0;
  double mean = 0;
  double m2 = 0;

  void Merge(uint64_t nb, double mean_b, double m2_b) {
    if (nb == 0) return;
    const uint64_t total = n + nb;
    const double delta = mean_b - mean;
    mean += delta * static_cast<double>(nb) / static_cast<double>(total);
    m2 += m2_b + delta * delta * static_cast<double>(n) * static_cast<double>(nb) /
                     static_cast<double>(total);
    n = total;
  }
};

Status Accumulate(TensorStream& stream, uint64_t head, TensorStats* stats,
                  const std::function<void(uint64_t)>& advance) {
  const bool numeric = stats->dtype != DType::kBytes;
  const size_t element = ElementSize(stats->dtype);
  Moments moments;
  double lo = std::numeric_limits<double>::infinity();
  double hi = -std::numeric_limits<double>::infinity();
  std::vector<double> values;
  while (!stream.done()) {
    DCPKV_ASSIGN_OR_RETURN(std::span<const uint8_t> slab, stream.Next());
    advance(slab.size());
    const size_t n = slab.size() / element;
    values.resize(n);
    ElementsToDouble(numeric ? stats->dtype : DType::kUInt8, slab.data(), n, values.data());
    for (size_t i = 0; i < n && stats->head.size() < head; ++i) stats->head.push_back(values[i]);
    if (!numeric) continue;
    uint64_t finite = 0;
    double sum = 0;
    for (double v : values) {
      if (std::isnan(v)) {
        ++stats->nan;
      } else if (std::isinf(v)) {
        ++stats->inf;
      } else {
        stats->zeros += v == 0;
        lo = std::min(lo, v);
        hi = std::max(hi, v);
        sum += v;
        ++finite;
      }
    }
    if (finite == 0) continue;
    const double block_mean = sum / static_cast<double>(finite);
    double block_m2 = 0;
    for (double v : values) {
      if (std::isfinite(v)) block_m2 += (v - block_mean) * (v - block_mean);
    }
    moments.Merge(finite, block_mean, block_m2);
  }
  if (!numeric) return Status::Ok();
  const double nan = std::numeric_limits<double>::quiet_NaN();
  stats->min = moments.n > 0 ? lo : nan;
  stats->max = moments.n > 0 ? hi : nan;
  stats->mean = moments.n > 0 ? moments.mean : nan;
  stats->std = moments.n > 1 ? std::sqrt(moments.m2 / static_cast<double>(moments.n - 1)) : nan;
  return Status::Ok();
}

}  // namespace

StatusOr<std::vector<TensorStats>> ComputeStats(StoreView& view, const std::string& id_or_latest,
                                                const std::vector<std::string>& fqns, uint64_t head,
                                                const ProgressCallback& progress) {
  DCPKV_ASSIGN_OR_RETURN(const CheckpointListing* listing, view.Resolve(id_or_latest));
  const std::string id = listing->checkpoint_id;
  DCPKV_ASSIGN_OR_RETURN(Metadata md, view.ReadMetadata(id));
  std::vector<std::string> selected = fqns;
  if (selected.empty()) {
    for (const auto& [fqn, entry] : md.entries) selected.push_back(fqn);
  }
  uint64_t total = 0;
  for (const std::string& fqn : selected) {
    auto it = md.entries.find(fqn);
    if (it == md.entries.end()) {
      return NotFoundError("checkpoint \"" + id + "\" has no fqn \"" + fqn + "\"");
    }
    for (const SavedShard& s : it->second.shards) total += s.bytes;
  }
  uint64_t done = 0;
  auto advance = [&](uint64_t bytes) {
    done += bytes;
    if (progress) progress(done, total);
  };
  std::vector<TensorStats> out;
  for (const std::string& fqn : selected) {
    const EntryMetadata& entry = md.entries.at(fqn);
    TensorStats stats;
    stats.fqn = fqn;
    stats.dtype = entry.dtype;
    stats.shape = entry.global_shape;
    TensorStream stream(&view, id, fqn, entry);
    stats.count = stream.total_bytes() / ElementSize(entry.dtype);
    DCPKV_RETURN_IF_ERROR(Accumulate(stream, head, &stats, advance));
    out.push_back(std::move(stats));
  }
  return out;
}

}  // namespace dcpkv::inspect

#include "dcpkv/inspect/tensor_stream.h"

#include <algorithm>
#include <functional>

#include "dcpkv/core/box.h"
#include "dcpkv/store/saved_shard_reader.h"

namespace dcpkv::inspect {

SlabCursor::SlabCursor(Shape shape, size_t element_size, uint64_t max_slab_bytes)
    : shape_(std::move(shape)) {
  const size_t ndim = shape_.size();
  inner_.assign(ndim, 1);
  for (size_t d = ndim; d-- > 1;) inner_[d - 1] = inner_[d] * shape_[d];
  for (uint64_t n : shape_) total_elements_ *= n;  // fits: callers pass validated shapes
  const uint64_t budget = std::max<uint64_t>(max_slab_bytes / std::max<size_t>(element_size, 1), 1);
  while (slab_dim_ + 1 < ndim && inner_[slab_dim_] > budget) ++slab_dim_;
  if (ndim > 0)
    slab_rows_ = std::max<uint64_t>(budget / std::max<uint64_t>(inner_[slab_dim_], 1), 1);
}

void SlabCursor::Next(Shape* offsets, Shape* sizes) {
  const size_t ndim = shape_.size();
  offsets->assign(ndim, 0);
  *sizes = shape_;
  if (ndim == 0) {  // a scalar: one slab of one element
    next_element_ = 1;
    return;
  }
  uint64_t rest = next_element_;
  for (size_t d = 0; d <= slab_dim_; ++d) {
    (*offsets)[d] = rest / inner_[d];
    rest %= inner_[d];
    (*sizes)[d] = 1;
  }
  (*sizes)[slab_dim_] = std::min(slab_rows_, shape_[slab_dim_] - (*offsets)[slab_dim_]);
  next_element_ += (*sizes)[slab_dim_] * inner_[slab_dim_];
}

TensorStream::TensorStream(StoreView* view, std::string checkpoint_id, std::string fqn,
                           EntryMetadata entry, uint64_t max_slab_bytes)
    : view_(view),
      checkpoint_id_(std::move(checkpoint_id)),
      fqn_(std::move(fqn)),
      entry_(std::move(entry)),
      element_size_(ElementSize(entry_.dtype)),
      cursor_(entry_.global_shape, element_size_, max_slab_bytes) {
  total_bytes_ = cursor_.total_elements() * element_size_;
}

TensorStream::~TensorStream() = default;

StatusOr<std::span<const uint8_t>> TensorStream::Next() {
  if (done()) return std::span<const uint8_t>();
  Box slab;
  cursor_.Next(&slab.offsets, &slab.sizes);
  const uint64_t slab_bytes = Volume(slab) * element_size_;
  slab_.resize(slab_bytes);
  uint64_t covered = 0;
  for (const SavedShard& shard : entry_.shards) {
    const Box shard_box{shard.offsets, shard.sizes};
    Box overlap;
    if (!Intersect(slab, shard_box, &overlap)) continue;
    DCPKV_ASSIGN_OR_RETURN(auto range, ByteRange(shard_box, overlap, element_size_));
    const uint64_t overlap_bytes = Volume(overlap) * element_size_;
    if (range.second - range.first != overlap_bytes) {
      return InternalError("tensor stream of \"" + fqn_ + "\": overlap " + BoxToString(overlap) +
                           " is not contiguous in its shard");
    }
    scratch_.resize(overlap_bytes);
    // The shard's chunks may be stored in several databases (an incremental checkpoint refers to
    // earlier checkpoints' chunks); each run of them is read on its own. An IO_ERROR may come
    // from a file a live writer's compaction replaced after the view opened the database: reopen
    // once and read again.
    DCPKV_RETURN_IF_ERROR(ReadSavedShardRange(
        checkpoint_id_, fqn_, entry_.dtype, shard, range.first, range.second, scratch_.data(),
        [this](int rank, const std::function<Status(ChunkStore*)>& read) -> Status {
          Status s;
          for (int pass = 0; pass < 2; ++pass) {
            if (pass > 0) view_->ReopenRankStore(rank).IgnoreError();
            DCPKV_ASSIGN_OR_RETURN(ChunkStore * store, view_->RankStore(rank));
            s = read(store);
            if (s.code() != StatusCode::kIOError) break;
          }
          return s;
        }));
    CopyBox(scratch_.data(), overlap, slab_.data(), slab, overlap, element_size_);
    covered += overlap_bytes;
  }
  if (covered != slab_bytes) {
    return DataLossError("checkpoint \"" + checkpoint_id_ + "\" fqn \"" + fqn_ + "\": its shards " +
                         (covered < slab_bytes ? "leave a gap in " : "overlap in ") +
                         BoxToString(slab));
  }
  position_ += slab_bytes;
  return std::span<const uint8_t>(slab_.data(), slab_.size());
}

}  // namespace dcpkv::inspect

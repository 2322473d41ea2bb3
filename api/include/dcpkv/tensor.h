// Tensors as dcpkv sees them: dense, contiguous, row-major blocks of elements in CPU memory.
//
// A Tensor is a view: it points at memory it may or may not own. Tensors made with Wrap() point
// at the caller's memory (model parameters, optimizer state), which must outlive every use of
// the view; save reads it and load writes into it in place. Tensors made with Allocate() own
// their (zero-filled) memory, shared between copies of the Tensor.
//
// A ShardedTensor is one rank's part of a larger global tensor: its dtype, the global shape and
// the shards this rank holds, each with its N-d offsets in the global tensor.
//
// Thread safety: Tensor objects are values; the memory they view is not synchronized.
#ifndef DCPKV_TENSOR_H_
#define DCPKV_TENSOR_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "dcpkv/dtype.h"
#include "dcpkv/status.h"

namespace dcpkv {

using Shape = std::vector<uint64_t>;

// Number of elements of a shape (1 for a scalar shape {}), or an error if it overflows.
StatusOr<uint64_t> NumElements(const Shape& shape);
// "[2, 3, 4]"
std::string ShapeToString(const Shape& shape);

class Tensor {
 public:
  // An empty (invalid) tensor: dtype kBytes, no data.
  Tensor() = default;

  // A view of `data`, which must hold NumElements(shape) * ElementSize(dtype) bytes and stay
  // alive while the view is used.
  static Tensor Wrap(DType dtype, Shape shape, void* data);
  // A zero-filled tensor that owns its memory.
  static Tensor Allocate(DType dtype, Shape shape);

  DType dtype() const { return dtype_; }
  const Shape& shape() const { return shape_; }
  uint64_t numel() const { return numel_; }
  uint64_t nbytes() const { return numel_ * ElementSize(dtype_); }
  void* data() const { return data_; }
  bool defined() const { return data_ != nullptr || numel_ == 0; }

  template <typename T>
  T* data_as() const {
    return static_cast<T*>(data_);
  }

  // Checks dtype, shape and that data is present when numel() > 0.
  Status Validate() const;

 private:
  DType dtype_ = DType::kBytes;
  Shape shape_;
  uint64_t numel_ = 0;
  void* data_ = nullptr;
  std::shared_ptr<void> owner_;  // set by Allocate()
};

// One shard of a ShardedTensor: its offsets in the global tensor and its local data (whose
// shape gives the shard's sizes).
struct Shard {
  Shape offsets;
  Tensor tensor;
};

struct ShardedTensor {
  DType dtype = DType::kFloat32;
  Shape global_shape;
  std::vector<Shard> local_shards;

  // Checks that every shard has this dtype and rank, lies within global_shape, and that the
  // local shards do not overlap each other.
  Status Validate() const;
};

// An opaque bytes entry (step counter, RNG state, a config): saved and loaded whole.
struct Bytes {
  std::string data;
};

}  // namespace dcpkv

#endif  // DCPKV_TENSOR_H_

#include "dcpkv/tensor.h"

#include <cstdlib>
#include <cstring>

namespace dcpkv {

StatusOr<uint64_t> NumElements(const Shape& shape) {
  if (shape.size() > kMaxDims) {
    return InvalidArgumentError("shape has " + std::to_string(shape.size()) +
                                " dimensions; dcpkv supports at most " + std::to_string(kMaxDims));
  }
  uint64_t n = 1;
  for (uint64_t d : shape) {
    if (__builtin_mul_overflow(n, d, &n)) {
      return InvalidArgumentError("shape " + ShapeToString(shape) + " overflows 64 bits");
    }
  }
  return n;
}

std::string ShapeToString(const Shape& shape) {
  std::string out = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) out += ", ";
    out += std::to_string(shape[i]);
  }
  return out + "]";
}

std::string Device::ToString() const {
  return is_cuda() ? "cuda:" + std::to_string(index) : std::string("cpu");
}

Tensor Tensor::Wrap(DType dtype, Shape shape, void* data, Device device) {
  Tensor t;
  t.dtype_ = dtype;
  t.numel_ = NumElements(shape).ok() ? *NumElements(shape) : 0;
  t.shape_ = std::move(shape);
  t.data_ = data;
  t.device_ = device;
  return t;
}

Tensor Tensor::WrapStrided(DType dtype, Shape shape, std::vector<uint64_t> strides, void* data,
                           Device device) {
  Tensor t = Wrap(dtype, std::move(shape), data, device);
  t.strides_ = std::move(strides);
  return t;
}

std::vector<uint64_t> Tensor::strides() const {
  if (!strides_.empty() || shape_.empty()) return strides_;
  std::vector<uint64_t> row_major(shape_.size(), 1);
  for (size_t d = shape_.size() - 1; d > 0; --d) row_major[d - 1] = row_major[d] * shape_[d];
  return row_major;
}

bool Tensor::is_contiguous() const {
  if (strides_.empty()) return true;
  uint64_t expected = 1;
  for (size_t d = shape_.size(); d-- > 0;) {
    if (shape_[d] != 1 && strides_[d] != expected) return numel_ == 0;
    expected *= shape_[d];
  }
  return true;
}

Tensor Tensor::WrapCuda(DType dtype, Shape shape, void* device_ptr, int device_index) {
  return Wrap(dtype, std::move(shape), device_ptr, Device::Cuda(device_index));
}

Tensor Tensor::Allocate(DType dtype, Shape shape) {
  Tensor t = Wrap(dtype, std::move(shape), nullptr);
  size_t bytes = t.nbytes();
  if (bytes > 0) {
    void* p = std::calloc(bytes, 1);
    t.owner_ = std::shared_ptr<void>(p, [](void* q) { std::free(q); });
    t.data_ = p;
  }
  return t;
}

Status Tensor::Validate() const {
  if (!IsValidDType(static_cast<uint8_t>(dtype_)) || dtype_ == DType::kBytes) {
    return InvalidArgumentError("tensor has invalid dtype " +
                                std::to_string(static_cast<int>(dtype_)));
  }
  StatusOr<uint64_t> n = NumElements(shape_);
  if (!n.ok()) return n.status();
  uint64_t bytes;
  if (__builtin_mul_overflow(*n, ElementSize(dtype_), &bytes)) {
    return InvalidArgumentError("tensor of shape " + ShapeToString(shape_) + " overflows 64 bits");
  }
  if (device_.kind != Device::kCpu && device_.kind != Device::kCuda) {
    return InvalidArgumentError("tensor has invalid device kind " +
                                std::to_string(static_cast<int>(device_.kind)));
  }
  if (device_.is_cuda() && device_.index < 0) {
    return InvalidArgumentError("tensor is on " + device_.ToString() +
                                ": a CUDA device index is not negative");
  }
  if (data_ == nullptr && *n > 0) {
    return InvalidArgumentError("tensor of shape " + ShapeToString(shape_) + " has no data");
  }
  if (!strides_.empty()) {
    if (strides_.size() != shape_.size()) {
      return InvalidArgumentError("tensor of shape " + ShapeToString(shape_) + " has " +
                                  std::to_string(strides_.size()) + " strides");
    }
    // The byte offset of the last element must fit 64 bits.
    uint64_t last = 0;
    bool overflow = false;
    for (size_t d = 0; d < shape_.size() && *n > 0; ++d) {
      uint64_t step;
      overflow = overflow || __builtin_mul_overflow(shape_[d] - 1, strides_[d], &step) ||
                 __builtin_add_overflow(last, step, &last);
    }
    if (overflow || __builtin_mul_overflow(last, ElementSize(dtype_), &last)) {
      return InvalidArgumentError("tensor of shape " + ShapeToString(shape_) + " with strides " +
                                  ShapeToString(strides_) + " overflows 64 bits");
    }
  }
  return Status::Ok();
}

ShardedTensor ShardedTensor::FromLocal(Tensor local, Shape global_shape, Shape offsets) {
  ShardedTensor st;
  st.dtype = local.dtype();
  st.global_shape = std::move(global_shape);
  st.local_shards.push_back(Shard{std::move(offsets), std::move(local)});
  return st;
}

namespace {

bool BoxesOverlap(const Shape& ao, const Shape& as, const Shape& bo, const Shape& bs) {
  for (size_t d = 0; d < ao.size(); ++d) {
    if (as[d] == 0 || bs[d] == 0) return false;
    if (ao[d] + as[d] <= bo[d] || bo[d] + bs[d] <= ao[d]) return false;
  }
  return true;
}

}  // namespace

Status ShardedTensor::Validate() const {
  if (!IsValidDType(static_cast<uint8_t>(dtype)) || dtype == DType::kBytes) {
    return InvalidArgumentError("sharded tensor has invalid dtype " +
                                std::to_string(static_cast<int>(dtype)));
  }
  const size_t ndim = global_shape.size();
  DCPKV_RETURN_IF_ERROR(NumElements(global_shape).status());
  for (size_t i = 0; i < local_shards.size(); ++i) {
    const Shard& s = local_shards[i];
    DCPKV_RETURN_IF_ERROR(s.tensor.Validate());
    if (s.tensor.dtype() != dtype) {
      return InvalidArgumentError("shard " + std::to_string(i) + " has dtype " +
                                  std::string(DTypeName(s.tensor.dtype())) +
                                  " but the sharded tensor is " + std::string(DTypeName(dtype)));
    }
    if (s.offsets.size() != ndim || s.tensor.shape().size() != ndim) {
      return InvalidArgumentError(
          "shard " + std::to_string(i) + " at offsets " + ShapeToString(s.offsets) +
          " with shape " + ShapeToString(s.tensor.shape()) + " does not have the " +
          std::to_string(ndim) + " dimensions of global shape " + ShapeToString(global_shape));
    }
    for (size_t d = 0; d < ndim; ++d) {
      uint64_t end;
      if (__builtin_add_overflow(s.offsets[d], s.tensor.shape()[d], &end) ||
          end > global_shape[d]) {
        return InvalidArgumentError("shard at offsets " + ShapeToString(s.offsets) +
                                    " with shape " + ShapeToString(s.tensor.shape()) +
                                    " exceeds global shape " + ShapeToString(global_shape));
      }
    }
    for (size_t j = 0; j < i; ++j) {
      const Shard& o = local_shards[j];
      if (BoxesOverlap(s.offsets, s.tensor.shape(), o.offsets, o.tensor.shape())) {
        return InvalidArgumentError("local shards at offsets " + ShapeToString(o.offsets) +
                                    " and " + ShapeToString(s.offsets) + " overlap");
      }
    }
  }
  return Status::Ok();
}

}  // namespace dcpkv

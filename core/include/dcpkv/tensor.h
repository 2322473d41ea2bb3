// Tensors as dcpkv sees them: dense blocks of elements, in row-major order of their shape, in CPU
// memory or in the memory of one CUDA device; contiguous, or strided views of larger buffers.
//
// A strided tensor (WrapStrided) is a view whose element at index (i0, i1, ...) lies
// i0 * strides[0] + i1 * strides[1] + ... elements past data(): a column shard of a row-major
// buffer, a transposed weight, what torch's Tensor.stride() describes. Save reads its elements
// where they lie and load writes them there, one run of contiguous bytes at a time, without a
// staging copy of the whole tensor; a strided view whose elements happen to be contiguous
// (a block of whole rows) is read and written as a contiguous one. Load refuses a destination
// in which two indices share an element (a stride of 0 on a dimension longer than 1).
//
// A Tensor is a view: it points at memory it may or may not own. Tensors made with Wrap() point
// at the caller's memory (model parameters, optimizer state), which must outlive every use of
// the view; save reads it and load writes into it in place. Tensors made with Allocate() own
// their (zero-filled) CPU memory, shared between copies of the Tensor.
//
// A CUDA tensor (WrapCuda, or Wrap with Device::Cuda) views device memory of one device: data()
// is a device pointer, never dereferenced on the host. Save copies it to host memory, load
// copies into it, and async_save's stager copies it to its staging memory, each on a stream of
// its own (docs/gpu.md); a strided CUDA view is copied by pitched copies (cudaMemcpy2DAsync)
// between its elements and packed host bytes, without a device-side copy. Work that writes a CUDA
// tensor must be complete, or enqueued on the device's legacy default stream, when save, load or a
// stager reads or writes it; work on other streams must be synchronized by the caller first. A CUDA
// tensor in a process without a usable CUDA device (or a dcpkv built without CUDA) makes save, load
// and staging fail with FAILED_PRECONDITION naming the tensor.
//
// A ShardedTensor is one rank's part of a larger global tensor: its dtype, the global shape and
// the shards this rank holds, each with its N-d offsets in the global tensor. Each shard may be
// on its own device. ShardedTensor::FromLocal builds the common one-shard case.
//
// Thread safety: Tensor objects are values; the memory they view is not synchronized.
#ifndef DCPKV_TENSOR_H_
#define DCPKV_TENSOR_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "dcpkv/dtype.h"
#include "dcpkv/export.h"
#include "dcpkv/status.h"

namespace dcpkv {

using Shape = std::vector<uint64_t>;

// Most dimensions a tensor may have (what the plan and chunk encodings carry).
constexpr size_t kMaxDims = 64;

// Number of elements of a shape (1 for a scalar shape {}), or INVALID_ARGUMENT if it overflows
// or has more than kMaxDims dimensions.
DCPKV_EXPORT StatusOr<uint64_t> NumElements(const Shape& shape);
// "[2, 3, 4]"
DCPKV_EXPORT std::string ShapeToString(const Shape& shape);

// Where a tensor's elements live.
struct DCPKV_EXPORT Device {
  enum Kind : uint8_t { kCpu = 0, kCuda = 1 };

  Kind kind = kCpu;
  // The CUDA device ordinal (as cudaSetDevice takes it); 0 for the CPU.
  int index = 0;

  static Device Cpu() { return Device{}; }
  static Device Cuda(int index) { return Device{kCuda, index}; }
  bool is_cuda() const { return kind == kCuda; }
  // "cpu" or "cuda:<index>".
  std::string ToString() const;
  friend bool operator==(const Device&, const Device&) = default;
};

class DCPKV_EXPORT Tensor {
 public:
  // An empty (invalid) tensor: dtype kBytes, no data.
  Tensor() = default;

  // A view of `data`, which must hold NumElements(shape) * ElementSize(dtype) bytes on `device`
  // and stay alive while the view is used.
  static Tensor Wrap(DType dtype, Shape shape, void* data, Device device = Device::Cpu());
  // A strided view of `data`: element (i0, i1, ...) at data + sum(i[d] * strides[d]) elements.
  // `strides` has one entry per dimension, in elements (not bytes), like torch's
  // Tensor.stride(). Every element addressed must lie in memory that stays alive while the view
  // is used. Validate() checks the strides.
  static Tensor WrapStrided(DType dtype, Shape shape, std::vector<uint64_t> strides, void* data,
                            Device device = Device::Cpu());
  // A view of device memory of CUDA device `device_index`: Wrap(..., Device::Cuda(index)).
  static Tensor WrapCuda(DType dtype, Shape shape, void* device_ptr, int device_index);
  // A zero-filled tensor that owns its (CPU) memory.
  static Tensor Allocate(DType dtype, Shape shape);

  DType dtype() const { return dtype_; }
  const Shape& shape() const { return shape_; }
  uint64_t numel() const { return numel_; }
  uint64_t nbytes() const { return numel_ * ElementSize(dtype_); }
  // A host pointer for CPU tensors, a device pointer for CUDA tensors: where element 0 lies.
  void* data() const { return data_; }
  // Strides in elements, one per dimension: those of a row-major layout unless the tensor was
  // made with WrapStrided.
  std::vector<uint64_t> strides() const;
  // True if the elements lie in row-major order without gaps (WrapStrided with the row-major
  // strides of its shape, up to dimensions of size 1, is contiguous too).
  bool is_contiguous() const;
  bool defined() const { return data_ != nullptr || numel_ == 0; }
  const Device& device() const { return device_; }
  bool is_cuda() const { return device_.is_cuda(); }

  template <typename T>
  T* data_as() const {
    return static_cast<T*>(data_);
  }

  // Checks dtype, shape, device (a CUDA index is not negative), strides (one per dimension, and
  // the last element's offset fits 64 bits) and that data is present when numel() > 0. Does not
  // check that a CUDA device is available (save and load do).
  Status Validate() const;

 private:
  DType dtype_ = DType::kBytes;
  Shape shape_;
  uint64_t numel_ = 0;
  void* data_ = nullptr;
  std::vector<uint64_t> strides_;  // empty: row-major
  Device device_;
  std::shared_ptr<void> owner_;  // set by Allocate()
};

// One shard of a ShardedTensor: its offsets in the global tensor and its local data (whose
// shape gives the shard's sizes).
struct DCPKV_EXPORT Shard {
  Shape offsets;
  Tensor tensor;
};

struct DCPKV_EXPORT ShardedTensor {
  DType dtype = DType::kFloat32;
  Shape global_shape;
  std::vector<Shard> local_shards;

  // The sharded tensor of which this rank holds `local` (any layout, any device) at `offsets`
  // of a global tensor of `global_shape`; the dtype is the local tensor's. Validate() checks
  // that the shard fits.
  static ShardedTensor FromLocal(Tensor local, Shape global_shape, Shape offsets);

  // Checks that every shard has this dtype and rank, lies within global_shape, and that the
  // local shards do not overlap each other.
  Status Validate() const;
};

// An opaque bytes entry (step counter, RNG state, a config): saved and loaded whole.
struct DCPKV_EXPORT Bytes {
  std::string data;
};

}  // namespace dcpkv

#endif  // DCPKV_TENSOR_H_

// The DLPack C ABI (dmlc/dlpack, versions 0.8 and 1.x), the part the Python binding consumes:
// what `obj.__dlpack__()` hands over in a PyCapsule named "dltensor" (DLManagedTensor) or,
// when asked with max_version=(1, 0), "dltensor_versioned" (DLManagedTensorVersioned). The
// layouts are fixed by the DLPack standard; they are spelled out here so that the binding needs
// no header beyond Python's.
#ifndef DCPKV_PYTHON_DLPACK_H_
#define DCPKV_PYTHON_DLPACK_H_

#include <cstdint>

namespace dcpkv::python {

// DLDeviceType values that dcpkv maps to its devices.
enum DLDeviceType : int32_t {
  kDLCPU = 1,
  kDLCUDA = 2,
  kDLCUDAHost = 3,  // page-locked host memory
  kDLCUDAManaged = 13,
};

// DLDataTypeCode values (DLPack 1.1 numbering; torch 2.15 and numpy 2 export these).
enum DLDataTypeCode : uint8_t {
  kDLInt = 0,
  kDLUInt = 1,
  kDLFloat = 2,
  kDLBfloat = 4,
  kDLComplex = 5,
  kDLBool = 6,
  kDLFloat8_e4m3fn = 10,
  kDLFloat8_e4m3fnuz = 11,
  kDLFloat8_e5m2 = 12,
  kDLFloat8_e5m2fnuz = 13,
  kDLFloat8_e8m0fnu = 14,
};

struct DLDevice {
  int32_t device_type;
  int32_t device_id;
};

struct DLDataType {
  uint8_t code;
  uint8_t bits;
  uint16_t lanes;
};

struct DLTensor {
  void* data;
  DLDevice device;
  int32_t ndim;
  DLDataType dtype;
  int64_t* shape;
  int64_t* strides;  // in elements; null: row-major
  uint64_t byte_offset;
};

struct DLManagedTensor {
  DLTensor dl_tensor;
  void* manager_ctx;
  void (*deleter)(DLManagedTensor* self);
};

struct DLPackVersion {
  uint32_t major;
  uint32_t minor;
};

inline constexpr uint64_t kDLFlagBitmaskReadOnly = 1;

struct DLManagedTensorVersioned {
  DLPackVersion version;
  void* manager_ctx;
  void (*deleter)(DLManagedTensorVersioned* self);
  uint64_t flags;
  DLTensor dl_tensor;
};

}  // namespace dcpkv::python

#endif  // DCPKV_PYTHON_DLPACK_H_

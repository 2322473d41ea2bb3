// The safetensors file format (Hugging Face): reading and streaming writing, no store access.
//
// A file is: an 8-byte little-endian unsigned header length N; N bytes of UTF-8 JSON, an object
// mapping each tensor name to {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}
// plus an optional "__metadata__" object of string values; then the data buffer. Offsets are
// relative to the start of the data buffer; the tensors' byte ranges are contiguous, do not
// overlap and together cover the whole buffer; each range holds its tensor in row-major order,
// little-endian. The header is padded with spaces to a multiple of 8 bytes so the buffer starts
// aligned.
//
// dcpkv dtypes map to safetensors dtypes as: float64 F64, float32 F32, float16 F16, bfloat16
// BF16, int8 I8, int16 I16, int32 I32, int64 I64, uint8 U8, bool BOOL, float8_e4m3fn F8_E4M3,
// float8_e5m2 F8_E5M2. A dcpkv bytes entry is written as a 1-d U8 tensor and listed in the
// metadata key kSafetensorsBytesEntriesKey (a JSON array of names, as a string) so that it reads
// back as a bytes entry.
//
// Thread safety: a writer or reader is used by one thread at a time.
#ifndef DCPKV_INSPECT_SAFETENSORS_H_
#define DCPKV_INSPECT_SAFETENSORS_H_

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "dcpkv/dtype.h"
#include "dcpkv/status.h"
#include "dcpkv/tensor.h"

namespace dcpkv::inspect {

// Metadata key listing the names of tensors that are dcpkv bytes entries.
inline constexpr char kSafetensorsBytesEntriesKey[] = "dcpkv.bytes_entries";

// Largest header this reader accepts (the reference implementation's limit is 100 MB).
inline constexpr uint64_t kMaxSafetensorsHeaderBytes = uint64_t{100} << 20;

// "F32" for DType::kFloat32, ...; "U8" for DType::kBytes; "" for a value that is not a DType.
std::string_view SafetensorsDTypeName(DType dtype);

// Inverse for the dtypes above (never kBytes); nullopt for any other name ("U16", "C64", ...).
std::optional<DType> DTypeFromSafetensorsName(std::string_view name);

// One tensor of a safetensors file.
struct SafetensorsTensor {
  std::string name;
  DType dtype = DType::kFloat32;  // kBytes for a bytes entry
  Shape shape;                    // {} for a scalar; {size} for a bytes entry
  uint64_t begin = 0;             // data_offsets, relative to the data buffer
  uint64_t end = 0;
};

// Writes a file front to back: the header (from the full list of tensors, known up front), then
// the tensors' bytes in the order given, appended in pieces of any size. Memory use is bounded by
// the header and the writer's buffer, not by the tensors. The file appears at `path` only when
// Finish() succeeds (written to a temporary file next to it, fsynced, renamed); a writer
// destroyed before that removes the temporary file.
class SafetensorsWriter {
 public:
  // `tensors`: name, dtype and shape of each tensor, in the order their data will be appended
  // (begin/end are ignored and computed). Names must be unique and non-empty. `metadata` goes
  // into "__metadata__" (the writer adds kSafetensorsBytesEntriesKey when there are bytes
  // entries). INVALID_ARGUMENT for a bad list; IO_ERROR if the file cannot be created.
  static StatusOr<std::unique_ptr<SafetensorsWriter>> Create(
      const std::string& path, std::vector<SafetensorsTensor> tensors,
      const std::map<std::string, std::string>& metadata);
  ~SafetensorsWriter();
  SafetensorsWriter(const SafetensorsWriter&) = delete;
  SafetensorsWriter& operator=(const SafetensorsWriter&) = delete;

  // The tensors with their computed data offsets.
  const std::vector<SafetensorsTensor>& tensors() const;
  // Total bytes of the file once finished.
  uint64_t file_size() const;

  // Appends the next `size` bytes of tensor data. INVALID_ARGUMENT past the end of the data.
  Status Append(const void* data, size_t size);
  // FAILED_PRECONDITION unless exactly all data was appended; then flushes, fsyncs, renames.
  Status Finish();

 private:
  struct Impl;
  explicit SafetensorsWriter(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Reads a file: Open parses and validates the whole header (JSON syntax, known dtypes, shapes
// whose byte size matches data_offsets without overflow, ranges contiguous from 0 to the end of
// the file, unique names); data is read on demand with pread. Every problem is INVALID_ARGUMENT
// (DATA_LOSS for a file shorter than its header says) naming the file and the tensor;
// NOT_FOUND if the file does not exist.
class SafetensorsReader {
 public:
  static StatusOr<std::unique_ptr<SafetensorsReader>> Open(const std::string& path);
  ~SafetensorsReader();
  SafetensorsReader(const SafetensorsReader&) = delete;
  SafetensorsReader& operator=(const SafetensorsReader&) = delete;

  // In the order of their data offsets (empty tensors at the same offset: by name). Bytes
  // entries (listed in the metadata) have kBytes.
  const std::vector<SafetensorsTensor>& tensors() const;
  // "__metadata__", without kSafetensorsBytesEntriesKey.
  const std::map<std::string, std::string>& metadata() const;

  // Reads bytes [offset, offset + size) of `tensor`'s data into `dest`.
  // INVALID_ARGUMENT outside the tensor; IO_ERROR / DATA_LOSS if the file cannot be read.
  Status Read(const SafetensorsTensor& tensor, uint64_t offset, void* dest, size_t size) const;

 private:
  struct Impl;
  explicit SafetensorsReader(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace dcpkv::inspect

#endif  // DCPKV_INSPECT_SAFETENSORS_H_

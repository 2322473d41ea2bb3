// The safetensors format; see safetensors.h for the layout:
//
//   offset 0      u64 little-endian N: header length in bytes
//   offset 8      N bytes of UTF-8 JSON, padded with spaces (this writer: to a multiple of 8)
//   offset 8 + N  data buffer: every tensor's bytes, contiguous, in data_offsets order
//
// The writer emits "__metadata__" first (only when non-empty), then one entry per tensor in the
// order the data is appended. The reader accepts any key order and any padding.
#include "dcpkv/inspect/safetensors.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <set>
#include <tuple>
#include <utility>

#include <nlohmann/json.hpp>

namespace dcpkv::inspect {
namespace {

using Json = nlohmann::json;

constexpr char kMetadataKey[] = "__metadata__";
constexpr size_t kLengthBytes = 8;                     // the u64 header length
constexpr size_t kHeaderAlignment = 8;                 // the data buffer starts at a multiple of 8
constexpr size_t kWriteBufferBytes = size_t{4} << 20;  // appends at least this big go direct
constexpr size_t kMaxIo = size_t{1} << 30;             // below Linux's 2 GiB limit per call

struct DTypeNameEntry {
  DType dtype;
  std::string_view name;
};
// kBytes is absent: it is written as U8 and recognized through the metadata.
constexpr DTypeNameEntry kDTypeNames[] = {
    {DType::kFloat64, "F64"},
    {DType::kFloat32, "F32"},
    {DType::kFloat16, "F16"},
    {DType::kBFloat16, "BF16"},
    {DType::kInt8, "I8"},
    {DType::kInt16, "I16"},
    {DType::kInt32, "I32"},
    {DType::kInt64, "I64"},
    {DType::kUInt8, "U8"},
    {DType::kBool, "BOOL"},
    {DType::kFloat8E4M3, "F8_E4M3"},
    {DType::kFloat8E5M2, "F8_E5M2"},
    {DType::kUInt16, "U16"},
    {DType::kUInt32, "U32"},
    {DType::kUInt64, "U64"},
    {DType::kFloat8E8M0, "F8_E8M0"},
    {DType::kComplex64, "C64"},
};

Status ErrnoError(std::string_view what, const std::string& path) {
  return IOError(std::string(what) + " " + path + ": " + std::strerror(errno));
}

std::string Quoted(const std::string& name) { return "\"" + name + "\""; }

// Byte size of a tensor, or INVALID_ARGUMENT if the shape or dtype is bad or it overflows.
StatusOr<uint64_t> TensorBytes(const SafetensorsTensor& tensor) {
  const size_t element_size = ElementSize(tensor.dtype);
  if (element_size == 0) {
    return InvalidArgumentError("invalid dtype " + std::to_string(static_cast<int>(tensor.dtype)));
  }
  DCPKV_ASSIGN_OR_RETURN(uint64_t elements, NumElements(tensor.shape));
  uint64_t bytes = 0;
  if (__builtin_mul_overflow(elements, uint64_t{element_size}, &bytes)) {
    return InvalidArgumentError("byte size of shape " + ShapeToString(tensor.shape) +
                                " overflows 64 bits");
  }
  return bytes;
}

Status WriteAll(int fd, const std::string& path, const char* data, size_t size) {
  while (size > 0) {
    const ssize_t n = write(fd, data, std::min(size, kMaxIo));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return ErrnoError("write", path);
    data += n;
    size -= static_cast<size_t>(n);
  }
  return Status::Ok();
}

// Reads exactly `size` bytes at `offset`; DATA_LOSS if the file ends first.
Status PreadAll(int fd, const std::string& path, uint64_t offset, char* data, size_t size) {
  while (size > 0) {
    const ssize_t n = pread(fd, data, std::min(size, kMaxIo), static_cast<off_t>(offset));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoError("read", path);
    if (n == 0) {
      return DataLossError(path + ": truncated: file ends before offset " +
                           std::to_string(offset + size));
    }
    data += n;
    size -= static_cast<size_t>(n);
    offset += static_cast<uint64_t>(n);
  }
  return Status::Ok();
}

// Creates `path`.tmp-<pid>-<n>, a new file (mode 0666 less the umask) next to `path`.
StatusOr<int> CreateTempFile(const std::string& path, std::string& temp_path) {
  static std::atomic<uint64_t> counter{0};
  for (int attempt = 0;; ++attempt) {
    temp_path = path + ".tmp-" + std::to_string(getpid()) + "-" + std::to_string(counter++);
    const int fd = open(temp_path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd >= 0) return fd;
    if (errno != EEXIST || attempt == 100) return ErrnoError("create", temp_path);
  }
}

Status FsyncDirectoryOf(const std::string& path) {
  std::string dir = std::filesystem::path(path).parent_path().string();
  if (dir.empty()) dir = ".";
  const int fd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return ErrnoError("open directory", dir);
  Status s;
  if (fsync(fd) != 0) s = ErrnoError("fsync directory", dir);
  close(fd);
  return s;
}

// ---- Writer helpers -------------------------------------------------------------------------

// Checks the list and the metadata, and fills in begin/end. Returns the data buffer's size.
StatusOr<uint64_t> LayOutTensors(std::vector<SafetensorsTensor>& tensors,
                                 const std::map<std::string, std::string>& metadata) {
  if (metadata.count(kSafetensorsBytesEntriesKey) != 0) {
    return InvalidArgumentError(std::string("metadata key ") + kSafetensorsBytesEntriesKey +
                                " is reserved for the writer");
  }
  std::set<std::string_view> names;
  uint64_t offset = 0;
  for (SafetensorsTensor& tensor : tensors) {
    if (tensor.name.empty()) return InvalidArgumentError("empty tensor name");
    if (tensor.name == kMetadataKey) {
      return InvalidArgumentError(std::string("tensor name ") + kMetadataKey + " is reserved");
    }
    if (!names.insert(tensor.name).second) {
      return InvalidArgumentError("duplicate tensor name " + Quoted(tensor.name));
    }
    if (tensor.dtype == DType::kBytes && tensor.shape.size() != 1) {
      return InvalidArgumentError("bytes entry " + Quoted(tensor.name) + " has shape " +
                                  ShapeToString(tensor.shape) + "; bytes entries are 1-d");
    }
    StatusOr<uint64_t> bytes = TensorBytes(tensor);
    if (!bytes.ok()) return bytes.status().WithContext("tensor " + Quoted(tensor.name));
    tensor.begin = offset;
    if (__builtin_add_overflow(offset, *bytes, &offset)) {
      return InvalidArgumentError("total data size overflows 64 bits at tensor " +
                                  Quoted(tensor.name));
    }
    tensor.end = offset;
  }
  return offset;
}

std::string JsonUintArray(const std::vector<uint64_t>& values) {
  std::string out = "[";
  for (size_t i = 0; i < values.size(); ++i) {
    if (i) out += ",";
    out += std::to_string(values[i]);
  }
  return out + "]";
}

// The JSON header without padding. Entries are formatted by hand (keys escaped by nlohmann) so
// they keep the list's order in linear time. Throws nlohmann::json::exception for invalid UTF-8.
std::string HeaderJson(const std::vector<SafetensorsTensor>& tensors,
                       std::map<std::string, std::string> metadata) {
  std::vector<std::string> bytes_entries;
  for (const SafetensorsTensor& tensor : tensors) {
    if (tensor.dtype == DType::kBytes) bytes_entries.push_back(tensor.name);
  }
  if (!bytes_entries.empty()) {
    metadata[kSafetensorsBytesEntriesKey] = Json(bytes_entries).dump();
  }
  std::string out = "{";
  if (!metadata.empty()) out += Json(kMetadataKey).dump() + ":" + Json(metadata).dump();
  for (const SafetensorsTensor& tensor : tensors) {
    if (out.size() > 1) out += ",";
    out += Json(tensor.name).dump();
    out += ":{\"dtype\":\"";
    out += SafetensorsDTypeName(tensor.dtype);
    out += "\",\"shape\":" + JsonUintArray(tensor.shape);
    out += ",\"data_offsets\":" + JsonUintArray({tensor.begin, tensor.end}) + "}";
  }
  return out + "}";
}

// The file's first bytes: the length, then the JSON padded with spaces to a multiple of 8.
StatusOr<std::string> EncodeHeader(const std::vector<SafetensorsTensor>& tensors,
                                   const std::map<std::string, std::string>& metadata) {
  for (const SafetensorsTensor& t : tensors) {
    if (SafetensorsDTypeName(t.dtype).empty()) {
      return InvalidArgumentError("tensor \"" + t.name + "\" is " +
                                  std::string(DTypeName(t.dtype)) +
                                  ", which the safetensors format has no dtype for");
    }
  }
  std::string json;
  try {
    json = HeaderJson(tensors, metadata);
  } catch (const Json::exception& e) {
    return InvalidArgumentError(std::string("cannot encode header: ") + e.what());
  }
  const size_t padded = (json.size() + kHeaderAlignment - 1) / kHeaderAlignment * kHeaderAlignment;
  if (padded > kMaxSafetensorsHeaderBytes) {
    return InvalidArgumentError("header of " + std::to_string(padded) +
                                " bytes exceeds the limit of " +
                                std::to_string(kMaxSafetensorsHeaderBytes));
  }
  json.resize(padded, ' ');
  std::string out(kLengthBytes, '\0');
  for (size_t i = 0; i < kLengthBytes; ++i) out[i] = static_cast<char>(uint64_t{padded} >> (8 * i));
  return out + json;
}

// ---- Reader helpers -------------------------------------------------------------------------

bool IsUint64Array(const Json& value) {
  return value.is_array() && std::all_of(value.begin(), value.end(),
                                         [](const Json& v) { return v.is_number_unsigned(); });
}

// Parses one tensor entry (not its position in the buffer).
Status ParseTensorEntry(const std::string& name, const Json& entry, SafetensorsTensor& tensor) {
  if (name.empty()) return InvalidArgumentError("empty tensor name");
  tensor.name = name;
  if (!entry.is_object()) return InvalidArgumentError("entry is not a JSON object");
  const auto dtype = entry.find("dtype");
  if (dtype == entry.end() || !dtype->is_string()) {
    return InvalidArgumentError("missing string field \"dtype\"");
  }
  const std::string& dtype_name = dtype->get_ref<const std::string&>();
  const std::optional<DType> parsed = DTypeFromSafetensorsName(dtype_name);
  if (!parsed) return InvalidArgumentError("dtype " + dtype_name + " is not supported");
  tensor.dtype = *parsed;
  const auto shape = entry.find("shape");
  if (shape == entry.end() || !IsUint64Array(*shape)) {
    return InvalidArgumentError("\"shape\" is not an array of non-negative integers");
  }
  tensor.shape = shape->get<Shape>();
  const auto offsets = entry.find("data_offsets");
  if (offsets == entry.end() || !IsUint64Array(*offsets) || offsets->size() != 2) {
    return InvalidArgumentError("\"data_offsets\" is not an array of 2 non-negative integers");
  }
  tensor.begin = (*offsets)[0].get<uint64_t>();
  tensor.end = (*offsets)[1].get<uint64_t>();
  if (tensor.end < tensor.begin) {
    return InvalidArgumentError("data_offsets [" + std::to_string(tensor.begin) + ", " +
                                std::to_string(tensor.end) + "] end before they begin");
  }
  StatusOr<uint64_t> bytes = TensorBytes(tensor);
  if (!bytes.ok()) return bytes.status();
  if (*bytes != tensor.end - tensor.begin) {
    return InvalidArgumentError(dtype_name + " shape " + ShapeToString(tensor.shape) + " needs " +
                                std::to_string(*bytes) + " bytes but data_offsets [" +
                                std::to_string(tensor.begin) + ", " + std::to_string(tensor.end) +
                                "] hold " + std::to_string(tensor.end - tensor.begin));
  }
  return Status::Ok();
}

Status ParseMetadata(const Json& value, std::map<std::string, std::string>& metadata) {
  if (!value.is_object()) return InvalidArgumentError("__metadata__ is not a JSON object");
  for (const auto& [key, item] : value.items()) {
    if (!item.is_string()) {
      return InvalidArgumentError("__metadata__ value of " + Quoted(key) + " is not a string");
    }
    metadata[key] = item.get<std::string>();
  }
  return Status::Ok();
}

// Sorts the tensors by offsets and checks that they tile [0, data_size) exactly.
Status CheckRanges(std::vector<SafetensorsTensor>& tensors, uint64_t data_size) {
  // Ties (empty tensors at the same offset) are ordered by name.
  std::sort(tensors.begin(), tensors.end(), [](const auto& a, const auto& b) {
    return std::tie(a.begin, a.end, a.name) < std::tie(b.begin, b.end, b.name);
  });
  uint64_t expected = 0;
  const SafetensorsTensor* previous = nullptr;
  for (const SafetensorsTensor& tensor : tensors) {
    const std::string after = previous ? " after tensor " + Quoted(previous->name) : "";
    if (tensor.begin < expected) {
      return InvalidArgumentError("tensor " + Quoted(tensor.name) + " data_offsets overlap" +
                                  after + ": begins at " + std::to_string(tensor.begin) +
                                  ", expected " + std::to_string(expected));
    }
    if (tensor.begin > expected) {
      return InvalidArgumentError("gap in data before tensor " + Quoted(tensor.name) +
                                  ": begins at " + std::to_string(tensor.begin) + ", expected " +
                                  std::to_string(expected));
    }
    expected = tensor.end;
    previous = &tensor;
  }
  if (expected > data_size) {
    return DataLossError("truncated: tensor data ends at " + std::to_string(expected) +
                         " but the file holds " + std::to_string(data_size) + " bytes of data");
  }
  if (expected < data_size) {
    return InvalidArgumentError(std::to_string(data_size - expected) +
                                " trailing bytes after the last tensor's data");
  }
  return Status::Ok();
}

// Marks the tensors named in kSafetensorsBytesEntriesKey as bytes entries and removes the key.
Status ApplyBytesEntries(std::map<std::string, std::string>& metadata,
                         std::vector<SafetensorsTensor>& tensors) {
  const auto it = metadata.find(kSafetensorsBytesEntriesKey);
  if (it == metadata.end()) return Status::Ok();
  const std::string context = std::string("__metadata__ ") + kSafetensorsBytesEntriesKey;
  const Json names = Json::parse(it->second, nullptr, /*allow_exceptions=*/false);
  if (!names.is_array()) return InvalidArgumentError(context + " is not a JSON array");
  std::map<std::string_view, SafetensorsTensor*> by_name;
  for (SafetensorsTensor& tensor : tensors) by_name[tensor.name] = &tensor;
  for (const Json& name : names) {
    if (!name.is_string()) return InvalidArgumentError(context + " holds a non-string");
    const auto found = by_name.find(name.get_ref<const std::string&>());
    if (found == by_name.end()) {
      return InvalidArgumentError(context + " names missing tensor " +
                                  Quoted(name.get<std::string>()));
    }
    SafetensorsTensor& tensor = *found->second;
    if ((tensor.dtype != DType::kUInt8 && tensor.dtype != DType::kBytes) ||
        tensor.shape.size() != 1) {
      return InvalidArgumentError(context + " names tensor " + Quoted(tensor.name) +
                                  ", which is not a 1-d U8 tensor");
    }
    tensor.dtype = DType::kBytes;
  }
  metadata.erase(it);
  return Status::Ok();
}

// Parses and validates the header JSON. `data_size`: bytes in the file after the header.
Status ParseHeader(const std::string& json, uint64_t data_size,
                   std::vector<SafetensorsTensor>& tensors,
                   std::map<std::string, std::string>& metadata) {
  Json header;
  try {
    header = Json::parse(json);
  } catch (const Json::exception& e) {
    return InvalidArgumentError(std::string("header is not valid JSON: ") + e.what());
  }
  if (!header.is_object()) return InvalidArgumentError("header is not a JSON object");
  for (const auto& [key, value] : header.items()) {
    if (key == kMetadataKey) {
      DCPKV_RETURN_IF_ERROR(ParseMetadata(value, metadata));
      continue;
    }
    SafetensorsTensor tensor;
    Status s = ParseTensorEntry(key, value, tensor);
    if (!s.ok()) return s.WithContext("tensor " + Quoted(key));
    tensors.push_back(std::move(tensor));
  }
  DCPKV_RETURN_IF_ERROR(CheckRanges(tensors, data_size));
  return ApplyBytesEntries(metadata, tensors);
}

}  // namespace

std::string_view SafetensorsDTypeName(DType dtype) {
  if (dtype == DType::kBytes) return "U8";
  for (const DTypeNameEntry& entry : kDTypeNames) {
    if (entry.dtype == dtype) return entry.name;
  }
  return "";
}

std::optional<DType> DTypeFromSafetensorsName(std::string_view name) {
  for (const DTypeNameEntry& entry : kDTypeNames) {
    if (entry.name == name) return entry.dtype;
  }
  return std::nullopt;
}

// ---- SafetensorsWriter ------------------------------------------------------------------------

struct SafetensorsWriter::Impl {
  std::string path;
  std::string temp_path;
  int fd = -1;
  std::vector<SafetensorsTensor> tensors;
  uint64_t file_size = 0;
  uint64_t data_size = 0;
  uint64_t appended = 0;     // data bytes accepted by Append
  uint64_t written = 0;      // file bytes handed to write()
  std::vector<char> buffer;  // capacity kWriteBufferBytes (or less for a small file)
  bool finished = false;
  Status error;  // the first I/O error; every later call fails with it

  Status WriteOut(const char* data, size_t size) {
    Status s = WriteAll(fd, temp_path, data, size);
    if (!s.ok()) return error = s;
    written += size;
    return s;
  }
  Status Flush() {
    if (buffer.empty()) return Status::Ok();
    Status s = WriteOut(buffer.data(), buffer.size());
    buffer.clear();
    return s;
  }
  // Syncs and closes the temporary file, then renames it and syncs the directory.
  Status Publish() {
    if (written != file_size) {
      return InternalError(temp_path + ": wrote " + std::to_string(written) + " bytes, expected " +
                           std::to_string(file_size));
    }
    if (fsync(fd) != 0) return ErrnoError("fsync", temp_path);
    const int closing = fd;
    fd = -1;
    if (close(closing) != 0) return ErrnoError("close", temp_path);
    if (rename(temp_path.c_str(), path.c_str()) != 0)
      return ErrnoError("rename to " + path, temp_path);
    finished = true;
    return FsyncDirectoryOf(path);
  }
};

StatusOr<std::unique_ptr<SafetensorsWriter>> SafetensorsWriter::Create(
    const std::string& path, std::vector<SafetensorsTensor> tensors,
    const std::map<std::string, std::string>& metadata) {
  auto impl = std::make_unique<Impl>();
  StatusOr<uint64_t> data_size = LayOutTensors(tensors, metadata);
  if (!data_size.ok()) return data_size.status().WithContext(path);
  StatusOr<std::string> header = EncodeHeader(tensors, metadata);
  if (!header.ok()) return header.status().WithContext(path);
  if (__builtin_add_overflow(uint64_t{header->size()}, *data_size, &impl->file_size)) {
    return InvalidArgumentError(path + ": file size overflows 64 bits");
  }
  impl->path = path;
  impl->tensors = std::move(tensors);
  impl->data_size = *data_size;
  DCPKV_ASSIGN_OR_RETURN(impl->fd, CreateTempFile(path, impl->temp_path));
  // From here on the destructor removes the temporary file on failure.
  std::unique_ptr<SafetensorsWriter> writer(new SafetensorsWriter(std::move(impl)));
  Impl& w = *writer->impl_;
  DCPKV_RETURN_IF_ERROR(w.WriteOut(header->data(), header->size()));
  w.buffer.reserve(static_cast<size_t>(std::min<uint64_t>(w.data_size, kWriteBufferBytes)));
  return writer;
}

SafetensorsWriter::SafetensorsWriter(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

SafetensorsWriter::~SafetensorsWriter() {
  if (impl_->fd >= 0) close(impl_->fd);
  if (!impl_->finished) unlink(impl_->temp_path.c_str());
}

const std::vector<SafetensorsTensor>& SafetensorsWriter::tensors() const { return impl_->tensors; }

uint64_t SafetensorsWriter::file_size() const { return impl_->file_size; }

Status SafetensorsWriter::Append(const void* data, size_t size) {
  Impl& w = *impl_;
  if (!w.error.ok()) return w.error;
  if (w.finished) return FailedPreconditionError(w.path + ": Append after Finish");
  if (size > w.data_size - w.appended) {
    return InvalidArgumentError(w.path + ": Append of " + std::to_string(size) +
                                " bytes goes past the end of the data (" +
                                std::to_string(w.data_size - w.appended) + " bytes left)");
  }
  w.appended += size;
  const char* bytes = static_cast<const char*>(data);
  if (w.buffer.size() + size <= w.buffer.capacity()) {
    w.buffer.insert(w.buffer.end(), bytes, bytes + size);
    return Status::Ok();
  }
  DCPKV_RETURN_IF_ERROR(w.Flush());
  if (size >= w.buffer.capacity()) return w.WriteOut(bytes, size);
  w.buffer.insert(w.buffer.end(), bytes, bytes + size);
  return Status::Ok();
}

Status SafetensorsWriter::Finish() {
  Impl& w = *impl_;
  if (!w.error.ok()) return w.error;
  if (w.finished) return FailedPreconditionError(w.path + ": Finish called twice");
  if (w.appended != w.data_size) {
    return FailedPreconditionError(w.path + ": Finish after " + std::to_string(w.appended) +
                                   " of " + std::to_string(w.data_size) + " data bytes");
  }
  DCPKV_RETURN_IF_ERROR(w.Flush());
  Status s = w.Publish();
  if (!s.ok()) w.error = s;
  return s;
}

// ---- SafetensorsReader ------------------------------------------------------------------------

struct SafetensorsReader::Impl {
  std::string path;
  int fd = -1;
  uint64_t data_start = 0;  // file offset of the data buffer
  uint64_t data_size = 0;
  std::vector<SafetensorsTensor> tensors;
  std::map<std::string, std::string> metadata;

  ~Impl() {
    if (fd >= 0) close(fd);
  }

  // Reads the length and the header JSON, checking both against the file size.
  StatusOr<std::string> ReadHeaderJson() {
    struct stat st;
    if (fstat(fd, &st) != 0) return ErrnoError("stat", path);
    const uint64_t file_size = static_cast<uint64_t>(st.st_size);
    if (file_size < kLengthBytes) {
      return DataLossError(path + ": truncated: " + std::to_string(file_size) +
                           " bytes, shorter than the 8-byte header length");
    }
    unsigned char length_bytes[kLengthBytes];
    DCPKV_RETURN_IF_ERROR(
        PreadAll(fd, path, 0, reinterpret_cast<char*>(length_bytes), kLengthBytes));
    uint64_t length = 0;
    for (size_t i = 0; i < kLengthBytes; ++i) length |= uint64_t{length_bytes[i]} << (8 * i);
    if (length > kMaxSafetensorsHeaderBytes) {
      return InvalidArgumentError(path + ": header length " + std::to_string(length) +
                                  " exceeds the limit of " +
                                  std::to_string(kMaxSafetensorsHeaderBytes));
    }
    if (length > file_size - kLengthBytes) {
      return DataLossError(path + ": truncated: header length " + std::to_string(length) +
                           " goes beyond the end of the " + std::to_string(file_size) +
                           "-byte file");
    }
    data_start = kLengthBytes + length;
    data_size = file_size - data_start;
    std::string json(static_cast<size_t>(length), '\0');
    DCPKV_RETURN_IF_ERROR(PreadAll(fd, path, kLengthBytes, json.data(), json.size()));
    return json;
  }
};

StatusOr<std::unique_ptr<SafetensorsReader>> SafetensorsReader::Open(const std::string& path) {
  auto impl = std::make_unique<Impl>();
  impl->path = path;
  impl->fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (impl->fd < 0) {
    if (errno == ENOENT) return NotFoundError(path + ": no such file");
    return ErrnoError("open", path);
  }
  DCPKV_ASSIGN_OR_RETURN(std::string json, impl->ReadHeaderJson());
  Status s = ParseHeader(json, impl->data_size, impl->tensors, impl->metadata);
  if (!s.ok()) return s.WithContext(path);
  return std::unique_ptr<SafetensorsReader>(new SafetensorsReader(std::move(impl)));
}

SafetensorsReader::SafetensorsReader(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

SafetensorsReader::~SafetensorsReader() = default;

const std::vector<SafetensorsTensor>& SafetensorsReader::tensors() const { return impl_->tensors; }

const std::map<std::string, std::string>& SafetensorsReader::metadata() const {
  return impl_->metadata;
}

Status SafetensorsReader::Read(const SafetensorsTensor& tensor, uint64_t offset, void* dest,
                               size_t size) const {
  const Impl& r = *impl_;
  if (tensor.end < tensor.begin || tensor.end > r.data_size) {
    return InvalidArgumentError(r.path + ": tensor " + Quoted(tensor.name) + " data_offsets [" +
                                std::to_string(tensor.begin) + ", " + std::to_string(tensor.end) +
                                ") are not within the data of this file");
  }
  uint64_t stop = 0;
  if (__builtin_add_overflow(offset, uint64_t{size}, &stop) || stop > tensor.end - tensor.begin) {
    return InvalidArgumentError(r.path + ": read of " + std::to_string(size) + " bytes at " +
                                std::to_string(offset) + " is outside tensor " +
                                Quoted(tensor.name) + " of " +
                                std::to_string(tensor.end - tensor.begin) + " bytes");
  }
  return PreadAll(r.fd, r.path, r.data_start + tensor.begin + offset, static_cast<char*>(dest),
                  size);
}

}  // namespace dcpkv::inspect

// dcpkv._native: the Python binding of libdcpkv's public API (python/dcpkv/ is the Python API
// built on it). Thin by design: state dicts are built from DLPack capsules, bytes and nested
// dicts; save, load, async_save, the Checkpointer, the catalog and gloo process groups are the
// C++ calls, run with the GIL released. Errors are raised as the Python classes that
// python/dcpkv/_errors.py registers, one per StatusCode.
#include <Python.h>
#include <pybind11/chrono.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <chrono>
#include <cstring>
#include <deque>
#include <future>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "dcpkv/async_save.h"
#include "dcpkv/catalog.h"
#include "dcpkv/checkpoint.h"
#include "dcpkv/checkpointer.h"
#include "dcpkv/gloo_process_group.h"
#include "dcpkv/kv_storage_factory.h"
#include "dcpkv/maintenance.h"
#include "dcpkv/planner.h"
#include "dcpkv/replication/replicator.h"
#include "dcpkv/state_dict.h"
#include "dlpack.h"

namespace py = pybind11;

namespace dcpkv::python {
namespace {

// ---- errors ----

// A failed Status on its way to Python (translated by the registered translator).
struct StatusError {
  Status status;
};

// StatusCode -> the Python exception class (set once by _register_errors).
std::map<int, py::object>& ErrorClasses() {
  static auto* classes = new std::map<int, py::object>;  // never destroyed: lives past finalize
  return *classes;
}

[[noreturn]] void Throw(const Status& status) { throw StatusError{status}; }

void ThrowIfError(const Status& status) {
  if (!status.ok()) Throw(status);
}

template <typename T>
T ValueOrThrow(StatusOr<T> v) {
  if (!v.ok()) Throw(v.status());
  return std::move(v).value();
}

// Runs f() with the GIL released and returns what it returns.
template <typename F>
auto WithoutGil(F&& f) {
  py::gil_scoped_release release;
  return f();
}

// ---- DLPack ----

// A consumed DLPack capsule: the producer's memory stays valid until this is destroyed.
class Imported {
 public:
  explicit Imported(DLManagedTensor* legacy) : legacy_(legacy) {}
  explicit Imported(DLManagedTensorVersioned* versioned) : versioned_(versioned) {}
  ~Imported() {
    if (legacy_ != nullptr && legacy_->deleter != nullptr) legacy_->deleter(legacy_);
    if (versioned_ != nullptr && versioned_->deleter != nullptr) versioned_->deleter(versioned_);
  }
  Imported(const Imported&) = delete;
  Imported& operator=(const Imported&) = delete;

  const DLTensor& tensor() const {
    return legacy_ != nullptr ? legacy_->dl_tensor : versioned_->dl_tensor;
  }
  bool read_only() const {
    return versioned_ != nullptr && (versioned_->flags & kDLFlagBitmaskReadOnly) != 0;
  }

 private:
  DLManagedTensor* legacy_ = nullptr;
  DLManagedTensorVersioned* versioned_ = nullptr;
};

StatusOr<DType> DTypeOf(const DLDataType& t, const std::string& what) {
  if (t.lanes == 1) {
    switch (t.code) {
      case kDLFloat:
        if (t.bits == 64) return DType::kFloat64;
        if (t.bits == 32) return DType::kFloat32;
        if (t.bits == 16) return DType::kFloat16;
        break;
      case kDLBfloat:
        if (t.bits == 16) return DType::kBFloat16;
        break;
      case kDLInt:
        if (t.bits == 8) return DType::kInt8;
        if (t.bits == 16) return DType::kInt16;
        if (t.bits == 32) return DType::kInt32;
        if (t.bits == 64) return DType::kInt64;
        break;
      case kDLUInt:
        if (t.bits == 8) return DType::kUInt8;
        if (t.bits == 16) return DType::kUInt16;
        if (t.bits == 32) return DType::kUInt32;
        if (t.bits == 64) return DType::kUInt64;
        break;
      case kDLComplex:
        if (t.bits == 32) return DType::kComplex32;
        if (t.bits == 64) return DType::kComplex64;
        if (t.bits == 128) return DType::kComplex128;
        break;
      case kDLBool:
        if (t.bits == 8) return DType::kBool;
        break;
      case kDLFloat8_e4m3fn:
        if (t.bits == 8) return DType::kFloat8E4M3;
        break;
      case kDLFloat8_e5m2:
        if (t.bits == 8) return DType::kFloat8E5M2;
        break;
      case kDLFloat8_e4m3fnuz:
        if (t.bits == 8) return DType::kFloat8E4M3Fnuz;
        break;
      case kDLFloat8_e5m2fnuz:
        if (t.bits == 8) return DType::kFloat8E5M2Fnuz;
        break;
      case kDLFloat8_e8m0fnu:
        if (t.bits == 8) return DType::kFloat8E8M0;
        break;
      default: break;
    }
  }
  static const char* const kCodes[] = {
      "int",    "uint",       "float",     "opaque",        "bfloat",   "complex",
      "bool",   "f8e3m4",     "f8e4m3",    "f8e4m3b11fnuz", "f8e4m3fn", "f8e4m3fnuz",
      "f8e5m2", "f8e5m2fnuz", "f8e8m0fnu", "f6e2m3fn",      "f6e3m2fn", "f4e2m1fn"};
  const std::string name = t.code < sizeof(kCodes) / sizeof(kCodes[0])
                               ? kCodes[t.code]
                               : "code " + std::to_string(t.code);
  std::string known;
  for (DType d : kAllDTypes) {
    if (d == DType::kBytes) continue;
    known += (known.empty() ? "" : ", ") + std::string(DTypeName(d));
  }
  return InvalidArgumentError(
      what + " has a dtype dcpkv does not store (DLPack " + name + std::to_string(t.bits) +
      (t.lanes != 1 ? " x" + std::to_string(t.lanes) : "") + "); dcpkv stores " + known);
}

// Takes ownership of a DLPack capsule and views its memory as a Tensor.
StatusOr<Tensor> Import(py::capsule capsule, const std::string& what, bool writable,
                        std::vector<std::unique_ptr<Imported>>* owners) {
  PyObject* cap = capsule.ptr();
  std::unique_ptr<Imported> imported;
  if (PyCapsule_IsValid(cap, "dltensor_versioned")) {
    auto* m =
        static_cast<DLManagedTensorVersioned*>(PyCapsule_GetPointer(cap, "dltensor_versioned"));
    if (PyCapsule_SetName(cap, "used_dltensor_versioned") != 0) throw py::error_already_set();
    imported = std::make_unique<Imported>(m);
    if (m->version.major != 1) {
      return InvalidArgumentError(what + ": DLPack version " + std::to_string(m->version.major) +
                                  "." + std::to_string(m->version.minor) +
                                  " is not supported (1.x is)");
    }
  } else if (PyCapsule_IsValid(cap, "dltensor")) {
    auto* m = static_cast<DLManagedTensor*>(PyCapsule_GetPointer(cap, "dltensor"));
    if (PyCapsule_SetName(cap, "used_dltensor") != 0) throw py::error_already_set();
    imported = std::make_unique<Imported>(m);
  } else {
    return InvalidArgumentError(what + ": not an unused DLPack capsule");
  }
  const DLTensor& t = imported->tensor();
  owners->push_back(std::move(imported));
  if (writable && owners->back()->read_only()) {
    return InvalidArgumentError(what + " is read-only, so it cannot be loaded into in place");
  }
  DCPKV_ASSIGN_OR_RETURN(DType dtype, DTypeOf(t.dtype, what));
  Device device;
  switch (t.device.device_type) {
    case kDLCPU:
    case kDLCUDAHost: device = Device::Cpu(); break;
    case kDLCUDA:
    case kDLCUDAManaged: device = Device::Cuda(t.device.device_id); break;
    default:
      return InvalidArgumentError(what + " is on a device dcpkv cannot read (DLPack device type " +
                                  std::to_string(t.device.device_type) + "): CPU and CUDA are");
  }
  if (t.ndim < 0) return InvalidArgumentError(what + ": negative ndim");
  Shape shape(t.ndim);
  for (int d = 0; d < t.ndim; ++d) {
    if (t.shape[d] < 0) return InvalidArgumentError(what + ": negative size");
    shape[d] = static_cast<uint64_t>(t.shape[d]);
  }
  void* data = static_cast<uint8_t*>(t.data) + t.byte_offset;
  bool row_major = true;
  std::vector<uint64_t> strides(t.ndim);
  if (t.strides != nullptr) {
    int64_t expect = 1;
    for (int d = t.ndim; d-- > 0;) {
      if (t.strides[d] < 0) {
        return InvalidArgumentError(what +
                                    " has a negative stride (a flipped view): copy it first "
                                    "(e.g. .copy() or .contiguous())");
      }
      strides[d] = static_cast<uint64_t>(t.strides[d]);
      if (shape[d] != 1 && t.strides[d] != expect) row_major = false;
      expect *= t.shape[d];
    }
  }
  Tensor tensor = row_major ? Tensor::Wrap(dtype, shape, data, device)
                            : Tensor::WrapStrided(dtype, shape, strides, data, device);
  Status valid = tensor.Validate();
  if (!valid.ok()) return valid.WithContext(what);
  return tensor;
}

// ---- state dicts ----

// A StateDict being built from Python, with the DLPack owners of its tensors. Nested dicts share
// the owners of the root.
class PyState {
 public:
  PyState()
      : dict_(std::make_shared<StateDict>()),
        owners_(std::make_shared<std::vector<std::unique_ptr<Imported>>>()) {}
  // Destroyed by Python (with the GIL, which numpy's DLPack deleters need) once the last
  // reference from Python or from an async save in flight is gone.
  PyState(std::shared_ptr<StateDict> dict, std::shared_ptr<PyState> root)
      : dict_(std::move(dict)), root_(std::move(root)) {}

  StateDict& dict() { return *dict_; }
  std::vector<std::unique_ptr<Imported>>* owners() {
    return root_ != nullptr ? root_->owners() : owners_.get();
  }

  void SetTensor(const std::string& key, py::capsule capsule, bool writable) {
    Tensor t = ValueOrThrow(Import(capsule, "tensor \"" + key + "\"", writable, owners()));
    dict_->Set(key, t);
  }

  void SetSharded(const std::string& key, const Shape& global_shape,
                  const std::vector<std::pair<Shape, py::capsule>>& shards, bool writable) {
    ShardedTensor st;
    st.global_shape = global_shape;
    for (const auto& [offsets, capsule] : shards) {
      Tensor t = ValueOrThrow(
          Import(capsule, "tensor \"" + key + "\" (shard at " + ShapeToString(offsets) + ")",
                 writable, owners()));
      if (st.local_shards.empty()) st.dtype = t.dtype();
      st.local_shards.push_back(Shard{offsets, t});
    }
    Status valid = st.Validate();
    if (!valid.ok()) Throw(valid.WithContext("sharded tensor \"" + key + "\""));
    dict_->Set(key, std::move(st));
  }

  void SetBytes(const std::string& key, py::bytes data) {
    dict_->Set(key, Bytes{std::string(data)});
  }

  py::bytes GetBytes(const std::string& key) {
    const Bytes* b = ValueOrThrow(static_cast<const StateDict&>(*dict_).GetBytes(key));
    return py::bytes(b->data);
  }

  // A nested dict under `key`, built in place.
  std::shared_ptr<PyState> Child(const std::string& key, const std::shared_ptr<PyState>& self) {
    auto child = std::make_shared<StateDict>();
    dict_->Set(key, child);
    return std::make_shared<PyState>(child, root_ != nullptr ? root_ : self);
  }

 private:
  std::shared_ptr<StateDict> dict_;
  std::shared_ptr<PyState> root_;  // null for the root
  std::shared_ptr<std::vector<std::unique_ptr<Imported>>> owners_;
};

bool HasCudaTensor(const StateDict& dict) {
  for (const auto& [key, value] : dict) {
    if (const auto* t = std::get_if<Tensor>(&value)) {
      if (t->is_cuda()) return true;
    } else if (const auto* st = std::get_if<ShardedTensor>(&value)) {
      for (const Shard& s : st->local_shards) {
        if (s.tensor.is_cuda()) return true;
      }
    } else if (const auto* d = std::get_if<std::shared_ptr<StateDict>>(&value)) {
      if (HasCudaTensor(**d)) return true;
    }
  }
  return false;
}

// ---- process groups ----

struct PyGroup {
  std::shared_ptr<ProcessGroup> group;
  std::shared_ptr<ProcessGroup> async_group;  // made by the first async_save on this group
};

ProcessGroup* GroupOf(const std::shared_ptr<PyGroup>& g) {
  return g != nullptr ? g->group.get() : nullptr;
}

std::chrono::milliseconds Millis(double seconds) {
  if (!(seconds > 0)) Throw(InvalidArgumentError("a timeout must be positive seconds"));
  return std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000));
}

// ---- results ----

py::dict MetadataToPython(const Metadata& md) {
  py::dict entries;
  for (const auto& [fqn, e] : md.entries) {
    py::dict entry;
    entry["dtype"] = std::string(DTypeName(e.dtype));
    entry["shape"] = py::tuple(py::cast(e.global_shape));
    std::vector<py::dict> shards;
    for (const SavedShard& s : e.shards) {
      py::dict shard;
      shard["offsets"] = py::tuple(py::cast(s.offsets));
      shard["sizes"] = py::tuple(py::cast(s.sizes));
      shard["rank"] = s.rank;
      shard["bytes"] = s.bytes;
      shards.push_back(std::move(shard));
    }
    entry["shards"] = shards;
    entry["bytes_encoding"] = e.bytes_encoding == BytesEncoding::kTorchSave ? "torch.save" : "raw";
    if (e.torch_properties.has_value()) {
      const TorchTensorProperties& p = *e.torch_properties;
      py::dict props;
      props["layout"] = p.layout;
      props["memory_format"] = p.memory_format;
      props["requires_grad"] = p.requires_grad;
      props["pin_memory"] = p.pin_memory;
      props["strides"] = p.has_strides ? py::object(py::tuple(py::cast(p.strides))) : py::none();
      entry["torch_properties"] = props;
    } else {
      entry["torch_properties"] = py::none();
    }
    entries[py::str(fqn)] = entry;
  }
  py::dict out;
  out["checkpoint_id"] = md.checkpoint_id;
  out["world_size"] = md.world_size;
  out["coordinator_rank"] = md.coordinator_rank;
  out["committed_unix_micros"] = md.committed_unix_micros;
  out["entries"] = entries;
  out["base_checkpoint_id"] = md.base_checkpoint_id;
  out["stored_bytes"] = md.stored_bytes;
  out["logical_bytes"] = md.logical_bytes();
  out["tags"] = md.tags;
  if (md.torch_dcp.has_value()) {
    const TorchDcpMetadata& t = *md.torch_dcp;
    py::dict dcp;
    dcp["version"] = t.version;
    if (t.has_flatten_mapping) {
      py::dict mapping;
      for (const auto& [fqn, path] : t.flatten_mapping) {
        py::list elements;
        for (const TorchPathElement& p : path) {
          if (p.index >= 0) {
            elements.append(py::int_(p.index));
          } else {
            elements.append(py::str(p.key));
          }
        }
        mapping[py::str(fqn)] = py::tuple(elements);
      }
      dcp["flatten_mapping"] = mapping;
    } else {
      dcp["flatten_mapping"] = py::none();
    }
    if (t.has_storage_meta) {
      py::dict meta;
      meta["checkpoint_id"] = t.storage_checkpoint_id;
      meta["save_id"] = t.save_id;
      meta["load_id"] = t.load_id;
      meta["modules"] = t.modules;
      dcp["storage_meta"] = meta;
    } else {
      dcp["storage_meta"] = py::none();
    }
    out["torch_dcp"] = dcp;
  } else {
    out["torch_dcp"] = py::none();
  }
  return out;
}

py::dict SummaryToPython(const CheckpointSummary& s) {
  py::dict out;
  out["checkpoint_id"] = s.checkpoint_id;
  out["committed_unix_micros"] = s.committed_unix_micros;
  out["world_size"] = s.world_size;
  out["coordinator_rank"] = s.coordinator_rank;
  out["num_entries"] = s.num_tensors;
  out["logical_bytes"] = s.logical_bytes;
  out["stored_bytes"] = s.stored_bytes;
  out["base_checkpoint_id"] = s.base_checkpoint_id;
  out["tags"] = s.tags;
  return out;
}

// Save options from the Python keywords (checked in python/dcpkv/_api.py).
struct PySaveOptions {
  bool incremental = true;
  std::string incremental_base;
  std::map<std::string, std::string> tags;
  int keep_last = 0;
  uint64_t chunk_size = 0;
  int coordinator_rank = 0;
  bool no_dist = false;
  std::shared_ptr<replication::GrpcManifestReplication> replication;
};

SaveOptions MakeSaveOptions(const std::string& root, const std::string& id, const PySaveOptions& o,
                            ProcessGroup* group) {
  SaveOptions s;
  s.checkpoint_id = id;
  s.store_root = root;
  s.process_group = group;
  s.coordinator_rank = o.coordinator_rank;
  s.no_dist = o.no_dist;
  s.incremental = o.incremental;
  s.incremental_base = o.incremental_base;
  s.tags = o.tags;
  s.keep_last = o.keep_last;
  s.chunk_size = o.chunk_size;
  s.replication = o.replication;
  return s;
}

// An async save in flight: the futures, and what must live until the upload ends.
class PyAsyncSave {
 public:
  PyAsyncSave(AsyncSaveResponse response, std::shared_ptr<PyState> state)
      : response_(std::move(response)), state_(std::move(state)) {}

  // Waits (without the GIL) at most `timeout` seconds (negative: forever); false on timeout.
  bool WaitStaging(double timeout) { return Wait(response_.staging_completion, timeout); }
  bool WaitUpload(double timeout) { return Wait(response_.upload_completion, timeout); }
  void StagingResult() {
    {
      py::gil_scoped_release release;
      response_.staging_completion.wait();
    }
    ThrowIfError(response_.staging_completion.get());
  }
  py::dict UploadResult() {
    {
      py::gil_scoped_release release;
      response_.upload_completion.wait();
    }
    StatusOr<Metadata> md = response_.upload_completion.get();
    state_.reset();  // the sources are no longer read
    return MetadataToPython(ValueOrThrow(std::move(md)));
  }

 private:
  template <typename F>
  static bool Wait(const F& future, double timeout) {
    py::gil_scoped_release release;
    if (timeout < 0) {
      future.wait();
      return true;
    }
    return future.wait_for(std::chrono::duration<double>(timeout)) == std::future_status::ready;
  }

  AsyncSaveResponse response_;
  std::shared_ptr<PyState> state_;
};

// ---- torch.distributed.checkpoint's steps (python/dcpkv/torch.py) ----

// DCP's WriteItemType values.
constexpr int kDcpTensor = 0;
constexpr int kDcpShard = 1;
constexpr int kDcpBytes = 2;

Shape ShapeOf(const py::handle& sequence) {
  Shape out;
  for (py::handle v : sequence) out.push_back(py::cast<uint64_t>(v));
  return out;
}

std::vector<SavedChunk> ChunksOf(const py::handle& chunks) {
  std::vector<SavedChunk> out;
  for (py::handle c : chunks) {
    auto t = py::cast<py::tuple>(c);
    out.push_back(SavedChunk{py::cast<uint64_t>(t[0]), py::cast<uint64_t>(t[1]),
                             py::cast<uint64_t>(t[2]), py::cast<std::string>(t[3]),
                             py::cast<int32_t>(t[4])});
  }
  return out;
}

// One rank's side of a save that torch.distributed.checkpoint runs: the store's StorageWriter,
// driven hook by hook.
class DcpWriter {
 public:
  DcpWriter(const std::string& root, uint64_t chunk_size, int write_threads)
      : root_(root),
        writer_(CreateKvStorageWriter(KvStorageConfig{root, chunk_size, write_threads, 0})) {}

  void Configure(bool incremental, const std::string& base, int keep_last,
                 std::shared_ptr<replication::GrpcManifestReplication> replication) {
    StorageSaveOptions o;
    o.incremental = incremental;
    o.incremental_base = base;
    o.keep_last = keep_last;
    o.replication = std::move(replication);
    writer_->ConfigureSave(o);
  }

  void SetUp(const std::string& checkpoint_id, bool is_coordinator, int rank, int world_size) {
    ThrowIfError(WithoutGil([&] {
      DCPKV_RETURN_IF_ERROR(writer_->Reset(checkpoint_id));
      return writer_->SetUpStorageWriter(is_coordinator, rank, world_size, true);
    }));
    rank_ = rank;
  }

  // Coordinator: checks the id is new and finds the incremental base ("" for a full save).
  std::string PrepareGlobalPlan() {
    StatusOr<std::vector<SavePlan>> plans =
        WithoutGil([&] { return writer_->PrepareGlobalPlan(std::vector<SavePlan>(1)); });
    return ValueOrThrow(std::move(plans)).front().storage_data;
  }

  // Writes one rank's items: (fqn, type, global_shape, offsets, DLPack capsule or bytes) each,
  // against the base `base_id`. Returns (rank, bytes, chunks) per item, chunks as (length,
  // hash_low, hash_high, source, source_rank).
  py::list Write(const std::string& base_id, const py::list& items) {
    std::vector<std::unique_ptr<Imported>> owners;
    std::deque<Bytes> bytes;
    FlatStateDict flat;
    SavePlan plan;
    plan.storage_data = base_id;
    for (py::handle h : items) {
      auto t = py::cast<py::tuple>(h);
      WriteItem item;
      item.fqn = py::cast<std::string>(t[0]);
      const int type = py::cast<int>(t[1]);
      if (type == kDcpBytes) {
        Bytes& b = bytes.emplace_back(Bytes{py::cast<std::string>(t[4])});
        item.type = WriteItemType::kBytes;
        item.dtype = DType::kBytes;
        item.global_shape = item.sizes = {b.data.size()};
        item.offsets = {0};
        if (!flat.emplace(item.fqn, &b).second) {
          Throw(InvalidArgumentError("bytes entry \"" + item.fqn + "\" is written twice"));
        }
      } else {
        const std::string what = "tensor \"" + item.fqn + "\"";
        Tensor tensor = ValueOrThrow(Import(py::cast<py::capsule>(t[4]), what, false, &owners));
        item.type = type == kDcpShard ? WriteItemType::kShard : WriteItemType::kTensor;
        item.dtype = tensor.dtype();
        item.global_shape = ShapeOf(t[2]);
        item.offsets = ShapeOf(t[3]);
        item.sizes = tensor.shape();
        if (item.offsets.empty() && !item.sizes.empty()) item.offsets.assign(item.sizes.size(), 0);
        auto [it, inserted] = flat.try_emplace(item.fqn, ShardedTensor{});
        auto* st = std::get_if<ShardedTensor>(&it->second);
        if (st == nullptr) Throw(InvalidArgumentError(what + " is also a bytes entry"));
        st->global_shape = item.global_shape;
        st->dtype = item.dtype;
        st->local_shards.push_back(Shard{item.offsets, tensor});
      }
      plan.items.push_back(std::move(item));
    }
    StatusOr<std::vector<WriteResult>> written =
        WithoutGil([&]() -> StatusOr<std::vector<WriteResult>> {
          DefaultSavePlanner planner;
          DCPKV_RETURN_IF_ERROR(planner.SetUpPlanner(&flat, false));
          DCPKV_ASSIGN_OR_RETURN(SavePlan final_plan, planner.FinishPlan(plan));
          return writer_->WriteData(final_plan, planner).get();
        });
    std::vector<WriteResult> results = ValueOrThrow(std::move(written));
    py::list out;
    for (const WriteResult& r : results) {
      py::list chunks;
      for (const SavedChunk& c : r.chunk_list) {
        chunks.append(py::make_tuple(c.length, c.hash_low, c.hash_high, c.source, c.source_rank));
      }
      out.append(py::make_tuple(r.rank, r.bytes, chunks));
    }
    return out;
  }

  // Coordinator: commits the checkpoint. `entries`: (fqn, dtype name, global_shape, shards,
  // torch properties or None, bytes encoding); shards: (offsets, sizes, rank, bytes, chunks).
  // Returns the committed Metadata, or raises (after the commit, for a failed replication).
  py::dict Commit(const std::string& checkpoint_id, int world_size, int coordinator_rank,
                  const py::list& entries, const std::map<std::string, std::string>& tags,
                  const py::object& torch_dcp) {
    Metadata md;
    md.checkpoint_id = checkpoint_id;
    md.world_size = world_size;
    md.coordinator_rank = coordinator_rank;
    md.tags = tags;
    for (py::handle h : entries) {
      auto t = py::cast<py::tuple>(h);
      const auto fqn = py::cast<std::string>(t[0]);
      EntryMetadata e;
      const auto dtype_name = py::cast<std::string>(t[1]);
      std::optional<DType> dtype = DTypeFromName(dtype_name);
      if (!dtype.has_value()) {
        Throw(InvalidArgumentError("entry \"" + fqn + "\" has dtype " + dtype_name +
                                   ", which dcpkv does not store"));
      }
      e.dtype = *dtype;
      e.global_shape = ShapeOf(t[2]);
      for (py::handle sh : t[3]) {
        auto s = py::cast<py::tuple>(sh);
        SavedShard shard;
        shard.offsets = ShapeOf(s[0]);
        shard.sizes = ShapeOf(s[1]);
        shard.rank = py::cast<int32_t>(s[2]);
        shard.bytes = py::cast<uint64_t>(s[3]);
        shard.chunk_list = ChunksOf(s[4]);
        shard.chunks = static_cast<uint32_t>(shard.chunk_list.size());
        e.shards.push_back(std::move(shard));
      }
      std::sort(e.shards.begin(), e.shards.end(),
                [](const SavedShard& a, const SavedShard& b) { return a.offsets < b.offsets; });
      if (!t[4].is_none()) {
        auto p = py::cast<py::dict>(t[4]);
        TorchTensorProperties props;
        props.layout = py::cast<std::string>(p["layout"]);
        props.memory_format = py::cast<std::string>(p["memory_format"]);
        props.requires_grad = py::cast<bool>(p["requires_grad"]);
        props.pin_memory = py::cast<bool>(p["pin_memory"]);
        if (!p["strides"].is_none()) {
          props.has_strides = true;
          props.strides = py::cast<std::vector<int64_t>>(p["strides"]);
        }
        e.torch_properties = std::move(props);
      }
      e.bytes_encoding = py::cast<std::string>(t[5]) == "torch.save" ? BytesEncoding::kTorchSave
                                                                     : BytesEncoding::kRaw;
      md.entries.emplace(fqn, std::move(e));
    }
    if (!torch_dcp.is_none()) {
      auto d = py::cast<py::dict>(torch_dcp);
      TorchDcpMetadata dcp;
      dcp.version = py::cast<std::string>(d["version"]);
      if (!d["flatten_mapping"].is_none()) {
        dcp.has_flatten_mapping = true;
        for (auto [fqn, path] : py::cast<py::dict>(d["flatten_mapping"])) {
          std::vector<TorchPathElement>& elements = dcp.flatten_mapping[py::cast<std::string>(fqn)];
          for (py::handle element : path) {
            if (py::isinstance<py::int_>(element)) {
              elements.push_back(TorchPathElement{"", py::cast<int64_t>(element)});
            } else {
              elements.push_back(TorchPathElement{py::cast<std::string>(element), -1});
            }
          }
        }
      }
      if (!d["storage_meta"].is_none()) {
        auto m = py::cast<py::dict>(d["storage_meta"]);
        dcp.has_storage_meta = true;
        dcp.storage_checkpoint_id = py::cast<std::string>(m["checkpoint_id"]);
        dcp.save_id = py::cast<std::string>(m["save_id"]);
        dcp.load_id = py::cast<std::string>(m["load_id"]);
        dcp.modules = py::cast<std::vector<std::string>>(m["modules"]);
      }
      md.torch_dcp = std::move(dcp);
    }
    Status replicated;
    ThrowIfError(WithoutGil([&]() -> Status {
      md.committed_unix_micros = std::chrono::duration_cast<std::chrono::microseconds>(
                                     std::chrono::system_clock::now().time_since_epoch())
                                     .count();
      FillCommitMetadata(*writer_, &md);
      DCPKV_RETURN_IF_ERROR(writer_->Finish(md, {}).WithContext("save of checkpoint \"" +
                                                                checkpoint_id + "\": commit"));
      replicated = writer_->AfterFinish(md);
      Status housekeeping = writer_->AfterCommit(md);
      ReportDiagnostic(nullptr, DiagnosticSeverity::kWarning,
                       "save of checkpoint \"" + checkpoint_id +
                           "\" (committed): housekeeping after the commit failed",
                       housekeeping);
      return Status::Ok();
    }));
    if (!replicated.ok()) {
      Throw(replicated.WithContext("save of checkpoint \"" + checkpoint_id +
                                   "\": the checkpoint is committed and loadable, but its "
                                   "replication failed"));
    }
    return MetadataToPython(md);
  }

  // This rank's share of checkpoints retention deleted (non-coordinators get no hook after a
  // commit in DCP, so each save starts with it).
  void ReclaimGarbage() {
    Status s = WithoutGil([&] { return ReclaimKvRankGarbage(*writer_); });
    ReportDiagnostic(nullptr, DiagnosticSeverity::kWarning,
                     "store " + root_ + ", rank " + std::to_string(rank_) +
                         ": reclaiming deleted checkpoints' data",
                     s);
  }

 private:
  std::string root_;
  std::unique_ptr<StorageWriter> writer_;
  int rank_ = 0;
};

// Destinations of a DCP read: DCP resolves each read item to a view of exactly the box it reads
// (ReadItem.lengths), so the box starts at the view's origin.
class DcpDestinations : public LoadPlanner {
 public:
  std::map<std::pair<std::string, Shape>, Tensor> tensors;
  std::map<std::string, std::string> bytes;

  Status SetUpPlanner(FlatStateDict*, const Metadata*, bool) override { return Status::Ok(); }
  StatusOr<LoadPlan> CreateLocalPlan() override { return LoadPlan{}; }
  StatusOr<std::vector<LoadPlan>> CreateGlobalPlan(std::vector<LoadPlan> plans) override {
    return plans;
  }
  StatusOr<LoadPlan> FinishPlan(LoadPlan plan) override { return plan; }
  StatusOr<Tensor> ResolveTensor(const ReadItem& item) override {
    auto it = tensors.find({item.fqn, item.dest_offsets});
    if (it == tensors.end()) {
      return InternalError("no destination for \"" + item.fqn + "\" at " +
                           ShapeToString(item.dest_offsets));
    }
    return it->second;
  }
  Status CommitTensor(const ReadItem&, const Tensor&) override { return Status::Ok(); }
  Status LoadBytes(const ReadItem& item, std::string data) override {
    bytes[item.fqn] = std::move(data);
    return Status::Ok();
  }
};

// One rank's side of a load that torch.distributed.checkpoint runs.
KvStorageConfig::ReadIo ParseReadIo(const std::string& read_io) {
  if (read_io == "auto") return KvStorageConfig::ReadIo::kAuto;
  if (read_io == "buffered") return KvStorageConfig::ReadIo::kBuffered;
  if (read_io == "direct") return KvStorageConfig::ReadIo::kDirect;
  throw py::value_error("read_io must be \"auto\", \"buffered\" or \"direct\", not \"" + read_io +
                        "\"");
}

class DcpReader {
 public:
  DcpReader(const std::string& root, int read_threads, const std::string& read_io)
      : reader_(CreateKvStorageReader(
            KvStorageConfig{root, 0, 0, read_threads, ParseReadIo(read_io)})) {}

  // Reads the committed Metadata of `checkpoint_id` (a resolved id) and sets the reader up.
  py::dict ReadMetadata(const std::string& checkpoint_id) {
    StatusOr<Metadata> md = WithoutGil([&]() -> StatusOr<Metadata> {
      DCPKV_RETURN_IF_ERROR(reader_->Reset(checkpoint_id));
      DCPKV_ASSIGN_OR_RETURN(Metadata m, reader_->ReadMetadata());
      DCPKV_RETURN_IF_ERROR(reader_->SetUpStorageReader(m, false, 0));
      return m;
    });
    metadata_ = ValueOrThrow(std::move(md));
    return MetadataToPython(metadata_);
  }

  // Reads `items`: (fqn, saved shard offsets, box offsets, box sizes, destination capsule or
  // None for a bytes entry), in the order given. Returns {fqn: payload} of the bytes entries.
  py::dict Read(const py::list& items) {
    std::vector<std::unique_ptr<Imported>> owners;
    DcpDestinations dests;
    LoadPlan plan;
    for (py::handle h : items) {
      auto t = py::cast<py::tuple>(h);
      ReadItem item;
      item.fqn = py::cast<std::string>(t[0]);
      auto entry = metadata_.entries.find(item.fqn);
      if (entry == metadata_.entries.end()) {
        Throw(NotFoundError("checkpoint \"" + metadata_.checkpoint_id + "\" has no entry \"" +
                            item.fqn + "\""));
      }
      const Shape shard_offsets = ShapeOf(t[1]);
      const SavedShard* source = nullptr;
      for (const SavedShard& s : entry->second.shards) {
        if (s.offsets == shard_offsets) source = &s;
      }
      if (source == nullptr) {
        Throw(NotFoundError("checkpoint \"" + metadata_.checkpoint_id + "\" has no shard of \"" +
                            item.fqn + "\" at " + ShapeToString(shard_offsets)));
      }
      item.dtype = entry->second.dtype;
      item.source = *source;
      if (entry->second.is_bytes()) {
        item.type = WriteItemType::kBytes;
        item.dest_offsets = item.overlap_offsets = source->offsets;
        item.overlap_sizes = source->sizes;
      } else {
        item.type = WriteItemType::kShard;
        item.overlap_offsets = ShapeOf(t[2]);
        item.overlap_sizes = ShapeOf(t[3]);
        item.dest_offsets = item.overlap_offsets;
        const std::string what = "the tensor to load \"" + item.fqn + "\" into";
        Tensor dest = ValueOrThrow(Import(py::cast<py::capsule>(t[4]), what, true, &owners));
        if (dest.dtype() != item.dtype || dest.shape() != item.overlap_sizes || dest.is_cuda()) {
          Throw(InternalError(what + " is not a host " + std::string(DTypeName(item.dtype)) +
                              " tensor of shape " + ShapeToString(item.overlap_sizes)));
        }
        if (!dests.tensors.emplace(std::make_pair(item.fqn, item.dest_offsets), dest).second) {
          Throw(InvalidArgumentError("two read items of \"" + item.fqn + "\" start at " +
                                     ShapeToString(item.dest_offsets)));
        }
      }
      plan.items.push_back(std::move(item));
    }
    ThrowIfError(WithoutGil([&] { return reader_->ReadData(plan, dests).get(); }));
    py::dict out;
    for (auto& [fqn, data] : dests.bytes) out[py::str(fqn)] = py::bytes(data);
    return out;
  }

 private:
  std::unique_ptr<StorageReader> reader_;
  Metadata metadata_;
};

}  // namespace
}  // namespace dcpkv::python

PYBIND11_MODULE(_native, m) {
  using namespace dcpkv;
  using namespace dcpkv::python;
  m.doc() = "dcpkv's native binding (use the dcpkv package)";

  m.def("_register_errors", [](py::dict classes) {
    for (auto [code, cls] : classes) {
      ErrorClasses()[py::cast<int>(code)] = py::reinterpret_borrow<py::object>(cls);
    }
  });
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const StatusError& e) {
      auto it = ErrorClasses().find(static_cast<int>(e.status.code()));
      PyObject* cls = it != ErrorClasses().end() ? it->second.ptr() : PyExc_RuntimeError;
      const std::string code(StatusCodeName(e.status.code()));
      py::object error = py::reinterpret_borrow<py::object>(cls)(e.status.message(), code);
      PyErr_SetObject(cls, error.ptr());
    }
  });

  py::class_<PyState, std::shared_ptr<PyState>>(m, "StateDict")
      .def(py::init<>())
      .def("set_tensor", &PyState::SetTensor, py::arg("key"), py::arg("capsule"),
           py::arg("writable"))
      .def("set_sharded", &PyState::SetSharded, py::arg("key"), py::arg("global_shape"),
           py::arg("shards"), py::arg("writable"))
      .def("set_bytes", &PyState::SetBytes)
      .def("get_bytes", &PyState::GetBytes)
      .def("child", [](const std::shared_ptr<PyState>& self, const std::string& key) {
        return self->Child(key, self);
      });

  py::class_<PyGroup, std::shared_ptr<PyGroup>>(m, "ProcessGroup")
      .def_property_readonly("rank", [](const PyGroup& g) { return g.group->rank(); })
      .def_property_readonly("size", [](const PyGroup& g) { return g.group->size(); })
      .def_property_readonly("backend",
                             [](const PyGroup& g) { return std::string(g.group->backend()); })
      .def("barrier",
           [](PyGroup& g) { ThrowIfError(WithoutGil([&] { return g.group->Barrier(); })); });

  m.def("gloo_group_from_env", [](double timeout) {
    StatusOr<std::unique_ptr<ProcessGroup>> g =
        WithoutGil([&] { return CreateGlooProcessGroupFromEnv(Millis(timeout)); });
    auto out = std::make_shared<PyGroup>();
    out->group = ValueOrThrow(std::move(g));
    return out;
  });
  m.def("gloo_group", [](int rank, int world_size, const std::string& master_addr, int master_port,
                         double timeout, const std::string& prefix) {
    GlooProcessGroupOptions o;
    o.rank = rank;
    o.world_size = world_size;
    o.master_addr = master_addr;
    o.master_port = master_port;
    o.timeout = Millis(timeout);
    o.prefix = prefix;
    StatusOr<std::unique_ptr<ProcessGroup>> g =
        WithoutGil([&] { return CreateGlooProcessGroup(o); });
    auto out = std::make_shared<PyGroup>();
    out->group = ValueOrThrow(std::move(g));
    return out;
  });

  py::class_<PySaveOptions>(m, "SaveOptions")
      .def(py::init<>())
      .def_readwrite("incremental", &PySaveOptions::incremental)
      .def_readwrite("incremental_base", &PySaveOptions::incremental_base)
      .def_readwrite("tags", &PySaveOptions::tags)
      .def_readwrite("keep_last", &PySaveOptions::keep_last)
      .def_readwrite("chunk_size", &PySaveOptions::chunk_size)
      .def_readwrite("coordinator_rank", &PySaveOptions::coordinator_rank)
      .def_readwrite("no_dist", &PySaveOptions::no_dist)
      .def_readwrite("replication", &PySaveOptions::replication);

  py::class_<replication::GrpcManifestReplication,
             std::shared_ptr<replication::GrpcManifestReplication>>(m, "Replication")
      .def(
          py::init([](const std::string& ns, const std::vector<std::string>& targets,
                      bool synchronous, int write_quorum, double deadline, const std::string& token,
                      const std::string& tls_ca_file, const std::string& tls_cert_file,
                      const std::string& tls_key_file, const std::string& tls_server_name) {
            replication::ReplicatorOptions o;
            o.ns = ns;
            o.targets = targets;
            o.mode = synchronous ? replication::ReplicationMode::kSync
                                 : replication::ReplicationMode::kAsync;
            o.write_quorum = write_quorum;
            o.client.deadline = Millis(deadline);
            o.client.token = token;
            o.client.tls_ca_file = tls_ca_file;
            o.client.tls_cert_file = tls_cert_file;
            o.client.tls_key_file = tls_key_file;
            o.client.tls_server_name = tls_server_name;
            return ValueOrThrow(replication::GrpcManifestReplication::Create(std::move(o)));
          }))
      .def("state", [](const replication::GrpcManifestReplication& r,
                       const std::string& id) { return ValueOrThrow(r.State(id)); })
      .def("wait_idle", [](replication::GrpcManifestReplication& r, double timeout) {
        ThrowIfError(WithoutGil([&] { return r.WaitIdle(Millis(timeout)); }));
      });

  m.def("recover", [](const std::string& root, const std::string& target, const std::string& ns,
                      const std::string& token, double deadline) {
    replication::ReplicaClientOptions client;
    client.token = token;
    client.deadline = Millis(deadline);
    replication::RecoverReport r = ValueOrThrow(
        WithoutGil([&] { return replication::RecoverManifests(root, target, ns, client); }));
    py::dict out;
    out["restored"] = r.restored;
    out["present"] = r.present;
    return out;
  });

  m.def("save",
        [](const std::shared_ptr<PyState>& state, const std::string& root, const std::string& id,
           const PySaveOptions& o, const std::shared_ptr<PyGroup>& group) {
          StatusOr<Metadata> md = WithoutGil(
              [&] { return Save(state->dict(), MakeSaveOptions(root, id, o, GroupOf(group))); });
          return MetadataToPython(ValueOrThrow(std::move(md)));
        });

  m.def("load", [](const std::shared_ptr<PyState>& state, const std::string& root,
                   const std::string& id, bool partial, int coordinator_rank, bool no_dist,
                   const std::shared_ptr<PyGroup>& group) {
    LoadOptions o;
    o.checkpoint_id = id;
    o.store_root = root;
    o.process_group = GroupOf(group);
    o.coordinator_rank = coordinator_rank;
    o.no_dist = no_dist;
    DefaultLoadPlannerOptions planner;
    planner.allow_partial_load = partial;
    o.planner = std::make_shared<DefaultLoadPlanner>(planner);
    ThrowIfError(WithoutGil([&] { return Load(state->dict(), o); }));
  });

  py::class_<PyAsyncSave, std::shared_ptr<PyAsyncSave>>(m, "AsyncSave")
      .def("wait_staging", &PyAsyncSave::WaitStaging)
      .def("wait_upload", &PyAsyncSave::WaitUpload)
      .def("staging_result", &PyAsyncSave::StagingResult)
      .def("upload_result", &PyAsyncSave::UploadResult);

  m.def("async_save",
        [](const std::shared_ptr<PyState>& state, const std::string& root, const std::string& id,
           const PySaveOptions& o, const std::shared_ptr<PyGroup>& group, bool refuse_overlap) {
          StatusOr<AsyncSaveResponse> r = InternalError("async_save did not start");
          {
            py::gil_scoped_release release;
            // The upload runs collectives from another thread, so a group of several ranks gets a
            // group of its own for it, made once per group (every rank at its first async save).
            Status made_group;
            ProcessGroup* upload_group = GroupOf(group);
            if (group != nullptr && group->group->size() > 1) {
              if (group->async_group == nullptr) {
                StatusOr<std::unique_ptr<ProcessGroup>> made = CreateAsyncSaveGroup(*group->group);
                if (made.ok()) {
                  group->async_group = std::move(made).value();
                } else {
                  made_group = made.status();
                }
              }
              upload_group = group->async_group.get();
            }
            if (made_group.ok()) {
              AsyncSaveOptions a;
              a.save = MakeSaveOptions(root, id, o, upload_group);
              a.overlap_policy = refuse_overlap ? OverlapPolicy::kRefuse : OverlapPolicy::kWait;
              // Page-locked staging pays off only for device-to-host copies; without a CUDA
              // tensor, pageable memory is staged into without a note about it on stderr.
              a.staging_options.use_pinned_memory = HasCudaTensor(state->dict());
              r = AsyncSave(state->dict(), a);
            } else {
              r = made_group;
            }
          }
          return std::make_shared<PyAsyncSave>(ValueOrThrow(std::move(r)), state);
        });

  m.def("list_checkpoints", [](const std::string& root) {
    StatusOr<std::vector<CheckpointSummary>> all =
        WithoutGil([&] { return ListCommittedCheckpoints(root); });
    py::list out;
    for (const CheckpointSummary& s : ValueOrThrow(std::move(all))) out.append(SummaryToPython(s));
    return out;
  });
  m.def("resolve_checkpoint_id", [](const std::string& root, const std::string& id) {
    StatusOr<std::string> r = WithoutGil([&] { return ResolveCheckpointId(root, id); });
    return ValueOrThrow(std::move(r));
  });
  m.def("verify", [](const std::string& root, const std::vector<std::string>& ids) {
    StoreVerification v = ValueOrThrow(WithoutGil([&] { return VerifyStore(root, ids); }));
    py::list problems;
    for (const StoreProblem& p : v.problems) {
      py::dict d;
      d["checkpoint_id"] = p.checkpoint_id;
      d["fqn"] = p.fqn;
      d["shard_offsets"] = py::tuple(py::cast(p.shard_offsets));
      d["rank"] = p.rank;
      d["byte_offset"] = p.byte_offset;
      d["byte_end"] = p.byte_end;
      d["description"] = p.description;
      problems.append(d);
    }
    py::dict out;
    out["checkpoints"] = v.checkpoints;
    out["entries"] = v.tensors;
    out["shards"] = v.shards;
    out["chunks"] = v.chunks;
    out["bytes"] = v.bytes;
    out["problems"] = problems;
    out["deleted_meanwhile"] = v.deleted_meanwhile;
    return out;
  });
  m.def("diff", [](const std::string& root, const std::string& a, const std::string& b) {
    CheckpointDifference d =
        ValueOrThrow(WithoutGil([&] { return DiffStoredCheckpoints(root, a, b); }));
    py::list entries;
    for (const EntryDifference& e : d.entries) {
      py::dict x;
      x["fqn"] = e.fqn;
      x["kind"] = e.kind;
      x["detail"] = e.detail;
      x["dtype"] = std::string(DTypeName(e.dtype));
      x["shape"] = py::tuple(py::cast(e.shape));
      x["elements_changed"] = e.elements_changed;
      x["max_abs_diff"] = e.max_abs_diff;
      entries.append(x);
    }
    py::dict out;
    out["a"] = d.a;
    out["b"] = d.b;
    out["entries"] = entries;
    return out;
  });
  m.def("export_safetensors", [](const std::string& root, const std::string& id,
                                 const std::string& path) {
    SafetensorsExport e =
        ValueOrThrow(WithoutGil([&] { return ExportCheckpointToSafetensors(root, id, path); }));
    py::dict out;
    out["checkpoint_id"] = e.checkpoint_id;
    out["entries"] = e.tensors;
    out["file_bytes"] = e.file_bytes;
    return out;
  });
  auto cleanup = [](const StoreCleanup& c) {
    py::dict out;
    out["removed_ids"] = c.removed_ids;
    out["reclaimed_ids"] = c.reclaimed_ids;
    out["pending_ids"] = c.pending_ids;
    out["orphan_ids"] = c.orphan_ids;
    out["payload_bytes_deleted"] = c.payload_bytes_deleted;
    out["disk_bytes_freed"] = c.disk_bytes_freed;
    return out;
  };
  m.def("rm", [cleanup](const std::string& root, const std::vector<std::string>& ids) {
    return cleanup(ValueOrThrow(WithoutGil([&] { return RemoveStoredCheckpoints(root, ids); })));
  });
  m.def("job_id", [] {
    // Fixes (and exports as DCPKV_JOB_ID) the job this process's writers lease store roots for.
    return WriterJobId();
  });
  m.def("gc", [cleanup](const std::string& root) {
    return cleanup(ValueOrThrow(WithoutGil([&] { return CollectStoreGarbage(root); })));
  });
  m.def("read_metadata", [](const std::string& root, const std::string& id) {
    StatusOr<Metadata> md = WithoutGil([&] { return ReadCommittedMetadata(root, id); });
    return MetadataToPython(ValueOrThrow(std::move(md)));
  });

  py::class_<DcpWriter>(m, "DcpWriter")
      .def(py::init<const std::string&, uint64_t, int>())
      .def("configure", &DcpWriter::Configure)
      .def("set_up", &DcpWriter::SetUp)
      .def("prepare_global_plan", &DcpWriter::PrepareGlobalPlan)
      .def("write", &DcpWriter::Write)
      .def("commit", &DcpWriter::Commit)
      .def("reclaim_garbage", &DcpWriter::ReclaimGarbage);
  py::class_<DcpReader>(m, "DcpReader")
      .def(py::init<const std::string&, int, const std::string&>())
      .def("read_metadata", &DcpReader::ReadMetadata)
      .def("read", &DcpReader::Read);
}

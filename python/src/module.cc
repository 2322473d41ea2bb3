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
#include <future>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "dcpkv/async_save.h"
#include "dcpkv/catalog.h"
#include "dcpkv/checkpoint.h"
#include "dcpkv/checkpointer.h"
#include "dcpkv/gloo_process_group.h"
#include "dcpkv/maintenance.h"
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
  m.def("gc", [cleanup](const std::string& root) {
    return cleanup(ValueOrThrow(WithoutGil([&] { return CollectStoreGarbage(root); })));
  });
  m.def("read_metadata", [](const std::string& root, const std::string& id) {
    StatusOr<Metadata> md = WithoutGil([&] { return ReadCommittedMetadata(root, id); });
    return MetadataToPython(ValueOrThrow(std::move(md)));
  });
}

// Fuzzes a replica's handling of requests (replication/): what ReplicaServer's handlers do with
// a decoded PutRequest, GetRequest, ListRequest or DeleteRequest, run in process against a
// ReplicaStore in a temporary directory (the gRPC layer only hands the fields over and maps the
// status with ToGrpcStatus).
//
// Input: byte 0 picks the call (bits 0-1: Put, Get, List, Delete) and two helps for Put, which
// random bytes would otherwise almost never get past: bit 2 wraps `record` as the payload of a
// manifest record of `checkpoint_id` (to reach the Metadata decoder), bit 3 replaces
// `record_xxh3_128` by the record's true hash. The rest is the request, protobuf-encoded.
//
// Invariants: every answer is OK or the code the contract gives (INVALID_ARGUMENT for a bad
// request, NOT_FOUND for a missing record) and maps to the matching gRPC code; a Put either
// stores the record (Get then returns one that decodes to it, List names it) or writes nothing;
// Get returns a record stored by Put, List lists it, and Delete removes it. Each input starts and
// ends with every namespace empty, so that a crash reproduces from its input alone.
#include <google/protobuf/stubs/logging.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "dcpkv/core/manifest_record_codec.h"
#include "dcpkv/core/metadata_codec.h"
#include "dcpkv/core/names.h"
#include "dcpkv/replication/internal/grpc_status.h"
#include "dcpkv/replication/internal/record_hash.h"
#include "dcpkv/replication/internal/replica_store.h"
#include "dcpkv/replication/replica.h"
#include "replication.pb.h"
#include "tests/fuzz/fuzz_check.h"

namespace dcpkv::replication {
namespace {

namespace v1 = ::dcpkv::replication::v1;
using fuzzing::CheckCode;

enum Call : uint8_t { kPut = 0, kGet = 1, kList = 2, kDelete = 3 };
constexpr uint8_t kWrapRecord = 1 << 2;
constexpr uint8_t kFixHash = 1 << 3;

// Namespaces opened (each a RocksDB instance) before the replica is started afresh.
constexpr size_t kMaxOpenNamespaces = 8;

// A replica in a fresh directory (on tmpfs when there is one: every Put syncs). It is never
// destroyed: RocksDB's own statics may be gone by the time a static ReplicaStore would close
// its stores at exit; an exit handler only removes the directory.
class Replica {
 public:
  static Replica& Get() {
    static Replica* const replica = [] {
      auto* r = new Replica();
      std::atexit([] {
        std::error_code ec;
        std::filesystem::remove_all(replica->root_, ec);
      });
      return r;
    }();
    return *replica;
  }

  // The store, after starting afresh if `ns` is one namespace too many.
  ReplicaStore& For(std::string_view ns) {
    if (ValidateNamespace(ns).ok() && namespaces_.insert(std::string(ns)).second &&
        namespaces_.size() > kMaxOpenNamespaces) {
      Reset();
      namespaces_.insert(std::string(ns));
    }
    return *store_;
  }

 private:
  Replica() {
    const std::filesystem::path base = std::filesystem::is_directory("/dev/shm")
                                           ? std::filesystem::path("/dev/shm")
                                           : std::filesystem::temp_directory_path();
    RemoveDirectoriesOfDeadRuns(base);
    root_ = (base / (kDirectoryPrefix + std::to_string(::getpid()))).string();
    Reset();
  }

  static constexpr char kDirectoryPrefix[] = "dcpkv-replica-fuzz-";

  // A run that crashed (what a fuzzer is for) left its directory behind.
  static void RemoveDirectoriesOfDeadRuns(const std::filesystem::path& base) {
    std::error_code ec;
    for (const auto& entry : std::filesystem::directory_iterator(base, ec)) {
      const std::string name = entry.path().filename().string();
      if (name.rfind(kDirectoryPrefix, 0) != 0) continue;
      const long pid = std::strtol(name.c_str() + sizeof(kDirectoryPrefix) - 1, nullptr, 10);
      if (pid > 0 && ::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH) {
        std::filesystem::remove_all(entry.path(), ec);
      }
    }
  }

  void Reset() {
    store_.reset();
    namespaces_.clear();
    std::filesystem::remove_all(root_);
    std::filesystem::create_directories(root_);
    store_ = std::make_unique<ReplicaStore>(root_);
  }

  std::string root_;
  std::unique_ptr<ReplicaStore> store_;
  std::set<std::string> namespaces_;
};

bool ValidNames(std::string_view ns, std::string_view id) {
  return ValidateNamespace(ns).ok() && ValidateCheckpointId(id).ok();
}

// Checks that `status` is OK or one of `allowed`, and that the server maps it to gRPC faithfully.
void CheckAnswer(const Status& status, std::initializer_list<StatusCode> allowed,
                 const char* what) {
  if (!status.ok() && std::find(allowed.begin(), allowed.end(), status.code()) == allowed.end()) {
    CheckCode(status, StatusCode::kOk, what);
  }
  const grpc::Status mapped = ToGrpcStatus(status);
  DCPKV_FUZZ_CHECK(mapped.ok() == status.ok());
  if (status.code() == StatusCode::kInvalidArgument) {
    DCPKV_FUZZ_CHECK(mapped.error_code() == grpc::StatusCode::INVALID_ARGUMENT);
  }
  if (status.code() == StatusCode::kNotFound) {
    DCPKV_FUZZ_CHECK(mapped.error_code() == grpc::StatusCode::NOT_FOUND);
  }
}

bool Lists(ReplicaStore& store, std::string_view ns, std::string_view id) {
  StatusOr<std::vector<std::string>> ids = store.List(ns);
  CheckAnswer(ids.status(), {}, "List of a valid namespace");
  DCPKV_FUZZ_CHECK(std::is_sorted(ids->begin(), ids->end()));
  return std::find(ids->begin(), ids->end(), id) != ids->end();
}

// Checks that (ns, id) holds a record that decodes to `expected`, then deletes it.
void CheckStoredAndDelete(ReplicaStore& store, std::string_view ns, std::string_view id,
                          const ManifestRecord& expected) {
  StatusOr<std::string> got = store.Get(ns, id);
  CheckAnswer(got.status(), {}, "Get of a stored record");
  StatusOr<ManifestRecord> record = DecodeManifestRecord(*got);
  CheckAnswer(record.status(), {}, "DecodeManifestRecord of what Get returned");
  DCPKV_FUZZ_CHECK(record->checkpoint_id == expected.checkpoint_id &&
                   record->committed_unix_micros == expected.committed_unix_micros &&
                   record->payload == expected.payload);
  DCPKV_FUZZ_CHECK(Lists(store, ns, id));
  CheckAnswer(store.Delete(ns, id), {}, "Delete of a stored record");
  CheckAnswer(store.Get(ns, id).status(), {StatusCode::kNotFound}, "Get after Delete");
  DCPKV_FUZZ_CHECK(store.Get(ns, id).status().code() == StatusCode::kNotFound);
  DCPKV_FUZZ_CHECK(!Lists(store, ns, id));
}

// A valid record of checkpoint `id` for Get and Delete to find.
ManifestRecord StoredRecord(const std::string& id) {
  Metadata md;
  md.checkpoint_id = id;
  md.entries["step"] = {DType::kBytes, {8}, {SavedShard{{0}, {8}, 0, 8, 1}}};
  return ManifestRecord{id, 1764331200000000, EncodeMetadata(md)};
}

// Stores StoredRecord(id) in (ns, id) when the names are valid; returns whether it did.
bool Preload(ReplicaStore& store, const std::string& ns, const std::string& id) {
  if (!ValidNames(ns, id)) return false;
  const std::string record = EncodeManifestRecord(StoredRecord(id));
  CheckAnswer(store.Put(ns, id, record, RecordHashHex(record)), {}, "Put of a valid record");
  return true;
}

void FuzzPut(ReplicaStore& store, uint8_t flags, v1::PutRequest& request) {
  const std::string& ns = request.namespace_();
  const std::string& id = request.checkpoint_id();
  if ((flags & kWrapRecord) && ValidateCheckpointId(id).ok()) {
    request.set_record(EncodeManifestRecord(ManifestRecord{id, 0, request.record()}));
  }
  if (flags & kFixHash) request.set_record_xxh3_128(RecordHashHex(request.record()));

  const Status put = store.Put(ns, id, request.record(), request.record_xxh3_128());
  CheckAnswer(put, {StatusCode::kInvalidArgument}, "Put");
  if (!put.ok()) {
    if (ValidNames(ns, id)) {
      CheckAnswer(store.Get(ns, id).status(), {StatusCode::kNotFound}, "Get after a failed Put");
      DCPKV_FUZZ_CHECK(!store.Get(ns, id).ok());
    }
    return;
  }
  // Put validated all of this.
  DCPKV_FUZZ_CHECK(ValidNames(ns, id));
  DCPKV_FUZZ_CHECK(request.record_xxh3_128() == RecordHashHex(request.record()));
  StatusOr<ManifestRecord> sent = DecodeManifestRecord(request.record());
  CheckAnswer(sent.status(), {}, "DecodeManifestRecord of a stored record");
  DCPKV_FUZZ_CHECK(sent->checkpoint_id == id);
  StatusOr<Metadata> metadata = DecodeMetadata(sent->payload);
  CheckAnswer(metadata.status(), {}, "DecodeMetadata of a stored record's payload");
  DCPKV_FUZZ_CHECK(metadata->checkpoint_id == id);
  CheckStoredAndDelete(store, ns, id, *sent);
}

void FuzzGet(ReplicaStore& store, const v1::GetRequest& request) {
  const std::string& ns = request.namespace_();
  const std::string& id = request.checkpoint_id();
  if (Preload(store, ns, id)) {
    CheckStoredAndDelete(store, ns, id, StoredRecord(id));
  } else {
    CheckAnswer(store.Get(ns, id).status(), {StatusCode::kInvalidArgument}, "Get");
    DCPKV_FUZZ_CHECK(!store.Get(ns, id).ok());
  }
}

void FuzzList(ReplicaStore& store, const v1::ListRequest& request) {
  StatusOr<std::vector<std::string>> ids = store.List(request.namespace_());
  CheckAnswer(ids.status(), {StatusCode::kInvalidArgument}, "List");
  DCPKV_FUZZ_CHECK(ids.ok() == ValidateNamespace(request.namespace_()).ok());
  if (ids.ok()) DCPKV_FUZZ_CHECK(ids->empty());  // every input leaves the namespaces empty
}

void FuzzDelete(ReplicaStore& store, const v1::DeleteRequest& request) {
  const std::string& ns = request.namespace_();
  const std::string& id = request.checkpoint_id();
  const bool stored = Preload(store, ns, id);
  const Status deleted = store.Delete(ns, id);
  CheckAnswer(deleted, {StatusCode::kInvalidArgument}, "Delete");
  DCPKV_FUZZ_CHECK(deleted.ok() == stored);
  if (stored) {
    DCPKV_FUZZ_CHECK(store.Get(ns, id).status().code() == StatusCode::kNotFound);
    CheckAnswer(store.Delete(ns, id), {}, "Delete of a deleted record");
  }
}

void FuzzRequest(std::string_view input) {
  Replica& replica = Replica::Get();
  if (input.empty()) return;
  const auto selector = static_cast<uint8_t>(input[0]);
  const std::string_view body = input.substr(1);
  auto parse = [&](auto& message) {
    return message.ParseFromArray(body.data(), static_cast<int>(body.size()));
  };
  switch (selector & 3) {
    case kPut: {
      v1::PutRequest request;
      if (parse(request)) FuzzPut(replica.For(request.namespace_()), selector, request);
      break;
    }
    case kGet: {
      v1::GetRequest request;
      if (parse(request)) FuzzGet(replica.For(request.namespace_()), request);
      break;
    }
    case kList: {
      v1::ListRequest request;
      if (parse(request)) FuzzList(replica.For(request.namespace_()), request);
      break;
    }
    case kDelete: {
      v1::DeleteRequest request;
      if (parse(request)) FuzzDelete(replica.For(request.namespace_()), request);
      break;
    }
  }
}

}  // namespace
}  // namespace dcpkv::replication

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  // Requests whose string field is not UTF-8 fail to parse, as on the server; protobuf would log
  // each one.
  google::protobuf::SetLogHandler(nullptr);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  dcpkv::replication::FuzzRequest(dcpkv::fuzzing::AsView(data, size));
  return 0;
}

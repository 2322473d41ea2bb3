// Writes the seed corpora of the fuzzers: dcpkv_fuzz_seeds <dir> fills <dir>/<fuzzer>/ with
// small valid encodings made by the encoders (the fuzzers mutate them from there). The corpora
// under tests/fuzz/corpus/ are its output plus the inputs of crashes fixed since; rerun it there
// when an encoding changes:
//   build/fuzz/tests/fuzz/dcpkv_fuzz_seeds tests/fuzz/corpus
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "dcpkv/core/manifest_record_codec.h"
#include "dcpkv/core/metadata_codec.h"
#include "dcpkv/core/plan_codec.h"
#include "dcpkv/replication/internal/record_hash.h"
#include "dcpkv/store/chunk_codec.h"
#include "dcpkv/store/key_encoding.h"
#include "replication.pb.h"

namespace dcpkv {
namespace {

namespace v1 = ::dcpkv::replication::v1;

class SeedWriter {
 public:
  explicit SeedWriter(std::filesystem::path dir) : dir_(std::move(dir)) {}

  void Write(const std::string& fuzzer, const std::string& name, const std::string& bytes) {
    const std::filesystem::path dir = dir_ / fuzzer;
    std::filesystem::create_directories(dir);
    std::ofstream out(dir / ("seed-" + name), std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    if (!out) {
      std::fprintf(stderr, "cannot write %s\n", (dir / name).c_str());
      failed_ = true;
    }
  }
  bool failed() const { return failed_; }

 private:
  std::filesystem::path dir_;
  bool failed_ = false;
};

std::string Value(const StatusOr<std::string>& s) {
  if (!s.ok()) {
    std::fprintf(stderr, "encoding failed: %s\n", s.status().ToString().c_str());
    std::exit(1);
  }
  return *s;
}

void ChunkSeeds(SeedWriter& w) {
  const std::string hello = "hello";
  w.Write("chunk_codec_fuzzer", "bytes",
          EncodeChunk({DType::kBytes, {0}, {5}}, 0, hello.data(), 5));
  const std::vector<uint8_t> payload = {1, 2, 3, 4, 5, 6, 7, 8};
  // Rows 2..3 of a 4 x 3 float32 tensor: 24 bytes, of which this chunk holds bytes [8, 16).
  w.Write("chunk_codec_fuzzer", "float32-2d",
          EncodeChunk({DType::kFloat32, {2, 0}, {2, 3}}, 8, payload.data(), payload.size()));
  w.Write("chunk_codec_fuzzer", "int64-scalar",
          EncodeChunk({DType::kInt64, {}, {}}, 0, payload.data(), 8));
  w.Write("chunk_codec_fuzzer", "empty-shard",
          EncodeChunk({DType::kInt8, {3}, {0}}, 0, nullptr, 0));
}

Metadata SmallMetadata() {
  Metadata md;
  md.checkpoint_id = "step-1";
  md.entries["step"] = {DType::kBytes, {8}, {SavedShard{{0}, {8}, 0, 8, 1}}};
  return md;
}

// Two ranks, a sharded tensor with recorded chunks referring to a base checkpoint, tags.
Metadata IncrementalMetadata() {
  Metadata md;
  md.checkpoint_id = "step-2";
  md.world_size = 2;
  md.coordinator_rank = 1;
  md.committed_unix_micros = 1764331200000000;
  md.base_checkpoint_id = "step-1";
  md.stored_bytes = 16;
  md.tags["step"] = "2";
  md.tags["keep"] = "";
  SavedShard top{{0, 0}, {2, 4}, 0, 32, 2};
  top.chunk_list = {SavedChunk{16, 1, 2, "", 0}, SavedChunk{16, 3, 4, "step-1", 0}};
  SavedShard bottom{{2, 0}, {2, 4}, 1, 32, 1};
  bottom.chunk_list = {SavedChunk{32, 5, 6, "step-1", 1}};
  md.entries["model.w"] = {DType::kFloat32, {4, 4}, {top, bottom}};
  md.entries["model.b"] = {DType::kFloat16, {4}, {SavedShard{{0}, {4}, 1, 8, 1}}};
  md.entries["empty"] = {DType::kInt32, {0, 3}, {SavedShard{{0, 0}, {0, 3}, 0, 0, 0}}};
  return md;
}

// Saved through dcpkv.torch: torch properties, a torch.save bytes entry and DCP's metadata.
Metadata TorchMetadata() {
  Metadata md = IncrementalMetadata();
  TorchTensorProperties p;
  p.requires_grad = true;
  p.has_strides = true;
  p.strides = {4, 1};
  md.entries["model.w"].torch_properties = p;
  md.entries["model.b"].torch_properties = TorchTensorProperties{};
  md.entries["rng"] = {DType::kBytes, {3}, {SavedShard{{0}, {3}, 0, 3, 0}}};
  md.entries["rng"].bytes_encoding = BytesEncoding::kTorchSave;
  TorchDcpMetadata& t = md.torch_dcp.emplace();
  t.version = "1.0.0";
  t.has_flatten_mapping = true;
  t.flatten_mapping["model.w"] = {{"model", -1}, {"w", -1}};
  t.flatten_mapping["rng"] = {{"rng", -1}};
  t.flatten_mapping["l.0"] = {{"l", -1}, {"", 0}};
  t.has_storage_meta = true;
  t.save_id = "s";
  t.modules = {"model"};
  return md;
}

void MetadataSeeds(SeedWriter& w) {
  w.Write("metadata_codec_fuzzer", "torch-dcp", EncodeMetadata(TorchMetadata()));
  w.Write("metadata_codec_fuzzer", "small", EncodeMetadata(SmallMetadata()));
  w.Write("metadata_codec_fuzzer", "incremental", EncodeMetadata(IncrementalMetadata()));
  Metadata per_rank = SmallMetadata();
  per_rank.per_rank_commit = true;
  per_rank.world_size = 4;
  per_rank.coordinator_rank = 3;
  per_rank.entries.clear();
  w.Write("metadata_codec_fuzzer", "per-rank-empty", EncodeMetadata(per_rank));
}

void ManifestRecordSeeds(SeedWriter& w) {
  const Metadata md = IncrementalMetadata();
  w.Write("manifest_record_fuzzer", "incremental",
          EncodeManifestRecord({md.checkpoint_id, md.committed_unix_micros, EncodeMetadata(md)}));
  w.Write("manifest_record_fuzzer", "empty-payload", EncodeManifestRecord({"c", 0, ""}));
}

void KeySeeds(SeedWriter& w) {
  const std::string a = Value(EncodeChunkKey({"step-1", "model.w", {2, 0}, 4096}));
  const std::string b = Value(EncodeChunkKey({"step-1", "model.w2", {}, 0}));
  w.Write("key_encoding_fuzzer", "chunk-2d", a);
  w.Write("key_encoding_fuzzer", "chunk-0d", b);
  w.Write("key_encoding_fuzzer", "manifest", Value(EncodeManifestKey("step-1")));
  w.Write("key_encoding_fuzzer", "trash", Value(EncodeTrashKey("step-1")));
  w.Write("key_encoding_fuzzer", "reclaim", Value(EncodeReclaimKey("step-1")));
  // Two keys: the first byte is where the rest splits (key_encoding_fuzzer.cc).
  w.Write("key_encoding_fuzzer", "chunk-pair", std::string(1, static_cast<char>(a.size())) + a + b);
}

SavePlan SampleSavePlan() {
  SavePlan plan;
  plan.items.push_back({"model.w", WriteItemType::kShard, DType::kFloat32, {4, 4}, {2, 0}, {2, 4}});
  plan.items.push_back({"step", WriteItemType::kBytes, DType::kBytes, {8}, {0}, {8}});
  plan.planner_data = "planner";
  plan.storage_data = "storage";
  return plan;
}

void PlanSeeds(SeedWriter& w) {
  w.Write("plan_codec_fuzzer", "save-plan", EncodeSavePlan(SampleSavePlan()));
  w.Write("plan_codec_fuzzer", "save-plan-empty", EncodeSavePlan({}));
  LoadPlan load;
  SavedShard source{{0, 0}, {2, 4}, 1, 32, 2};
  source.chunk_list = {SavedChunk{16, 1, 2, "", 1}, SavedChunk{16, 3, 4, "step-1", 0}};
  load.items.push_back(
      {"model.w", WriteItemType::kShard, DType::kFloat32, {1, 0}, source, {1, 0}, {1, 4}});
  w.Write("plan_codec_fuzzer", "load-plan", EncodeLoadPlan(load));
  WriteResult result{"model.w", {2, 0}, 1, 32, 2, {}};
  result.chunk_list = {SavedChunk{16, 1, 2, "", -1}, SavedChunk{16, 3, 4, "base", 7}};
  w.Write("plan_codec_fuzzer", "write-results",
          EncodeWriteResults({result, {"step", {0}, 0, 8, 1, {}}}));
  w.Write("plan_codec_fuzzer", "status-ok", EncodeStatus(Status::Ok()));
  w.Write("plan_codec_fuzzer", "status-error", EncodeStatus(DataLossError("bad chunk")));
}

// The selector byte of replica_request_fuzzer.cc, then the request.
std::string Request(uint8_t selector, const google::protobuf::Message& request) {
  return std::string(1, static_cast<char>(selector)) + request.SerializeAsString();
}

void ReplicaSeeds(SeedWriter& w) {
  const Metadata md = SmallMetadata();
  const std::string record =
      EncodeManifestRecord({md.checkpoint_id, md.committed_unix_micros, EncodeMetadata(md)});
  v1::PutRequest put;
  put.set_namespace_("job-a/run:1");
  put.set_checkpoint_id(md.checkpoint_id);
  put.set_record(record);
  put.set_record_xxh3_128(replication::RecordHashHex(record));
  w.Write("replica_request_fuzzer", "put", Request(0, put));
  // Bits 2 and 3: wrap `record` (a Metadata) in a manifest record and fix the hash.
  const Metadata incremental = IncrementalMetadata();
  v1::PutRequest wrapped;
  wrapped.set_namespace_("job-b");
  wrapped.set_checkpoint_id(incremental.checkpoint_id);
  wrapped.set_record(EncodeMetadata(incremental));
  w.Write("replica_request_fuzzer", "put-wrapped", Request(0 | 4 | 8, wrapped));
  v1::GetRequest get;
  get.set_namespace_("job-a");
  get.set_checkpoint_id("step-1");
  w.Write("replica_request_fuzzer", "get", Request(1, get));
  v1::ListRequest list;
  list.set_namespace_("job-a");
  w.Write("replica_request_fuzzer", "list", Request(2, list));
  v1::DeleteRequest del;
  del.set_namespace_("job-a");
  del.set_checkpoint_id("step-1");
  w.Write("replica_request_fuzzer", "delete", Request(3, del));
}

}  // namespace
}  // namespace dcpkv

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s <corpus dir>\n", argv[0]);
    return 2;
  }
  dcpkv::SeedWriter w(argv[1]);
  dcpkv::ChunkSeeds(w);
  dcpkv::MetadataSeeds(w);
  dcpkv::ManifestRecordSeeds(w);
  dcpkv::KeySeeds(w);
  dcpkv::PlanSeeds(w);
  dcpkv::ReplicaSeeds(w);
  return w.failed() ? 1 : 0;
}

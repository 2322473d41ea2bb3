// dcpkv_store_roundtrip: writes a small two-rank checkpoint into a store root the way a training
// job lays it out (a row-sharded weight, a replicated bias written once, an opaque bytes entry),
// commits its manifest, reopens every rank read-only, reassembles and checks every tensor, and
// lists what the store holds.
//
// Usage: dcpkv_store_roundtrip [STORE_ROOT]   (default: a fresh directory under /tmp)
#include <stdlib.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "dcpkv/store/chunk_store.h"
#include "dcpkv/store/store_layout.h"

namespace {

using dcpkv::ChunkStore;
using dcpkv::DType;
using dcpkv::ShardGeometry;
using dcpkv::Status;

constexpr int kWorld = 2;
constexpr uint64_t kRows = 1024, kCols = 512;  // weight [1024, 512] float32, 2 MiB

float WeightAt(uint64_t r, uint64_t c) {
  return static_cast<float>(r) * 0.001f - static_cast<float>(c);
}

Status WriteRank(const std::string& root, int rank, const std::string& ckpt) {
  std::unique_ptr<ChunkStore> store;
  DCPKV_RETURN_IF_ERROR(
      ChunkStore::Open(dcpkv::RankDirectory(root, rank), {.chunk_size = 256 << 10}, &store));
  const uint64_t rows = kRows / kWorld, first = rows * rank;
  std::vector<float> shard(rows * kCols);
  for (uint64_t r = 0; r < rows; ++r)
    for (uint64_t c = 0; c < kCols; ++c) shard[r * kCols + c] = WeightAt(first + r, c);
  DCPKV_RETURN_IF_ERROR(store->PutShard(ckpt, "model.linear.weight",
                                        {DType::kFloat32, {first, 0}, {rows, kCols}}, shard.data(),
                                        shard.size() * sizeof(float)));
  if (rank == 0) {  // replicated tensors and bytes entries are written by one rank only
    std::vector<float> bias(kCols, 0.25f);
    DCPKV_RETURN_IF_ERROR(store->PutShard(ckpt, "model.linear.bias",
                                          {DType::kFloat32, {0}, {kCols}}, bias.data(),
                                          bias.size() * sizeof(float)));
    std::string step = "step=100";
    DCPKV_RETURN_IF_ERROR(store->PutShard(ckpt, "trainer.step", {DType::kBytes, {0}, {step.size()}},
                                          step.data(), step.size()));
  }
  DCPKV_RETURN_IF_ERROR(store->Flush());  // every rank durable before the commit
  return store->Close();
}

Status Commit(const std::string& root, const std::string& ckpt) {
  std::unique_ptr<ChunkStore> store;
  DCPKV_RETURN_IF_ERROR(ChunkStore::Open(dcpkv::RankDirectory(root, 0), {}, &store));
  auto now = std::chrono::duration_cast<std::chrono::microseconds>(
      std::chrono::system_clock::now().time_since_epoch());
  DCPKV_RETURN_IF_ERROR(store->PutManifest({ckpt, now.count(), "world_size=2"}));
  return store->Close();
}

Status VerifyAndList(const std::string& root, const std::string& ckpt) {
  DCPKV_ASSIGN_OR_RETURN(std::vector<int> ranks, dcpkv::ListRankDirectories(root));
  for (int rank : ranks) {
    std::unique_ptr<ChunkStore> store;
    DCPKV_RETURN_IF_ERROR(ChunkStore::Open(dcpkv::RankDirectory(root, rank),
                                           {.mode = dcpkv::OpenMode::kReadOnly}, &store));
    const uint64_t rows = kRows / kWorld, first = rows * rank;
    std::vector<float> shard(rows * kCols);
    DCPKV_RETURN_IF_ERROR(store->ReadShard(ckpt, "model.linear.weight",
                                           {DType::kFloat32, {first, 0}, {rows, kCols}},
                                           shard.data(), shard.size() * sizeof(float)));
    for (uint64_t r = 0; r < rows; ++r)
      for (uint64_t c = 0; c < kCols; ++c)
        if (shard[r * kCols + c] != WeightAt(first + r, c))
          return dcpkv::DataLossError("weight differs at row " + std::to_string(first + r));
    DCPKV_ASSIGN_OR_RETURN(auto it, store->NewChunkIterator(ckpt));
    size_t chunks = 0;
    uint64_t bytes = 0;
    for (; it->Valid(); it->Next(), ++chunks) bytes += it->chunk().payload_size;
    DCPKV_RETURN_IF_ERROR(it->status());
    std::printf("rank %d: checkpoint %s: %zu chunks, %llu bytes, all checksums verified\n", rank,
                ckpt.c_str(), chunks, static_cast<unsigned long long>(bytes));
    if (rank == 0) {
      DCPKV_ASSIGN_OR_RETURN(dcpkv::ManifestRecord m, store->GetManifest(ckpt));
      std::printf("rank 0: manifest of %s committed at %lld us: \"%s\"\n", ckpt.c_str(),
                  static_cast<long long>(m.committed_unix_micros), m.payload.c_str());
    }
  }
  return Status::Ok();
}

}  // namespace

int main(int argc, char** argv) {
  std::string root;
  if (argc > 1) {
    root = argv[1];
  } else {
    std::string templ = (std::filesystem::temp_directory_path() / "dcpkv-demo-XXXXXX").string();
    if (mkdtemp(templ.data()) == nullptr) return 1;
    root = templ;
  }
  const std::string ckpt = "step-100";
  Status s;
  for (int rank = 0; rank < kWorld && s.ok(); ++rank) s = WriteRank(root, rank, ckpt);
  if (s.ok()) s = Commit(root, ckpt);
  if (s.ok()) s = VerifyAndList(root, ckpt);
  if (!s.ok()) {
    std::fprintf(stderr, "dcpkv_store_roundtrip: %s\n", s.ToString().c_str());
    return 1;
  }
  std::printf("store root %s: round trip ok\n", root.c_str());
  return 0;
}

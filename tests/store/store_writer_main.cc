// A writer process for live-reader tests: saves checkpoint "c-<i>" (tensor "w", payload seeded
// with i), flushes, commits its manifest, then publishes i in <signal_dir>/progress, until
// <signal_dir>/stop appears (or a safety limit is reached).
//
// Usage: dcpkv_store_writer DB_DIR SIGNAL_DIR
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <thread>

#include "dcpkv/store/chunk_store.h"
#include "tests/util/test_data.h"

namespace {

constexpr uint64_t kElements = 48 * 1024;  // 192 KiB of float32: blob-sized chunks

int Fail(const dcpkv::Status& s) {
  std::fprintf(stderr, "store writer: %s\n", s.ToString().c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s DB_DIR SIGNAL_DIR\n", argv[0]);
    return 2;
  }
  const std::filesystem::path signal_dir = argv[2];
  std::unique_ptr<dcpkv::ChunkStore> store;
  dcpkv::ChunkStoreOptions options;
  options.chunk_size = 64 << 10;
  if (dcpkv::Status s = dcpkv::ChunkStore::Open(argv[1], options, &store); !s.ok()) return Fail(s);
  const dcpkv::ShardGeometry geometry{dcpkv::DType::kFloat32, {0}, {kElements}};
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  for (int i = 0; std::chrono::steady_clock::now() < deadline; ++i) {
    std::string id = "c-" + std::to_string(i);
    std::vector<uint8_t> data = dcpkv::testing::RandomBytes(kElements * 4, i);
    if (auto s = store->PutShard(id, "w", geometry, data.data(), data.size()); !s.ok())
      return Fail(s);
    if (auto s = store->Flush(); !s.ok()) return Fail(s);
    if (auto s = store->PutManifest({id, i, "manifest " + id}); !s.ok()) return Fail(s);
    { std::ofstream(signal_dir / "progress.tmp") << i; }
    std::filesystem::rename(signal_dir / "progress.tmp", signal_dir / "progress");
    if (std::filesystem::exists(signal_dir / "stop")) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  if (auto s = store->Close(); !s.ok()) return Fail(s);
  return 0;
}

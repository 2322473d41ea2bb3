// Writes a tensor into a chunk store through the installed headers and library, reads it back.
#include <cstdio>
#include <cstring>
#include <vector>

#include <dcpkv/store/chunk_store.h>
#include <dcpkv/store/store_layout.h>

int main(int argc, char** argv) {
  if (argc != 2) return 2;
  std::unique_ptr<dcpkv::ChunkStore> store;
  dcpkv::Status s = dcpkv::ChunkStore::Open(dcpkv::RankDirectory(argv[1], 0), {}, &store);
  std::vector<float> w(1000), back(1000);
  for (size_t i = 0; i < w.size(); ++i) w[i] = 0.5f * static_cast<float>(i);
  dcpkv::ShardGeometry g{dcpkv::DType::kFloat32, {0}, {w.size()}};
  if (s.ok()) s = store->PutShard("consumer", "w", g, w.data(), w.size() * 4);
  if (s.ok()) s = store->Flush();
  if (s.ok()) s = store->ReadShard("consumer", "w", g, back.data(), back.size() * 4);
  if (!s.ok()) {
    std::fprintf(stderr, "consumer: %s\n", s.ToString().c_str());
    return 1;
  }
  if (std::memcmp(w.data(), back.data(), w.size() * 4) != 0) {
    std::fprintf(stderr, "consumer: data differs\n");
    return 1;
  }
  std::printf("consumer: round trip of %zu floats ok\n", w.size());
  return 0;
}

// A hand-built incremental store for tests of the read side: chunks written with ChunkStore and
// manifests whose chunk lists refer to another checkpoint's chunks, independent of the save
// path that normally makes them.
#ifndef DCPKV_TESTS_UTIL_INCREMENTAL_STORE_H_
#define DCPKV_TESTS_UTIL_INCREMENTAL_STORE_H_

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "dcpkv/core/box.h"
#include "dcpkv/core/metadata_codec.h"
#include "dcpkv/metadata.h"
#include "dcpkv/store/chunk_store.h"
#include "dcpkv/store/key_encoding.h"
#include "dcpkv/store/store_layout.h"
#include "tests/util/raw_db.h"
#include "tests/util/sharding.h"
#include "tests/util/temp_dir.h"
#include "tests/util/test_data.h"

namespace dcpkv::testing::incremental {

inline constexpr uint64_t kChunkSize = 1024;

// One saved shard of a checkpoint to write. Chunk k (kChunkSize bytes each, the last one
// shorter) is stored under the checkpoint's own keys in `rank`'s database, unless `refs` maps k
// to (source checkpoint, source rank): then it is only recorded in the manifest.
struct PartSpec {
  std::string fqn;
  DType dtype = DType::kFloat32;
  Shape global_shape;
  Shape offsets;
  Shape sizes;
  int rank = 0;
  std::string data;
  std::map<size_t, std::pair<std::string, int>> refs;
  bool record_chunks = true;  // false: the entry's manifest has no chunk list (older manifests)
};

inline std::string TensorBytes(const Tensor& t) {
  return std::string(static_cast<const char*>(t.data()), t.nbytes());
}

// Writes checkpoint `id` (world `world`, manifest in rank 0's database) as `parts` say: every
// chunk of every part under `id` in its rank's database, then deletes the referenced ones.
inline void WriteCheckpoint(const std::string& root, const std::string& id, const std::string& base,
                            int world, const std::vector<PartSpec>& parts) {
  std::vector<std::unique_ptr<ChunkStore>> stores(world);
  std::vector<std::unique_ptr<ChunkBatchWriter>> writers(world);
  for (int r = 0; r < world; ++r) {
    ChunkStoreOptions o;
    o.chunk_size = kChunkSize;
    ASSERT_TRUE(ChunkStore::Open(RankDirectory(root, r), o, &stores[r]).ok());
    writers[r] = std::make_unique<ChunkBatchWriter>(stores[r].get());
  }
  Metadata md;
  md.checkpoint_id = id;
  md.world_size = world;
  md.committed_unix_micros = 1000 + id[0];  // "a" < "b" < "c"
  md.base_checkpoint_id = base;
  std::vector<ChunkKey> deleted;
  for (const PartSpec& p : parts) {
    ShardGeometry g{p.dtype, p.offsets, p.sizes};
    ASSERT_TRUE(writers[p.rank]->AddShard(id, p.fqn, g, p.data.data(), p.data.size()).ok());
    SavedShard shard;
    shard.offsets = p.offsets;
    shard.sizes = p.sizes;
    shard.rank = p.rank;
    shard.bytes = p.data.size();
    for (const WrittenChunk& w : writers[p.rank]->written()) {
      if (w.key.fqn != p.fqn || w.key.shard_offsets != p.offsets) continue;
      const size_t k = shard.chunk_list.size();
      SavedChunk c{w.payload_len, w.payload_hash.lo, w.payload_hash.hi, "", p.rank};
      if (auto ref = p.refs.find(k); ref != p.refs.end()) {
        c.source = ref->second.first;
        c.source_rank = ref->second.second;
        deleted.push_back(w.key);
      } else {
        md.stored_bytes += w.payload_len;
      }
      shard.chunk_list.push_back(std::move(c));
    }
    shard.chunks = static_cast<uint32_t>(shard.chunk_list.size());
    if (!p.record_chunks) shard.chunk_list.clear();
    EntryMetadata& e = md.entries[p.fqn];
    e.dtype = p.dtype;
    e.global_shape = p.global_shape;
    e.shards.push_back(std::move(shard));
  }
  for (auto& [fqn, e] : md.entries) {
    std::sort(e.shards.begin(), e.shards.end(),
              [](const SavedShard& a, const SavedShard& b) { return a.offsets < b.offsets; });
  }
  ASSERT_TRUE(ValidateMetadata(md).ok()) << ValidateMetadata(md);
  for (int r = 0; r < world; ++r) {
    ASSERT_TRUE(writers[r]->Finish().ok());
    ASSERT_TRUE(stores[r]->Flush().ok());
  }
  ASSERT_TRUE(stores[0]->PutManifest({id, md.committed_unix_micros, EncodeMetadata(md)}).ok());
  // Which rank's database holds each deleted key.
  std::map<int, std::vector<ChunkKey>> by_rank;
  for (const ChunkKey& key : deleted) {
    for (const PartSpec& p : parts) {
      if (p.fqn == key.fqn && p.offsets == key.shard_offsets) by_rank[p.rank].push_back(key);
    }
  }
  writers.clear();
  for (auto& s : stores) ASSERT_TRUE(s->Close().ok());
  for (const auto& [rank, keys] : by_rank) {
    RawDB db(RankDirectory(root, rank));
    for (const ChunkKey& key : keys) db.Delete(*EncodeChunkKey(key));
  }
}

// The references an incremental save of `b` over `a` would make: chunk k of a part refers to
// `a`'s chunk if the bytes are equal (and `a` stored that shard, in `a_rank`'s database).
inline std::map<size_t, std::pair<std::string, int>> RefsOf(const std::string& a,
                                                            const std::string& b, int a_rank) {
  std::map<size_t, std::pair<std::string, int>> refs;
  for (size_t k = 0; k * kChunkSize < b.size(); ++k) {
    if (a.substr(k * kChunkSize, kChunkSize) == b.substr(k * kChunkSize, kChunkSize)) {
      refs[k] = {"a", a_rank};
    }
  }
  return refs;
}

// A store of world 2 with full checkpoint "a", incremental checkpoint "b" over it and "c", a full
// checkpoint of the values of "b":
//   w     float32 [64, 32] by rows: rows 0..31 on rank 0 (b changes chunks 1 and 3), rows
//         32..63 on rank 1 in "a" but rank 0 in "b" (chunk 1 changed; the others are in rank 1's
//         database under "a");
//   m     float32 [16, 128] by columns, on ranks 0 and 1 (b changes chunk 2 of the first);
//   bias  float32 [300], two chunks, rank 0 in "a", rank 1 in "b": nothing stored under "b";
//   blob  3000 bytes on rank 1 (b changes chunks 1 and 2);
//   step  int64 scalar on rank 0, changed, recorded in "b" without a chunk list.
struct IncrementalStore {
  TempDir tmp;
  Tensor w_a, w_b, m_a, m_b, bias, step_a, step_b;
  std::string blob_a, blob_b;

  const std::string& root() const { return tmp.path(); }

  IncrementalStore() {
    w_a = testing::MakeGlobal({64, 32}, 1.0f);
    w_b = testing::MakeGlobal({64, 32}, 1.0f);
    for (uint64_t row : {8, 9, 15, 24, 31, 40, 47}) w_b.data_as<float>()[row * 32 + 3] = -7.0f;
    m_a = testing::MakeGlobal({16, 128}, 2.0f);
    m_b = testing::MakeGlobal({16, 128}, 2.0f);
    m_b.data_as<float>()[9 * 128 + 5] = 99.0f;  // rows 8..11 of the first column shard: chunk 2
    bias = testing::MakeGlobal({300}, 3.0f);
    step_a = Tensor::Allocate(DType::kInt64, {});
    step_b = Tensor::Allocate(DType::kInt64, {});
    *step_a.data_as<int64_t>() = 41;
    *step_b.data_as<int64_t>() = 42;
    std::vector<uint8_t> blob = testing::RandomBytes(3000, 5);
    blob_a.assign(blob.begin(), blob.end());
    blob_b = blob_a;
    blob_b[1500] ^= 1;
    blob_b[2999] ^= 1;
    WriteCheckpoint(root(), "a", "", 2, Parts(/*incremental=*/false));
    WriteCheckpoint(root(), "b", "a", 2, Parts(/*incremental=*/true));
    // "c": the values of "b" as a full checkpoint, every chunk its own.
    std::vector<PartSpec> full = Parts(/*incremental=*/true);
    for (PartSpec& p : full) {
      p.refs.clear();
      p.record_chunks = true;
    }
    WriteCheckpoint(root(), "c", "", 2, full);
  }

  std::vector<PartSpec> Parts(bool b) const {
    const Tensor& w = b ? w_b : w_a;
    const Tensor& m = b ? m_b : m_a;
    std::vector<PartSpec> parts;
    auto add = [&](const std::string& fqn, DType dtype, const Shape& global, const Box& box,
                   int a_rank, int b_rank, std::string a_data, std::string b_data) {
      PartSpec p{
          fqn, dtype, global, box.offsets, box.sizes, b ? b_rank : a_rank, b ? b_data : a_data};
      if (b) p.refs = RefsOf(a_data, b_data, a_rank);
      parts.push_back(std::move(p));
    };
    for (int r = 0; r < 2; ++r) {
      const Box rows = testing::SplitBox({64, 32}, 0, 2, r);
      add("w", DType::kFloat32, {64, 32}, rows, r, 0, TensorBytes(testing::Slice(w_a, rows)),
          TensorBytes(testing::Slice(w, rows)));
      const Box cols = testing::SplitBox({16, 128}, 1, 2, r);
      add("m", DType::kFloat32, {16, 128}, cols, r, r, TensorBytes(testing::Slice(m_a, cols)),
          TensorBytes(testing::Slice(m, cols)));
    }
    add("bias", DType::kFloat32, {300}, {{0}, {300}}, 0, 1, TensorBytes(bias), TensorBytes(bias));
    add("blob", DType::kBytes, {3000}, {{0}, {3000}}, 1, 1, blob_a, blob_b);
    add("step", DType::kInt64, {}, {{}, {}}, 0, 0, TensorBytes(step_a),
        TensorBytes(b ? step_b : step_a));
    if (b) parts.back().record_chunks = false;
    return parts;
  }
};

}  // namespace dcpkv::testing::incremental

#endif  // DCPKV_TESTS_UTIL_INCREMENTAL_STORE_H_

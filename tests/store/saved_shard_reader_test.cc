// Reading incremental checkpoints: a shard's chunks split into runs by where they are stored
// (SplitIntoChunkRuns), ranged reads across those runs (ReadSavedShardRange), ranged
// verification of a checkpoint that holds only some chunks of a shard (VerifyShard with a byte
// range), and dcpkv::Load of an incremental checkpoint built by hand, whole and resharded over
// gloo thread ranks, bit-exact, with its failures when referenced chunks are gone.
#include "dcpkv/store/saved_shard_reader.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "dcpkv/checkpoint.h"
#include "dcpkv/core/manifest_record_codec.h"
#include "dcpkv/core/metadata_codec.h"
#include "dcpkv/store/chunk_store.h"
#include "dcpkv/store/key_encoding.h"
#include "dcpkv/store/store_layout.h"
#include "tests/util/checkpoint_options.h"
#include "tests/util/gloo_threads.h"
#include "tests/util/incremental_store.h"
#include "tests/util/raw_db.h"
#include "tests/util/sharding.h"
#include "tests/util/temp_dir.h"
#include "tests/util/test_data.h"

namespace dcpkv {
namespace {

using ::testing::HasSubstr;
using testing::RawDB;
using testing::RunOnGlooRanks;
using testing::TempDir;

using namespace testing::incremental;  // NOLINT: the shared hand-built store

StatusOr<ChunkStore*> OpenReadOnly(const std::string& root, int rank,
                                   std::map<int, std::unique_ptr<ChunkStore>>* stores) {
  auto& s = (*stores)[rank];
  if (s == nullptr) {
    DCPKV_RETURN_IF_ERROR(
        ChunkStore::Open(RankDirectory(root, rank), {.mode = OpenMode::kReadOnly}, &s));
  }
  return s.get();
}

StatusOr<Metadata> ManifestOf(const std::string& root, const std::string& id) {
  std::unique_ptr<ChunkStore> store;
  DCPKV_RETURN_IF_ERROR(
      ChunkStore::Open(RankDirectory(root, 0), {.mode = OpenMode::kReadOnly}, &store));
  DCPKV_ASSIGN_OR_RETURN(ManifestRecord record, store->GetManifest(id));
  return DecodeMetadata(record.payload);
}

// ---- SplitIntoChunkRuns ------------------------------------------------------------------------

SavedShard ShardWithChunks(std::vector<SavedChunk> chunks, int rank = 0) {
  SavedShard s;
  s.offsets = {0};
  s.rank = rank;
  for (const SavedChunk& c : chunks) s.bytes += c.length;
  s.sizes = {s.bytes};
  s.chunks = static_cast<uint32_t>(chunks.size());
  s.chunk_list = std::move(chunks);
  return s;
}

TEST(SplitIntoChunkRunsTest, GroupsConsecutiveChunksBySourceAndClipsToTheRange) {
  const SavedShard shard = ShardWithChunks({{100, 0, 0, "a", 1},
                                            {100, 0, 0, "a", 1},
                                            {100, 0, 0, "", 2},
                                            {100, 0, 0, "a", 0},
                                            {50, 0, 0, "x", 0},
                                            {100, 0, 0, "x", 0}},
                                           2);
  StatusOr<std::vector<ChunkRun>> runs = SplitIntoChunkRuns("c", shard, 0, 550);
  ASSERT_TRUE(runs.ok()) << runs.status();
  ASSERT_EQ(runs->size(), 4u);
  auto expect = [&](size_t i, const std::string& id, int rank, bool ref, uint64_t b, uint64_t e,
                    size_t first, size_t end) {
    const ChunkRun& r = (*runs)[i];
    EXPECT_EQ(r.checkpoint_id, id) << i;
    EXPECT_EQ(r.rank, rank) << i;
    EXPECT_EQ(r.referenced, ref) << i;
    EXPECT_EQ(r.begin, b) << i;
    EXPECT_EQ(r.end, e) << i;
    EXPECT_EQ(r.first_chunk, first) << i;
    EXPECT_EQ(r.end_chunk, end) << i;
  };
  expect(0, "a", 1, true, 0, 200, 0, 2);
  expect(1, "c", 2, false, 200, 300, 2, 3);
  expect(2, "a", 0, true, 300, 400, 3, 4);
  expect(3, "x", 0, true, 400, 550, 4, 6);
  EXPECT_EQ(DescribeChunkRunLocation((*runs)[0]), "checkpoint \"a\" in rank 1's database");
  EXPECT_EQ(DescribeChunkRunLocation((*runs)[1]), "rank 2's database");

  runs = SplitIntoChunkRuns("c", shard, 150, 420);
  ASSERT_TRUE(runs.ok()) << runs.status();
  ASSERT_EQ(runs->size(), 4u);
  expect(0, "a", 1, true, 150, 200, 1, 2);
  expect(1, "c", 2, false, 200, 300, 2, 3);
  expect(2, "a", 0, true, 300, 400, 3, 4);
  expect(3, "x", 0, true, 400, 420, 4, 5);

  runs = SplitIntoChunkRuns("c", shard, 250, 260);
  ASSERT_TRUE(runs.ok());
  ASSERT_EQ(runs->size(), 1u);
  expect(0, "c", 2, false, 250, 260, 2, 3);
}

TEST(SplitIntoChunkRunsTest, EmptyRangesEmptyChunkListsAndErrors) {
  const SavedShard shard = ShardWithChunks({{100, 0, 0, "a", 1}, {100, 0, 0, "", 0}});
  StatusOr<std::vector<ChunkRun>> runs = SplitIntoChunkRuns("c", shard, 100, 100);
  ASSERT_TRUE(runs.ok());
  ASSERT_EQ(runs->size(), 1u);
  EXPECT_EQ((*runs)[0].checkpoint_id, "c");
  EXPECT_EQ((*runs)[0].begin, 100u);
  EXPECT_EQ((*runs)[0].end, 100u);
  runs = SplitIntoChunkRuns("c", shard, 200, 200);  // the end: the last chunk
  ASSERT_TRUE(runs.ok());
  EXPECT_EQ((*runs)[0].first_chunk, 1u);
  runs = SplitIntoChunkRuns("c", shard, 50, 50);
  ASSERT_TRUE(runs.ok());
  EXPECT_EQ((*runs)[0].checkpoint_id, "a");

  // An empty shard: one chunk of no bytes.
  const SavedShard empty = ShardWithChunks({{0, 0, 0, "a", 0}});
  runs = SplitIntoChunkRuns("c", empty, 0, 0);
  ASSERT_TRUE(runs.ok());
  ASSERT_EQ(runs->size(), 1u);
  EXPECT_EQ((*runs)[0].checkpoint_id, "a");

  // No chunk list: all of it under the checkpoint's own keys in the shard's rank.
  SavedShard old = shard;
  old.chunk_list.clear();
  old.rank = 3;
  runs = SplitIntoChunkRuns("c", old, 10, 190);
  ASSERT_TRUE(runs.ok());
  ASSERT_EQ(runs->size(), 1u);
  EXPECT_EQ((*runs)[0].checkpoint_id, "c");
  EXPECT_EQ((*runs)[0].rank, 3);
  EXPECT_FALSE((*runs)[0].referenced);
  EXPECT_EQ((*runs)[0].begin, 10u);
  EXPECT_EQ((*runs)[0].end, 190u);

  EXPECT_EQ(SplitIntoChunkRuns("c", shard, 10, 201).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(SplitIntoChunkRuns("c", shard, 20, 10).status().code(), StatusCode::kInvalidArgument);
  SavedShard bad = shard;
  bad.bytes = 150;
  bad.sizes = {150};
  EXPECT_EQ(SplitIntoChunkRuns("c", bad, 0, 10).status().code(), StatusCode::kDataLoss);
}

// ---- ReadSavedShardRange and ranged VerifyShard ------------------------------------------------

class IncrementalReadTest : public ::testing::Test {
 protected:
  void SetUp() override {
    StatusOr<Metadata> md = ManifestOf(store_.root(), "b");
    ASSERT_TRUE(md.ok()) << md.status();
    b_ = std::move(md).value();
  }
  RankStoreResolver Resolver() {
    return [this](int rank) { return OpenReadOnly(store_.root(), rank, &stores_); };
  }
  const SavedShard& ShardOf(const std::string& fqn, size_t i) {
    return b_.entries.at(fqn).shards.at(i);
  }

  IncrementalStore store_;
  Metadata b_;
  std::map<int, std::unique_ptr<ChunkStore>> stores_;
};

TEST_F(IncrementalReadTest, ManifestRecordsWhatTheStoreHolds) {
  const SavedShard& w0 = ShardOf("w", 0);
  ASSERT_EQ(w0.chunk_list.size(), 4u);
  EXPECT_EQ(w0.chunk_list[0].source, "a");
  EXPECT_EQ(w0.chunk_list[1].source, "");
  EXPECT_EQ(w0.chunk_list[2].source, "a");
  EXPECT_EQ(w0.chunk_list[3].source, "");
  const SavedShard& w1 = ShardOf("w", 1);
  EXPECT_EQ(w1.rank, 0);
  EXPECT_EQ(w1.chunk_list[0].source_rank, 1);
  EXPECT_EQ(w1.chunk_list[1].source, "");
  EXPECT_EQ(ShardOf("bias", 0).rank, 1);
  EXPECT_FALSE(ShardOf("bias", 0).self_contained());
  EXPECT_TRUE(ShardOf("step", 0).chunk_list.empty());
  // "b" holds only its own chunks.
  std::unique_ptr<ChunkStore> rank0;
  ASSERT_TRUE(
      ChunkStore::Open(RankDirectory(store_.root(), 0), {.mode = OpenMode::kReadOnly}, &rank0)
          .ok());
  EXPECT_EQ(rank0->GetChunk({"b", "w", {0, 0}, 0}).status().code(), StatusCode::kNotFound);
  EXPECT_TRUE(rank0->GetChunk({"b", "w", {0, 0}, 1024}).ok());
  EXPECT_EQ(rank0->GetChunk({"b", "bias", {0}, 0}).status().code(), StatusCode::kNotFound);
}

TEST_F(IncrementalReadTest, EveryRangeOfEveryShardReadsBackExactly) {
  const std::map<std::string, std::string> global = {{"w", TensorBytes(store_.w_b)},
                                                     {"bias", TensorBytes(store_.bias)},
                                                     {"blob", store_.blob_b},
                                                     {"step", TensorBytes(store_.step_b)}};
  for (const auto& [fqn, bytes] : global) {
    const EntryMetadata& e = b_.entries.at(fqn);
    for (const SavedShard& shard : e.shards) {
      // Rows shards of w and whole shards elsewhere: a shard's bytes are a contiguous range.
      const uint64_t at =
          shard.offsets.empty()
              ? 0
              : shard.offsets[0] * (shard.bytes / std::max<uint64_t>(shard.sizes[0], 1));
      for (uint64_t begin = 0; begin <= shard.bytes; begin += 200) {
        for (uint64_t end = begin; end <= shard.bytes; end += 328) {
          std::string got(end - begin, '\0');
          Status s =
              ReadSavedShardRange("b", fqn, e.dtype, shard, begin, end, got.data(), Resolver());
          ASSERT_TRUE(s.ok()) << fqn << " [" << begin << ", " << end << "): " << s;
          EXPECT_EQ(got, bytes.substr(at + begin, end - begin))
              << fqn << " [" << begin << ", " << end << ")";
        }
      }
      std::string whole(shard.bytes, '\0');
      ASSERT_TRUE(
          ReadSavedShardRange("b", fqn, e.dtype, shard, 0, shard.bytes, whole.data(), Resolver())
              .ok());
      EXPECT_EQ(whole, bytes.substr(at, shard.bytes)) << fqn;
    }
  }
}

TEST_F(IncrementalReadTest, ReferencedChunkMissingIsDataLossNamingWhereItIsStored) {
  stores_.clear();
  {
    RawDB db(RankDirectory(store_.root(), 1));
    db.Delete(*EncodeChunkKey({"a", "w", {32, 0}, 2048}));
  }
  const SavedShard& w1 = ShardOf("w", 1);
  std::string got(w1.bytes, '\0');
  Status s =
      ReadSavedShardRange("b", "w", DType::kFloat32, w1, 0, w1.bytes, got.data(), Resolver());
  EXPECT_EQ(s.code(), StatusCode::kDataLoss);
  EXPECT_THAT(s.message(), HasSubstr("checkpoint \"b\" fqn \"w\" shard [32, 0]"));
  EXPECT_THAT(s.message(), HasSubstr("bytes [2048, 4096) are stored under checkpoint \"a\" in "
                                     "rank 1's database"));
  // The chunks before it still read.
  EXPECT_TRUE(
      ReadSavedShardRange("b", "w", DType::kFloat32, w1, 0, 2048, got.data(), Resolver()).ok());

  // Every chunk of "a" gone: DATA_LOSS, not NOT_FOUND.
  for (int rank : {0, 1}) {
    ASSERT_TRUE(OpenReadOnly(store_.root(), rank, &stores_).ok());
  }
  stores_.clear();
  for (int rank : {0, 1}) {
    std::unique_ptr<ChunkStore> rw;
    ASSERT_TRUE(ChunkStore::Open(RankDirectory(store_.root(), rank), {}, &rw).ok());
    ASSERT_TRUE(rw->DeleteCheckpointChunks("a").ok());
    ASSERT_TRUE(rw->Close().ok());
  }
  const SavedShard& bias = ShardOf("bias", 0);
  got.assign(bias.bytes, '\0');
  s = ReadSavedShardRange("b", "bias", DType::kFloat32, bias, 0, bias.bytes, got.data(),
                          Resolver());
  EXPECT_EQ(s.code(), StatusCode::kDataLoss) << s;
  EXPECT_THAT(s.message(), HasSubstr("stored under checkpoint \"a\" in rank 0's database"));
  // The shard's own chunks still read.
  const SavedShard& w0 = ShardOf("w", 0);
  got.assign(1024, '\0');
  EXPECT_TRUE(
      ReadSavedShardRange("b", "w", DType::kFloat32, w0, 1024, 2048, got.data(), Resolver()).ok());

  // A source rank whose database does not exist.
  SavedShard moved = bias;
  for (SavedChunk& c : moved.chunk_list) c.source_rank = 7;
  s = ReadSavedShardRange("b", "bias", DType::kFloat32, moved, 0, 10, got.data(), Resolver());
  EXPECT_EQ(s.code(), StatusCode::kDataLoss) << s;
  EXPECT_THAT(s.message(), HasSubstr("rank 7's database"));
}

TEST_F(IncrementalReadTest, RunnerSeesEveryRunAndMayRetryIt) {
  const SavedShard& w1 = ShardOf("w", 1);
  std::vector<int> ranks;
  int failures = 1;
  std::string got(w1.bytes, '\0');
  Status s =
      ReadSavedShardRange("b", "w", DType::kFloat32, w1, 0, w1.bytes, got.data(),
                          [&](int rank, const std::function<Status(ChunkStore*)>& read) -> Status {
                            ranks.push_back(rank);
                            if (failures > 0) {
                              --failures;
                              ranks.push_back(rank);  // a retry after a (simulated) reopen
                            }
                            return read(*OpenReadOnly(store_.root(), rank, &stores_));
                          });
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_EQ(ranks, (std::vector<int>{1, 1, 0, 1}));
  EXPECT_EQ(got, TensorBytes(testing::Slice(store_.w_b, {{32, 0}, {32, 32}})));
}

TEST_F(IncrementalReadTest, RangedVerifyChecksOnlyTheChunksOfTheRange) {
  ChunkStore* rank0 = *OpenReadOnly(store_.root(), 0, &stores_);
  const ShardGeometry g{DType::kFloat32, {0, 0}, {32, 32}};
  const SavedShard& w0 = ShardOf("w", 0);

  // "b" holds chunks 1 and 3 of the shard: each verifies on its own.
  for (uint64_t k : {1, 3}) {
    StatusOr<ShardVerification> v = rank0->VerifyShard("b", "w", g, k * 1024, (k + 1) * 1024);
    ASSERT_TRUE(v.ok()) << v.status();
    EXPECT_TRUE(v->problems.empty()) << v->problems[0].what;
    EXPECT_EQ(v->chunks, 1u);
    EXPECT_EQ(v->bytes, 1024u);
    ASSERT_EQ(v->intact.size(), 1u);
    EXPECT_EQ(v->intact[0].byte_offset, k * 1024);
    EXPECT_EQ(v->intact[0].length, 1024u);
    EXPECT_EQ(v->intact[0].hash, (Hash128{w0.chunk_list[k].hash_low, w0.chunk_list[k].hash_high}));
  }
  // The whole shard under "b" lacks the referenced chunks.
  StatusOr<ShardVerification> v = rank0->VerifyShard("b", "w", g);
  ASSERT_TRUE(v.ok());
  ASSERT_EQ(v->problems.size(), 2u);
  EXPECT_EQ(v->problems[0].byte_offset, 0u);
  EXPECT_EQ(v->problems[0].end, 1024u);
  EXPECT_EQ(v->problems[1].byte_offset, 2048u);
  EXPECT_EQ(v->problems[1].end, 3072u);
  EXPECT_EQ(v->chunks, 2u);
  EXPECT_EQ(v->intact.size(), 2u);
  // A range that starts on a referenced chunk.
  v = rank0->VerifyShard("b", "w", g, 0, 2048);
  ASSERT_TRUE(v.ok());
  ASSERT_EQ(v->problems.size(), 1u);
  EXPECT_EQ(v->problems[0].byte_offset, 0u);
  EXPECT_EQ(v->problems[0].end, 1024u);
  EXPECT_THAT(v->problems[0].what, HasSubstr("missing chunk"));
  // A range of referenced chunks only.
  v = rank0->VerifyShard("b", "w", g, 2048, 3072);
  ASSERT_TRUE(v.ok());
  ASSERT_EQ(v->problems.size(), 1u);
  EXPECT_THAT(v->problems[0].what, HasSubstr("no chunks stored for bytes [2048, 3072)"));
  // A range that ends inside a chunk.
  v = rank0->VerifyShard("b", "w", g, 1024, 1500);
  ASSERT_TRUE(v.ok());
  ASSERT_EQ(v->problems.size(), 1u);
  EXPECT_THAT(v->problems[0].what, HasSubstr("past byte 1500"));
  // "a" holds them all: the whole shard and any chunk-aligned range are clean.
  v = rank0->VerifyShard("a", "w", g);
  ASSERT_TRUE(v.ok());
  EXPECT_TRUE(v->problems.empty());
  EXPECT_EQ(v->chunks, 4u);
  ASSERT_EQ(v->intact.size(), 4u);
  for (size_t k = 0; k < 4; ++k) EXPECT_EQ(v->intact[k].byte_offset, k * 1024);
  v = rank0->VerifyShard("a", "w", g, 1024, 3072);
  ASSERT_TRUE(v.ok());
  EXPECT_TRUE(v->problems.empty());
  EXPECT_EQ(v->chunks, 2u);
  // Ranges outside the shard, or empty in a non-empty shard.
  EXPECT_EQ(rank0->VerifyShard("a", "w", g, 0, 4097).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(rank0->VerifyShard("a", "w", g, 100, 100).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(rank0->VerifyShard("a", "w", g, 200, 100).status().code(),
            StatusCode::kInvalidArgument);
}

TEST_F(IncrementalReadTest, RangedVerifyReportsDamageWithinTheRange) {
  {
    RawDB db(RankDirectory(store_.root(), 0));
    const std::string key = *EncodeChunkKey({"a", "w", {0, 0}, 2048});
    std::string value = db.Get(key);
    const std::string payload =
        TensorBytes(testing::Slice(store_.w_a, {{0, 0}, {32, 32}})).substr(2048, 1024);
    const size_t pos = value.find(payload);
    ASSERT_NE(pos, std::string::npos);
    value[pos + 100] ^= 0x10;  // a payload byte
    db.Put(key, value);
  }
  ChunkStore* rank0 = *OpenReadOnly(store_.root(), 0, &stores_);
  const ShardGeometry g{DType::kFloat32, {0, 0}, {32, 32}};
  StatusOr<ShardVerification> v = rank0->VerifyShard("a", "w", g, 2048, 3072);
  ASSERT_TRUE(v.ok());
  ASSERT_EQ(v->problems.size(), 1u);
  EXPECT_EQ(v->problems[0].byte_offset, 2048u);
  EXPECT_EQ(v->problems[0].end, 3072u);
  EXPECT_EQ(v->chunks, 0u);
  v = rank0->VerifyShard("a", "w", g, 0, 2048);
  ASSERT_TRUE(v.ok());
  EXPECT_TRUE(v->problems.empty());
}

// ---- dcpkv::Load of an incremental checkpoint --------------------------------------------------

using testing::LoadFrom;

TEST(IncrementalLoadTest, WholeLoadIsBitExact) {
  IncrementalStore store;
  for (const std::string id : {"a", "b"}) {
    const bool b = id == "b";
    Tensor w = Tensor::Allocate(DType::kFloat32, {64, 32});
    Tensor m = Tensor::Allocate(DType::kFloat32, {16, 128});
    Tensor bias = Tensor::Allocate(DType::kFloat32, {300});
    Tensor step = Tensor::Allocate(DType::kInt64, {});
    StateDict state;
    state.Set("w", w).Set("m", m).Set("bias", bias).Set("step", step).Set("blob", Bytes{});
    Status s = Load(state, LoadFrom(store.root(), id));
    ASSERT_TRUE(s.ok()) << id << ": " << s;
    EXPECT_TRUE(testing::SameBytes(w, b ? store.w_b : store.w_a)) << id;
    EXPECT_TRUE(testing::SameBytes(m, b ? store.m_b : store.m_a)) << id;
    EXPECT_TRUE(testing::SameBytes(bias, store.bias)) << id;
    EXPECT_TRUE(testing::SameBytes(step, b ? store.step_b : store.step_a)) << id;
    EXPECT_EQ(std::get<Bytes>(*state.Find("blob")).data, b ? store.blob_b : store.blob_a) << id;
  }
}

// Loads "b" on `world` gloo thread ranks, each holding part `rank` of w split along `w_dim`,
// of m along `m_dim` and of bias, and checks every part.
void LoadResharded(const IncrementalStore& store, int world, int w_dim, int m_dim) {
  RunOnGlooRanks(world, [&](ProcessGroup& pg) {
    ShardedTensor w = testing::EmptyShardOf(store.w_b, w_dim, world, pg.rank());
    ShardedTensor m = testing::EmptyShardOf(store.m_b, m_dim, world, pg.rank());
    ShardedTensor bias = testing::EmptyShardOf(store.bias, 0, world, pg.rank());
    Tensor step = Tensor::Allocate(DType::kInt64, {});
    StateDict state;
    state.Set("w", w).Set("m", m).Set("bias", bias).Set("step", step).Set("blob", Bytes{});
    Status s = Load(state, LoadFrom(store.root(), "b", &pg));
    ASSERT_TRUE(s.ok()) << "rank " << pg.rank() << ": " << s;
    const std::vector<std::pair<const ShardedTensor*, const Tensor*>> parts = {
        {&w, &store.w_b}, {&m, &store.m_b}, {&bias, &store.bias}};
    for (const auto& [got, global] : parts) {
      const Shard& shard = got->local_shards[0];
      EXPECT_TRUE(testing::SameBytes(
          shard.tensor, testing::Slice(*global, {shard.offsets, shard.tensor.shape()})))
          << "rank " << pg.rank() << " shard at " << ShapeToString(shard.offsets);
    }
    EXPECT_TRUE(testing::SameBytes(step, store.step_b));
    EXPECT_EQ(std::get<Bytes>(*state.Find("blob")).data, store.blob_b);
  });
}

TEST(IncrementalLoadTest, ReshardedLoadsOnGlooRanksAreBitExact) {
  IncrementalStore store;
  LoadResharded(store, 2, /*w_dim=*/1, /*m_dim=*/0);  // columns of row shards and vice versa
  LoadResharded(store, 3, /*w_dim=*/0, /*m_dim=*/1);  // uneven splits: partial chunks
  LoadResharded(store, 1, 0, 0);
}

TEST(IncrementalLoadTest, MissingReferencedChunksFailTheLoadNamingTheirSource) {
  IncrementalStore store;
  {
    RawDB db(RankDirectory(store.root(), 1));
    db.Delete(*EncodeChunkKey({"a", "blob", {0}, 0}));
  }
  StateDict state;
  state.Set("blob", Bytes{});
  Status s = Load(state, LoadFrom(store.root(), "b"));
  EXPECT_EQ(s.code(), StatusCode::kDataLoss) << s;
  EXPECT_THAT(s.message(), HasSubstr("stored under checkpoint \"a\" in rank 1's database"));

  // The source checkpoint deleted entirely (manifest and chunks).
  for (int rank : {0, 1}) {
    std::unique_ptr<ChunkStore> rw;
    ASSERT_TRUE(ChunkStore::Open(RankDirectory(store.root(), rank), {}, &rw).ok());
    ASSERT_TRUE(rw->DeleteCheckpointChunks("a").ok());
    if (rank == 0) {
      ASSERT_TRUE(rw->DeleteManifest("a").ok());
    }
    ASSERT_TRUE(rw->Close().ok());
  }
  Tensor bias = Tensor::Allocate(DType::kFloat32, {300});
  StateDict only_bias;
  only_bias.Set("bias", bias);
  s = Load(only_bias, LoadFrom(store.root(), "b"));
  EXPECT_EQ(s.code(), StatusCode::kDataLoss) << s;
  EXPECT_THAT(s.message(), HasSubstr("checkpoint \"a\""));
  // What "b" stored itself still loads.
  Tensor step = Tensor::Allocate(DType::kInt64, {});
  StateDict only_step;
  only_step.Set("step", step);
  s = Load(only_step, LoadFrom(store.root(), "b"));
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_TRUE(testing::SameBytes(step, store.step_b));
}

}  // namespace
}  // namespace dcpkv

// The dcpkv_inspect library on an incremental checkpoint built by hand ("b", whose unchanged
// chunks are stored under an earlier checkpoint "a", some in another rank's database): the store
// view, tensor streams, diffs, statistics and safetensors export see it exactly as "c", a full
// checkpoint of the same values; verify checks each chunk where it is stored and against the hash
// the manifest recorded for it, and reports referenced chunks that are missing, damaged or
// different, and a source checkpoint that is gone, naming where they are stored.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "dcpkv/core/manifest_record_codec.h"
#include "dcpkv/core/metadata_codec.h"
#include "dcpkv/inspect/diff.h"
#include "dcpkv/inspect/safetensors_io.h"
#include "dcpkv/inspect/stats.h"
#include "dcpkv/inspect/store_view.h"
#include "dcpkv/inspect/tensor_stream.h"
#include "dcpkv/inspect/verify.h"
#include "dcpkv/store/chunk_codec.h"
#include "dcpkv/store/chunk_store.h"
#include "dcpkv/store/key_encoding.h"
#include "dcpkv/store/store_layout.h"
#include "tests/util/incremental_store.h"
#include "tests/util/raw_db.h"
#include "tests/util/sharding.h"
#include "tests/util/temp_dir.h"
#include "tests/util/test_data.h"

namespace dcpkv::inspect {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;
using testing::RawDB;
using testing::TempDir;

using namespace testing::incremental;  // NOLINT: the shared hand-built store

// ---- helpers -----------------------------------------------------------------------------------

std::unique_ptr<StoreView> OpenView(const std::string& root) {
  StatusOr<std::unique_ptr<StoreView>> view = StoreView::Open(root);
  EXPECT_TRUE(view.ok()) << view.status();
  return view.ok() ? std::move(view).value() : nullptr;
}

Metadata ReadMd(StoreView& view, const std::string& id) {
  StatusOr<Metadata> md = view.ReadMetadata(id);
  EXPECT_TRUE(md.ok()) << md.status();
  return md.ok() ? std::move(md).value() : Metadata{};
}

// Streams `fqn` of `id` with slabs of at most `budget` bytes; the error if one fails.
StatusOr<std::string> StreamAll(StoreView& view, const std::string& id, const std::string& fqn,
                                uint64_t budget = kDefaultSlabBytes) {
  DCPKV_ASSIGN_OR_RETURN(Metadata md, view.ReadMetadata(id));
  TensorStream stream(&view, id, fqn, md.entries.at(fqn), budget);
  std::string out;
  while (!stream.done()) {
    DCPKV_ASSIGN_OR_RETURN(std::span<const uint8_t> slab, stream.Next());
    out.append(reinterpret_cast<const char*>(slab.data()), slab.size());
  }
  return out;
}

std::string ReadWholeFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// The global bytes of every fqn of "b" (and "c").
std::map<std::string, std::string> GlobalsOfB(const IncrementalStore& s) {
  return {{"w", TensorBytes(s.w_b)},
          {"m", TensorBytes(s.m_b)},
          {"bias", TensorBytes(s.bias)},
          {"blob", s.blob_b},
          {"step", TensorBytes(s.step_b)}};
}

std::vector<VerifyProblem> ProblemsOf(StoreView& view, const std::string& id) {
  StatusOr<VerifyReport> report = VerifyCheckpoints(view, {id});
  EXPECT_TRUE(report.ok()) << report.status();
  if (!report.ok()) return {};
  return report->problems;
}

std::string Describe(const std::vector<VerifyProblem>& problems) {
  std::string out;
  for (const VerifyProblem& p : problems) out += DescribeProblem(p) + "\n";
  return out;
}

// Replaces the payload of chunk `key` (in `rank`'s database) with `payload`, as a valid chunk:
// its own checksum is right, only the manifest's recorded hash tells.
void ReplaceChunk(const std::string& root, int rank, const ChunkKey& key,
                  const ShardGeometry& geometry, const std::string& payload) {
  RawDB db(RankDirectory(root, rank));
  db.Put(*EncodeChunkKey(key),
         EncodeChunk(geometry, key.byte_offset, payload.data(), payload.size()));
}

// Flips a payload byte of chunk `key` whose payload is `payload`.
void DamageChunk(const std::string& root, int rank, const ChunkKey& key,
                 const std::string& payload) {
  RawDB db(RankDirectory(root, rank));
  const std::string encoded = *EncodeChunkKey(key);
  std::string value = db.Get(encoded);
  const size_t pos = value.find(payload);
  ASSERT_NE(pos, std::string::npos);
  value[pos + payload.size() / 2] ^= 0x10;
  db.Put(encoded, value);
}

// ---- the store view, streams, diff, stats, export ----------------------------------------------

TEST(InspectIncrementalTest, ListingAndMetadata) {
  IncrementalStore s;
  std::unique_ptr<StoreView> view = OpenView(s.root());
  ASSERT_NE(view, nullptr);
  std::vector<std::string> ids;
  for (const CheckpointListing& l : view->checkpoints()) {
    EXPECT_EQ(l.state, CheckpointState::kCommitted) << l.checkpoint_id;
    ids.push_back(l.checkpoint_id);
  }
  EXPECT_EQ(ids, (std::vector<std::string>{"a", "b", "c"}));
  StatusOr<const CheckpointListing*> latest = view->Resolve("latest");
  ASSERT_TRUE(latest.ok());
  EXPECT_EQ((*latest)->checkpoint_id, "c");
  const Metadata b = ReadMd(*view, "b");
  const Metadata c = ReadMd(*view, "c");
  EXPECT_EQ(b.base_checkpoint_id, "a");
  EXPECT_EQ(b.logical_bytes(), c.logical_bytes());
  EXPECT_LT(b.stored_bytes, c.stored_bytes);
  EXPECT_FALSE(b.entries.at("w").shards[1].self_contained());
}

TEST(InspectIncrementalTest, StreamsOfTheIncrementalCheckpointAreThoseOfTheFullOne) {
  IncrementalStore s;
  std::unique_ptr<StoreView> view = OpenView(s.root());
  ASSERT_NE(view, nullptr);
  for (const auto& [fqn, bytes] : GlobalsOfB(s)) {
    for (uint64_t budget :
         {uint64_t{1}, uint64_t{100}, uint64_t{1000}, uint64_t{3000}, kDefaultSlabBytes}) {
      SCOPED_TRACE(fqn + " budget " + std::to_string(budget));
      StatusOr<std::string> b = StreamAll(*view, "b", fqn, budget);
      ASSERT_TRUE(b.ok()) << b.status();
      EXPECT_TRUE(*b == bytes);
      StatusOr<std::string> c = StreamAll(*view, "c", fqn, budget);
      ASSERT_TRUE(c.ok()) << c.status();
      EXPECT_TRUE(*c == bytes);
    }
  }
  StatusOr<std::string> w = StreamAll(*view, "a", "w");
  ASSERT_TRUE(w.ok());
  EXPECT_TRUE(*w == TensorBytes(s.w_a));
}

TEST(InspectIncrementalTest, DiffStatsAndExportSeeTheFullCheckpoint) {
  IncrementalStore s;
  std::unique_ptr<StoreView> view = OpenView(s.root());
  ASSERT_NE(view, nullptr);
  StatusOr<DiffReport> same = DiffCheckpoints(*view, "b", "c");
  ASSERT_TRUE(same.ok()) << same.status();
  ASSERT_EQ(same->tensors.size(), 5u);
  for (const TensorDiff& d : same->tensors) {
    EXPECT_EQ(d.kind, DiffKind::kUnchanged) << d.fqn << ": " << d.detail;
  }
  StatusOr<DiffReport> changed = DiffCheckpoints(*view, "a", "b");
  ASSERT_TRUE(changed.ok()) << changed.status();
  std::map<std::string, TensorDiff> by_fqn;
  for (const TensorDiff& d : changed->tensors) by_fqn[d.fqn] = d;
  EXPECT_EQ(by_fqn.at("bias").kind, DiffKind::kUnchanged);
  EXPECT_EQ(by_fqn.at("w").kind, DiffKind::kChanged);
  EXPECT_EQ(by_fqn.at("w").elements_changed, 7u);
  EXPECT_EQ(by_fqn.at("m").elements_changed, 1u);
  EXPECT_EQ(by_fqn.at("blob").kind, DiffKind::kChanged);
  EXPECT_EQ(by_fqn.at("step").kind, DiffKind::kChanged);

  StatusOr<std::vector<TensorStats>> sb = ComputeStats(*view, "b", {}, 8);
  StatusOr<std::vector<TensorStats>> sc = ComputeStats(*view, "c", {}, 8);
  ASSERT_TRUE(sb.ok()) << sb.status();
  ASSERT_TRUE(sc.ok()) << sc.status();
  ASSERT_EQ(sb->size(), sc->size());
  for (size_t i = 0; i < sb->size(); ++i) {
    EXPECT_EQ((*sb)[i].count, (*sc)[i].count);
    EXPECT_EQ((*sb)[i].head, (*sc)[i].head);
    if ((*sb)[i].count > 1 && !std::isnan((*sc)[i].mean)) {
      EXPECT_EQ((*sb)[i].mean, (*sc)[i].mean);
      EXPECT_EQ((*sb)[i].std, (*sc)[i].std);
    }
  }

  TempDir out;
  for (uint64_t slab : {uint64_t{64}, kDefaultSlabBytes}) {
    StatusOr<ExportSummary> eb =
        ExportSafetensors(*view, "b", out.Sub("b.safetensors"), nullptr, slab);
    StatusOr<ExportSummary> ec =
        ExportSafetensors(*view, "c", out.Sub("c.safetensors"), nullptr, slab);
    ASSERT_TRUE(eb.ok()) << eb.status();
    ASSERT_TRUE(ec.ok()) << ec.status();
    EXPECT_EQ(eb->tensors, 5u);
    const std::string fb = ReadWholeFile(out.Sub("b.safetensors"));
    EXPECT_FALSE(fb.empty());
    EXPECT_TRUE(fb == ReadWholeFile(out.Sub("c.safetensors"))) << "slab " << slab;
  }
}

// ---- verify ------------------------------------------------------------------------------------

TEST(InspectIncrementalTest, VerifyOfACleanIncrementalCheckpoint) {
  IncrementalStore s;
  std::unique_ptr<StoreView> view = OpenView(s.root());
  ASSERT_NE(view, nullptr);
  uint64_t done = 0, total = 0;
  StatusOr<VerifyReport> b = VerifyCheckpoints(*view, {"b"}, [&](uint64_t d, uint64_t t) {
    EXPECT_GE(d, done);
    done = d;
    total = t;
  });
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_TRUE(b->ok()) << Describe(b->problems);
  StatusOr<VerifyReport> c = VerifyCheckpoints(*view, {"c"});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_TRUE(c->ok()) << Describe(c->problems);
  // Every chunk of "b" is checked, wherever it is stored: as many as the full copy has.
  EXPECT_EQ(b->chunks, c->chunks);
  EXPECT_EQ(b->bytes, c->bytes);
  EXPECT_EQ(b->shards, c->shards);
  EXPECT_EQ(done, total);
  EXPECT_EQ(total, ReadMd(*view, "b").logical_bytes());
  StatusOr<VerifyReport> all = VerifyCheckpoints(*view, {});
  ASSERT_TRUE(all.ok());
  EXPECT_TRUE(all->ok()) << Describe(all->problems);
  EXPECT_EQ(all->checkpoints, 3u);
}

TEST(InspectIncrementalTest, VerifyReportsAReferencedChunkMissingFromItsSource) {
  IncrementalStore s;
  {
    RawDB db(RankDirectory(s.root(), 1));  // "a" stored rows 32..63 of w in rank 1
    db.Delete(*EncodeChunkKey({"a", "w", {32, 0}, 2048}));
  }
  std::unique_ptr<StoreView> view = OpenView(s.root());
  ASSERT_NE(view, nullptr);
  std::vector<VerifyProblem> problems = ProblemsOf(*view, "b");
  ASSERT_EQ(problems.size(), 1u) << Describe(problems);
  const VerifyProblem& p = problems[0];
  EXPECT_EQ(p.checkpoint_id, "b");
  EXPECT_EQ(p.fqn, "w");
  EXPECT_EQ(p.shard_offsets, (Shape{32, 0}));
  EXPECT_EQ(p.rank, 0);  // "b"'s shard is rank 0's; the chunk is in rank 1's database
  EXPECT_EQ(p.byte_offset, 2048u);
  EXPECT_EQ(p.byte_end, 3072u);
  EXPECT_THAT(p.what, AllOf(HasSubstr("stored under checkpoint \"a\" in rank 1's database"),
                            HasSubstr("missing chunk")));
  EXPECT_THAT(DescribeProblem(p),
              HasSubstr("checkpoint \"b\" fqn \"w\" shard [32, 0] rank 0 byte 2048..3072"));
  // "a" itself misses it too; "c" is untouched.
  problems = ProblemsOf(*view, "a");
  ASSERT_EQ(problems.size(), 1u) << Describe(problems);
  EXPECT_EQ(problems[0].rank, 1);
  EXPECT_THAT(problems[0].what, Not(HasSubstr("stored under")));
  EXPECT_TRUE(ProblemsOf(*view, "c").empty());
  // Streams fail naming the source.
  StatusOr<std::string> w = StreamAll(*view, "b", "w");
  EXPECT_EQ(w.status().code(), StatusCode::kDataLoss);
  EXPECT_THAT(w.status().message(), HasSubstr("checkpoint \"a\" in rank 1's database"));
}

TEST(InspectIncrementalTest, VerifyReportsAReferencedChunkDamagedInItsSource) {
  IncrementalStore s;
  DamageChunk(s.root(), 0, {"a", "bias", {0}, 1024}, TensorBytes(s.bias).substr(1024));
  std::unique_ptr<StoreView> view = OpenView(s.root());
  ASSERT_NE(view, nullptr);
  std::vector<VerifyProblem> problems = ProblemsOf(*view, "b");
  ASSERT_EQ(problems.size(), 1u) << Describe(problems);
  EXPECT_EQ(problems[0].fqn, "bias");
  EXPECT_EQ(problems[0].rank, 1);
  EXPECT_EQ(problems[0].byte_offset, 1024u);
  EXPECT_EQ(problems[0].byte_end, 1200u);
  EXPECT_THAT(problems[0].what, HasSubstr("stored under checkpoint \"a\" in rank 0's database"));
  EXPECT_EQ(ProblemsOf(*view, "a").size(), 1u);
  EXPECT_TRUE(ProblemsOf(*view, "c").empty());
}

TEST(InspectIncrementalTest, VerifyReportsChunksWhoseContentIsNotWhatTheManifestRecorded) {
  IncrementalStore s;
  const Box rows{{0, 0}, {32, 32}};
  const std::string shard0 = TensorBytes(testing::Slice(s.w_b, rows));
  const ShardGeometry g{DType::kFloat32, rows.offsets, rows.sizes};
  // A chunk of "b" itself (rows 8..15), and a referenced one of "a" (rows 16..23): each a valid
  // chunk, but not the one the manifests recorded.
  std::string other = shard0.substr(1024, 1024);
  other[10] ^= 0x01;
  ReplaceChunk(s.root(), 0, {"b", "w", rows.offsets, 1024}, g, other);
  other = shard0.substr(2048, 1024);
  other[500] ^= 0x01;
  ReplaceChunk(s.root(), 0, {"a", "w", rows.offsets, 2048}, g, other);
  std::unique_ptr<StoreView> view = OpenView(s.root());
  ASSERT_NE(view, nullptr);
  std::vector<VerifyProblem> problems = ProblemsOf(*view, "b");
  ASSERT_EQ(problems.size(), 2u) << Describe(problems);
  EXPECT_EQ(problems[0].fqn, "w");
  EXPECT_EQ(problems[0].shard_offsets, rows.offsets);
  EXPECT_EQ(problems[0].byte_offset, 1024u);
  EXPECT_EQ(problems[0].byte_end, 2048u);
  EXPECT_THAT(problems[0].what, HasSubstr("differs from what the manifest recorded"));
  EXPECT_THAT(problems[0].what, Not(HasSubstr("stored under")));
  EXPECT_EQ(problems[1].byte_offset, 2048u);
  EXPECT_EQ(problems[1].byte_end, 3072u);
  EXPECT_THAT(problems[1].what, AllOf(HasSubstr("differs from what the manifest recorded"),
                                      HasSubstr("stored under checkpoint \"a\" in rank 0's")));
  // "a" recorded its chunks' hashes too.
  problems = ProblemsOf(*view, "a");
  ASSERT_EQ(problems.size(), 1u) << Describe(problems);
  EXPECT_EQ(problems[0].byte_offset, 2048u);
  EXPECT_TRUE(ProblemsOf(*view, "c").empty());
}

TEST(InspectIncrementalTest, VerifyReportsASourceCheckpointThatIsGone) {
  IncrementalStore s;
  for (int rank : {0, 1}) {
    std::unique_ptr<ChunkStore> rw;
    ASSERT_TRUE(ChunkStore::Open(RankDirectory(s.root(), rank), {}, &rw).ok());
    ASSERT_TRUE(rw->DeleteCheckpointChunks("a").ok());
    if (rank == 0) {
      ASSERT_TRUE(rw->DeleteManifest("a").ok());
    }
    ASSERT_TRUE(rw->Close().ok());
  }
  std::unique_ptr<StoreView> view = OpenView(s.root());
  ASSERT_NE(view, nullptr);
  StatusOr<VerifyReport> report = VerifyCheckpoints(*view, {"b"});
  ASSERT_TRUE(report.ok()) << report.status();
  // One problem per run of referenced chunks: w [0, 1024), [2048, 3072) and [32, 0]'s
  // [0, 1024), [2048, 4096); m's unchanged chunks; bias; blob [0, 1024).
  const Metadata b = ReadMd(*view, "b");
  size_t referenced_runs = 0;
  for (const auto& [fqn, e] : b.entries) {
    for (const SavedShard& shard : e.shards) {
      for (size_t k = 0; k < shard.chunk_list.size(); ++k) {
        referenced_runs += !shard.chunk_list[k].source.empty() &&
                           (k == 0 || shard.chunk_list[k - 1].source.empty());
      }
    }
  }
  ASSERT_EQ(report->problems.size(), referenced_runs) << Describe(report->problems);
  for (const VerifyProblem& p : report->problems) {
    EXPECT_EQ(p.checkpoint_id, "b");
    EXPECT_THAT(p.what, AllOf(HasSubstr("stored under checkpoint \"a\""),
                              HasSubstr("no longer holds"), HasSubstr("no chunks stored")))
        << DescribeProblem(p);
  }
  // What "b" stored itself is intact.
  EXPECT_EQ(report->bytes, b.stored_bytes);
  EXPECT_TRUE(ProblemsOf(*view, "c").empty());
  StatusOr<std::string> bias = StreamAll(*view, "b", "bias");
  EXPECT_EQ(bias.status().code(), StatusCode::kDataLoss);
  StatusOr<std::string> step = StreamAll(*view, "b", "step");
  ASSERT_TRUE(step.ok()) << step.status();
  EXPECT_TRUE(*step == TensorBytes(s.step_b));
}

}  // namespace
}  // namespace dcpkv::inspect

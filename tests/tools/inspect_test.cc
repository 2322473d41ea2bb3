// The dcpkv_inspect library behind the dcpkv CLI, on stores saved by real gloo process groups:
// the store view (listing, resolving, uncommitted data, damaged manifests), tensor streams over
// every sharding and world size, statistics and exact value decoding, diffs across shardings,
// verification of clean and damaged stores (chunk values, missing chunks, damaged blob files,
// damaged manifests), and safetensors export/import checked by an independent numpy reader.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <rocksdb/db.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "dcpkv/api/kv_storage.h"
#include "dcpkv/checkpoint.h"
#include "dcpkv/core/box.h"
#include "dcpkv/core/manifest_record_codec.h"
#include "dcpkv/core/metadata_codec.h"
#include "dcpkv/inspect/diff.h"
#include "dcpkv/inspect/report.h"
#include "dcpkv/inspect/safetensors.h"
#include "dcpkv/inspect/safetensors_io.h"
#include "dcpkv/inspect/stats.h"
#include "dcpkv/inspect/store_view.h"
#include "dcpkv/inspect/tensor_stream.h"
#include "dcpkv/inspect/values.h"
#include "dcpkv/inspect/verify.h"
#include "dcpkv/store/chunk_store.h"
#include "dcpkv/store/gc.h"
#include "dcpkv/store/key_encoding.h"
#include "dcpkv/store/store_format.h"
#include "dcpkv/store/store_layout.h"
#include "tests/tools/inspect_fixture.h"
#include "tests/tools/safetensors_check.h"
#include "tests/util/raw_db.h"
#include "tests/util/temp_dir.h"

extern char** environ;

namespace dcpkv::inspect {
namespace {

using testing::Python3;
using testing::RunSafetensorsCheck;

using ::testing::AllOf;
using ::testing::ElementsAre;
using testing::FixtureSpec;
using testing::FixtureState;
using testing::FixtureTensor;
using ::testing::HasSubstr;
using testing::RawDB;
using testing::SaveFixture;
using testing::TempDir;

constexpr int kChunksCf = testing::kRawChunksCf;
constexpr int kManifestsCf = testing::kRawManifestsCf;

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

const CheckpointListing* FindListing(const StoreView& view, const std::string& id) {
  for (const CheckpointListing& l : view.checkpoints()) {
    if (l.checkpoint_id == id) return &l;
  }
  return nullptr;
}

std::vector<std::string> ListedIds(const StoreView& view) {
  std::vector<std::string> ids;
  for (const CheckpointListing& l : view.checkpoints()) ids.push_back(l.checkpoint_id);
  return ids;
}

uint64_t GlobalBytes(const FixtureState& state) {
  uint64_t n = 0;
  for (const auto& [fqn, t] : state) n += t.bytes.size();
  return n;
}

// Streams `fqn` with slabs of at most `budget` bytes (or one element), checking each slab's size
// and the stream's position, and returns the concatenation.
std::string StreamAll(StoreView& view, const std::string& id, const std::string& fqn,
                      const EntryMetadata& entry, uint64_t budget) {
  TensorStream stream(&view, id, fqn, entry, budget);
  const uint64_t limit = std::max<uint64_t>(budget, ElementSize(entry.dtype));
  std::string out;
  while (!stream.done()) {
    StatusOr<std::span<const uint8_t>> slab = stream.Next();
    if (!slab.ok()) {
      ADD_FAILURE() << fqn << " budget " << budget << ": " << slab.status();
      return out;
    }
    EXPECT_GT(slab->size(), 0u) << fqn;
    EXPECT_LE(slab->size(), limit) << fqn << " budget " << budget;
    EXPECT_EQ(slab->size() % ElementSize(entry.dtype), 0u) << fqn;
    out.append(reinterpret_cast<const char*>(slab->data()), slab->size());
    EXPECT_EQ(stream.position(), out.size()) << fqn;
  }
  StatusOr<std::span<const uint8_t>> end = stream.Next();
  EXPECT_TRUE(end.ok() && end->empty()) << fqn;
  EXPECT_EQ(out.size(), stream.total_bytes()) << fqn;
  return out;
}

// The bytes of `box` of a fixture tensor, row-major.
std::string BoxBytes(const FixtureTensor& t, const Box& box) {
  const size_t element = ElementSize(t.dtype);
  std::string out(Volume(box) * element, '\0');
  CopyBox(t.bytes.data(), Box{Shape(t.shape.size(), 0), t.shape}, out.data(), box, box, element);
  return out;
}

// An independent decoder of the fixture dtypes (not the library's values.cc).
double Decode(DType dtype, const char* p) {
  switch (dtype) {
    case DType::kFloat32: {
      float f;
      std::memcpy(&f, p, 4);
      return f;
    }
    case DType::kFloat64: {
      double d;
      std::memcpy(&d, p, 8);
      return d;
    }
    case DType::kBFloat16: {
      uint16_t hi;
      std::memcpy(&hi, p, 2);
      const uint32_t bits = uint32_t{hi} << 16;
      float f;
      std::memcpy(&f, &bits, 4);
      return f;
    }
    case DType::kInt64: {
      int64_t v;
      std::memcpy(&v, p, 8);
      return static_cast<double>(v);
    }
    case DType::kBool: return *p != 0 ? 1 : 0;
    case DType::kFloat8E4M3: {
      const uint8_t b = static_cast<uint8_t>(*p);
      if ((b & 0x7F) == 0x7F) return std::nan("");
      const int e = (b >> 3) & 0xF, m = b & 7;
      const double magnitude = e == 0 ? m / 512.0 : (8 + m) * std::pow(2.0, e - 10);
      return (b & 0x80) ? -magnitude : magnitude;
    }
    default: return static_cast<uint8_t>(*p);
  }
}

std::vector<double> DecodeAll(const FixtureTensor& t) {
  const size_t element = ElementSize(t.dtype);
  std::vector<double> out;
  for (size_t i = 0; i < t.bytes.size(); i += element) out.push_back(Decode(t.dtype, &t.bytes[i]));
  return out;
}

// Saves `sd` as checkpoint `id` of `root` from one process, with chunks of `chunk_size` bytes and
// values of at least `min_blob_size` bytes in blob files.
// A save in the store's first layout (WriteBatches; values of min_blob_size and more in blob
// files), whose files the damage tests below know how to find.
Status SaveWithStoreOptions(const std::string& root, const std::string& id, StateDict& sd,
                            uint64_t chunk_size, uint64_t min_blob_size, bool incremental = false) {
  KvStorageOptions kv{.root = root};
  kv.store_options.write_path = ChunkWritePath::kWriteBatch;
  kv.store_options.chunk_size = chunk_size;
  kv.store_options.min_blob_size = min_blob_size;
  SaveOptions options;
  options.checkpoint_id = id;
  options.incremental = incremental;
  options.storage_writer = std::make_shared<KvStorageWriter>(kv);
  return Save(sd, options).status();
}

// A float32 tensor whose element i is i + seed (distinct 4-byte patterns, easy to find on disk).
std::string Ramp(uint64_t n, float seed) {
  std::string out(n * 4, '\0');
  for (uint64_t i = 0; i < n; ++i) {
    const float f = static_cast<float>(i) + seed;
    std::memcpy(out.data() + i * 4, &f, 4);
  }
  return out;
}

// Overwrites the manifest of `id` in rank `rank`'s database with bytes that do not decode.
void DamageManifest(const std::string& root, int rank, const std::string& id) {
  RawDB raw(RankDirectory(root, rank));
  const std::string key = *EncodeManifestKey(id);
  ASSERT_FALSE(raw.Get(kManifestsCf, key).empty());
  raw.Put(kManifestsCf, key, "this is not a manifest record");
}

std::string ReadWholeFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void WriteWholeFile(const std::string& path, std::string_view bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(out.good()) << path;
}

std::vector<std::string> BlobFiles(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    if (e.path().extension() == ".blob") out.push_back(e.path().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

// ---- StoreView ---------------------------------------------------------------------------------

TEST(StoreViewTest, ListsCheckpointsOfWorldTwoAndThree) {
  TempDir tmp;
  FixtureState a = SaveFixture(tmp.path(), {.id = "a", .world = 2});
  FixtureState b = SaveFixture(tmp.path(), {.id = "b", .world = 3});
  std::unique_ptr<StoreView> view = OpenView(tmp.path());
  ASSERT_NE(view, nullptr);
  EXPECT_EQ(view->root(), tmp.path());
  ASSERT_THAT(ListedIds(*view), ElementsAre("a", "b"));
  const CheckpointListing& la = view->checkpoints()[0];
  const CheckpointListing& lb = view->checkpoints()[1];
  EXPECT_EQ(la.state, CheckpointState::kCommitted);
  EXPECT_EQ(lb.state, CheckpointState::kCommitted);
  EXPECT_EQ(CheckpointStateName(la.state), "committed");
  EXPECT_GT(la.committed_unix_micros, 0);
  EXPECT_LT(la.committed_unix_micros, lb.committed_unix_micros);
  EXPECT_EQ(la.world_size, 2);
  EXPECT_EQ(lb.world_size, 3);
  EXPECT_EQ(la.num_tensors, a.size());
  EXPECT_EQ(lb.num_tensors, b.size());
  // Replicated tensors are saved once: the logical bytes are those of the global tensors.
  EXPECT_EQ(la.logical_bytes, GlobalBytes(a));
  EXPECT_EQ(lb.logical_bytes, GlobalBytes(b));
  EXPECT_EQ(la.stored_bytes, la.logical_bytes);
  EXPECT_EQ(lb.stored_bytes, lb.logical_bytes);
  EXPECT_THAT(la.ranks_with_data, ElementsAre(0, 1));
  EXPECT_THAT(lb.ranks_with_data, ElementsAre(0, 1, 2));
  EXPECT_TRUE(la.problem.empty());

  StatusOr<const CheckpointListing*> latest = view->Resolve("latest");
  ASSERT_TRUE(latest.ok()) << latest.status();
  EXPECT_EQ((*latest)->checkpoint_id, "b");
  StatusOr<const CheckpointListing*> named = view->Resolve("a");
  ASSERT_TRUE(named.ok()) << named.status();
  EXPECT_EQ(*named, &la);

  StatusOr<const CheckpointListing*> unknown = view->Resolve("nope");
  EXPECT_EQ(unknown.status().code(), StatusCode::kNotFound);
  EXPECT_THAT(unknown.status().message(), AllOf(HasSubstr("\"nope\""), HasSubstr(tmp.path())));

  // The metadata read through the view is that of the save.
  Metadata md = ReadMd(*view, "b");
  EXPECT_EQ(md.checkpoint_id, "b");
  EXPECT_EQ(md.world_size, 3);
  EXPECT_EQ(md.entries.size(), b.size());
  EXPECT_EQ(md.logical_bytes(), lb.logical_bytes);
}

TEST(StoreViewTest, MissingRootOrEmptyRootIsNotFound) {
  TempDir tmp;
  StatusOr<std::unique_ptr<StoreView>> missing = StoreView::Open(tmp.Sub("nothing"));
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
  EXPECT_THAT(missing.status().message(), HasSubstr(tmp.Sub("nothing")));
  StatusOr<std::unique_ptr<StoreView>> empty = StoreView::Open(tmp.path());
  EXPECT_EQ(empty.status().code(), StatusCode::kNotFound);
}

TEST(StoreViewTest, NoCommittedCheckpointHasNoLatest) {
  TempDir tmp;
  {
    std::unique_ptr<ChunkStore> store;
    ASSERT_TRUE(ChunkStore::Open(RankDirectory(tmp.path(), 0), {}, &store).ok());
    const std::string data(16, 'x');
    ASSERT_TRUE(
        store->PutShard("pending", "w", {DType::kUInt8, {0}, {16}}, data.data(), data.size()).ok());
    ASSERT_TRUE(store->Close().ok());
  }
  std::unique_ptr<StoreView> view = OpenView(tmp.path());
  ASSERT_NE(view, nullptr);
  ASSERT_THAT(ListedIds(*view), ElementsAre("pending"));
  EXPECT_EQ(view->Resolve("latest").status().code(), StatusCode::kNotFound);
}

TEST(StoreViewTest, UncommittedAndDamagedCheckpoints) {
  TempDir tmp;
  SaveFixture(tmp.path(), {.id = "a", .world = 2});
  SaveFixture(tmp.path(), {.id = "d-damaged", .world = 3});
  SaveFixture(tmp.path(), {.id = "b", .world = 3});
  {  // chunk data on rank 1 without a manifest: a save that never committed
    std::unique_ptr<ChunkStore> store;
    ASSERT_TRUE(ChunkStore::Open(RankDirectory(tmp.path(), 1), {}, &store).ok());
    const std::string data = Ramp(4, 0);
    ASSERT_TRUE(store
                    ->PutShard("c-pending", "model.w", {DType::kFloat32, {0, 0}, {2, 2}},
                               data.data(), data.size())
                    .ok());
    ASSERT_TRUE(store->Close().ok());
  }
  DamageManifest(tmp.path(), 0, "d-damaged");

  std::unique_ptr<StoreView> view = OpenView(tmp.path());
  ASSERT_NE(view, nullptr);
  // Committed by commit time, then damaged and uncommitted ones together by id.
  ASSERT_THAT(ListedIds(*view), ElementsAre("a", "b", "c-pending", "d-damaged"));

  const CheckpointListing* pending = FindListing(*view, "c-pending");
  EXPECT_EQ(pending->state, CheckpointState::kUncommitted);
  EXPECT_EQ(CheckpointStateName(pending->state), "uncommitted");
  EXPECT_THAT(pending->ranks_with_data, ElementsAre(1));
  EXPECT_EQ(pending->world_size, 0);
  EXPECT_EQ(pending->logical_bytes, 0u);
  StatusOr<const CheckpointListing*> r = view->Resolve("c-pending");
  EXPECT_EQ(r.status().code(), StatusCode::kNotFound);
  EXPECT_THAT(r.status().message(), AllOf(HasSubstr("\"c-pending\""), HasSubstr("not committed")));

  const CheckpointListing* damaged = FindListing(*view, "d-damaged");
  EXPECT_EQ(damaged->state, CheckpointState::kDamaged);
  EXPECT_EQ(CheckpointStateName(damaged->state), "damaged");
  EXPECT_FALSE(damaged->problem.empty());
  EXPECT_THAT(damaged->ranks_with_data, ElementsAre(0, 1, 2));
  r = view->Resolve("d-damaged");
  EXPECT_EQ(r.status().code(), StatusCode::kDataLoss);
  EXPECT_THAT(r.status().message(), HasSubstr("\"d-damaged\""));

  // The committed ones are untouched: "latest" is the newest commit that still decodes.
  EXPECT_EQ(FindListing(*view, "a")->state, CheckpointState::kCommitted);
  EXPECT_EQ(FindListing(*view, "b")->state, CheckpointState::kCommitted);
  StatusOr<const CheckpointListing*> latest = view->Resolve("latest");
  ASSERT_TRUE(latest.ok()) << latest.status();
  EXPECT_EQ((*latest)->checkpoint_id, "b");
  EXPECT_EQ(ReadMd(*view, "a").entries.size(), testing::FixtureGlobals({}).size());

  // The listing as the CLI prints it names every state.
  std::ostringstream text;
  PrintListing(*view, OutputFormat::kJson, text);
  EXPECT_THAT(text.str(), AllOf(HasSubstr("\"uncommitted\""), HasSubstr("\"damaged\"")));
}

TEST(StoreViewTest, CheckpointSavedWithoutCollectives) {
  TempDir tmp;
  FixtureState state = testing::FixtureGlobals({.id = "parts", .world = 2});
  testing::RunOnGlooRanks(2, [&](ProcessGroup& pg) {
    StateDict sd = testing::FixtureStateDict(state, 2, pg.rank());
    SaveOptions o;
    o.checkpoint_id = "parts";
    o.store_root = tmp.path();
    o.process_group = &pg;
    o.use_collectives = false;
    StatusOr<Metadata> md = Save(sd, o);
    EXPECT_TRUE(md.ok()) << md.status();
  });
  SaveFixture(tmp.path(), {.id = "whole", .world = 3});
  std::unique_ptr<StoreView> view = OpenView(tmp.path());
  ASSERT_NE(view, nullptr);
  ASSERT_THAT(ListedIds(*view), ElementsAre("parts", "whole"));
  const CheckpointListing& l = view->checkpoints()[0];
  EXPECT_EQ(l.state, CheckpointState::kCommitted);
  EXPECT_EQ(l.world_size, 2);
  EXPECT_EQ(l.num_tensors, state.size());
  EXPECT_THAT(l.ranks_with_data, ElementsAre(0, 1));
  Metadata md = ReadMd(*view, "parts");
  EXPECT_TRUE(md.per_rank_commit);
  ASSERT_EQ(md.entries.size(), state.size());
  for (const auto& [fqn, t] : state) {
    EXPECT_EQ(StreamAll(*view, "parts", fqn, md.entries.at(fqn), 16), t.bytes) << fqn;
  }
  uint64_t last_done = 0, last_total = 0;
  StatusOr<VerifyReport> report =
      VerifyCheckpoints(*view, {"parts"}, [&](uint64_t done, uint64_t total) {
        last_done = done;
        last_total = total;
      });
  ASSERT_TRUE(report.ok()) << report.status();
  for (const VerifyProblem& p : report->problems) ADD_FAILURE() << DescribeProblem(p);
  EXPECT_EQ(last_done, last_total);
  StatusOr<DiffReport> diff = DiffCheckpoints(*view, "parts", "whole");
  ASSERT_TRUE(diff.ok()) << diff.status();
  for (const TensorDiff& d : diff->tensors) EXPECT_EQ(d.kind, DiffKind::kUnchanged) << d.fqn;
}

// ---- TensorStream ------------------------------------------------------------------------------

TEST(SlabCursorTest, SlabsTileTheTensorInOrderWithinBudget) {
  const std::vector<Shape> shapes = {{13, 8}, {6, 12}, {2, 3, 5}, {4, 1, 3, 2}, {7},
                                     {},      {0, 4},  {3, 0},    {1, 1, 1},    {5, 9, 1}};
  for (const Shape& shape : shapes) {
    for (size_t element : {1, 2, 4, 8}) {
      for (uint64_t budget : {1, 3, 7, 8, 24, 64, 1000}) {
        SCOPED_TRACE(ShapeToString(shape) + " element " + std::to_string(element) + " budget " +
                     std::to_string(budget));
        SlabCursor cursor(shape, element, budget);
        const uint64_t total = *NumElements(shape);
        EXPECT_EQ(cursor.total_elements(), total);
        const Box whole{Shape(shape.size(), 0), shape};
        uint64_t position = 0;  // row-major index of the next element expected
        int slabs = 0;
        while (!cursor.done() && slabs < 10000) {
          Box slab;
          cursor.Next(&slab.offsets, &slab.sizes);
          ++slabs;
          ASSERT_TRUE(Contains(whole, slab)) << BoxToString(slab);
          const uint64_t volume = Volume(slab);
          ASSERT_GT(volume, 0u) << BoxToString(slab);
          EXPECT_LE(volume * element, std::max<uint64_t>(budget, element)) << BoxToString(slab);
          // Contiguous in the tensor and starting where the previous one ended.
          StatusOr<std::pair<uint64_t, uint64_t>> range = ByteRange(whole, slab, element);
          ASSERT_TRUE(range.ok()) << range.status();
          EXPECT_EQ(range->first, position * element) << BoxToString(slab);
          EXPECT_EQ(range->second - range->first, volume * element) << BoxToString(slab);
          position += volume;
        }
        EXPECT_EQ(position, total);
        EXPECT_TRUE(cursor.done());
      }
    }
  }
}

TEST(SlabCursorTest, SlabsSpanAsManyRowsAsFit) {
  auto slabs = [](const Shape& shape, size_t element, uint64_t budget) {
    SlabCursor cursor(shape, element, budget);
    std::vector<std::string> out;
    while (!cursor.done()) {
      Box b;
      cursor.Next(&b.offsets, &b.sizes);
      out.push_back(ShapeToString(b.offsets) + ShapeToString(b.sizes));
    }
    return out;
  };
  // 32-byte rows, 64-byte budget: two rows a slab, the last one alone.
  std::vector<std::string> w = slabs({13, 8}, 4, 64);
  ASSERT_EQ(w.size(), 7u);
  EXPECT_EQ(w[0], "[0, 0][2, 8]");
  EXPECT_EQ(w[6], "[12, 0][1, 8]");
  // Planes of 15 bytes do not fit 10: slabs range over dimension 1 with two 5-byte rows.
  EXPECT_THAT(slabs({2, 3, 5}, 1, 10), ElementsAre("[0, 0, 0][1, 2, 5]", "[0, 2, 0][1, 1, 5]",
                                                   "[1, 0, 0][1, 2, 5]", "[1, 2, 0][1, 1, 5]"));
  // A budget smaller than one element: one element a slab.
  EXPECT_EQ(slabs({2, 3}, 8, 3).size(), 6u);
  // The whole tensor when it fits; a scalar is one slab.
  EXPECT_THAT(slabs({2, 3, 5}, 4, 1000), ElementsAre("[0, 0, 0][2, 3, 5]"));
  EXPECT_THAT(slabs({}, 8, 1), ElementsAre("[][]"));
  EXPECT_TRUE(slabs({0, 4}, 4, 64).empty());
}

TEST(TensorStreamTest, EveryFqnOfEveryWorldSizeReadsBackAtEverySlabBudget) {
  TempDir tmp;
  std::map<std::string, FixtureState> saved;
  for (int world : {1, 2, 3, 4}) {
    const std::string id = "w" + std::to_string(world);
    saved[id] = SaveFixture(tmp.path(), {.id = id, .world = world, .extra = true});
  }
  std::unique_ptr<StoreView> view = OpenView(tmp.path());
  ASSERT_NE(view, nullptr);
  for (const auto& [id, state] : saved) {
    Metadata md = ReadMd(*view, id);
    ASSERT_EQ(md.entries.size(), state.size()) << id;
    for (const auto& [fqn, t] : state) {
      SCOPED_TRACE(id + " " + fqn);
      ASSERT_TRUE(md.entries.count(fqn));
      const EntryMetadata& entry = md.entries.at(fqn);
      EXPECT_EQ(entry.dtype, t.is_bytes ? DType::kBytes : t.dtype);
      EXPECT_EQ(entry.global_shape, t.shape);
      for (uint64_t budget : {uint64_t{1}, uint64_t{7}, uint64_t{64}, kDefaultSlabBytes}) {
        EXPECT_EQ(StreamAll(*view, id, fqn, entry, budget), t.bytes) << "budget " << budget;
      }
    }
  }
}

TEST(TensorStreamTest, MissingChunkIsDataLoss) {
  TempDir tmp;
  SaveFixture(tmp.path(), {.id = "a", .world = 2});
  Metadata md;
  {
    std::unique_ptr<StoreView> view = OpenView(tmp.path());
    ASSERT_NE(view, nullptr);
    md = ReadMd(*view, "a");
  }
  const SavedShard& shard = md.entries.at("model.w").shards.back();
  {
    RawDB raw(RankDirectory(tmp.path(), shard.rank));
    raw.Delete(kChunksCf, *EncodeChunkKey({"a", "model.w", shard.offsets, 0}));
  }
  std::unique_ptr<StoreView> view = OpenView(tmp.path());
  ASSERT_NE(view, nullptr);
  TensorStream stream(view.get(), "a", "model.w", md.entries.at("model.w"));
  Status status = Status::Ok();
  while (!stream.done() && status.ok()) status = stream.Next().status();
  EXPECT_NE(status.code(), StatusCode::kOk);
  EXPECT_THAT(status.message(), HasSubstr("model.w"));
}

// ---- Stats and values --------------------------------------------------------------------------

TEST(ValuesTest, DecodesMinifloatsExactly) {
  const double inf = std::numeric_limits<double>::infinity();
  EXPECT_EQ(HalfToDouble(0x3C00), 1.0);
  EXPECT_EQ(HalfToDouble(0xC000), -2.0);
  EXPECT_EQ(HalfToDouble(0x7C00), inf);
  EXPECT_EQ(HalfToDouble(0xFC00), -inf);
  EXPECT_TRUE(std::isnan(HalfToDouble(0x7E00)));
  EXPECT_TRUE(std::isnan(HalfToDouble(0x7C01)));
  EXPECT_EQ(HalfToDouble(0x0001), std::ldexp(1.0, -24));
  EXPECT_EQ(HalfToDouble(0x03FF), std::ldexp(1023.0, -24));
  EXPECT_EQ(HalfToDouble(0x0400), std::ldexp(1.0, -14));
  EXPECT_EQ(HalfToDouble(0x7BFF), 65504.0);
  EXPECT_EQ(HalfToDouble(0x3555), 0x555 * std::ldexp(1.0, -12));  // ~1/3
  EXPECT_EQ(HalfToDouble(0x8000), 0.0);
  EXPECT_TRUE(std::signbit(HalfToDouble(0x8000)));

  EXPECT_EQ(BFloat16ToDouble(0x3F80), 1.0);
  EXPECT_EQ(BFloat16ToDouble(0xC040), -3.0);
  EXPECT_EQ(BFloat16ToDouble(0x4049), 3.140625);
  EXPECT_EQ(BFloat16ToDouble(0x7F80), inf);
  EXPECT_EQ(BFloat16ToDouble(0xFF80), -inf);
  EXPECT_TRUE(std::isnan(BFloat16ToDouble(0x7FC0)));
  EXPECT_EQ(BFloat16ToDouble(0x0001), std::ldexp(1.0, -133));
  EXPECT_EQ(BFloat16ToDouble(0x7F7F), std::ldexp(255.0, 120));

  // float8_e4m3fn: sign 1, exponent 4 (bias 7), mantissa 3; no infinities; S.1111.111 is NaN.
  EXPECT_EQ(Float8E4M3ToDouble(0x38), 1.0);
  EXPECT_EQ(Float8E4M3ToDouble(0x40), 2.0);
  EXPECT_EQ(Float8E4M3ToDouble(0x3C), 1.5);
  EXPECT_EQ(Float8E4M3ToDouble(0xB8), -1.0);
  EXPECT_EQ(Float8E4M3ToDouble(0x7E), 448.0);
  EXPECT_EQ(Float8E4M3ToDouble(0xFE), -448.0);
  EXPECT_EQ(Float8E4M3ToDouble(0x78), 256.0);  // exponent 15 is a normal number here
  EXPECT_TRUE(std::isnan(Float8E4M3ToDouble(0x7F)));
  EXPECT_TRUE(std::isnan(Float8E4M3ToDouble(0xFF)));
  EXPECT_EQ(Float8E4M3ToDouble(0x01), std::ldexp(1.0, -9));
  EXPECT_EQ(Float8E4M3ToDouble(0x07), 7 * std::ldexp(1.0, -9));
  EXPECT_EQ(Float8E4M3ToDouble(0x08), std::ldexp(1.0, -6));
  EXPECT_EQ(Float8E4M3ToDouble(0x00), 0.0);
  EXPECT_TRUE(std::signbit(Float8E4M3ToDouble(0x80)));

  // float8_e5m2: sign 1, exponent 5 (bias 15), mantissa 2; IEEE infinities and NaNs.
  EXPECT_EQ(Float8E5M2ToDouble(0x3C), 1.0);
  EXPECT_EQ(Float8E5M2ToDouble(0xC0), -2.0);
  EXPECT_EQ(Float8E5M2ToDouble(0x3E), 1.5);
  EXPECT_EQ(Float8E5M2ToDouble(0x7C), inf);
  EXPECT_EQ(Float8E5M2ToDouble(0xFC), -inf);
  EXPECT_TRUE(std::isnan(Float8E5M2ToDouble(0x7D)));
  EXPECT_TRUE(std::isnan(Float8E5M2ToDouble(0xFF)));
  EXPECT_EQ(Float8E5M2ToDouble(0x7B), 57344.0);
  EXPECT_EQ(Float8E5M2ToDouble(0x01), std::ldexp(1.0, -16));
  EXPECT_EQ(Float8E5M2ToDouble(0x04), std::ldexp(1.0, -14));

  // Every e4m3 byte agrees with the test's own decoder.
  for (int b = 0; b < 256; ++b) {
    const char c = static_cast<char>(b);
    const double want = Decode(DType::kFloat8E4M3, &c);
    const double got = Float8E4M3ToDouble(static_cast<uint8_t>(b));
    if (std::isnan(want)) {
      EXPECT_TRUE(std::isnan(got)) << b;
    } else {
      EXPECT_EQ(got, want) << b;
    }
  }
}

TEST(ValuesTest, ElementsOfEveryDtype) {
  // Unaligned, little-endian input.
  alignas(8) uint8_t buf[32] = {};
  auto put = [&](const auto& v) { std::memcpy(buf + 1, &v, sizeof(v)); };
  put(int8_t{-5});
  EXPECT_EQ(ElementToDouble(DType::kInt8, buf + 1), -5.0);
  put(int16_t{-30000});
  EXPECT_EQ(ElementToDouble(DType::kInt16, buf + 1), -30000.0);
  put(int32_t{-2000000000});
  EXPECT_EQ(ElementToDouble(DType::kInt32, buf + 1), -2000000000.0);
  put(int64_t{-(int64_t{1} << 52) - 3});
  EXPECT_EQ(ElementToDouble(DType::kInt64, buf + 1), -std::ldexp(1.0, 52) - 3);
  put(uint8_t{200});
  EXPECT_EQ(ElementToDouble(DType::kUInt8, buf + 1), 200.0);
  put(uint8_t{2});
  EXPECT_EQ(ElementToDouble(DType::kBool, buf + 1), 1.0);
  put(uint8_t{0});
  EXPECT_EQ(ElementToDouble(DType::kBool, buf + 1), 0.0);
  put(-2.5f);
  EXPECT_EQ(ElementToDouble(DType::kFloat32, buf + 1), -2.5);
  put(1e300);
  EXPECT_EQ(ElementToDouble(DType::kFloat64, buf + 1), 1e300);
  put(uint16_t{0xC000});
  EXPECT_EQ(ElementToDouble(DType::kFloat16, buf + 1), -2.0);
  EXPECT_EQ(ElementToDouble(DType::kBFloat16, buf + 1), -2.0);
  put(uint8_t{0x38});
  EXPECT_EQ(ElementToDouble(DType::kFloat8E4M3, buf + 1), 1.0);
  put(uint8_t{0x3C});
  EXPECT_EQ(ElementToDouble(DType::kFloat8E5M2, buf + 1), 1.0);
  // The appended dtypes; the float8 bit patterns are torch 2.15's for the values expected.
  put(uint16_t{65000});
  EXPECT_EQ(ElementToDouble(DType::kUInt16, buf + 1), 65000.0);
  put(uint32_t{4000000000u});
  EXPECT_EQ(ElementToDouble(DType::kUInt32, buf + 1), 4000000000.0);
  put(uint64_t{1} << 63);
  EXPECT_EQ(ElementToDouble(DType::kUInt64, buf + 1), std::ldexp(1.0, 63));
  for (const auto& [dtype, bits, want] : std::vector<std::tuple<DType, uint8_t, double>>{
           {DType::kFloat8E4M3Fnuz, 0x40, 1.0},
           {DType::kFloat8E4M3Fnuz, 0xB8, -0.5},
           {DType::kFloat8E4M3Fnuz, 0x7F, 240.0},
           {DType::kFloat8E4M3Fnuz, 0x01, std::ldexp(1.0, -10)},
           {DType::kFloat8E5M2Fnuz, 0x40, 1.0},
           {DType::kFloat8E5M2Fnuz, 0xBC, -0.5},
           {DType::kFloat8E5M2Fnuz, 0x7F, 57344.0},
           {DType::kFloat8E5M2Fnuz, 0x01, std::ldexp(1.0, -17)},
           {DType::kFloat8E8M0, 0x7F, 1.0},
           {DType::kFloat8E8M0, 0x7E, 0.5},
           {DType::kFloat8E8M0, 0xFE, std::ldexp(1.0, 127)},
           {DType::kFloat8E8M0, 0x00, std::ldexp(1.0, -127)}}) {
    put(bits);
    EXPECT_EQ(ElementToDouble(dtype, buf + 1), want) << DTypeName(dtype) << " " << int(bits);
  }
  put(uint8_t{0x80});
  EXPECT_TRUE(std::isnan(ElementToDouble(DType::kFloat8E4M3Fnuz, buf + 1)));
  EXPECT_TRUE(std::isnan(ElementToDouble(DType::kFloat8E5M2Fnuz, buf + 1)));
  put(uint8_t{0xFF});
  EXPECT_TRUE(std::isnan(ElementToDouble(DType::kFloat8E8M0, buf + 1)));
  EXPECT_TRUE(std::isnan(ElementToDouble(DType::kComplex64, buf + 1)));

  // ElementsToDouble equals element-wise decoding for every dtype, at an unaligned address.
  for (int i = 0; i < 32; ++i) buf[i] = static_cast<uint8_t>(i * 37 + 11);
  for (DType dtype : kAllDTypes) {
    if (dtype == DType::kBytes) continue;
    const size_t size = ElementSize(dtype);
    const size_t n = 24 / size;
    std::vector<double> out(n);
    ElementsToDouble(dtype, buf + 3, n, out.data());
    for (size_t i = 0; i < n; ++i) {
      const double want = ElementToDouble(dtype, buf + 3 + i * size);
      if (std::isnan(want)) {
        EXPECT_TRUE(std::isnan(out[i])) << DTypeName(dtype) << " " << i;
      } else {
        EXPECT_EQ(out[i], want) << DTypeName(dtype) << " " << i;
      }
    }
  }
}

// Sample statistics of the finite values, computed directly.
struct Direct {
  double min = 0, max = 0, mean = 0, std = 0;
  uint64_t nan = 0, inf = 0, zeros = 0;
};

Direct DirectStats(const std::vector<double>& values) {
  Direct d;
  std::vector<double> finite;
  for (double v : values) {
    if (std::isnan(v)) {
      ++d.nan;
    } else if (std::isinf(v)) {
      ++d.inf;
    } else {
      d.zeros += v == 0;
      finite.push_back(v);
    }
  }
  d.min = *std::min_element(finite.begin(), finite.end());
  d.max = *std::max_element(finite.begin(), finite.end());
  double sum = 0;
  for (double v : finite) sum += v;
  d.mean = sum / finite.size();
  double m2 = 0;
  for (double v : finite) m2 += (v - d.mean) * (v - d.mean);
  d.std = std::sqrt(m2 / (finite.size() - 1));
  return d;
}

TEST(StatsTest, SpecialValuesAndShardedTensorsMatchDirectComputation) {
  TempDir tmp;
  FixtureState state = SaveFixture(tmp.path(), {.id = "s", .world = 3});
  std::unique_ptr<StoreView> view = OpenView(tmp.path());
  ASSERT_NE(view, nullptr);

  StatusOr<std::vector<TensorStats>> special = ComputeStats(*view, "s", {"stats.special"}, 8);
  ASSERT_TRUE(special.ok()) << special.status();
  ASSERT_EQ(special->size(), 1u);
  const TensorStats& sp = (*special)[0];
  EXPECT_EQ(sp.fqn, "stats.special");
  EXPECT_EQ(sp.dtype, DType::kFloat32);
  EXPECT_EQ(sp.shape, Shape{8});
  EXPECT_EQ(sp.count, 8u);
  EXPECT_EQ(sp.nan, 1u);
  EXPECT_EQ(sp.inf, 2u);
  EXPECT_EQ(sp.zeros, 2u);
  EXPECT_EQ(sp.min, 0.0);
  EXPECT_EQ(sp.max, 3.0);
  EXPECT_NEAR(sp.mean, 1.2, 1e-12);
  EXPECT_NEAR(sp.std, std::sqrt(6.8 / 4), 1e-12);  // {0, 0, 1, 2, 3}
  ASSERT_EQ(sp.head.size(), 8u);
  EXPECT_EQ(sp.head[3], 2.0);
  EXPECT_TRUE(std::isnan(sp.head[4]));
  EXPECT_EQ(sp.head[6], -std::numeric_limits<double>::infinity());

  // Every fqn, in fqn order, against statistics computed straight from the fixture's bytes.
  StatusOr<std::vector<TensorStats>> all = ComputeStats(*view, "latest", {}, 5);
  ASSERT_TRUE(all.ok()) << all.status();
  ASSERT_EQ(all->size(), state.size());
  auto it = state.begin();
  for (const TensorStats& s : *all) {
    const auto& [fqn, t] = *it++;
    SCOPED_TRACE(fqn);
    ASSERT_EQ(s.fqn, fqn);
    EXPECT_EQ(s.shape, t.shape);
    EXPECT_EQ(s.count, t.bytes.size() / ElementSize(t.is_bytes ? DType::kBytes : t.dtype));
    const std::vector<double> values =
        t.is_bytes ? DecodeAll(FixtureTensor{DType::kUInt8, t.shape, t.bytes}) : DecodeAll(t);
    ASSERT_EQ(s.head.size(), std::min<size_t>(5, values.size()));
    for (size_t i = 0; i < s.head.size(); ++i) {
      if (!std::isnan(values[i])) {
        EXPECT_EQ(s.head[i], values[i]) << i;
      }
    }
    if (t.is_bytes) {
      EXPECT_EQ(s.dtype, DType::kBytes);
      continue;
    }
    if (values.empty()) {  // opt.empty
      EXPECT_TRUE(std::isnan(s.min) && std::isnan(s.max) && std::isnan(s.mean));
      EXPECT_TRUE(std::isnan(s.std));
      continue;
    }
    if (values.size() == 1) {  // the scalar
      EXPECT_EQ(s.min, values[0]);
      EXPECT_EQ(s.max, values[0]);
      EXPECT_EQ(s.mean, values[0]);
      EXPECT_TRUE(std::isnan(s.std));
      continue;
    }
    const Direct d = DirectStats(values);
    EXPECT_EQ(s.nan, d.nan);
    EXPECT_EQ(s.inf, d.inf);
    EXPECT_EQ(s.zeros, d.zeros);
    EXPECT_EQ(s.min, d.min);
    EXPECT_EQ(s.max, d.max);
    EXPECT_NEAR(s.mean, d.mean, 1e-12 * (1 + std::fabs(d.mean)));
    EXPECT_NEAR(s.std, d.std, 1e-12 * (1 + d.std));
  }

  // model.w, spelled out: head N is the first N values in row-major order.
  StatusOr<std::vector<TensorStats>> w = ComputeStats(*view, "s", {"model.w"}, 12);
  ASSERT_TRUE(w.ok()) << w.status();
  const std::vector<double> wv = DecodeAll(state.at("model.w"));
  EXPECT_THAT((*w)[0].head, ::testing::ElementsAreArray(wv.begin(), wv.begin() + 12));
  const Direct dw = DirectStats(wv);
  EXPECT_EQ((*w)[0].min, dw.min);
  EXPECT_EQ((*w)[0].max, dw.max);
  EXPECT_NEAR((*w)[0].mean, dw.mean, 1e-12);
  EXPECT_NEAR((*w)[0].std, dw.std, 1e-12);
  // A head longer than the tensor is the whole tensor.
  StatusOr<std::vector<TensorStats>> bias = ComputeStats(*view, "s", {"model.bias"}, 100);
  ASSERT_TRUE(bias.ok()) << bias.status();
  EXPECT_EQ((*bias)[0].head.size(), 16u);

  // Progress reaches the total.
  uint64_t last_done = 0, last_total = 0;
  ASSERT_TRUE(ComputeStats(*view, "s", {}, 0, [&](uint64_t done, uint64_t total) {
                EXPECT_GE(done, last_done);
                last_done = done;
                last_total = total;
              }).ok());
  EXPECT_EQ(last_done, last_total);
  EXPECT_EQ(last_total, GlobalBytes(state));

  StatusOr<std::vector<TensorStats>> unknown = ComputeStats(*view, "s", {"model.nope"});
  EXPECT_EQ(unknown.status().code(), StatusCode::kNotFound);
  EXPECT_THAT(unknown.status().message(), HasSubstr("model.nope"));
  EXPECT_EQ(ComputeStats(*view, "nope", {}).status().code(), StatusCode::kNotFound);
}

// ---- Diff --------------------------------------------------------------------------------------

const TensorDiff* FindDiff(const DiffReport& report, const std::string& fqn) {
  for (const TensorDiff& d : report.tensors) {
    if (d.fqn == fqn) return &d;
  }
  return nullptr;
}

TEST(DiffTest, ComparesByValueAcrossShardings) {
  TempDir tmp;
  FixtureState a = SaveFixture(tmp.path(), {.id = "a", .world = 2});
  SaveFixture(tmp.path(), {.id = "b", .world = 3});
  const std::set<std::string> reseeded = {"model.w", "model.col", "model.grid", "model.fp8"};
  FixtureState c = SaveFixture(tmp.path(), {.id = "c", .world = 3, .reseeded = reseeded});
  SaveFixture(tmp.path(), {.id = "d", .world = 4, .omit = {"model.bias"}, .extra = true});
  std::unique_ptr<StoreView> view = OpenView(tmp.path());
  ASSERT_NE(view, nullptr);

  // Same values, different world sizes and shardings: nothing changed.
  StatusOr<DiffReport> same = DiffCheckpoints(*view, "a", "b");
  ASSERT_TRUE(same.ok()) << same.status();
  EXPECT_EQ(same->a, "a");
  EXPECT_EQ(same->b, "b");
  ASSERT_EQ(same->tensors.size(), a.size());
  auto it = a.begin();
  for (const TensorDiff& d : same->tensors) {
    EXPECT_EQ(d.fqn, (it++)->first);
    EXPECT_EQ(d.kind, DiffKind::kUnchanged) << d.fqn << ": " << d.detail;
    EXPECT_EQ(d.elements_changed, 0u) << d.fqn;
  }

  // Reseeded fqns changed, by as much as the fixture's bytes say.
  uint64_t last_done = 0, last_total = 0;
  StatusOr<DiffReport> changed =
      DiffCheckpoints(*view, "a", "c", [&](uint64_t done, uint64_t total) {
        EXPECT_GE(done, last_done);
        last_done = done;
        last_total = total;
      });
  ASSERT_TRUE(changed.ok()) << changed.status();
  EXPECT_EQ(last_done, last_total);
  EXPECT_EQ(last_total, 2 * GlobalBytes(a));
  ASSERT_EQ(changed->tensors.size(), a.size());
  for (const TensorDiff& d : changed->tensors) {
    SCOPED_TRACE(d.fqn);
    if (!reseeded.count(d.fqn)) {
      EXPECT_EQ(d.kind, DiffKind::kUnchanged) << d.detail;
      continue;
    }
    EXPECT_EQ(d.kind, DiffKind::kChanged);
    EXPECT_EQ(DiffKindName(d.kind), "changed");
    EXPECT_EQ(d.detail, "values");
    EXPECT_EQ(d.dtype, a.at(d.fqn).dtype);
    EXPECT_EQ(d.shape, a.at(d.fqn).shape);
    const FixtureTensor& ta = a.at(d.fqn);
    const FixtureTensor& tc = c.at(d.fqn);
    const size_t element = ElementSize(ta.dtype);
    uint64_t count = 0;
    double max_diff = 0;
    for (size_t i = 0; i < ta.bytes.size(); i += element) {
      if (std::memcmp(&ta.bytes[i], &tc.bytes[i], element) == 0) continue;
      ++count;
      const double x = Decode(ta.dtype, &ta.bytes[i]), y = Decode(ta.dtype, &tc.bytes[i]);
      if (!std::isnan(x) && !std::isnan(y)) max_diff = std::max(max_diff, std::fabs(y - x));
    }
    EXPECT_GT(d.elements_changed, 0u);
    EXPECT_EQ(d.elements_changed, count);
    EXPECT_EQ(d.max_abs_diff, max_diff);
  }

  // Fqns left out and added.
  StatusOr<DiffReport> ad = DiffCheckpoints(*view, "a", "latest");
  ASSERT_TRUE(ad.ok()) << ad.status();
  EXPECT_EQ(ad->b, "d");
  ASSERT_EQ(ad->tensors.size(), a.size() + 1);
  for (const TensorDiff& d : ad->tensors) {
    const DiffKind want = d.fqn == "model.bias"    ? DiffKind::kRemoved
                          : d.fqn == "model.extra" ? DiffKind::kAdded
                                                   : DiffKind::kUnchanged;
    EXPECT_EQ(d.kind, want) << d.fqn;
  }
  EXPECT_EQ(FindDiff(*ad, "model.extra")->shape, Shape{5});
  EXPECT_EQ(FindDiff(*ad, "model.bias")->shape, Shape{16});
  StatusOr<DiffReport> da = DiffCheckpoints(*view, "d", "a");
  ASSERT_TRUE(da.ok()) << da.status();
  EXPECT_EQ(FindDiff(*da, "model.bias")->kind, DiffKind::kAdded);
  EXPECT_EQ(FindDiff(*da, "model.extra")->kind, DiffKind::kRemoved);
  EXPECT_TRUE(
      std::is_sorted(da->tensors.begin(), da->tensors.end(),
                     [](const TensorDiff& x, const TensorDiff& y) { return x.fqn < y.fqn; }));

  EXPECT_EQ(DiffCheckpoints(*view, "a", "nope").status().code(), StatusCode::kNotFound);
}

TEST(DiffTest, DtypeShapeAndValueChangesSaySo) {
  TempDir tmp;
  FixtureState a = SaveFixture(tmp.path(), {.id = "a", .world = 2});
  // A second checkpoint saved by one process, with some fqns of another shape, dtype or values.
  std::string w = Ramp(32, 0);     // model.w as [4, 8] instead of [13, 8]
  std::string bias(16 * 8, '\0');  // model.bias as float64
  std::string special = a.at("stats.special").bytes;
  const float minus_zero = -0.0f, five = 5.0f, one_and_half = 1.5f;
  std::memcpy(&special[0], &minus_zero, 4);    // 0 -> -0: bytes differ, values do not
  std::memcpy(&special[8], &one_and_half, 4);  // 1 -> 1.5
  std::memcpy(&special[16], &five, 4);         // NaN -> 5: no difference to measure
  std::string grid = a.at("model.grid").bytes;
  const double nan = std::nan("");
  std::memcpy(&grid[8 * 7], &nan, 8);  // only a NaN differs
  std::string mask = a.at("model.mask").bytes;
  std::string state = a.at("trainer.state").bytes;
  state[0] = 'S';
  state[1] = 'T';
  StateDict sd;
  sd.Set("model.w", Tensor::Wrap(DType::kFloat32, {4, 8}, w.data()));
  sd.Set("model.bias", Tensor::Wrap(DType::kFloat64, {16}, bias.data()));
  sd.Set("stats.special", Tensor::Wrap(DType::kFloat32, {8}, special.data()));
  sd.Set("model.grid", Tensor::Wrap(DType::kFloat64, {6, 6}, grid.data()));
  sd.Set("model.mask", Tensor::Wrap(DType::kBool, {10}, mask.data()));
  sd.Set("trainer.state", Bytes{state});
  SaveOptions options;
  options.checkpoint_id = "e";
  options.store_root = tmp.path();
  ASSERT_TRUE(Save(sd, options).ok());

  std::unique_ptr<StoreView> view = OpenView(tmp.path());
  ASSERT_NE(view, nullptr);
  StatusOr<DiffReport> report = DiffCheckpoints(*view, "a", "e");
  ASSERT_TRUE(report.ok()) << report.status();
  ASSERT_EQ(report->tensors.size(), a.size());

  const TensorDiff* d = FindDiff(*report, "model.w");
  EXPECT_EQ(d->kind, DiffKind::kChanged);
  EXPECT_EQ(d->detail, "shape [13, 8] -> [4, 8]");
  EXPECT_EQ(d->shape, (Shape{13, 8}));
  EXPECT_TRUE(std::isnan(d->max_abs_diff));
  d = FindDiff(*report, "model.bias");
  EXPECT_EQ(d->kind, DiffKind::kChanged);
  EXPECT_EQ(d->detail, "dtype float32 -> float64");
  EXPECT_EQ(d->dtype, DType::kFloat32);
  EXPECT_TRUE(std::isnan(d->max_abs_diff));
  d = FindDiff(*report, "stats.special");
  EXPECT_EQ(d->kind, DiffKind::kChanged);
  EXPECT_EQ(d->detail, "values");
  EXPECT_EQ(d->elements_changed, 3u);
  EXPECT_EQ(d->max_abs_diff, 0.5);
  d = FindDiff(*report, "model.grid");
  EXPECT_EQ(d->kind, DiffKind::kChanged);
  EXPECT_EQ(d->elements_changed, 1u);
  EXPECT_TRUE(std::isnan(d->max_abs_diff));
  d = FindDiff(*report, "trainer.state");
  EXPECT_EQ(d->kind, DiffKind::kChanged);
  EXPECT_EQ(d->detail, "values");
  EXPECT_EQ(d->elements_changed, 2u);
  EXPECT_TRUE(std::isnan(d->max_abs_diff));
  EXPECT_EQ(FindDiff(*report, "model.mask")->kind, DiffKind::kUnchanged);
  EXPECT_EQ(FindDiff(*report, "model.mask")->max_abs_diff, 0.0);
  EXPECT_EQ(FindDiff(*report, "model.col")->kind, DiffKind::kRemoved);
  EXPECT_EQ(FindDiff(*report, "opt.empty")->kind, DiffKind::kRemoved);

  // An infinite value against a finite one differs by infinity.
  std::string special2 = special;
  const float seven = 7.0f;
  std::memcpy(&special2[20], &seven, 4);  // +inf -> 7
  StateDict sd2;
  sd2.Set("stats.special", Tensor::Wrap(DType::kFloat32, {8}, special2.data()));
  options.checkpoint_id = "f";
  ASSERT_TRUE(Save(sd2, options).ok());
  view = OpenView(tmp.path());
  ASSERT_NE(view, nullptr);
  report = DiffCheckpoints(*view, "e", "f");
  ASSERT_TRUE(report.ok()) << report.status();
  d = FindDiff(*report, "stats.special");
  EXPECT_EQ(d->elements_changed, 1u);
  EXPECT_EQ(d->max_abs_diff, std::numeric_limits<double>::infinity());
}

// ---- Verify ------------------------------------------------------------------------------------

TEST(VerifyTest, CleanStoreIsOk) {
  TempDir tmp;
  FixtureState a = SaveFixture(tmp.path(), {.id = "a", .world = 2});
  FixtureState b = SaveFixture(tmp.path(), {.id = "b", .world = 3});
  std::unique_ptr<StoreView> view = OpenView(tmp.path());
  ASSERT_NE(view, nullptr);
  uint64_t last_done = 0, last_total = 0;
  StatusOr<VerifyReport> report = VerifyCheckpoints(*view, {}, [&](uint64_t done, uint64_t total) {
    EXPECT_GE(done, last_done);
    last_done = done;
    last_total = total;
  });
  ASSERT_TRUE(report.ok()) << report.status();
  for (const VerifyProblem& p : report->problems) ADD_FAILURE() << DescribeProblem(p);
  EXPECT_TRUE(report->ok());
  EXPECT_EQ(report->checkpoints, 2u);
  EXPECT_EQ(report->tensors, a.size() + b.size());
  EXPECT_GE(report->shards, report->tensors - 2);  // the empty tensors may have no data
  EXPECT_GT(report->chunks, 0u);
  EXPECT_EQ(report->bytes, GlobalBytes(a) + GlobalBytes(b));
  EXPECT_EQ(last_done, last_total);
  EXPECT_EQ(last_total, report->bytes);

  std::ostringstream text;
  PrintVerify(*report, OutputFormat::kJson, text);
  EXPECT_THAT(text.str(), HasSubstr("\"ok\": true"));
}

// A checkpoint deleted while verify runs (as a job's retention or `dcpkv rm` does, after verify
// listed the store): not a problem, reported as deleted meanwhile.
TEST(VerifyTest, ACheckpointDeletedWhileVerifyRunsIsNotAProblem) {
  TempDir tmp;
  SaveFixture(tmp.path(), {.id = "a", .world = 2});
  SaveFixture(tmp.path(), {.id = "b", .world = 2});
  SaveFixture(tmp.path(), {.id = "c", .world = 2});
  std::unique_ptr<StoreView> view = OpenView(tmp.path());
  ASSERT_NE(view, nullptr);
  ASSERT_TRUE(RemoveCheckpoints(tmp.path(), {"a"}).ok());  // with its garbage collected
  ASSERT_TRUE(RemoveCheckpoints(tmp.path(), {"b"}, {.compact = false}).ok());
  StatusOr<VerifyReport> report = VerifyCheckpoints(*view, {});
  ASSERT_TRUE(report.ok()) << report.status();
  for (const VerifyProblem& p : report->problems) ADD_FAILURE() << DescribeProblem(p);
  EXPECT_THAT(report->deleted_meanwhile, ElementsAre("a", "b"));
  std::ostringstream text;
  PrintVerify(*report, OutputFormat::kText, text);
  EXPECT_THAT(text.str(), HasSubstr("deleted while verify ran (not verified): a"));
  EXPECT_THAT(text.str(), HasSubstr("OK: "));
}

TEST(VerifyTest, FlippedPayloadByteIsOneProblemNamingTheChunk) {
  TempDir tmp;
  FixtureState a = SaveFixture(tmp.path(), {.id = "a", .world = 2});
  SaveFixture(tmp.path(), {.id = "b", .world = 3});
  Metadata md;
  {
    std::unique_ptr<StoreView> view = OpenView(tmp.path());
    ASSERT_NE(view, nullptr);
    md = ReadMd(*view, "a");
  }
  const SavedShard shard = md.entries.at("model.w").shards.back();
  ASSERT_EQ(shard.rank, 1);
  {
    RawDB raw(RankDirectory(tmp.path(), shard.rank));
    const std::string key = *EncodeChunkKey({"a", "model.w", shard.offsets, 0});
    std::string value = raw.Get(kChunksCf, key);
    const std::string payload = BoxBytes(a.at("model.w"), Box{shard.offsets, shard.sizes});
    const size_t pos = value.find(payload);
    ASSERT_NE(pos, std::string::npos);
    value[pos + 37] ^= 0x10;
    raw.Put(kChunksCf, key, value);
  }
  std::unique_ptr<StoreView> view = OpenView(tmp.path());
  ASSERT_NE(view, nullptr);
  StatusOr<VerifyReport> report = VerifyCheckpoints(*view, {});
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->checkpoints, 2u);
  ASSERT_EQ(report->problems.size(), 1u);
  const VerifyProblem& p = report->problems[0];
  EXPECT_EQ(p.checkpoint_id, "a");
  EXPECT_EQ(p.fqn, "model.w");
  EXPECT_EQ(p.shard_offsets, shard.offsets);
  EXPECT_EQ(p.rank, 1);
  EXPECT_EQ(p.byte_offset, 0u);
  EXPECT_THAT(p.what, HasSubstr("checksum mismatch"));
  EXPECT_THAT(DescribeProblem(p), AllOf(HasSubstr("checkpoint \"a\""), HasSubstr("fqn \"model.w\""),
                                        HasSubstr("shard " + ShapeToString(shard.offsets)),
                                        HasSubstr("rank 1"), HasSubstr("byte 0")));
  EXPECT_EQ(report->bytes,
            md.logical_bytes() - shard.bytes + FindListing(*view, "b")->logical_bytes);

  // The other checkpoint verifies clean on its own; the damaged one does not.
  StatusOr<VerifyReport> b = VerifyCheckpoints(*view, {"b"});
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_TRUE(b->ok());
  EXPECT_EQ(b->checkpoints, 1u);
  StatusOr<VerifyReport> only_a = VerifyCheckpoints(*view, {"a"});
  ASSERT_TRUE(only_a.ok()) << only_a.status();
  EXPECT_EQ(only_a->problems.size(), 1u);

  // A stream over the damaged shard fails with DATA_LOSS naming it.
  TensorStream stream(view.get(), "a", "model.w", md.entries.at("model.w"));
  Status status = Status::Ok();
  while (!stream.done() && status.ok()) status = stream.Next().status();
  EXPECT_EQ(status.code(), StatusCode::kDataLoss);
  EXPECT_THAT(status.message(), HasSubstr("checksum mismatch"));
}

// A tensor of float32 rows saved by one process as `parts` local shards along dimension 0.
struct RowShards {
  Shape shape;
  std::string bytes;
  int parts = 1;

  StateDict StateDictOf() {
    StateDict sd;
    ShardedTensor st{DType::kFloat32, shape, {}};
    Tensor global = Tensor::Wrap(DType::kFloat32, shape, bytes.data());
    for (int p = 0; p < parts; ++p) {
      Box box = testing::SplitBox(shape, 0, parts, p);
      st.local_shards.push_back(Shard{box.offsets, testing::Slice(global, box)});
    }
    sd.Set("big", std::move(st));
    return sd;
  }
};

TEST(VerifyTest, MissingChunksOfAMultiChunkShard) {
  TempDir tmp;
  SaveFixture(tmp.path(), {.id = "a", .world = 2});
  RowShards t{{64, 64}, Ramp(64 * 64, 0), 2};  // two shards of 8 KiB: 8 chunks of 1 KiB each
  StateDict sd = t.StateDictOf();
  std::string tail = Ramp(8, 100);
  sd.Set("tail", Tensor::Wrap(DType::kFloat32, {8}, tail.data()));
  ASSERT_TRUE(SaveWithStoreOptions(tmp.path(), "k", sd, 1024, 64 << 10).ok());
  {
    RawDB raw(RankDirectory(tmp.path(), 0));
    raw.Delete(kChunksCf, *EncodeChunkKey({"k", "big", {32, 0}, 2048}));  // in the middle
    raw.Delete(kChunksCf, *EncodeChunkKey({"k", "big", {0, 0}, 7168}));   // the last one
  }
  std::unique_ptr<StoreView> view = OpenView(tmp.path());
  ASSERT_NE(view, nullptr);
  StatusOr<VerifyReport> report = VerifyCheckpoints(*view, {"k"});
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->checkpoints, 1u);
  EXPECT_EQ(report->tensors, 2u);
  EXPECT_EQ(report->shards, 3u);
  EXPECT_EQ(report->chunks, 15u);  // 16 of "big" less 2, and "tail"
  EXPECT_EQ(report->bytes, 14u * 1024 + 32);
  ASSERT_EQ(report->problems.size(), 2u);
  const VerifyProblem& first = report->problems[0];
  EXPECT_EQ(first.fqn, "big");
  EXPECT_EQ(first.shard_offsets, (Shape{0, 0}));
  EXPECT_EQ(first.rank, 0);
  EXPECT_EQ(first.byte_offset, 7168u);
  EXPECT_THAT(first.what, HasSubstr("missing chunk"));
  const VerifyProblem& second = report->problems[1];
  EXPECT_EQ(second.shard_offsets, (Shape{32, 0}));
  EXPECT_EQ(second.byte_offset, 2048u);
  EXPECT_THAT(second.what, AllOf(HasSubstr("missing chunk"), HasSubstr("[2048, 3072)")));

  StatusOr<VerifyReport> a = VerifyCheckpoints(*view, {"a"});
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_TRUE(a->ok());
}

// Threads and pieces change how the chunks are read, not what is found: shards of 128 chunks,
// cut into pieces of 16 chunks for four threads, report exactly what one thread reading each
// shard whole reports, in the same order, with every intact chunk matched to the manifest (a
// piece that started counting the manifest's chunks at the wrong one would report them all).
TEST(VerifyTest, ThreadsAndPiecesReportWhatOneThreadReports) {
  TempDir tmp;
  RowShards t{{256, 256}, Ramp(256 * 256, 0), 2};  // two shards of 128 KiB, chunks of 1 KiB
  StateDict sd = t.StateDictOf();
  ASSERT_TRUE(SaveWithStoreOptions(tmp.path(), "k", sd, 1024, 64 << 10).ok());
  {
    RawDB raw(RankDirectory(tmp.path(), 0));
    raw.Delete(kChunksCf, *EncodeChunkKey({"k", "big", {0, 0}, 5 << 10}));     // inside a piece
    raw.Delete(kChunksCf, *EncodeChunkKey({"k", "big", {0, 0}, 32 << 10}));    // a piece's first
    raw.Delete(kChunksCf, *EncodeChunkKey({"k", "big", {128, 0}, 15 << 10}));  // a piece's last
  }
  std::unique_ptr<StoreView> view = OpenView(tmp.path());
  ASSERT_NE(view, nullptr);
  auto verify = [&](int threads, uint64_t piece_bytes) {
    VerifyOptions options;
    options.threads = threads;
    options.piece_bytes = piece_bytes;
    uint64_t last_done = 0, last_total = 0;
    options.progress = [&](uint64_t done, uint64_t total) {
      EXPECT_GE(done, last_done);
      last_done = done;
      last_total = total;
    };
    StatusOr<VerifyReport> report = VerifyCheckpoints(*view, {"k"}, options);
    EXPECT_EQ(last_done, last_total);
    EXPECT_EQ(last_total, 256u << 10);
    return report;
  };
  StatusOr<VerifyReport> whole = verify(1, uint64_t{1} << 30);
  StatusOr<VerifyReport> pieces = verify(4, 16 << 10);
  ASSERT_TRUE(whole.ok()) << whole.status();
  ASSERT_TRUE(pieces.ok()) << pieces.status();
  EXPECT_EQ(whole->chunks, 253u);
  EXPECT_EQ(pieces->chunks, whole->chunks);
  EXPECT_EQ(pieces->bytes, whole->bytes);
  EXPECT_EQ(pieces->shards, 2u);
  ASSERT_EQ(whole->problems.size(), 3u);
  ASSERT_EQ(pieces->problems.size(), whole->problems.size());
  for (size_t i = 0; i < whole->problems.size(); ++i) {
    EXPECT_EQ(DescribeProblem(pieces->problems[i]), DescribeProblem(whole->problems[i]));
    EXPECT_THAT(whole->problems[i].what, HasSubstr("missing chunk"));
  }
  EXPECT_EQ(whole->problems[0].byte_offset, 5u << 10);
  EXPECT_EQ(whole->problems[1].byte_offset, 32u << 10);
  EXPECT_EQ(whole->problems[2].shard_offsets, (Shape{128, 0}));
  EXPECT_EQ(whole->problems[2].byte_offset, 15u << 10);
}

// Saves "big" (1 MiB in four shards of 64 chunks of 4 KiB, every chunk in a blob file) and a
// small "tail" after it, as checkpoint "blob" of `root`.
void SaveBlobCheckpoint(const std::string& root, RowShards* t, std::string* tail) {
  *t = RowShards{{256, 1024}, Ramp(256 * 1024, 0), 4};
  *tail = Ramp(8, 1e6);
  StateDict sd = t->StateDictOf();
  sd.Set("zz.tail", Tensor::Wrap(DType::kFloat32, {8}, tail->data()));
  ASSERT_TRUE(SaveWithStoreOptions(root, "blob", sd, 4096, 1024).ok());
}

// Damages the payloads of chunks `chunks` (4 KiB each) of the second shard of "big" (rows
// 64..127) where they lie in the blob files; verify must report each run of them as one problem
// and find every other chunk, those of later shards included, intact.
void ExpectDamagedBlobChunksReported(const std::vector<uint64_t>& chunks) {
  SCOPED_TRACE("damaged chunks " + ShapeToString(chunks));
  TempDir tmp;
  SaveFixture(tmp.path(), {.id = "a", .world = 2});
  RowShards t;
  std::string tail;
  SaveBlobCheckpoint(tmp.path(), &t, &tail);
  const std::vector<std::string> blobs = BlobFiles(RankDirectory(tmp.path(), 0));
  ASSERT_FALSE(blobs.empty());
  for (uint64_t chunk : chunks) {
    const std::string needle = t.bytes.substr(64 * 1024 * 4 + chunk * 4096, 64);
    bool damaged = false;
    for (const std::string& blob : blobs) {
      std::string content = ReadWholeFile(blob);
      const size_t pos = content.find(needle);
      if (pos == std::string::npos) continue;
      for (size_t i = 1000; i < 1010; ++i) content[pos + i] ^= 0x5A;
      WriteWholeFile(blob, content);
      damaged = true;
    }
    ASSERT_TRUE(damaged) << chunk;
  }
  // Each run of consecutive damaged chunks is one problem, at its first byte.
  std::vector<uint64_t> runs;
  for (size_t i = 0; i < chunks.size(); ++i) {
    if (i == 0 || chunks[i] != chunks[i - 1] + 1) runs.push_back(chunks[i] * 4096);
  }

  std::unique_ptr<StoreView> view = OpenView(tmp.path());
  ASSERT_NE(view, nullptr);
  StatusOr<VerifyReport> report = VerifyCheckpoints(*view, {});
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->checkpoints, 2u);
  uint64_t a_shards = 0;
  for (const auto& [fqn, entry] : ReadMd(*view, "a").entries) a_shards += entry.shards.size();
  EXPECT_EQ(report->shards, a_shards + 5);
  ASSERT_EQ(report->problems.size(), runs.size());
  for (size_t i = 0; i < runs.size(); ++i) {
    const VerifyProblem& p = report->problems[i];
    SCOPED_TRACE(DescribeProblem(p));
    EXPECT_EQ(p.checkpoint_id, "blob");
    EXPECT_EQ(p.fqn, "big");
    EXPECT_EQ(p.shard_offsets, (Shape{64, 0}));
    EXPECT_EQ(p.rank, 0);
    EXPECT_EQ(p.byte_offset, runs[i]);
    EXPECT_THAT(p.what, ::testing::AnyOf(HasSubstr("unreadable"), HasSubstr("checksum")));
  }
  // Every other chunk was read and found intact: none is taken for damaged.
  EXPECT_EQ(report->bytes,
            FindListing(*view, "a")->logical_bytes + t.bytes.size() - 4096 * chunks.size() + 32);
}

TEST(VerifyTest, DamagedBlobChunkIsReportedAndLaterShardsAreStillChecked) {
  ExpectDamagedBlobChunksReported({10});
}

TEST(VerifyTest, RunsOfDamagedBlobChunksAreReportedExactly) {
  ExpectDamagedBlobChunksReported({10, 11, 12, 20});
  ExpectDamagedBlobChunksReported({0, 1, 2, 3, 4, 5, 6});
  ExpectDamagedBlobChunksReported({55, 56, 57, 58, 59, 60});
  ExpectDamagedBlobChunksReported({61, 62, 63});
}

TEST(VerifyTest, TruncatedOrMissingBlobFileIsReportedWithoutCrashOrHang) {
  for (bool remove : {false, true}) {
    SCOPED_TRACE(remove ? "blob file removed" : "blob file truncated");
    TempDir tmp;
    SaveFixture(tmp.path(), {.id = "a", .world = 2});
    RowShards t;
    std::string tail;
    SaveBlobCheckpoint(tmp.path(), &t, &tail);
    const std::vector<std::string> blobs = BlobFiles(RankDirectory(tmp.path(), 0));
    ASSERT_FALSE(blobs.empty());
    for (const std::string& blob : blobs) {
      if (remove) {
        std::filesystem::remove(blob);
      } else {
        std::filesystem::resize_file(blob, std::filesystem::file_size(blob) / 2);
      }
    }
    // The view opens although rank 0's chunk listing cannot read past the damage.
    std::unique_ptr<StoreView> view = OpenView(tmp.path());
    ASSERT_NE(view, nullptr);
    ASSERT_THAT(ListedIds(*view), ElementsAre("a", "blob"));
    EXPECT_THAT(FindListing(*view, "a")->ranks_with_data, ElementsAre(0, 1));
    EXPECT_THAT(FindListing(*view, "blob")->ranks_with_data, ElementsAre(0));
    StatusOr<VerifyReport> report = VerifyCheckpoints(*view, {});
    ASSERT_TRUE(report.ok()) << report.status();
    EXPECT_EQ(report->checkpoints, 2u);
    EXPECT_FALSE(report->problems.empty());
    std::set<Shape> damaged_shards;
    for (const VerifyProblem& p : report->problems) {
      EXPECT_EQ(p.checkpoint_id, "blob") << DescribeProblem(p);
      EXPECT_EQ(p.fqn, "big") << DescribeProblem(p);
      damaged_shards.insert(p.shard_offsets);
    }
    // Rank 0's fixture chunks are inline in SST files and zz.tail as well: still intact.
    EXPECT_GE(report->bytes, FindListing(*view, "a")->logical_bytes + 32);
    if (remove) {
      EXPECT_EQ(damaged_shards.size(), 4u);
    }
    StatusOr<VerifyReport> a = VerifyCheckpoints(*view, {"a"});
    ASSERT_TRUE(a.ok()) << a.status();
    EXPECT_TRUE(a->ok());
  }
}

// A view opened before a writer's compaction replaced the files it would read: verify and
// streams reopen the database instead of reporting the vanished files as damage.
TEST(VerifyTest, FilesReplacedByAWritersCompactionAfterTheOpenAreNotDamage) {
  TempDir tmp;
  RowShards t;
  std::string tail;
  SaveBlobCheckpoint(tmp.path(), &t, &tail);
  SaveFixture(tmp.path(), {.id = "a", .world = 1});
  const std::string rank0 = RankDirectory(tmp.path(), 0);
  const std::vector<std::string> blobs_before = BlobFiles(rank0);
  ASSERT_FALSE(blobs_before.empty());

  for (bool stream : {false, true}) {
    SCOPED_TRACE(stream ? "stream" : "verify");
    std::unique_ptr<StoreView> view = OpenView(tmp.path());
    ASSERT_NE(view, nullptr);
    ASSERT_TRUE(view->RankStore(0).ok());  // opened before the compaction
    {
      RawDB raw(rank0);
      raw.CompactEverything(kChunksCf);
    }
    for (const std::string& blob : BlobFiles(rank0)) {
      EXPECT_TRUE(std::find(blobs_before.begin(), blobs_before.end(), blob) == blobs_before.end())
          << blob << " survived the compaction";
    }
    if (stream) {
      Metadata md = ReadMd(*view, "blob");
      TensorStream s(view.get(), "blob", "big", md.entries.at("big"));
      std::string read;
      while (!s.done()) {
        StatusOr<std::span<const uint8_t>> slab = s.Next();
        ASSERT_TRUE(slab.ok()) << slab.status();
        read.append(reinterpret_cast<const char*>(slab->data()), slab->size());
      }
      EXPECT_TRUE(read == t.bytes);
    } else {
      StatusOr<VerifyReport> report = VerifyCheckpoints(*view, {});
      ASSERT_TRUE(report.ok()) << report.status();
      for (const VerifyProblem& p : report->problems) ADD_FAILURE() << DescribeProblem(p);
      EXPECT_GT(report->chunks, 256u);
    }
  }
}

// A damaged SST data block that holds the chunk stored just before a shard's first chunk (here
// another tensor's), and a checkpoint (an incremental save) that refers to chunks next to it.
// Verify must report each checkpoint that cannot be loaded, and a checkpoint it does not report
// must load exactly. Tables without blob references are checked block by block as they are read,
// so the damage costs the chunk in the damaged block only: the incremental save stays loadable.
TEST(VerifyTest, DamagedTableBlockBeforeAShardIsReportedForEveryCheckpointReadingIt) {
  TempDir tmp;
  // One chunk of 40 KiB per tensor, inline in the SST (no blob files): each alone in a data block
  // of its own (16 KiB blocks), "a" before "b" in key order.
  const Shape shape{10 * 1024};
  std::string a1 = Ramp(10 * 1024, 0), a2 = Ramp(10 * 1024, 2e6), b = Ramp(10 * 1024, 1e6);
  auto save = [&](const std::string& id, std::string& a, bool incremental) {
    StateDict sd;
    sd.Set("a", Tensor::Wrap(DType::kFloat32, shape, a.data()));
    sd.Set("b", Tensor::Wrap(DType::kFloat32, shape, b.data()));
    return SaveWithStoreOptions(tmp.path(), id, sd, 1 << 20, 1 << 20, incremental);
  };
  ASSERT_TRUE(save("k1", a1, false).ok());
  ASSERT_TRUE(save("k2", a2, true).ok());  // a changed; b refers to k1's chunk
  {
    std::unique_ptr<StoreView> view = OpenView(tmp.path());
    ASSERT_NE(view, nullptr);
    const SavedShard k2b = ReadMd(*view, "k2").entries.at("b").shards.at(0);
    ASSERT_EQ(k2b.chunk_list.size(), 1u);
    ASSERT_EQ(k2b.chunk_list[0].source, "k1");
  }
  // Damage the data block of k1's chunk of "a" (its payload is in exactly one SST file).
  const std::string needle = a1.substr(20000, 64);
  int damaged = 0;
  for (const auto& e : std::filesystem::directory_iterator(RankDirectory(tmp.path(), 0))) {
    if (e.path().extension() != ".sst") continue;
    std::string content = ReadWholeFile(e.path().string());
    const size_t pos = content.find(needle);
    if (pos == std::string::npos) continue;
    content[pos + 10] ^= 0x20;
    WriteWholeFile(e.path().string(), content);
    ++damaged;
  }
  ASSERT_EQ(damaged, 1);

  std::unique_ptr<StoreView> view = OpenView(tmp.path());
  ASSERT_NE(view, nullptr);
  StatusOr<VerifyReport> report = VerifyCheckpoints(*view, {});
  ASSERT_TRUE(report.ok()) << report.status();
  std::set<std::string> reported;
  for (const VerifyProblem& p : report->problems) {
    SCOPED_TRACE(DescribeProblem(p));
    reported.insert(p.checkpoint_id);
    EXPECT_EQ(p.rank, 0);
    EXPECT_THAT(p.what, HasSubstr("block checksum mismatch"));
    // k2's own chunk of "a" is intact, in another file; its "b" is stored under k1. A read
    // checks the table files it may touch before reading, so "a" may be reported too, as
    // failing that check.
    if (p.checkpoint_id == "k2" && p.fqn == "b") {
      EXPECT_THAT(p.what, HasSubstr("stored under checkpoint \"k1\""));
    } else if (p.checkpoint_id == "k2") {
      EXPECT_THAT(p.what, HasSubstr("checking table file"));
    }
  }
  EXPECT_TRUE(reported.count("k1"));
  // A table without blob references is read block by block, each block's checksum checked as it
  // is read (not the whole file first): k2 reads no entry of the damaged block, so it is intact
  // and loads (the loop below checks both).
  EXPECT_FALSE(reported.count("k2"));
  view.reset();
  // Every checkpoint that cannot be loaded is reported; one that is not reported loads exactly.
  for (const auto& [id, a] : std::map<std::string, std::string>{{"k1", a1}, {"k2", a2}}) {
    SCOPED_TRACE(id);
    Tensor ta = Tensor::Allocate(DType::kFloat32, shape);
    Tensor tb = Tensor::Allocate(DType::kFloat32, shape);
    StateDict sd;
    sd.Set("a", ta);
    sd.Set("b", tb);
    const Status loaded = Load(sd, {.checkpoint_id = id, .store_root = tmp.path()});
    if (id == "k2") {
      EXPECT_TRUE(loaded.ok()) << loaded;
    }
    if (!loaded.ok()) {
      EXPECT_EQ(loaded.code(), StatusCode::kDataLoss) << loaded;
      EXPECT_TRUE(reported.count(id)) << "verify found nothing, but the load fails: " << loaded;
    } else {
      EXPECT_EQ(std::string(static_cast<const char*>(ta.data()), ta.nbytes()), a);
      EXPECT_EQ(std::string(static_cast<const char*>(tb.data()), tb.nbytes()), b);
    }
  }
}

TEST(VerifyTest, DamagedManifestsAndNamedLists) {
  TempDir tmp;
  FixtureState a = SaveFixture(tmp.path(), {.id = "a", .world = 2});
  SaveFixture(tmp.path(), {.id = "b", .world = 3});
  SaveFixture(tmp.path(), {.id = "c", .world = 3});
  DamageManifest(tmp.path(), 0, "c");
  std::unique_ptr<StoreView> view = OpenView(tmp.path());
  ASSERT_NE(view, nullptr);

  StatusOr<VerifyReport> all = VerifyCheckpoints(*view, {});
  ASSERT_TRUE(all.ok()) << all.status();
  EXPECT_EQ(all->checkpoints, 3u);
  ASSERT_EQ(all->problems.size(), 1u);
  EXPECT_EQ(all->problems[0].checkpoint_id, "c");
  EXPECT_EQ(all->problems[0].fqn, "");
  EXPECT_EQ(all->problems[0].rank, -1);
  EXPECT_THAT(all->problems[0].what, HasSubstr("damaged manifest"));
  EXPECT_THAT(DescribeProblem(all->problems[0]), HasSubstr("checkpoint \"c\": damaged manifest"));

  // Named: the damaged one is a problem, not an error.
  StatusOr<VerifyReport> c = VerifyCheckpoints(*view, {"c"});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->checkpoints, 1u);
  EXPECT_EQ(c->problems.size(), 1u);

  // "latest" is the newest commit that decodes (b), verified along with a.
  StatusOr<VerifyReport> named = VerifyCheckpoints(*view, {"a", "latest"});
  ASSERT_TRUE(named.ok()) << named.status();
  EXPECT_TRUE(named->ok());
  EXPECT_EQ(named->checkpoints, 2u);
  EXPECT_EQ(named->tensors, 2 * a.size());
  EXPECT_EQ(named->bytes,
            FindListing(*view, "a")->logical_bytes + FindListing(*view, "b")->logical_bytes);
  // A checkpoint named twice (by id and as "latest") is verified once.
  StatusOr<VerifyReport> twice = VerifyCheckpoints(*view, {"b", "latest", "b"});
  ASSERT_TRUE(twice.ok()) << twice.status();
  EXPECT_EQ(twice->checkpoints, 1u);
  EXPECT_EQ(twice->bytes, FindListing(*view, "b")->logical_bytes);

  StatusOr<VerifyReport> unknown = VerifyCheckpoints(*view, {"a", "nope"});
  EXPECT_EQ(unknown.status().code(), StatusCode::kNotFound);
  EXPECT_THAT(unknown.status().message(), HasSubstr("\"nope\""));
}

TEST(VerifyTest, MissingRankDatabase) {
  TempDir tmp;
  SaveFixture(tmp.path(), {.id = "a", .world = 2});
  SaveFixture(tmp.path(), {.id = "b", .world = 3});
  std::filesystem::remove_all(RankDirectory(tmp.path(), 2));
  std::unique_ptr<StoreView> view = OpenView(tmp.path());
  ASSERT_NE(view, nullptr);
  StatusOr<VerifyReport> report = VerifyCheckpoints(*view, {});
  ASSERT_TRUE(report.ok()) << report.status();
  Metadata md = ReadMd(*view, "b");
  uint64_t rank2_shards = 0;
  for (const auto& [fqn, entry] : md.entries) {
    for (const SavedShard& s : entry.shards) rank2_shards += s.rank == 2;
  }
  ASSERT_GT(rank2_shards, 0u);
  EXPECT_EQ(report->problems.size(), rank2_shards);
  for (const VerifyProblem& p : report->problems) {
    EXPECT_EQ(p.checkpoint_id, "b") << DescribeProblem(p);
    EXPECT_EQ(p.rank, 2) << DescribeProblem(p);
  }
  EXPECT_EQ(report->checkpoints, 2u);
}

// A rank database that exists but cannot be opened (here its CURRENT file is lost) is damage:
// never counted as absent, which made verify say OK while every checkpoint was unreadable.
TEST(VerifyTest, ARankDatabaseThatCannotBeOpenedIsDamageNamingWhatItBreaks) {
  TempDir tmp;
  SaveFixture(tmp.path(), {.id = "a", .world = 2});
  SaveFixture(tmp.path(), {.id = "b", .world = 3});
  std::filesystem::remove(RankDirectory(tmp.path(), 2) + "/CURRENT");
  std::unique_ptr<StoreView> view = OpenView(tmp.path());
  ASSERT_NE(view, nullptr);
  ASSERT_EQ(view->damaged_ranks().size(), 1u);
  EXPECT_EQ(view->damaged_ranks()[0].rank, 2);
  EXPECT_EQ(view->damaged_ranks()[0].status.code(), StatusCode::kDataLoss);
  EXPECT_THAT(view->damaged_ranks()[0].status.message(), HasSubstr("no CURRENT file"));
  // "a" was saved on ranks 0 and 1 and is whole; "b" had a share on rank 2.
  StatusOr<const CheckpointListing*> a = view->Resolve("a");
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ((*a)->state, CheckpointState::kCommitted);
  StatusOr<const CheckpointListing*> b = view->Resolve("b");
  EXPECT_EQ(b.status().code(), StatusCode::kDataLoss);
  EXPECT_THAT(b.status().message(), HasSubstr("rank 2's database cannot be opened"));
  StatusOr<VerifyReport> report = VerifyCheckpoints(*view, {});
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_FALSE(report->ok());
  ASSERT_GE(report->problems.size(), 2u);
  EXPECT_EQ(report->problems[0].rank, 2);
  EXPECT_THAT(DescribeProblem(report->problems[0]),
              HasSubstr("rank 2: database cannot be opened: DATA_LOSS"));
  bool b_named = false;
  for (const VerifyProblem& p : report->problems) b_named |= p.checkpoint_id == "b";
  EXPECT_TRUE(b_named);
  // Naming only "a" still reports the damaged rank: the store is not OK.
  StatusOr<VerifyReport> only_a = VerifyCheckpoints(*view, {"a"});
  ASSERT_TRUE(only_a.ok()) << only_a.status();
  ASSERT_EQ(only_a->problems.size(), 1u);
  EXPECT_EQ(only_a->problems[0].rank, 2);
}

// The coordinator's database holds the manifests: with it unopenable, the checkpoints whose data
// the other ranks hold are damaged (their manifest may be there), not uncommitted.
TEST(VerifyTest, ACoordinatorDatabaseThatCannotBeOpenedBreaksEveryCheckpoint) {
  TempDir tmp;
  SaveFixture(tmp.path(), {.id = "a", .world = 2});
  SaveFixture(tmp.path(), {.id = "b", .world = 3});
  std::filesystem::remove(RankDirectory(tmp.path(), 0) + "/CURRENT");
  std::unique_ptr<StoreView> view = OpenView(tmp.path());
  ASSERT_NE(view, nullptr);
  EXPECT_THAT(ListedIds(*view), ::testing::UnorderedElementsAre("a", "b"));
  for (const CheckpointListing& l : view->checkpoints()) {
    EXPECT_EQ(l.state, CheckpointState::kDamaged) << l.checkpoint_id;
    EXPECT_THAT(l.problem, HasSubstr("no manifest found")) << l.checkpoint_id;
  }
  StatusOr<VerifyReport> report = VerifyCheckpoints(*view, {});
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->problems.size(), 3u);  // rank 0, "a" and "b"
}

TEST(VerifyTest, ShardsThatDoNotTileATensor) {
  TempDir tmp;
  SaveFixture(tmp.path(), {.id = "a", .world = 2});
  {  // Rewrite a's manifest without the last shard of model.w.
    std::unique_ptr<ChunkStore> store;
    ASSERT_TRUE(ChunkStore::Open(RankDirectory(tmp.path(), 0), {}, &store).ok());
    StatusOr<ManifestRecord> record = store->GetManifest("a");
    ASSERT_TRUE(record.ok()) << record.status();
    StatusOr<Metadata> md = DecodeMetadata(record->payload);
    ASSERT_TRUE(md.ok()) << md.status();
    md->entries.at("model.w").shards.pop_back();
    record->payload = EncodeMetadata(*md);
    ASSERT_TRUE(store->PutManifest(*record).ok());
    ASSERT_TRUE(store->Close().ok());
  }
  std::unique_ptr<StoreView> view = OpenView(tmp.path());
  ASSERT_NE(view, nullptr);
  StatusOr<VerifyReport> report = VerifyCheckpoints(*view, {"a"});
  ASSERT_TRUE(report.ok()) << report.status();
  ASSERT_EQ(report->problems.size(), 1u);
  EXPECT_EQ(report->problems[0].fqn, "model.w");
  EXPECT_EQ(report->problems[0].rank, -1);
}

// ---- Export and import -------------------------------------------------------------------------

// The safetensors dtype names, spelled out here rather than taken from the library.
std::string SafetensorsName(const FixtureTensor& t) {
  if (t.is_bytes) return "U8";
  switch (t.dtype) {
    case DType::kFloat32: return "F32";
    case DType::kFloat64: return "F64";
    case DType::kBFloat16: return "BF16";
    case DType::kFloat8E4M3: return "F8_E4M3";
    case DType::kBool: return "BOOL";
    case DType::kInt64: return "I64";
    default: return "?";
  }
}

// Writes <dir>/expected/<i>.bin and <dir>/expected.json for `state`; returns the latter's path.
std::string WriteExpected(const std::string& dir, const FixtureState& state) {
  std::filesystem::create_directories(dir + "/expected");
  std::string json = "{\"tensors\": [\n";
  size_t i = 0;
  for (const auto& [fqn, t] : state) {
    const std::string file = "expected/" + std::to_string(i) + ".bin";
    WriteWholeFile(dir + "/" + file, t.bytes);
    std::string shape = "[";
    for (size_t d = 0; d < t.shape.size(); ++d)
      shape += (d ? ", " : "") + std::to_string(t.shape[d]);
    json += std::string(i ? ",\n" : "") + "  {\"name\": \"" + fqn + "\", \"dtype\": \"" +
            SafetensorsName(t) + "\", \"shape\": " + shape + "], \"file\": \"" + file +
            "\", \"bytes_entry\": " + (t.is_bytes ? "true" : "false") + "}";
    ++i;
  }
  json += "\n], \"metadata\": {\"format\": \"pt\"}}\n";
  const std::string path = dir + "/expected.json";
  WriteWholeFile(path, json);
  return path;
}

// Loads every fqn of `state` from checkpoint `id` of `root` into plain tensors (one process) and
// checks the bytes.
void ExpectLoadsBack(const std::string& root, const std::string& id, const FixtureState& state) {
  StateDict sd;
  std::map<std::string, Tensor> tensors;
  for (const auto& [fqn, t] : state) {
    if (t.is_bytes) {
      sd.Set(fqn, Bytes{});
    } else {
      tensors[fqn] = Tensor::Allocate(t.dtype, t.shape);
      sd.Set(fqn, tensors[fqn]);
    }
  }
  Status loaded = Load(sd, {.checkpoint_id = id, .store_root = root});
  ASSERT_TRUE(loaded.ok()) << loaded;
  for (const auto& [fqn, t] : state) {
    if (t.is_bytes) {
      EXPECT_EQ(std::get<Bytes>(*sd.Find(fqn)).data, t.bytes) << fqn;
    } else {
      const Tensor& x = tensors.at(fqn);
      EXPECT_EQ(std::string(static_cast<const char*>(x.data()), x.nbytes()), t.bytes) << fqn;
    }
  }
}

class ExportImportTest : public ::testing::Test {
 protected:
  void SetUp() override {
    state_ = SaveFixture(tmp_.Sub("store"), {.id = "w3", .world = 3, .extra = true});
    view_ = OpenView(tmp_.Sub("store"));
    ASSERT_NE(view_, nullptr);
    file_ = tmp_.Sub("w3.safetensors");
    uint64_t last_done = 0, last_total = 0;
    StatusOr<ExportSummary> summary =
        ExportSafetensors(*view_, "latest", file_, [&](uint64_t done, uint64_t total) {
          EXPECT_GE(done, last_done);
          last_done = done;
          last_total = total;
        });
    ASSERT_TRUE(summary.ok()) << summary.status();
    EXPECT_EQ(summary->checkpoint_id, "w3");
    EXPECT_EQ(summary->tensors, state_.size());
    EXPECT_EQ(summary->file_bytes, std::filesystem::file_size(file_));
    EXPECT_EQ(last_done, GlobalBytes(state_));
    EXPECT_EQ(last_done, last_total);
    exported_ = ReadWholeFile(file_);
  }

  TempDir tmp_;
  FixtureState state_;
  std::unique_ptr<StoreView> view_;
  std::string file_;
  std::string exported_;
};

TEST_F(ExportImportTest, NumpyReaderAgreesWithTheFixture) {
  if (Python3().empty()) GTEST_SKIP() << "no python3 found by CMake";
  const int rc = RunSafetensorsCheck(file_, WriteExpected(tmp_.Sub("check"), state_));
  if (rc == testing::kNumpyMissing) GTEST_SKIP() << "numpy is not available to " << Python3();
  EXPECT_EQ(rc, 0) << "safetensors_check.py found problems (see its output above)";
}

TEST_F(ExportImportTest, NumpyReaderDetectsAWrongValue) {
  if (Python3().empty()) GTEST_SKIP() << "no python3 found by CMake";
  FixtureState wrong = state_;
  wrong.at("model.grid").bytes[13] ^= 0x01;
  const int rc = RunSafetensorsCheck(file_, WriteExpected(tmp_.Sub("check"), wrong));
  if (rc == testing::kNumpyMissing) GTEST_SKIP() << "numpy is not available to " << Python3();
  EXPECT_EQ(rc, 1);
}

TEST_F(ExportImportTest, ReaderSeesTheFixture) {
  StatusOr<std::unique_ptr<SafetensorsReader>> reader = SafetensorsReader::Open(file_);
  ASSERT_TRUE(reader.ok()) << reader.status();
  EXPECT_EQ((*reader)->metadata(), (std::map<std::string, std::string>{{"format", "pt"}}));
  ASSERT_EQ((*reader)->tensors().size(), state_.size());
  for (const SafetensorsTensor& t : (*reader)->tensors()) {
    const FixtureTensor& want = state_.at(t.name);
    EXPECT_EQ(t.dtype, want.is_bytes ? DType::kBytes : want.dtype) << t.name;
    EXPECT_EQ(t.shape, want.shape) << t.name;
    std::string bytes(t.end - t.begin, '\0');
    ASSERT_TRUE((*reader)->Read(t, 0, bytes.data(), bytes.size()).ok());
    EXPECT_EQ(bytes, want.bytes) << t.name;
  }
}

TEST_F(ExportImportTest, ImportThenExportIsByteIdentical) {
  const std::string root = tmp_.Sub("imported");
  StatusOr<Metadata> md = ImportSafetensors(file_, root, "imp");
  ASSERT_TRUE(md.ok()) << md.status();
  EXPECT_EQ(md->checkpoint_id, "imp");
  EXPECT_EQ(md->world_size, 1);
  EXPECT_EQ(md->entries.size(), state_.size());
  EXPECT_TRUE(md->entries.at("trainer.state").is_bytes());
  std::unique_ptr<StoreView> view = OpenView(root);
  ASSERT_NE(view, nullptr);
  StatusOr<ExportSummary> again = ExportSafetensors(*view, "imp", tmp_.Sub("again.safetensors"));
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_TRUE(ReadWholeFile(tmp_.Sub("again.safetensors")) == exported_);
  ExpectLoadsBack(root, "imp", state_);

  // The id is taken now.
  StatusOr<Metadata> twice = ImportSafetensors(file_, root, "imp");
  EXPECT_EQ(twice.status().code(), StatusCode::kAlreadyExists) << twice.status();
  view = OpenView(root);
  ASSERT_NE(view, nullptr);
  EXPECT_THAT(ListedIds(*view), ElementsAre("imp"));
}

TEST_F(ExportImportTest, ImportWithSmallShardsLoadsBitExactly) {
  const std::string root = tmp_.Sub("small");
  uint64_t last_done = 0, last_total = 0;
  StatusOr<Metadata> md = ImportSafetensors(
      file_, root, "imp",
      [&](uint64_t done, uint64_t total) {
        EXPECT_GE(done, last_done);
        last_done = done;
        last_total = total;
      },
      64);
  ASSERT_TRUE(md.ok()) << md.status();
  EXPECT_EQ(last_done, GlobalBytes(state_));
  EXPECT_EQ(last_total, GlobalBytes(state_));
  EXPECT_EQ(md->entries.at("model.w").shards.size(), 7u);     // 2 rows of 32 bytes each
  EXPECT_EQ(md->entries.at("model.grid").shards.size(), 6u);  // 1 row of 48 bytes each
  EXPECT_EQ(md->entries.at("model.col").shards.size(), 3u);   // 2 rows of 24 bytes each
  EXPECT_EQ(md->entries.at("model.bias").shards.size(), 1u);  // 64 bytes: one shard
  for (const auto& [fqn, entry] : md->entries) {
    for (const SavedShard& s : entry.shards) EXPECT_LE(s.bytes, std::max<uint64_t>(64, 8)) << fqn;
  }
  ExpectLoadsBack(root, "imp", state_);
  std::unique_ptr<StoreView> view = OpenView(root);
  ASSERT_NE(view, nullptr);
  StatusOr<VerifyReport> verified = VerifyCheckpoints(*view, {});
  ASSERT_TRUE(verified.ok()) << verified.status();
  EXPECT_TRUE(verified->ok());
  ASSERT_TRUE(ExportSafetensors(*view, "imp", tmp_.Sub("again.safetensors")).ok());
  EXPECT_TRUE(ReadWholeFile(tmp_.Sub("again.safetensors")) == exported_);
}

TEST_F(ExportImportTest, ExportWithTinySlabsGivesTheSameFile) {
  const std::string path = tmp_.Sub("tiny.safetensors");
  StatusOr<ExportSummary> summary = ExportSafetensors(*view_, "w3", path, nullptr, 16);
  ASSERT_TRUE(summary.ok()) << summary.status();
  EXPECT_TRUE(ReadWholeFile(path) == exported_);
  // An existing file is replaced.
  WriteWholeFile(path, "old contents");
  ASSERT_TRUE(ExportSafetensors(*view_, "w3", path, nullptr, 1).ok());
  EXPECT_TRUE(ReadWholeFile(path) == exported_);
}

TEST_F(ExportImportTest, ExportOfADamagedCheckpointFailsAndLeavesNoFile) {
  Metadata md = ReadMd(*view_, "w3");
  view_.reset();
  const SavedShard& shard = md.entries.at("model.grid").shards.back();
  {
    RawDB raw(RankDirectory(tmp_.Sub("store"), shard.rank));
    const std::string key = *EncodeChunkKey({"w3", "model.grid", shard.offsets, 0});
    std::string value = raw.Get(kChunksCf, key);
    value[value.size() - 3] ^= 0x01;  // the payload ends the value
    raw.Put(kChunksCf, key, value);
  }
  view_ = OpenView(tmp_.Sub("store"));
  ASSERT_NE(view_, nullptr);
  const std::string path = tmp_.Sub("damaged.safetensors");
  StatusOr<ExportSummary> summary = ExportSafetensors(*view_, "w3", path);
  EXPECT_EQ(summary.status().code(), StatusCode::kDataLoss) << summary.status();
  EXPECT_THAT(summary.status().message(), HasSubstr("model.grid"));
  EXPECT_FALSE(std::filesystem::exists(path));
  // An existing file stays as it was; no temporary file is left behind.
  StatusOr<ExportSummary> over = ExportSafetensors(*view_, "w3", file_);
  EXPECT_EQ(over.status().code(), StatusCode::kDataLoss);
  EXPECT_TRUE(ReadWholeFile(file_) == exported_);
  std::vector<std::string> files;
  for (const auto& e : std::filesystem::directory_iterator(tmp_.path())) {
    if (e.is_regular_file()) files.push_back(e.path().filename().string());
  }
  EXPECT_THAT(files, ElementsAre("w3.safetensors"));
}

TEST_F(ExportImportTest, ErrorsCommitNothing) {
  const std::string out = tmp_.Sub("unknown.safetensors");
  StatusOr<ExportSummary> unknown = ExportSafetensors(*view_, "nope", out);
  EXPECT_EQ(unknown.status().code(), StatusCode::kNotFound);
  EXPECT_FALSE(std::filesystem::exists(out));

  const std::string root = tmp_.Sub("store");
  // Not a safetensors file.
  const std::string bad = tmp_.Sub("bad.safetensors");
  WriteWholeFile(bad, std::string("\x10\0\0\0\0\0\0\0{\"a\": 1}xxxxxxxx", 24));
  StatusOr<Metadata> malformed = ImportSafetensors(bad, root, "bad");
  EXPECT_EQ(malformed.status().code(), StatusCode::kInvalidArgument) << malformed.status();
  // A tensor name that is not a valid fqn.
  const std::string spaced = tmp_.Sub("spaced.safetensors");
  {
    StatusOr<std::unique_ptr<SafetensorsWriter>> writer =
        SafetensorsWriter::Create(spaced, {{"bad name", DType::kFloat32, {2}}}, {});
    ASSERT_TRUE(writer.ok()) << writer.status();
    const float v[2] = {1, 2};
    ASSERT_TRUE((*writer)->Append(v, sizeof(v)).ok());
    ASSERT_TRUE((*writer)->Finish().ok());
  }
  StatusOr<Metadata> bad_name = ImportSafetensors(spaced, root, "bad2");
  EXPECT_EQ(bad_name.status().code(), StatusCode::kInvalidArgument) << bad_name.status();
  // A file that does not exist.
  EXPECT_EQ(ImportSafetensors(tmp_.Sub("none.safetensors"), root, "bad3").status().code(),
            StatusCode::kNotFound);
  // An invalid checkpoint id.
  EXPECT_EQ(ImportSafetensors(file_, root, "latest").status().code(), StatusCode::kInvalidArgument);

  std::unique_ptr<StoreView> view = OpenView(root);
  ASSERT_NE(view, nullptr);
  EXPECT_THAT(ListedIds(*view), ElementsAre("w3"));
}

}  // namespace
}  // namespace dcpkv::inspect

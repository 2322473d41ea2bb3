// Incremental saves: a chunk equal to the one at the same place in the base checkpoint is not
// stored again; the manifest refers to it, and loads see the checkpoint as a full one.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <random>
#include <set>

#include "dcpkv/api/kv_storage.h"
#include "dcpkv/catalog.h"
#include "dcpkv/checkpoint.h"
#include "dcpkv/store/gc.h"
#include "dcpkv/store/key_encoding.h"
#include "dcpkv/store/store_format.h"
#include "dcpkv/store/store_layout.h"
#include "tests/util/gloo_threads.h"
#include "tests/util/multiprocess.h"
#include "tests/util/raw_db.h"
#include "tests/util/sharding.h"
#include "tests/util/store_files.h"
#include "tests/util/temp_dir.h"
#include "tests/util/test_data.h"

namespace dcpkv {
namespace {

// A model of `n` float32 tensors [256, 1024] (1 MiB each: one chunk each at the default 4 MiB);
// version v changes the first round(fraction * n) tensors.
struct Model {
  std::vector<std::vector<uint8_t>> tensors;

  explicit Model(int n) {
    for (int i = 0; i < n; ++i) tensors.push_back(testing::RandomBytes(1 << 20, 100 + i));
  }
  void Change(double fraction, uint64_t seed) {
    const size_t k = static_cast<size_t>(fraction * tensors.size() + 0.5);
    for (size_t i = 0; i < k; ++i) tensors[i] = testing::RandomBytes(1 << 20, seed * 1000 + i);
  }
  StateDict StateOf() {
    StateDict sd;
    for (size_t i = 0; i < tensors.size(); ++i) {
      sd.Set("layer" + std::to_string(100 + i) + ".w",
             Tensor::Wrap(DType::kFloat32, {256, 1024}, tensors[i].data()));
    }
    return sd;
  }
  uint64_t bytes() const { return tensors.size() * (uint64_t{1} << 20); }
};

StatusOr<Metadata> SaveModel(Model& m, const std::string& root, const std::string& id,
                             bool incremental = true) {
  StateDict sd = m.StateOf();
  SaveOptions o;
  o.checkpoint_id = id;
  o.store_root = root;
  o.incremental = incremental;
  o.tags = {{"step", id}};
  return Save(sd, o);
}

void ExpectLoads(const Model& m, const std::string& root, const std::string& id) {
  Model out(0);
  out.tensors.assign(m.tensors.size(), std::vector<uint8_t>(1 << 20));
  StateDict sd = out.StateOf();
  LoadOptions o;
  o.checkpoint_id = id;
  o.store_root = root;
  Status s = Load(sd, o);
  ASSERT_TRUE(s.ok()) << id << ": " << s;
  for (size_t i = 0; i < m.tensors.size(); ++i) {
    EXPECT_TRUE(out.tensors[i] == m.tensors[i]) << id << " tensor " << i;
  }
}

// A store of the first layout (format version 1: chunks in WriteBatches and blob files, no data
// markers, as older builds wrote it; made here by the kept WriteBatch path, then stripped of what
// this build adds) is read as it is, read-only; the first read-write open raises it to version 3
// with a data marker for each checkpoint, and a save stores ingested table files incrementally on
// a base stored that way.
TEST(IncrementalSaveTest, OnABaseOfTheFirstLayout) {
  testing::TempDir tmp;
  Model m(8);
  auto save_with = [&](ChunkWritePath path, const std::string& id) {
    KvStorageOptions storage{tmp.path(), {}};
    storage.store_options.write_path = path;
    StateDict sd = m.StateOf();
    SaveOptions o;
    o.checkpoint_id = id;
    o.storage_writer = std::make_shared<KvStorageWriter>(storage);
    return Save(sd, o);
  };
  const std::string rank_dir = RankDirectory(tmp.path(), 0);
  auto marker = [&] {
    return testing::RawDB(rank_dir).Get(testing::kRawDefaultCf, kStoreFormatKey);
  };
  ASSERT_TRUE(save_with(ChunkWritePath::kWriteBatch, "v1").ok());
  EXPECT_EQ(marker(), "3");
  {
    testing::RawDB raw(rank_dir);
    StatusOr<std::string> data_marker = EncodeDataMarkerKey("v1");
    ASSERT_TRUE(data_marker.ok());
    EXPECT_EQ(raw.Get(testing::kRawDefaultCf, *data_marker), "");
    raw.Delete(testing::kRawDefaultCf, *data_marker);
    raw.Put(testing::kRawDefaultCf, kStoreFormatKey, "1");
    EXPECT_GT(testing::FilesWithExtension(rank_dir, ".blob"), 0u) << "values in blob files";
  }
  auto list_ids = [&](OpenMode mode) -> std::vector<std::string> {
    std::unique_ptr<ChunkStore> store;
    Status opened = ChunkStore::Open(rank_dir, {.mode = mode}, &store);
    EXPECT_TRUE(opened.ok()) << opened;
    if (!opened.ok()) return {};
    StatusOr<std::vector<std::string>> ids = store->ListChunkCheckpointIds();
    EXPECT_TRUE(ids.ok()) << ids.status();
    return ids.ok() ? *ids : std::vector<std::string>();
  };
  EXPECT_THAT(list_ids(OpenMode::kReadOnly), ::testing::ElementsAre("v1"));
  EXPECT_EQ(marker(), "1") << "a read-only open changes nothing";
  const std::vector<std::vector<uint8_t>> first = m.tensors;
  m.Change(0.25, 7);  // two of eight tensors
  StatusOr<Metadata> v2 = save_with(ChunkWritePath::kIngestTableFiles, "v2");
  ASSERT_TRUE(v2.ok()) << v2.status();
  EXPECT_EQ(v2->stored_bytes, 2u << 20) << "only the changed tensors are stored again";
  EXPECT_EQ(marker(), "3");
  EXPECT_THAT(list_ids(OpenMode::kReadOnly), ::testing::ElementsAre("v1", "v2"));
  ExpectLoads(m, tmp.path(), "v2");
  Model old(0);
  old.tensors = first;
  ExpectLoads(old, tmp.path(), "v1");
}

// Several writer threads (KvStorageOptions::write_threads) store what one writer stores: every
// tensor loads bit-exactly, the manifest's chunk lists are in plan order, and an incremental save
// with three threads stores only the changed tensors, referring to the rest.
TEST(IncrementalSaveTest, ParallelWritersStoreWhatOneWriterStores) {
  testing::TempDir tmp;
  Model m(9);
  // Tensors of uneven sizes, inserted in an order that is not their key order.
  m.tensors[3].resize(3 << 20);
  m.tensors[5].resize(64 << 10);
  auto save_with = [&](int threads, const std::string& id, bool incremental) {
    KvStorageOptions storage{tmp.Sub("store-" + std::to_string(threads)), {}};
    storage.store_options.write_path = ChunkWritePath::kIngestTableFiles;
    storage.store_options.small_write_bytes = 0;
    storage.write_threads = threads;
    storage.min_bytes_per_writer = 1;  // every thread writes, however small the save
    StateDict sd;
    for (int i : {7, 2, 8, 0, 5, 3, 1, 6, 4}) {
      auto& t = m.tensors[i];
      sd.Set("layer" + std::to_string(100 + i) + ".w",
             Tensor::Wrap(DType::kFloat32, {t.size() / 4}, t.data()));
    }
    SaveOptions o;
    o.checkpoint_id = id;
    o.incremental = incremental;
    o.storage_writer = std::make_shared<KvStorageWriter>(storage);
    return Save(sd, o);
  };
  StatusOr<Metadata> one = save_with(1, "full", false);
  StatusOr<Metadata> three = save_with(3, "full", false);
  ASSERT_TRUE(one.ok()) << one.status();
  ASSERT_TRUE(three.ok()) << three.status();
  for (const auto& [fqn, entry] : one->entries) {
    const EntryMetadata& other = three->entries.at(fqn);
    ASSERT_EQ(entry.shards.size(), other.shards.size()) << fqn;
    EXPECT_EQ(entry.shards[0].chunk_list, other.shards[0].chunk_list) << fqn;
  }
  const std::vector<std::vector<uint8_t>> before = m.tensors;
  m.tensors[3] = testing::RandomBytes(3 << 20, 31);
  m.tensors[8] = testing::RandomBytes(1 << 20, 38);
  StatusOr<Metadata> incr = save_with(3, "incr", true);
  ASSERT_TRUE(incr.ok()) << incr.status();
  EXPECT_EQ(incr->stored_bytes, (3u << 20) + (1u << 20));
  auto load = [&](const std::string& id, std::vector<std::vector<uint8_t>>* out) {
    StateDict sd;
    out->clear();
    for (const auto& t : m.tensors) out->emplace_back(t.size());
    for (size_t i = 0; i < out->size(); ++i) {
      sd.Set("layer" + std::to_string(100 + i) + ".w",
             Tensor::Wrap(DType::kFloat32, {(*out)[i].size() / 4}, (*out)[i].data()));
    }
    LoadOptions o;
    o.checkpoint_id = id;
    o.store_root = tmp.Sub("store-3");
    return Load(sd, o);
  };
  std::vector<std::vector<uint8_t>> out;
  ASSERT_TRUE(load("incr", &out).ok());
  EXPECT_TRUE(out == m.tensors);
  ASSERT_TRUE(load("full", &out).ok());
  EXPECT_TRUE(out == before);
}

// A writer thread more only where each gets KvStorageOptions::min_bytes_per_writer: a 24 MiB
// save asked to use two threads is written by one (one table file) under the 128 MiB default,
// and by two (a table file each) when each may take as little as 1 byte.
TEST(IncrementalSaveTest, ASmallSaveIsWrittenByOneWriter) {
  testing::TempDir tmp;
  Model m(24);
  auto table_files_of_a_save = [&](const std::string& root, uint64_t min_bytes_per_writer) {
    KvStorageOptions storage{root, {}};
    storage.store_options.write_path = ChunkWritePath::kIngestTableFiles;
    storage.store_options.small_write_bytes = 0;
    storage.write_threads = 2;
    storage.min_bytes_per_writer = min_bytes_per_writer;
    StateDict sd;
    for (size_t i = 0; i < m.tensors.size(); ++i) {
      sd.Set("layer" + std::to_string(100 + i) + ".w",
             Tensor::Wrap(DType::kFloat32, {m.tensors[i].size() / 4}, m.tensors[i].data()));
    }
    {
      SaveOptions o;  // its writer holds the database open until it goes
      o.checkpoint_id = "a";
      o.storage_writer = std::make_shared<KvStorageWriter>(storage);
      StatusOr<Metadata> md = Save(sd, o);
      EXPECT_TRUE(md.ok()) << md.status();
    }
    testing::RawDB raw(RankDirectory(root, 0));
    return raw.FilesAtLevel(testing::kRawChunksCf, 6);
  };
  EXPECT_EQ(table_files_of_a_save(tmp.Sub("default"), 0), 1);
  EXPECT_EQ(table_files_of_a_save(tmp.Sub("every-byte"), 1), 2);
}

// A save's table files are ingested into the bottom level, where nothing rewrites them: the
// save's clean-up of its id's leftovers writes no range tombstone when there are none (one would
// make RocksDB put the files into level 0 above it, for compaction to copy again).
TEST(IncrementalSaveTest, TableFilesOfASaveGoToTheBottomLevel) {
  testing::TempDir tmp;
  Model m(24);  // 24 MiB: more than a small write for each of up to two writer threads
  for (const char* id : {"a", "b", "c"}) {
    m.Change(1.0, id[0]);
    StatusOr<Metadata> md = SaveModel(m, tmp.path(), id, /*incremental=*/false);
    ASSERT_TRUE(md.ok()) << md.status();
  }
  testing::RawDB raw(RankDirectory(tmp.path(), 0));
  EXPECT_EQ(raw.FilesAtLevel(testing::kRawChunksCf, 0), 0);
  EXPECT_GE(raw.FilesAtLevel(testing::kRawChunksCf, 6), 3) << "a table file per save and thread";
  ExpectLoads(m, tmp.path(), "c");
}

TEST(IncrementalSaveTest, StoresOnlyChangedChunksAndLoadsEveryVersionBitExactly) {
  testing::TempDir tmp;
  Model m(20);  // 20 tensors of 1 MiB
  std::vector<Model> versions;
  StatusOr<Metadata> v1 = SaveModel(m, tmp.path(), "v1");
  ASSERT_TRUE(v1.ok()) << v1.status();
  EXPECT_EQ(v1->stored_bytes, m.bytes());
  EXPECT_EQ(v1->base_checkpoint_id, "");
  versions.push_back(m);
  const double fractions[] = {0.0, 0.1, 0.5, 1.0, 0.1};
  for (int v = 2; v <= 6; ++v) {
    const double f = fractions[v - 2];
    m.Change(f, v);
    const std::string id = "v" + std::to_string(v);
    StatusOr<Metadata> md = SaveModel(m, tmp.path(), id);
    ASSERT_TRUE(md.ok()) << md.status();
    const uint64_t changed = static_cast<uint64_t>(f * 20 + 0.5) << 20;
    EXPECT_EQ(md->stored_bytes, changed) << id << " with " << f * 100 << "% changed";
    EXPECT_EQ(md->logical_bytes(), m.bytes());
    EXPECT_EQ(md->base_checkpoint_id, "v" + std::to_string(v - 1));
    EXPECT_EQ(md->tags.at("step"), id);
    versions.push_back(m);
  }
  for (int v = 1; v <= 6; ++v) ExpectLoads(versions[v - 1], tmp.path(), "v" + std::to_string(v));

  // The catalog shows logical and stored bytes of each.
  StatusOr<std::vector<CheckpointSummary>> list = ListCommittedCheckpoints(tmp.path());
  ASSERT_TRUE(list.ok()) << list.status();
  ASSERT_EQ(list->size(), 6u);
}

TEST(IncrementalSaveTest, FullSaveWhenDisabledAndAnExplicitBase) {
  testing::TempDir tmp;
  Model m(4);
  ASSERT_TRUE(SaveModel(m, tmp.path(), "a").ok());
  StatusOr<Metadata> full = SaveModel(m, tmp.path(), "b", /*incremental=*/false);
  ASSERT_TRUE(full.ok()) << full.status();
  EXPECT_EQ(full->stored_bytes, m.bytes());
  EXPECT_EQ(full->base_checkpoint_id, "");

  m.Change(0.5, 7);
  StateDict sd = m.StateOf();
  SaveOptions o;
  o.checkpoint_id = "c";
  o.store_root = tmp.path();
  o.incremental_base = "a";
  StatusOr<Metadata> c = Save(sd, o);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->base_checkpoint_id, "a");
  EXPECT_EQ(c->stored_bytes, m.bytes() / 2);
  ExpectLoads(m, tmp.path(), "c");

  o.checkpoint_id = "d";
  o.incremental_base = "nope";
  StatusOr<Metadata> d = Save(sd, o);
  EXPECT_EQ(d.status().code(), StatusCode::kNotFound) << d.status();
  EXPECT_THAT(d.status().message(), ::testing::HasSubstr("incremental base \"nope\""));
}

// World 2 saves, world 3 incremental save against it: shards whose geometry changed are stored
// again, the others refer to the base; every version loads on any world.
TEST(IncrementalSaveTest, AcrossWorldSizesOnlyMatchingShardsAreReused) {
  testing::TempDir tmp;
  Tensor rows = testing::MakeGlobal({64, 256}, 1.0f);  // sharded by rows
  Tensor bias = testing::MakeGlobal({256}, 2.0f);      // replicated
  auto save = [&](int world, const std::string& id) {
    testing::RunOnGlooRanks(world, [&](ProcessGroup& pg) {
      StateDict sd;
      sd.Set("rows", testing::ShardOf(rows, 0, world, pg.rank()));
      sd.Set("bias", bias);
      SaveOptions o;
      o.checkpoint_id = id;
      o.store_root = tmp.path();
      o.process_group = &pg;
      StatusOr<Metadata> md = Save(sd, o);
      ASSERT_TRUE(md.ok()) << md.status();
      if (id == "w2b") {
        EXPECT_EQ(md->stored_bytes, 0u) << "nothing changed";
      }
      if (id == "w3") {
        EXPECT_EQ(md->stored_bytes, rows.nbytes()) << "the rows were resharded, the bias not";
      }
    });
  };
  save(2, "w2");
  save(2, "w2b");
  save(3, "w3");
  for (const char* id : {"w2", "w2b", "w3"}) {
    testing::RunOnGlooRanks(2, [&](ProcessGroup& pg) {
      StateDict sd;
      ShardedTensor r = testing::EmptyShardOf(rows, 0, 2, pg.rank());
      Tensor b = Tensor::Allocate(DType::kFloat32, {256});
      sd.Set("rows", r);
      sd.Set("bias", b);
      LoadOptions o;
      o.checkpoint_id = id;
      o.store_root = tmp.path();
      o.process_group = &pg;
      Status s = Load(sd, o);
      ASSERT_TRUE(s.ok()) << id << ": " << s;
      EXPECT_TRUE(testing::SameBytes(b, bias));
      EXPECT_TRUE(testing::SameBytes(
          r.local_shards[0].tensor,
          testing::Slice(rows, testing::SplitBox(rows.shape(), 0, 2, pg.rank()))));
    });
  }
}

uint64_t DiskBytes(const std::string& root) {
  uint64_t total = 0;
  for (const auto& e : std::filesystem::recursive_directory_iterator(root)) {
    if (e.is_regular_file()) total += e.file_size();
  }
  return total;
}

// v1 full, v2..v6 incremental with 0%, 10%, 50%, 100%, 10% of the tensors changed. Returns the
// state of each version.
std::vector<Model> SaveSixVersions(const std::string& root) {
  Model m(20);
  std::vector<Model> versions;
  EXPECT_TRUE(SaveModel(m, root, "v1").ok());
  versions.push_back(m);
  const double fractions[] = {0.0, 0.1, 0.5, 1.0, 0.1};
  for (int v = 2; v <= 6; ++v) {
    m.Change(fractions[v - 2], v);
    EXPECT_TRUE(SaveModel(m, root, "v" + std::to_string(v)).ok());
    versions.push_back(m);
  }
  return versions;
}

std::set<std::string> Committed(const std::string& root) {
  std::set<std::string> ids;
  StatusOr<std::vector<CheckpointSummary>> list = ListCommittedCheckpoints(root);
  EXPECT_TRUE(list.ok()) << list.status();
  if (list.ok()) {
    for (const CheckpointSummary& c : *list) ids.insert(c.checkpoint_id);
  }
  return ids;
}

TEST(IncrementalDeletionTest, DeletingOlderVersionsInAnyOrderKeepsTheRestLoadable) {
  for (uint32_t seed : {1u, 2u, 3u}) {
    SCOPED_TRACE("order seed " + std::to_string(seed));
    testing::TempDir tmp;
    std::vector<Model> versions = SaveSixVersions(tmp.path());
    const uint64_t full_copy = versions[0].bytes();
    const uint64_t before = DiskBytes(tmp.path());
    std::vector<int> order = {1, 2, 3, 4, 5};
    std::shuffle(order.begin(), order.end(), std::mt19937(seed));
    std::set<int> left = {1, 2, 3, 4, 5, 6};
    for (int v : order) {
      StatusOr<RemoveReport> r = RemoveCheckpoints(tmp.path(), {"v" + std::to_string(v)});
      ASSERT_TRUE(r.ok()) << r.status();
      left.erase(v);
      EXPECT_EQ(Committed(tmp.path()).size(), left.size());
      for (int k : left) ExpectLoads(versions[k - 1], tmp.path(), "v" + std::to_string(k));
    }
    StatusOr<GcReport> gc = CollectGarbage(tmp.path());
    ASSERT_TRUE(gc.ok()) << gc.status();
    ExpectLoads(versions[5], tmp.path(), "v6");
    const uint64_t after = DiskBytes(tmp.path());
    // 5 versions' distinct data (20 + 2 + 10 + 20 + 2 MiB) down to about one full copy (plus
    // RocksDB's own files: logs, manifests, options).
    EXPECT_GT(before, 2.5 * full_copy) << before;
    EXPECT_LT(after, full_copy + full_copy / 4 + (4 << 20)) << "disk after gc: " << after;
  }
}

TEST(IncrementalDeletionTest, RetentionKeepsTheNewestNAndTaggedOnes) {
  testing::TempDir tmp;
  Model m(8);
  std::vector<Model> versions;
  for (int v = 1; v <= 6; ++v) {
    m.Change(0.5, v);
    StateDict sd = m.StateOf();
    SaveOptions o;
    o.checkpoint_id = "r" + std::to_string(v);
    o.store_root = tmp.path();
    o.keep_last = 2;
    if (v == 2) o.tags = {{"keep", ""}, {"note", "best so far"}};
    StatusOr<Metadata> md = Save(sd, o);
    ASSERT_TRUE(md.ok()) << md.status();
    versions.push_back(m);
    std::set<std::string> want;
    for (int k = std::max(1, v - 1); k <= v; ++k) want.insert("r" + std::to_string(k));
    if (v >= 2) want.insert("r2");
    EXPECT_EQ(Committed(tmp.path()), want) << "after saving r" << v;
  }
  for (int v : {2, 5, 6}) ExpectLoads(versions[v - 1], tmp.path(), "r" + std::to_string(v));
  // The deleted ones' data that no kept checkpoint uses is gone already (in the job, without
  // an offline gc): what is left is at most the kept versions' distinct data.
  EXPECT_LT(DiskBytes(tmp.path()), 3 * m.bytes() + (4 << 20));
  // A deleted id cannot be reused while its data is still referenced, nor is a committed one.
  StateDict sd = m.StateOf();
  SaveOptions o;
  o.store_root = tmp.path();
  o.checkpoint_id = "r6";
  EXPECT_EQ(Save(sd, o).status().code(), StatusCode::kAlreadyExists);
}

// A SIGKILL while rm or gc runs (at random moments, in a child process) never breaks a
// committed checkpoint; a later gc finishes the deletion.
TEST(IncrementalDeletionTest, KilledRemovalAndGcLeaveEveryCommittedCheckpointLoadable) {
  for (const char* op : {"rm", "gc"}) {
    // Named points of the deletion protocol, then kills after random delays.
    const std::vector<std::string> points = {
        "after_trash", "after_delete_first", "after_compact_first", "before_trash_delete", "", ""};
    std::mt19937 rng(op[0]);
    for (size_t attempt = 0; attempt < points.size(); ++attempt) {
      SCOPED_TRACE(std::string(op) + " attempt " + std::to_string(attempt) + " " + points[attempt]);
      testing::TempDir tmp;
      std::vector<Model> versions = SaveSixVersions(tmp.path());
      std::vector<std::string> args = {tmp.path()};
      if (std::string(op) == "rm") {
        args.insert(args.end(), {"v1", "v2", "v3", "v5"});
      } else {
        StatusOr<std::vector<std::string>> trashed = [&]() {
          std::unique_ptr<ChunkStore> db;
          Status s = ChunkStore::Open(RankDirectory(tmp.path(), 0), {}, &db);
          if (!s.ok()) return StatusOr<std::vector<std::string>>(s);
          return ApplyRetention(db.get(), tmp.path(), 1);  // trashes v1..v5
        }();
        ASSERT_TRUE(trashed.ok()) << trashed.status();
      }
      args.insert(args.begin(), op);
      testing::MultiProcessOptions po;
      if (!points[attempt].empty()) {
        po.env.push_back({"DCPKV_GC_CRASH_AT", points[attempt]});
      } else {
        po.timeout = std::chrono::milliseconds(20 + rng() % 200);  // SIGKILL part-way
      }
      testing::MultiProcessResult r = testing::RunProcesses(DCPKV_GC_CRASH_PATH, args, 1, po);
      ASSERT_TRUE(r.error.empty()) << r.error;
      if (!points[attempt].empty() &&
          (std::string(op) == "rm" || points[attempt] != "after_trash")) {
        EXPECT_EQ(r.exit_codes.at(0), -SIGKILL) << "did not reach " << points[attempt];
      }
      const std::set<std::string> committed = Committed(tmp.path());
      for (int v = 1; v <= 6; ++v) {
        const std::string id = "v" + std::to_string(v);
        if (committed.count(id)) ExpectLoads(versions[v - 1], tmp.path(), id);
      }
      ASSERT_TRUE(committed.count("v6"));
      std::vector<std::string> still;
      for (const char* id : {"v1", "v2", "v3", "v5"}) {
        if (std::string(op) == "rm" && committed.count(id)) still.push_back(id);
      }
      if (!still.empty()) {
        ASSERT_TRUE(RemoveCheckpoints(tmp.path(), still).ok());
      }
      StatusOr<GcReport> gc = CollectGarbage(tmp.path());
      ASSERT_TRUE(gc.ok()) << gc.status();
      for (int v : {4, 6}) {
        if (std::string(op) == "rm" || v == 6) {
          ExpectLoads(versions[v - 1], tmp.path(), "v" + std::to_string(v));
        }
      }
    }
  }
}

}  // namespace
}  // namespace dcpkv

// Removal, retention and garbage collection (store/include/dcpkv/store/gc.h) on real RocksDB
// stores: references between checkpoints survive a removal, space is returned, orphans of
// crashed saves go, retention, refusal while a job holds the store, and crash safety (a helper
// process SIGKILLs itself at each point of the protocol).
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "dcpkv/catalog.h"
#include "dcpkv/checkpoint.h"
#include "dcpkv/core/hash.h"
#include "dcpkv/core/metadata_codec.h"
#include "dcpkv/store/chunk_store.h"
#include "dcpkv/store/gc.h"
#include "dcpkv/store/key_encoding.h"
#include "dcpkv/store/store_layout.h"
#include "tests/util/raw_db.h"
#include "tests/util/temp_dir.h"
#include "tests/util/test_data.h"

extern char** environ;

namespace dcpkv {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::UnorderedElementsAre;

#define ASSERT_OK(expr)                          \
  do {                                           \
    const ::dcpkv::Status _s = (expr);           \
    ASSERT_TRUE(_s.ok()) << #expr << ": " << _s; \
  } while (0)

// ---------------------------------------------------------------------------------------------
// Hand-built checkpoints: each tensor is one float32 shard of three 64 KiB chunks (blob-sized),
// each chunk's payload determined by a seed, stored under the checkpoint's own keys or referring
// to an older checkpoint's chunk at the same place.

constexpr uint64_t kChunk = 64 << 10;
constexpr uint64_t kChunksPerShard = 3;
constexpr uint64_t kShardBytes = kChunk * kChunksPerShard;
constexpr uint64_t kElements = kShardBytes / 4;

struct ChunkSpec {
  uint64_t seed = 0;
  std::string source;  // empty: own
  int source_rank = 0;
};

struct TensorSpec {
  std::string fqn;
  int rank = 0;  // database holding the shard (and its own chunks)
  std::vector<ChunkSpec> chunks;
};

struct CheckpointSpec {
  std::string id;
  int64_t micros = 0;
  std::vector<TensorSpec> tensors;
  bool per_rank = false;  // a part per rank (use_collectives=false); else coordinator rank 0
  int coordinator = 0;
  std::map<std::string, std::string> tags;
};

ChunkSpec Own(uint64_t seed) { return ChunkSpec{seed, "", 0}; }
ChunkSpec Ref(uint64_t seed, const std::string& source, int rank) {
  return ChunkSpec{seed, source, rank};
}

std::vector<uint8_t> ChunkBytes(uint64_t seed) { return testing::RandomBytes(kChunk, seed); }

ChunkStoreOptions WriteOptions() {
  ChunkStoreOptions o;
  o.chunk_size = kChunk;
  return o;
}

ChunkKey KeyOf(const std::string& id, const std::string& fqn, uint64_t chunk) {
  return ChunkKey{id, fqn, {0}, chunk * kChunk};
}

ChunkKeyRange KeyRangeOf(const ChunkKey& key) {
  std::string k = *EncodeChunkKey(key);
  std::string end = k + std::string(1, '\0');
  return ChunkKeyRange{k, end};
}

// Writes the own chunks of `spec` and its manifest(s) into the databases of `root` (world 2).
void WriteCheckpoint(const std::string& root, const CheckpointSpec& spec, int world = 2) {
  std::map<int, std::unique_ptr<ChunkStore>> stores;
  for (int r = 0; r < world; ++r) {
    ASSERT_OK(ChunkStore::Open(RankDirectory(root, r), WriteOptions(), &stores[r]));
  }
  std::map<int, Metadata> parts;  // by the rank whose database holds the manifest
  for (const TensorSpec& t : spec.tensors) {
    std::vector<uint8_t> data;
    SavedShard shard{{0}, {kElements}, t.rank, kShardBytes, kChunksPerShard, {}};
    std::vector<ChunkKeyRange> refs;
    for (uint64_t i = 0; i < t.chunks.size(); ++i) {
      std::vector<uint8_t> bytes = ChunkBytes(t.chunks[i].seed);
      data.insert(data.end(), bytes.begin(), bytes.end());
      Hash128 h = HashBytes(bytes.data(), bytes.size());
      const ChunkSpec& c = t.chunks[i];
      shard.chunk_list.push_back(
          SavedChunk{kChunk, h.lo, h.hi, c.source, c.source.empty() ? t.rank : c.source_rank});
      if (!c.source.empty()) refs.push_back(KeyRangeOf(KeyOf(spec.id, t.fqn, i)));
    }
    ChunkStore* store = stores[t.rank].get();
    ASSERT_OK(store->PutShard(spec.id, t.fqn, ShardGeometry{DType::kFloat32, {0}, {kElements}},
                              data.data(), data.size()));
    if (!refs.empty()) ASSERT_OK(store->DeleteChunkRanges(refs));  // only own chunks remain
    Metadata& md = parts[spec.per_rank ? t.rank : spec.coordinator];
    md.entries[t.fqn] = EntryMetadata{DType::kFloat32, {kElements}, {shard}};
  }
  if (spec.per_rank) {
    for (int r = 0; r < world; ++r) parts[r];  // a part for every rank, possibly empty
  }
  for (auto& [rank, md] : parts) {
    md.checkpoint_id = spec.id;
    md.world_size = world;
    md.coordinator_rank = rank;
    md.committed_unix_micros = spec.micros;
    md.per_rank_commit = spec.per_rank;
    md.tags = spec.tags;
    ASSERT_OK(ValidateMetadata(md));
  }
  for (auto& [rank, store] : stores) ASSERT_OK(store->Flush());
  for (auto& [rank, md] : parts) {
    ASSERT_OK(stores[rank]->PutManifest(ManifestRecord{spec.id, spec.micros, EncodeMetadata(md)}));
  }
  for (auto& [rank, store] : stores) ASSERT_OK(store->Close());
}

std::unique_ptr<ChunkStore> OpenReadOnly(const std::string& root, int rank) {
  std::unique_ptr<ChunkStore> store;
  Status s = ChunkStore::Open(RankDirectory(root, rank), {.mode = OpenMode::kReadOnly}, &store);
  EXPECT_TRUE(s.ok()) << s;
  return store;
}

// Whether the chunk is present, and if so that it holds the seed's bytes.
bool ChunkPresent(ChunkStore* store, const ChunkKey& key, uint64_t seed) {
  StatusOr<ChunkHandle> chunk = store->GetChunk(key);
  if (!chunk.ok()) {
    EXPECT_EQ(chunk.status().code(), StatusCode::kNotFound) << chunk.status();
    return false;
  }
  std::vector<uint8_t> want = ChunkBytes(seed);
  EXPECT_EQ(chunk->payload_size(), want.size()) << DescribeChunkKey(key);
  EXPECT_EQ(std::memcmp(chunk->payload(), want.data(), want.size()), 0) << DescribeChunkKey(key);
  return true;
}

// Every chunk of the checkpoint, own or referred to, is readable and intact.
void ExpectReadable(const std::string& root, const CheckpointSpec& spec, int world = 2) {
  std::map<int, std::unique_ptr<ChunkStore>> stores;
  for (int r = 0; r < world; ++r) stores[r] = OpenReadOnly(root, r);
  for (const TensorSpec& t : spec.tensors) {
    for (uint64_t i = 0; i < t.chunks.size(); ++i) {
      const ChunkSpec& c = t.chunks[i];
      const std::string& where = c.source.empty() ? spec.id : c.source;
      const int rank = c.source.empty() ? t.rank : c.source_rank;
      EXPECT_TRUE(ChunkPresent(stores[rank].get(), KeyOf(where, t.fqn, i), c.seed))
          << "checkpoint " << spec.id << " tensor " << t.fqn << " chunk " << i << " (stored under "
          << where << " in rank " << rank << ")";
    }
  }
}

std::set<std::string> CommittedIds(const std::string& root) {
  StatusOr<std::vector<CheckpointSummary>> list = ListCommittedCheckpoints(root);
  EXPECT_TRUE(list.ok()) << list.status();
  std::set<std::string> ids;
  if (list.ok()) {
    for (const CheckpointSummary& s : *list) ids.insert(s.checkpoint_id);
  }
  return ids;
}

std::set<std::string> ChunkIds(const std::string& root, int world = 2) {
  std::set<std::string> ids;
  for (int r = 0; r < world; ++r) {
    StatusOr<std::vector<std::string>> list = OpenReadOnly(root, r)->ListChunkCheckpointIds();
    EXPECT_TRUE(list.ok()) << list.status();
    if (list.ok()) ids.insert(list->begin(), list->end());
  }
  return ids;
}

std::set<std::string> TrashIds(const std::string& root, int world = 2) {
  std::set<std::string> ids;
  for (int r = 0; r < world; ++r) {
    StatusOr<std::vector<std::string>> list = OpenReadOnly(root, r)->ListTrashIds();
    EXPECT_TRUE(list.ok()) << list.status();
    if (list.ok()) ids.insert(list->begin(), list->end());
  }
  return ids;
}

uint64_t DirSize(const std::string& root) {
  uint64_t total = 0;
  for (const auto& e : std::filesystem::recursive_directory_iterator(root)) {
    if (e.is_regular_file()) total += e.file_size();
  }
  return total;
}

// ---------------------------------------------------------------------------------------------
// Full saves through dcpkv::Save, loaded bit-exactly through dcpkv::Load.

Tensor RandomTensor(uint64_t elements, uint64_t seed) {
  Tensor t = Tensor::Allocate(DType::kFloat32, {elements});
  std::vector<uint8_t> bytes = testing::RandomBytes(t.nbytes(), seed);
  std::memcpy(t.data(), bytes.data(), bytes.size());
  return t;
}

// Saves tensors "a" and "b" with payloads from `seed` (distinct seeds share no chunk).
void SaveFull(const std::string& root, const std::string& id, uint64_t seed,
              uint64_t elements = 64 << 10) {
  StateDict state;
  state.Set("a", RandomTensor(elements, seed));
  state.Set("b", RandomTensor(elements / 2, seed + 1000));
  SaveOptions o;
  o.checkpoint_id = id;
  o.store_root = root;
  StatusOr<Metadata> md = Save(state, o);
  ASSERT_TRUE(md.ok()) << md.status();
}

void ExpectLoads(const std::string& root, const std::string& id, uint64_t seed,
                 uint64_t elements = 64 << 10) {
  Tensor a = Tensor::Allocate(DType::kFloat32, {elements});
  Tensor b = Tensor::Allocate(DType::kFloat32, {elements / 2});
  std::memset(a.data(), 0, a.nbytes());
  std::memset(b.data(), 0, b.nbytes());
  StateDict state;
  state.Set("a", a);
  state.Set("b", b);
  LoadOptions o;
  o.checkpoint_id = id;
  o.store_root = root;
  ASSERT_OK(Load(state, o));
  Tensor want_a = RandomTensor(elements, seed), want_b = RandomTensor(elements / 2, seed + 1000);
  EXPECT_EQ(std::memcmp(a.data(), want_a.data(), a.nbytes()), 0) << id;
  EXPECT_EQ(std::memcmp(b.data(), want_b.data(), b.nbytes()), 0) << id;
}

// ---------------------------------------------------------------------------------------------
// Processes.

// Starts `args` (args[0] the executable) with `env` added to this process's environment.
pid_t Spawn(const std::vector<std::string>& args, const std::vector<std::string>& env = {}) {
  std::vector<std::string> env_strings;
  for (char** e = environ; *e != nullptr; ++e) {
    if (std::strncmp(*e, "DCPKV_GC_CRASH_AT=", 18) != 0) env_strings.push_back(*e);
  }
  env_strings.insert(env_strings.end(), env.begin(), env.end());
  std::vector<char*> argv, envp;
  for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  for (std::string& e : env_strings) envp.push_back(e.data());
  envp.push_back(nullptr);
  pid_t pid = -1;
  int rc = posix_spawn(&pid, args[0].c_str(), nullptr, nullptr, argv.data(), envp.data());
  EXPECT_EQ(rc, 0) << "posix_spawn " << args[0] << ": " << std::strerror(rc);
  return rc == 0 ? pid : -1;
}

int WaitFor(pid_t pid) {
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return status;
}

// ---------------------------------------------------------------------------------------------

TEST(GcKeyEncodingTest, TrashAndReclaimKeysRoundTrip) {
  EXPECT_EQ(*EncodeTrashKey("step-100"), "Tstep-100");
  EXPECT_EQ(*DecodeTrashKey("Tstep-100"), "step-100");
  EXPECT_EQ(*EncodeReclaimKey("step-100"), "Rstep-100");
  EXPECT_EQ(*DecodeReclaimKey("Rstep-100"), "step-100");
  EXPECT_EQ(DecodeTrashKey("Mstep-100").status().code(), StatusCode::kDataLoss);
  EXPECT_EQ(DecodeReclaimKey("R").status().code(), StatusCode::kDataLoss);
  EXPECT_EQ(EncodeTrashKey("a/b").status().code(), StatusCode::kInvalidArgument);
}

TEST(ChunkStoreTrashTest, MoveManifestToTrashHidesTheCheckpointAtomically) {
  testing::TempDir tmp;
  WriteCheckpoint(tmp.path(), {"c1", 1, {{"w", 0, {Own(1), Own(2), Own(3)}}}});
  WriteCheckpoint(tmp.path(), {"c2", 2, {{"w", 0, {Own(4), Own(5), Own(6)}}}});
  EXPECT_THAT(CommittedIds(tmp.path()), ElementsAre("c1", "c2"));
  {
    std::unique_ptr<ChunkStore> store;
    ASSERT_OK(ChunkStore::Open(RankDirectory(tmp.path(), 0), {}, &store));
    ManifestRecord before = *store->GetManifest("c1");
    ASSERT_OK(store->MoveManifestToTrash("c1"));
    EXPECT_EQ(store->GetManifest("c1").status().code(), StatusCode::kNotFound);
    StatusOr<ManifestRecord> trash = store->GetTrashRecord("c1");
    ASSERT_TRUE(trash.ok()) << trash.status();
    EXPECT_EQ(trash->payload, before.payload);
    EXPECT_EQ(trash->committed_unix_micros, before.committed_unix_micros);
    EXPECT_THAT(*store->ListManifestIds(), ElementsAre("c2"));
    EXPECT_THAT(*store->ListTrashIds(), ElementsAre("c1"));
    EXPECT_EQ(store->MoveManifestToTrash("c1").code(), StatusCode::kNotFound);
    EXPECT_EQ(store->GetTrashRecord("c2").status().code(), StatusCode::kNotFound);

    ASSERT_OK(store->PutReclaimMarker("c1", "abc"));
    EXPECT_EQ(*store->GetReclaimMarker("c1"), "abc");
    EXPECT_THAT(*store->ListReclaimMarkerIds(), ElementsAre("c1"));
    ASSERT_OK(store->DeleteReclaimMarker("c1"));
    EXPECT_THAT(*store->ListReclaimMarkerIds(), IsEmpty());

    // Chunk ranges: presence without reading values, deletion of exactly the range.
    const ChunkKeyRange middle = KeyRangeOf(KeyOf("c1", "w", 1));
    EXPECT_TRUE(*store->HasChunksInRange(middle));
    ASSERT_OK(store->DeleteChunkRanges({middle}));
    EXPECT_FALSE(*store->HasChunksInRange(middle));
    EXPECT_TRUE(ChunkPresent(store.get(), KeyOf("c1", "w", 0), 1));
    EXPECT_FALSE(ChunkPresent(store.get(), KeyOf("c1", "w", 1), 2));
    EXPECT_TRUE(ChunkPresent(store.get(), KeyOf("c1", "w", 2), 3));
    ASSERT_OK(store->CompactChunks(KeyRangeOf(KeyOf("c1", "w", 1))));
    EXPECT_EQ(store->DeleteChunkRanges({{"M", "N"}}).code(), StatusCode::kInvalidArgument);
  }
  // The trash record survives a reopen; the catalog does not list the trashed checkpoint.
  EXPECT_THAT(CommittedIds(tmp.path()), ElementsAre("c2"));
  EXPECT_THAT(TrashIds(tmp.path()), ElementsAre("c1"));
  // Read-only stores refuse the writes.
  std::unique_ptr<ChunkStore> ro = OpenReadOnly(tmp.path(), 0);
  EXPECT_EQ(ro->MoveManifestToTrash("c2").code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(ro->DeleteTrashRecord("c1").code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(ro->CompactChunks({"C", "D"}).code(), StatusCode::kFailedPrecondition);
}

TEST(GcTest, RemoveSelfContainedCheckpointOthersStillLoadBitExactly) {
  testing::TempDir tmp;
  SaveFull(tmp.path(), "c1", 1);
  SaveFull(tmp.path(), "c2", 2);
  SaveFull(tmp.path(), "c3", 3);
  StatusOr<RemoveReport> report = RemoveCheckpoints(tmp.path(), {"c2"});
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_THAT(report->removed_ids, ElementsAre("c2"));
  EXPECT_THAT(report->gc.reclaimed_ids, ElementsAre("c2"));
  EXPECT_THAT(report->gc.pending_ids, IsEmpty());
  EXPECT_GT(report->gc.chunks_deleted, 0u);
  EXPECT_THAT(CommittedIds(tmp.path()), ElementsAre("c1", "c3"));
  EXPECT_THAT(ChunkIds(tmp.path(), 1), ElementsAre("c1", "c3"));
  EXPECT_THAT(TrashIds(tmp.path(), 1), IsEmpty());
  ExpectLoads(tmp.path(), "c1", 1);
  ExpectLoads(tmp.path(), "c3", 3);
  StateDict state;
  state.Set("a", Tensor::Allocate(DType::kFloat32, {64 << 10}));
  state.Set("b", Tensor::Allocate(DType::kFloat32, {32 << 10}));
  EXPECT_FALSE(Load(state, LoadOptions{"c2", tmp.path()}).ok());
  // Removing it again is NOT_FOUND and changes nothing.
  EXPECT_EQ(RemoveCheckpoints(tmp.path(), {"c2"}).status().code(), StatusCode::kNotFound);
}

TEST(GcTest, RemoveRejectsUnknownAndInvalidIdsBeforeChangingAnything) {
  testing::TempDir tmp;
  SaveFull(tmp.path(), "c1", 1);
  StatusOr<RemoveReport> report = RemoveCheckpoints(tmp.path(), {"c1", "nope"});
  EXPECT_EQ(report.status().code(), StatusCode::kNotFound);
  EXPECT_THAT(report.status().message(), HasSubstr("\"nope\""));
  EXPECT_EQ(RemoveCheckpoints(tmp.path(), {"c1", "a b"}).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(RemoveCheckpoints(tmp.Sub("missing"), {"c1"}).status().code(), StatusCode::kNotFound);
  EXPECT_THAT(CommittedIds(tmp.path()), ElementsAre("c1"));
  ExpectLoads(tmp.path(), "c1", 1);
}

// "old" is referred to by "mid" and "new" across two databases.
std::vector<CheckpointSpec> ReferenceChain() {
  return {
      {"old", 1, {{"w", 0, {Own(10), Own(11), Own(12)}}, {"v", 1, {Own(13), Own(14), Own(15)}}}},
      {"mid",
       2,
       {{"w", 0, {Ref(10, "old", 0), Own(21), Ref(12, "old", 0)}},
        {"v", 1, {Own(23), Own(24), Own(25)}}}},
      {"new",
       3,
       {{"w", 0, {Ref(10, "old", 0), Ref(21, "mid", 0), Own(32)}},
        {"v", 1, {Ref(23, "mid", 1), Own(34), Own(35)}}}},
  };
}

TEST(GcTest, RemovingAReferencedCheckpointKeepsExactlyTheReferencedChunks) {
  testing::TempDir tmp;
  std::vector<CheckpointSpec> chain = ReferenceChain();
  for (const CheckpointSpec& spec : chain) WriteCheckpoint(tmp.path(), spec);

  StatusOr<RemoveReport> report = RemoveCheckpoints(tmp.path(), {"old"});
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_THAT(CommittedIds(tmp.path()), ElementsAre("mid", "new"));
  EXPECT_THAT(report->gc.pending_ids, ElementsAre("old"));  // w chunks 0 and 2 are in use
  EXPECT_THAT(report->gc.reclaimed_ids, IsEmpty());
  EXPECT_EQ(report->gc.chunks_deleted, 4u);  // w/1 and v/0..2
  EXPECT_EQ(report->gc.payload_bytes_deleted, 4 * kChunk);
  EXPECT_EQ(report->gc.chunks_kept, 2u);
  ExpectReadable(tmp.path(), chain[1]);
  ExpectReadable(tmp.path(), chain[2]);
  {
    std::unique_ptr<ChunkStore> db0 = OpenReadOnly(tmp.path(), 0);
    std::unique_ptr<ChunkStore> db1 = OpenReadOnly(tmp.path(), 1);
    EXPECT_TRUE(ChunkPresent(db0.get(), KeyOf("old", "w", 0), 10));
    EXPECT_FALSE(ChunkPresent(db0.get(), KeyOf("old", "w", 1), 11));
    EXPECT_TRUE(ChunkPresent(db0.get(), KeyOf("old", "w", 2), 12));
    EXPECT_THAT(*db1->ListChunkCheckpointIds(), ElementsAre("mid", "new"));
    EXPECT_THAT(*db0->ListTrashIds(), ElementsAre("old"));  // until its referrers go
  }

  // A second collection finds nothing new to do.
  StatusOr<GcReport> again = CollectGarbage(tmp.path());
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->chunks_deleted, 0u);
  EXPECT_THAT(again->pending_ids, ElementsAre("old"));

  // "mid" goes: old's chunk 2 (referred to by mid only) and mid's unreferenced chunks go.
  report = RemoveCheckpoints(tmp.path(), {"mid"});
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_THAT(report->gc.pending_ids, ElementsAre("mid", "old"));
  ExpectReadable(tmp.path(), chain[2]);
  {
    std::unique_ptr<ChunkStore> db0 = OpenReadOnly(tmp.path(), 0);
    std::unique_ptr<ChunkStore> db1 = OpenReadOnly(tmp.path(), 1);
    EXPECT_TRUE(ChunkPresent(db0.get(), KeyOf("old", "w", 0), 10));
    EXPECT_FALSE(ChunkPresent(db0.get(), KeyOf("old", "w", 2), 12));
    EXPECT_TRUE(ChunkPresent(db0.get(), KeyOf("mid", "w", 1), 21));
    EXPECT_TRUE(ChunkPresent(db1.get(), KeyOf("mid", "v", 0), 23));
    EXPECT_FALSE(ChunkPresent(db1.get(), KeyOf("mid", "v", 1), 24));
  }

  // The last one goes: nothing is left.
  const uint64_t before = DirSize(tmp.path());
  report = RemoveCheckpoints(tmp.path(), {"new"});
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_THAT(report->gc.reclaimed_ids, ElementsAre("mid", "new", "old"));
  EXPECT_THAT(report->gc.pending_ids, IsEmpty());
  EXPECT_THAT(CommittedIds(tmp.path()), IsEmpty());
  EXPECT_THAT(ChunkIds(tmp.path()), IsEmpty());
  EXPECT_THAT(TrashIds(tmp.path()), IsEmpty());
  EXPECT_THAT(*OpenReadOnly(tmp.path(), 0)->ListReclaimMarkerIds(), IsEmpty());
  EXPECT_LT(DirSize(tmp.path()) + 4 * kChunk, before);
}

TEST(GcTest, RemovingEverythingLeavesNoChunksAndReturnsTheSpace) {
  testing::TempDir tmp;
  constexpr uint64_t kBig = 1 << 20;  // 4 MiB + 2 MiB a checkpoint
  for (int i = 0; i < 3; ++i) SaveFull(tmp.path(), "c" + std::to_string(i), 100 + i, kBig);
  const uint64_t before = DirSize(tmp.path());
  StatusOr<RemoveReport> report = RemoveCheckpoints(tmp.path(), {"c0", "c1", "c2"});
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_THAT(report->gc.reclaimed_ids, ElementsAre("c0", "c1", "c2"));
  EXPECT_EQ(report->gc.payload_bytes_deleted, 3 * 6 * kBig);
  EXPECT_THAT(CommittedIds(tmp.path()), IsEmpty());
  EXPECT_THAT(ChunkIds(tmp.path(), 1), IsEmpty());
  EXPECT_THAT(TrashIds(tmp.path(), 1), IsEmpty());
  const uint64_t after = DirSize(tmp.path());
  EXPECT_LT(after + 3 * 5 * kBig, before) << "before " << before << " after " << after;
  EXPECT_GT(report->gc.disk_bytes_freed(), 3 * 5 * kBig);
}

TEST(GcTest, ChunksOfAnUncommittedSaveAreCollected) {
  testing::TempDir tmp;
  SaveFull(tmp.path(), "c1", 1);
  WriteCheckpoint(tmp.path(), {"c2", 2, {{"w", 1, {Own(1), Own(2), Own(3)}}}});
  {
    // A save that crashed before its commit: chunks in both databases, no manifest.
    for (int r = 0; r < 2; ++r) {
      std::unique_ptr<ChunkStore> store;
      ASSERT_OK(ChunkStore::Open(RankDirectory(tmp.path(), r), WriteOptions(), &store));
      std::vector<uint8_t> data = testing::RandomBytes(kShardBytes, 7);
      ASSERT_OK(store->PutShard("crashed", "w", {DType::kFloat32, {0}, {kElements}}, data.data(),
                                data.size()));
      ASSERT_OK(store->Close());
    }
  }
  EXPECT_THAT(ChunkIds(tmp.path()), UnorderedElementsAre("c1", "c2", "crashed"));
  StatusOr<GcReport> report = CollectGarbage(tmp.path());
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_THAT(report->orphan_ids, ElementsAre("crashed"));
  EXPECT_THAT(report->reclaimed_ids, IsEmpty());
  EXPECT_THAT(ChunkIds(tmp.path()), UnorderedElementsAre("c1", "c2"));
  ExpectLoads(tmp.path(), "c1", 1);
  ExpectReadable(tmp.path(), {"c2", 2, {{"w", 1, {Own(1), Own(2), Own(3)}}}});
  EXPECT_GT(report->disk_bytes_freed(), 0u);
}

TEST(GcTest, InterruptedRemovalOfASaveWithoutCollectivesIsFinished) {
  testing::TempDir tmp;
  CheckpointSpec pr{
      "pr", 1, {{"a", 0, {Own(1), Own(2), Own(3)}}, {"b", 1, {Own(4), Own(5), Own(6)}}}};
  pr.per_rank = true;
  WriteCheckpoint(tmp.path(), pr);
  CheckpointSpec partial{"partial", 2, {{"c", 1, {Own(7), Own(8), Own(9)}}}};
  partial.per_rank = true;
  WriteCheckpoint(tmp.path(), partial);
  {
    // "partial": rank 0's part never committed (a crashed save without collectives).
    std::unique_ptr<ChunkStore> db0;
    ASSERT_OK(ChunkStore::Open(RankDirectory(tmp.path(), 0), {}, &db0));
    ASSERT_OK(db0->DeleteManifest("partial"));
  }
  EXPECT_THAT(CommittedIds(tmp.path()), ElementsAre("pr"));
  {
    // A removal of "pr" that crashed after trashing rank 1's part.
    std::unique_ptr<ChunkStore> db1;
    ASSERT_OK(ChunkStore::Open(RankDirectory(tmp.path(), 1), {}, &db1));
    ASSERT_OK(db1->MoveManifestToTrash("pr"));
  }
  EXPECT_THAT(CommittedIds(tmp.path()), IsEmpty());
  StatusOr<GcReport> report = CollectGarbage(tmp.path());
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_THAT(report->reclaimed_ids, ElementsAre("pr"));
  EXPECT_THAT(report->incomplete_ids, ElementsAre("partial"));
  EXPECT_THAT(ChunkIds(tmp.path()), ElementsAre("partial"));
  EXPECT_THAT(TrashIds(tmp.path()), IsEmpty());
  EXPECT_TRUE(OpenReadOnly(tmp.path(), 0)->ListManifestIds()->empty());
  // The incomplete save is removed on request.
  StatusOr<RemoveReport> removed = RemoveCheckpoints(tmp.path(), {"partial"});
  ASSERT_TRUE(removed.ok()) << removed.status();
  EXPECT_THAT(ChunkIds(tmp.path()), IsEmpty());
}

TEST(GcTest, DamagedManifestStopsCollectionUntilItIsRemoved) {
  testing::TempDir tmp;
  WriteCheckpoint(tmp.path(), {"good", 1, {{"w", 0, {Own(1), Own(2), Own(3)}}}});
  WriteCheckpoint(tmp.path(), {"bad", 2, {{"w", 0, {Own(4), Own(5), Own(6)}}}});
  {
    testing::RawDB raw(RankDirectory(tmp.path(), 0));
    raw.Put(testing::kRawManifestsCf, *EncodeManifestKey("bad"), "not a manifest record");
  }
  StatusOr<GcReport> gc = CollectGarbage(tmp.path());
  EXPECT_EQ(gc.status().code(), StatusCode::kDataLoss);
  EXPECT_THAT(gc.status().message(), HasSubstr("\"bad\""));
  EXPECT_EQ(RemoveCheckpoints(tmp.path(), {"good"}).status().code(), StatusCode::kDataLoss);
  EXPECT_THAT(ChunkIds(tmp.path()), ElementsAre("bad", "good"));
  // Removing the damaged one works: its chunks are found by looking.
  StatusOr<RemoveReport> report = RemoveCheckpoints(tmp.path(), {"bad"});
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_THAT(report->gc.reclaimed_ids, ElementsAre("bad"));
  EXPECT_THAT(ChunkIds(tmp.path()), ElementsAre("good"));
  ExpectReadable(tmp.path(), {"good", 1, {{"w", 0, {Own(1), Own(2), Own(3)}}}});
}

TEST(GcTest, RetentionKeepsTheNewestAndTaggedAndRankGcReclaimsInsideTheJob) {
  testing::TempDir tmp;
  // c0..c5, oldest first; c1 tagged "keep"; "pr" saved without collectives; c5 refers to c2.
  for (int i = 0; i < 5; ++i) {
    CheckpointSpec spec{"c" + std::to_string(i),
                        10 + i,
                        {{"w", 0, {Own(100 * i + 1), Own(100 * i + 2), Own(100 * i + 3)}},
                         {"v", 1, {Own(100 * i + 4), Own(100 * i + 5), Own(100 * i + 6)}}}};
    if (i == 1) spec.tags = {{"keep", ""}, {"step", "1"}};
    WriteCheckpoint(tmp.path(), spec);
  }
  const CheckpointSpec c5{"c5",
                          20,
                          {{"w", 0, {Ref(201, "c2", 0), Own(502), Own(503)}},
                           {"v", 1, {Own(504), Ref(205, "c2", 1), Own(506)}}}};
  WriteCheckpoint(tmp.path(), c5);
  CheckpointSpec pr{"pr", 5, {{"p", 0, {Own(7), Own(8), Own(9)}}}};
  pr.per_rank = true;
  WriteCheckpoint(tmp.path(), pr);

  // The running job: both ranks' databases open read-write.
  std::unique_ptr<ChunkStore> db0, db1;
  ASSERT_OK(ChunkStore::Open(RankDirectory(tmp.path(), 0), {}, &db0));
  ASSERT_OK(ChunkStore::Open(RankDirectory(tmp.path(), 1), {}, &db1));
  EXPECT_THAT(*ApplyRetention(db0.get(), tmp.path(), 0), IsEmpty());
  EXPECT_THAT(*ApplyRetention(db0.get(), tmp.path(), 10), IsEmpty());
  StatusOr<std::vector<std::string>> trashed = ApplyRetention(db0.get(), tmp.path(), 2);
  ASSERT_TRUE(trashed.ok()) << trashed.status();
  EXPECT_THAT(*trashed, ElementsAre("c0", "c2", "c3"));
  EXPECT_THAT(CommittedIds(tmp.path()), UnorderedElementsAre("c1", "c4", "c5", "pr"));
  EXPECT_THAT(*ApplyRetention(db0.get(), tmp.path(), 2), IsEmpty());

  // A rank's collection reclaims its own database only and keeps every trash record.
  ASSERT_OK(CollectRankGarbage(db1.get(), 1, tmp.path()));
  EXPECT_FALSE(ChunkPresent(db1.get(), KeyOf("c0", "v", 0), 4));
  EXPECT_FALSE(ChunkPresent(db1.get(), KeyOf("c2", "v", 0), 204));
  EXPECT_TRUE(ChunkPresent(db1.get(), KeyOf("c2", "v", 1), 205));  // c5 refers to it
  EXPECT_TRUE(ChunkPresent(db0.get(), KeyOf("c0", "w", 0), 1));    // rank 0's: not yet
  ASSERT_OK(CollectRankGarbage(db0.get(), 0, tmp.path()));
  EXPECT_FALSE(ChunkPresent(db0.get(), KeyOf("c0", "w", 0), 1));
  EXPECT_FALSE(ChunkPresent(db0.get(), KeyOf("c3", "w", 2), 303));
  EXPECT_TRUE(ChunkPresent(db0.get(), KeyOf("c2", "w", 0), 201));
  EXPECT_FALSE(ChunkPresent(db0.get(), KeyOf("c2", "w", 1), 202));
  EXPECT_THAT(*db0->ListTrashIds(), ElementsAre("c0", "c2", "c3"));
  EXPECT_TRUE(db0->GetReclaimMarker("c0").ok());
  EXPECT_TRUE(db1->GetReclaimMarker("c2").ok());
  // Again: nothing to do (the markers say so).
  ASSERT_OK(CollectRankGarbage(db0.get(), 0, tmp.path()));
  ASSERT_OK(CollectRankGarbage(db1.get(), 1, tmp.path()));
  for (const std::string id : {"c1", "c4"}) {
    const int i = id[1] - '0';
    ExpectReadable(tmp.path(),
                   {id,
                    10 + i,
                    {{"w", 0, {Own(100 * i + 1), Own(100 * i + 2), Own(100 * i + 3)}},
                     {"v", 1, {Own(100 * i + 4), Own(100 * i + 5), Own(100 * i + 6)}}}});
  }
  ExpectReadable(tmp.path(), c5);
  EXPECT_EQ(CollectRankGarbage(OpenReadOnly(tmp.path(), 0).get(), 0, tmp.path()).code(),
            StatusCode::kFailedPrecondition);
  ASSERT_OK(db0->Close());
  ASSERT_OK(db1->Close());

  // Offline: the trash records of fully reclaimed checkpoints go; c2's stays (c5 refers to it).
  StatusOr<GcReport> report = CollectGarbage(tmp.path());
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_THAT(report->reclaimed_ids, ElementsAre("c0", "c3"));
  EXPECT_THAT(report->pending_ids, ElementsAre("c2"));
  EXPECT_EQ(report->chunks_deleted, 0u);  // the job did it all
  EXPECT_THAT(TrashIds(tmp.path()), ElementsAre("c2"));
  EXPECT_THAT(ChunkIds(tmp.path()), UnorderedElementsAre("c1", "c2", "c4", "c5", "pr"));
}

TEST(GcTest, RefusesWhileAJobHoldsTheStore) {
  testing::TempDir tmp;
  SaveFull(tmp.path(), "c1", 1);
  SaveFull(tmp.path(), "c2", 2);
  {
    // Something to collect (with nothing, gc finds that out read-only and needs no database): a
    // save that crashed before its commit.
    std::unique_ptr<ChunkStore> store;
    ASSERT_OK(ChunkStore::Open(RankDirectory(tmp.path(), 0), WriteOptions(), &store));
    std::vector<uint8_t> data = testing::RandomBytes(kShardBytes, 7);
    ASSERT_OK(store->PutShard("crashed", "w", {DType::kFloat32, {0}, {kElements}}, data.data(),
                              data.size()));
    ASSERT_OK(store->Close());
  }
  {
    // In this process.
    std::unique_ptr<ChunkStore> held;
    ASSERT_OK(ChunkStore::Open(RankDirectory(tmp.path(), 0), {}, &held));
    StatusOr<GcReport> gc = CollectGarbage(tmp.path());
    EXPECT_EQ(gc.status().code(), StatusCode::kFailedPrecondition);
    EXPECT_THAT(gc.status().message(), HasSubstr("store is in use by a running job"));
  }
  // In another process.
  const std::string ready = tmp.Sub("ready");
  pid_t pid = Spawn({DCPKV_GC_CRASH_PATH, "hold", RankDirectory(tmp.path(), 0), ready});
  ASSERT_GT(pid, 0);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (!std::filesystem::exists(ready) && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_TRUE(std::filesystem::exists(ready));
  StatusOr<RemoveReport> rm = RemoveCheckpoints(tmp.path(), {"c1"});
  EXPECT_EQ(rm.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_THAT(rm.status().message(), HasSubstr("store is in use by a running job"));
  StatusOr<GcReport> gc = CollectGarbage(tmp.path());
  EXPECT_EQ(gc.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_THAT(CommittedIds(tmp.path()), ElementsAre("c1", "c2"));
  kill(pid, SIGKILL);
  WaitFor(pid);
  rm = RemoveCheckpoints(tmp.path(), {"c1"});
  ASSERT_TRUE(rm.ok()) << rm.status();
  ExpectLoads(tmp.path(), "c2", 2);
}

// ---------------------------------------------------------------------------------------------
// Crash safety: the helper process SIGKILLs itself at each point; afterwards every committed
// checkpoint is intact, and a later collection (or rm again) reaches the same end state as an
// uninterrupted run.

struct CrashCase {
  const char* operation;  // "rm" or "gc"
  const char* point;      // "" for no crash
};

void PrintTo(const CrashCase& c, std::ostream* os) {
  *os << c.operation << "@" << (*c.point ? c.point : "none");
}

class GcCrashTest : public ::testing::TestWithParam<CrashCase> {
 protected:
  // "solid" (dcpkv::Save), the reference chain, "pr" (a part per rank) and "lone" (manifest in
  // rank 1's database, chunks in both).
  void SetUpStore() {
    SaveFull(root(), "solid", 1);
    for (const CheckpointSpec& spec : ReferenceChain()) WriteCheckpoint(root(), spec);
    CheckpointSpec pr{
        "pr", 4, {{"a", 0, {Own(40), Own(41), Own(42)}}, {"b", 1, {Own(43), Own(44), Own(45)}}}};
    pr.per_rank = true;
    WriteCheckpoint(root(), pr);
    CheckpointSpec lone{
        "lone", 5, {{"z", 1, {Own(50), Own(51), Own(52)}}, {"y", 0, {Own(53), Own(54), Own(55)}}}};
    lone.coordinator = 1;
    WriteCheckpoint(root(), lone);
    specs_ = ReferenceChain();
    specs_.push_back(pr);
    specs_.push_back(lone);
  }

  const CheckpointSpec& Spec(const std::string& id) {
    for (const CheckpointSpec& s : specs_) {
      if (s.id == id) return s;
    }
    ADD_FAILURE() << "no spec " << id;
    return specs_[0];
  }

  // Every committed checkpoint can be read completely.
  void ExpectCommittedIntact() {
    std::set<std::string> committed = CommittedIds(root());
    EXPECT_TRUE(committed.count("solid") && committed.count("new")) << "survivors not listed";
    for (const std::string& id : committed) {
      if (id == "solid") {
        ExpectLoads(root(), "solid", 1);
      } else {
        ExpectReadable(root(), Spec(id));
      }
    }
  }

  void ExpectEndState() {
    EXPECT_THAT(CommittedIds(root()), UnorderedElementsAre("solid", "new"));
    ExpectLoads(root(), "solid", 1);
    ExpectReadable(root(), Spec("new"));
    std::unique_ptr<ChunkStore> db0 = OpenReadOnly(root(), 0);
    std::unique_ptr<ChunkStore> db1 = OpenReadOnly(root(), 1);
    EXPECT_THAT(*db0->ListChunkCheckpointIds(), ElementsAre("mid", "new", "old", "solid"));
    EXPECT_THAT(*db1->ListChunkCheckpointIds(), ElementsAre("mid", "new"));
    // Exactly the referenced chunks of the removed checkpoints are left.
    EXPECT_TRUE(ChunkPresent(db0.get(), KeyOf("old", "w", 0), 10));
    EXPECT_FALSE(ChunkPresent(db0.get(), KeyOf("old", "w", 1), 11));
    EXPECT_FALSE(ChunkPresent(db0.get(), KeyOf("old", "w", 2), 12));
    EXPECT_FALSE(ChunkPresent(db0.get(), KeyOf("mid", "w", 0), 10));
    EXPECT_TRUE(ChunkPresent(db0.get(), KeyOf("mid", "w", 1), 21));
    EXPECT_FALSE(ChunkPresent(db0.get(), KeyOf("mid", "w", 2), 12));
    EXPECT_TRUE(ChunkPresent(db1.get(), KeyOf("mid", "v", 0), 23));
    EXPECT_FALSE(ChunkPresent(db1.get(), KeyOf("mid", "v", 1), 24));
    EXPECT_FALSE(ChunkPresent(db1.get(), KeyOf("mid", "v", 2), 25));
    // Trash records only for those still referred to; no marker of a reclaimed one.
    EXPECT_THAT(*db0->ListTrashIds(), ElementsAre("mid", "old"));
    EXPECT_THAT(*db1->ListTrashIds(), IsEmpty());
    EXPECT_THAT(*db1->ListManifestIds(), IsEmpty());
    for (ChunkStore* db : {db0.get(), db1.get()}) {
      const std::vector<std::string> markers = *db->ListReclaimMarkerIds();
      for (const std::string& id : markers) {
        EXPECT_TRUE(id == "mid" || id == "old") << id;
      }
    }
  }

  std::string root() const { return tmp_.path(); }

  testing::TempDir tmp_;
  std::vector<CheckpointSpec> specs_;
};

const std::vector<std::string> kRemoved = {"lone", "mid", "old", "pr"};

TEST_P(GcCrashTest, CommittedCheckpointsSurviveAndALaterRunFinishes) {
  const CrashCase c = GetParam();
  SetUpStore();
  std::vector<std::string> args = {DCPKV_GC_CRASH_PATH, c.operation, root()};
  if (std::string(c.operation) == "rm") {
    args.insert(args.end(), kRemoved.begin(), kRemoved.end());
  } else {
    // What an interrupted rm left: manifests trashed ("pr" only in rank 0), and the chunks of a
    // save that crashed before committing.
    std::unique_ptr<ChunkStore> db0, db1;
    ASSERT_OK(ChunkStore::Open(RankDirectory(root(), 0), {}, &db0));
    ASSERT_OK(ChunkStore::Open(RankDirectory(root(), 1), WriteOptions(), &db1));
    for (const char* id : {"old", "mid", "pr"}) ASSERT_OK(db0->MoveManifestToTrash(id));
    ASSERT_OK(db1->MoveManifestToTrash("lone"));
    std::vector<uint8_t> data = testing::RandomBytes(kShardBytes, 9);
    ASSERT_OK(db1->PutShard("crashed", "w", {DType::kFloat32, {0}, {kElements}}, data.data(),
                            data.size()));
  }
  std::vector<std::string> env;
  if (*c.point) env.push_back(std::string("DCPKV_GC_CRASH_AT=") + c.point);
  pid_t pid = Spawn(args, env);
  ASSERT_GT(pid, 0);
  const int status = WaitFor(pid);
  if (*c.point) {
    ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
        << "the helper did not reach " << c.point << " (status " << status << ")";
  } else {
    ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "status " << status;
  }

  ExpectCommittedIntact();
  std::set<std::string> committed = CommittedIds(root());
  for (const std::string& id : kRemoved) {
    // Once a removal has passed its trash step, the checkpoint stays removed.
    if (std::string(c.operation) == "gc" || std::string(c.point) != "after_trash_first") {
      EXPECT_EQ(committed.count(id), 0u) << id;
    }
  }

  // Finish: rm again what is still committed, else collect.
  std::vector<std::string> still;
  for (const std::string& id : kRemoved) {
    if (committed.count(id)) still.push_back(id);
  }
  if (!still.empty()) {
    StatusOr<RemoveReport> report = RemoveCheckpoints(root(), still);
    ASSERT_TRUE(report.ok()) << report.status();
  } else {
    StatusOr<GcReport> report = CollectGarbage(root());
    ASSERT_TRUE(report.ok()) << report.status();
  }
  ExpectEndState();
  // A further collection changes nothing.
  StatusOr<GcReport> report = CollectGarbage(root());
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->chunks_deleted, 0u);
  EXPECT_THAT(report->orphan_ids, IsEmpty());
  ExpectEndState();
}

INSTANTIATE_TEST_SUITE_P(
    Points, GcCrashTest,
    ::testing::Values(
        CrashCase{"rm", ""}, CrashCase{"rm", "after_trash_first"}, CrashCase{"rm", "after_trash"},
        CrashCase{"rm", "after_delete_first"}, CrashCase{"rm", "after_compact_first"},
        CrashCase{"rm", "before_trash_delete"}, CrashCase{"rm", "after_trash_delete_first"},
        CrashCase{"gc", ""}, CrashCase{"gc", "after_trash_first"},
        CrashCase{"gc", "after_delete_first"}, CrashCase{"gc", "after_compact_first"},
        CrashCase{"gc", "before_trash_delete"}, CrashCase{"gc", "after_trash_delete_first"}),
    [](const ::testing::TestParamInfo<CrashCase>& info) {
      return std::string(info.param.operation) + "_" +
             (*info.param.point ? info.param.point : "none");
    });

}  // namespace
}  // namespace dcpkv

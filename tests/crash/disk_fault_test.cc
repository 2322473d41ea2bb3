// A full disk and I/O errors under RocksDB (fault_injection_fs.h), during real saves through
// dcpkv::Save, on one rank or every rank: the save fails on every rank with an error that says
// what happened and where, the checkpoint saved before stays committed and loads bit-exactly, and
// once the disk works again the same storage writer saves and loads again.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <rocksdb/env.h>

#include <filesystem>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "dcpkv/api/kv_storage.h"
#include "dcpkv/catalog.h"
#include "dcpkv/checkpoint.h"
#include "dcpkv/diagnostics.h"
#include "dcpkv/store/chunk_store.h"
#include "dcpkv/store/crash_points.h"
#include "dcpkv/store/gc.h"
#include "dcpkv/store/store_layout.h"
#include "tests/crash/crash_model.h"
#include "tests/crash/fault_injection_fs.h"
#include "tests/util/gloo_threads.h"
#include "tests/util/store_files.h"
#include "tests/util/temp_dir.h"

namespace dcpkv {
namespace {

using testing::FaultInjectionFileSystem;
using testing::FaultKind;
using testing::FaultSpec;
using ::testing::HasSubstr;

constexpr uint64_t kSeed = 5;

// One rank's storage writer on a fault-injecting file system. The writer is kept across saves,
// as a training job keeps it.
struct FaultyRank {
  explicit FaultyRank(const std::string& root,
                      ChunkWritePath write_path = ChunkWritePath::kWriteBatch) {
    KvStorageOptions o;
    o.root = root;
    o.store_options.chunk_size = 64 << 10;
    o.store_options.write_batch_bytes = 128 << 10;
    o.store_options.write_path = write_path;
    o.store_options.table_file_bytes = 256 << 10;
    o.store_options.small_write_bytes = 0;  // the faults target table files
    o.store_options.env = env.get();
    writer = std::make_shared<KvStorageWriter>(o);
  }

  std::shared_ptr<FaultInjectionFileSystem> fs = std::make_shared<FaultInjectionFileSystem>();
  std::unique_ptr<rocksdb::Env> env = rocksdb::NewCompositeEnv(fs);
  std::shared_ptr<KvStorageWriter> writer;  // destroyed first: it uses env
};

StatusOr<Metadata> SaveStep(FaultyRank& r, const std::string& root, uint64_t step,
                            ProcessGroup* group = nullptr) {
  const int world = group == nullptr ? 1 : group->size();
  const int rank = group == nullptr ? 0 : group->rank();
  StateDict sd = testing::ModelState(step, kSeed, world, rank);
  SaveOptions o;
  o.checkpoint_id = testing::ModelCheckpointId(step);
  o.storage_writer = r.writer;
  o.store_root = root;
  o.process_group = group;
  return Save(sd, o);
}

std::set<std::string> Committed(const std::string& root) {
  StatusOr<std::vector<CheckpointSummary>> list = ListCommittedCheckpoints(root);
  EXPECT_TRUE(list.ok()) << list.status();
  std::set<std::string> ids;
  if (list.ok()) {
    for (const CheckpointSummary& c : *list) ids.insert(c.checkpoint_id);
  }
  return ids;
}

// Arms a file system when a crash point is reached (store/crash_points.h), so that a fault can
// hit one step of the save, e.g. the commit. One at a time.
class ArmAtPoint {
 public:
  ArmAtPoint(std::string point, FaultInjectionFileSystem* fs, FaultSpec spec) {
    point_ = std::move(point);
    fs_ = fs;
    spec_ = spec;
    SetCrashPointObserver(&Observe);
  }
  ~ArmAtPoint() { SetCrashPointObserver(nullptr); }

 private:
  static void Observe(std::string_view name) {
    if (name == point_) fs_->Arm(spec_);
  }
  static inline std::string point_;
  static inline FaultInjectionFileSystem* fs_ = nullptr;
  static inline FaultSpec spec_;
};

struct FaultCase {
  const char* name;
  FaultSpec spec;
  // Arm when the save reaches this crash point; empty: before the save.
  const char* at_point = "";
  // What the error must say.
  StatusCode code;
  const char* says;
};

void PrintTo(const FaultCase& c, std::ostream* os) { *os << c.name; }

FaultSpec Spec(FaultKind kind, std::vector<std::string> files, uint64_t after_bytes,
               uint64_t on_op = 0) {
  FaultSpec s;
  s.kind = kind;
  s.files = std::move(files);
  s.after_bytes = after_bytes;
  s.on_op = on_op;
  return s;
}

constexpr uint64_t kNever = std::numeric_limits<uint64_t>::max();
constexpr char kNoSpace[] = "No space left on device";
constexpr char kInjectedIO[] = "injected write error";

const FaultCase kCases[] = {
    {"NoSpaceWhileFlushingChunks", Spec(FaultKind::kNoSpace, {".blob", ".sst"}, 200 << 10), "",
     StatusCode::kResourceExhausted, kNoSpace},
    {"NoSpaceInAnyFile", Spec(FaultKind::kNoSpace, {}, 300 << 10), "",
     StatusCode::kResourceExhausted, kNoSpace},
    {"NoSpaceAtOnce", Spec(FaultKind::kNoSpace, {}, 0), "", StatusCode::kResourceExhausted,
     kNoSpace},
    {"IOErrorOnTheSecondBlobWrite", Spec(FaultKind::kIOError, {".blob"}, kNever, 2), "",
     StatusCode::kIOError, kInjectedIO},
    {"IOErrorWritingTheTableFile", Spec(FaultKind::kIOError, {".sst"}, kNever, 1), "",
     StatusCode::kIOError, kInjectedIO},
    {"NoSpaceInRocksDBsManifest", Spec(FaultKind::kNoSpace, {"MANIFEST-"}, kNever, 1), "",
     StatusCode::kResourceExhausted, kNoSpace},
    {"NoSpaceWritingTheCommit", Spec(FaultKind::kNoSpace, {".log"}, kNever, 1),
     "save.before_manifest", StatusCode::kResourceExhausted, kNoSpace},
    {"IOErrorSyncingTheCommit", Spec(FaultKind::kIOError, {".log"}, kNever, 2),
     "save.before_manifest", StatusCode::kIOError, kInjectedIO},
    {"IOErrorOnTheFifthWrite", Spec(FaultKind::kIOError, {}, kNever, 5), "", StatusCode::kIOError,
     kInjectedIO},
    {"NoSpaceOnTheSeventhWrite", Spec(FaultKind::kNoSpace, {}, kNever, 7), "",
     StatusCode::kResourceExhausted, kNoSpace},
};

class DiskFaultTest : public ::testing::TestWithParam<FaultCase> {};

// After the failed save of step 2 and a successful one of step 3: what is committed loads
// bit-exactly, step 1 and 3 are committed, and gc leaves no other data.
void ExpectRecovered(const std::string& root, int world) {
  const std::set<std::string> committed = Committed(root);
  EXPECT_TRUE(committed.count(testing::ModelCheckpointId(1))) << "the earlier checkpoint";
  EXPECT_TRUE(committed.count(testing::ModelCheckpointId(3))) << "the save after recovery";
  for (uint64_t step : {1, 2, 3}) {
    const std::string id = testing::ModelCheckpointId(step);
    // A commit whose write failed only in its sync may have reached the disk all the same: then
    // it is committed, and must be whole.
    if (committed.count(id)) {
      EXPECT_TRUE(testing::LoadAndCompareModel(root, id, step, kSeed).ok()) << id;
    }
  }
  StatusOr<GcReport> gc = CollectGarbage(root);
  ASSERT_TRUE(gc.ok()) << gc.status();
  for (int rank = 0; rank < world; ++rank) {
    std::unique_ptr<ChunkStore> db;
    ASSERT_TRUE(
        ChunkStore::Open(RankDirectory(root, rank), {.mode = OpenMode::kReadOnly}, &db).ok());
    StatusOr<std::vector<std::string>> ids = db->ListChunkCheckpointIds();
    ASSERT_TRUE(ids.ok()) << ids.status();
    for (const std::string& id : *ids) {
      EXPECT_TRUE(committed.count(id)) << "rank " << rank << " still holds data of " << id;
    }
  }
}

TEST_P(DiskFaultTest, WorldOfOne) {
  const FaultCase& c = GetParam();
  testing::TempDir tmp;
  FaultyRank r(tmp.path());
  ASSERT_TRUE(SaveStep(r, tmp.path(), 1).ok());
  std::unique_ptr<ArmAtPoint> at;
  if (*c.at_point) {
    at = std::make_unique<ArmAtPoint>(c.at_point, r.fs.get(), c.spec);
  } else {
    r.fs->Arm(c.spec);
  }
  StatusOr<Metadata> failed = SaveStep(r, tmp.path(), 2);
  at.reset();
  ASSERT_FALSE(failed.ok());
  EXPECT_GT(r.fs->faults(), 0u);
  EXPECT_EQ(failed.status().code(), c.code) << failed.status();
  EXPECT_THAT(failed.status().message(), HasSubstr(c.says));
  EXPECT_THAT(failed.status().message(), HasSubstr(RankDirectory(tmp.path(), 0)));
  EXPECT_THAT(failed.status().message(), HasSubstr("ck-000002"));

  // While the disk is still full, the previous checkpoint loads, and another try fails cleanly.
  EXPECT_TRUE(testing::LoadAndCompareModel(tmp.path(), "ck-000001", 1, kSeed).ok());
  StatusOr<Metadata> retry = SaveStep(r, tmp.path(), 2);
  EXPECT_FALSE(retry.ok());
  EXPECT_THAT(retry.status().message(), HasSubstr(c.says));
  r.fs->Disarm();
  StatusOr<Metadata> again = SaveStep(r, tmp.path(), 3);
  ASSERT_TRUE(again.ok()) << again.status();
  r.writer.reset();
  ExpectRecovered(tmp.path(), 1);
}

// Rank 1 of two (threads over gloo) hits the fault; both fail, naming rank 1.
TEST_P(DiskFaultTest, OneRankOfTwo) {
  const FaultCase& c = GetParam();
  testing::TempDir tmp;
  std::vector<std::unique_ptr<FaultyRank>> ranks;
  for (int i = 0; i < 2; ++i) ranks.push_back(std::make_unique<FaultyRank>(tmp.path()));
  // Commit points are the coordinator's: a fault there is injected on rank 0.
  const int faulty = *c.at_point ? 0 : 1;
  std::vector<Status> failed(2);
  std::vector<Status> again(2);
  std::unique_ptr<ArmAtPoint> at;
  testing::RunOnGlooRanks(2, [&](ProcessGroup& pg) {
    const int rank = pg.rank();
    FaultyRank& r = *ranks[rank];
    Status first = SaveStep(r, tmp.path(), 1, &pg).status();
    ASSERT_TRUE(first.ok()) << first;
    // Arm between two barriers, so that no rank is writing meanwhile.
    ASSERT_TRUE(pg.Barrier().ok());
    if (rank == faulty) {
      if (*c.at_point) {
        at = std::make_unique<ArmAtPoint>(c.at_point, r.fs.get(), c.spec);
      } else {
        r.fs->Arm(c.spec);
      }
    }
    ASSERT_TRUE(pg.Barrier().ok());
    failed[rank] = SaveStep(r, tmp.path(), 2, &pg).status();
    ASSERT_TRUE(pg.Barrier().ok());
    if (rank == faulty) {
      at.reset();
      r.fs->Disarm();
    }
    ASSERT_TRUE(pg.Barrier().ok());
    again[rank] = SaveStep(r, tmp.path(), 3, &pg).status();
  });
  for (int rank = 0; rank < 2; ++rank) {
    SCOPED_TRACE("rank " + std::to_string(rank));
    EXPECT_FALSE(failed[rank].ok());
    EXPECT_EQ(failed[rank].code(), c.code) << failed[rank];
    EXPECT_THAT(failed[rank].message(), HasSubstr(c.says));
    EXPECT_THAT(failed[rank].message(), HasSubstr(RankDirectory(tmp.path(), faulty)));
    EXPECT_TRUE(again[rank].ok()) << again[rank];
  }
  if (faulty == 1) {
    EXPECT_THAT(failed[0].message(), HasSubstr("failed on rank 1 of 2"));
  }
  ranks.clear();
  ExpectRecovered(tmp.path(), 2);
}

// Retention runs after the commit: when it fails, the save still returns the committed Metadata,
// and the failure reaches the caller through SaveOptions::diagnostics (never stderr alone).
TEST(PostCommitDiagnosticsTest, AFailedRetentionReachesTheSink) {
  testing::TempDir tmp;
  FaultyRank r(tmp.path());
  DiagnosticCollector diagnostics;
  auto save = [&](uint64_t step) {
    StateDict sd = testing::ModelState(step, kSeed, 1, 0);
    SaveOptions o;
    o.checkpoint_id = testing::ModelCheckpointId(step);
    o.storage_writer = r.writer;
    o.keep_last = 1;
    o.diagnostics = &diagnostics;
    return Save(sd, o);
  };
  ASSERT_TRUE(save(1).ok());
  EXPECT_TRUE(diagnostics.entries().empty());
  // The commit's WAL write is the last before retention moves step 1's manifest to the trash:
  // fail the write after it.
  auto at = std::make_unique<ArmAtPoint>("save.after_manifest", r.fs.get(),
                                         Spec(FaultKind::kIOError, {".log"}, kNever, 1));
  StatusOr<Metadata> committed = save(2);
  at.reset();

  r.fs->Disarm();
  ASSERT_TRUE(committed.ok()) << committed.status();
  EXPECT_GT(r.fs->faults(), 0u);
  const std::vector<DiagnosticCollector::Entry> got = diagnostics.entries();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].severity, DiagnosticSeverity::kWarning);
  EXPECT_THAT(got[0].where, HasSubstr("ck-000002"));
  EXPECT_THAT(got[0].where, HasSubstr("committed"));
  EXPECT_EQ(got[0].status.code(), StatusCode::kIOError) << got[0].status;
  EXPECT_THAT(got[0].status.message(), HasSubstr("retention"));
  EXPECT_THAT(got[0].status.message(), HasSubstr(kInjectedIO));
  // Both checkpoints are still committed and whole: the failed retention deleted nothing.
  EXPECT_EQ(Committed(tmp.path()),
            (std::set<std::string>{testing::ModelCheckpointId(1), testing::ModelCheckpointId(2)}));
  EXPECT_TRUE(testing::LoadAndCompareModel(tmp.path(), "ck-000002", 2, kSeed).ok());
  // The next save reopens the database and retention catches up.
  ASSERT_TRUE(save(3).ok());
  EXPECT_EQ(diagnostics.entries().size(), 1u);
  r.writer.reset();
  EXPECT_EQ(Committed(tmp.path()), (std::set<std::string>{testing::ModelCheckpointId(3)}));
}

// The ingest write path: a table file that cannot be written fails the save, leaves no
// temporary behind, and the same writer saves again once the disk works.
TEST(IngestWritePathFaultTest, AFailedTableFileFailsTheSaveAndTheWriterRecovers) {
  for (const FaultKind kind : {FaultKind::kIOError, FaultKind::kNoSpace}) {
    SCOPED_TRACE(kind == FaultKind::kIOError ? "EIO" : "ENOSPC");
    testing::TempDir tmp;
    FaultyRank r(tmp.path(), ChunkWritePath::kIngestTableFiles);
    ASSERT_TRUE(SaveStep(r, tmp.path(), 1).ok());
    r.fs->Arm(Spec(kind, {".sst"}, kNever, 2));
    StatusOr<Metadata> failed = SaveStep(r, tmp.path(), 2);
    ASSERT_FALSE(failed.ok());
    EXPECT_GT(r.fs->faults(), 0u);
    EXPECT_EQ(failed.status().code(),
              kind == FaultKind::kIOError ? StatusCode::kIOError : StatusCode::kResourceExhausted)
        << failed.status();
    EXPECT_THAT(failed.status().message(), HasSubstr(RankDirectory(tmp.path(), 0)));
    EXPECT_THAT(failed.status().message(), HasSubstr("ck-000002"));
    EXPECT_TRUE(testing::IngestDirectoryIsEmpty(RankDirectory(tmp.path(), 0)))
        << "a table file that was never ingested is removed";
    EXPECT_TRUE(testing::LoadAndCompareModel(tmp.path(), "ck-000001", 1, kSeed).ok());
    r.fs->Disarm();
    StatusOr<Metadata> again = SaveStep(r, tmp.path(), 3);
    ASSERT_TRUE(again.ok()) << again.status();
    r.writer.reset();
    ExpectRecovered(tmp.path(), 1);
  }
}

INSTANTIATE_TEST_SUITE_P(Faults, DiskFaultTest, ::testing::ValuesIn(kCases),
                         [](const ::testing::TestParamInfo<FaultCase>& info) {
                           return std::string(info.param.name);
                         });

}  // namespace
}  // namespace dcpkv

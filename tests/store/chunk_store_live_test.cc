// Readers opening a database that another process is writing: read-only and secondary opens
// must see committed data bit-exactly and never block or disturb the writer.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include "dcpkv/store/chunk_store.h"
#include "dcpkv/store/rocksdb_config.h"
#include "tests/util/temp_dir.h"
#include "tests/util/test_data.h"

extern char** environ;

namespace dcpkv {
namespace {

constexpr uint64_t kElements = 48 * 1024;  // as in store_writer_main.cc

class WriterProcess {
 public:
  WriterProcess(const std::string& db_dir, const std::string& signal_dir)
      : signal_dir_(signal_dir) {
    std::string exe = DCPKV_STORE_WRITER_PATH;
    char* argv[] = {exe.data(), const_cast<char*>(db_dir.c_str()),
                    const_cast<char*>(signal_dir.c_str()), nullptr};
    EXPECT_EQ(posix_spawn(&pid_, exe.c_str(), nullptr, nullptr, argv, environ), 0);
  }
  ~WriterProcess() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }
  // The last checkpoint index the writer committed, or -1.
  int Progress() const {
    std::ifstream in(signal_dir_ + "/progress");
    int i = -1;
    in >> i;
    return in ? i : -1;
  }
  bool WaitForProgress(int at_least) const {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (std::chrono::steady_clock::now() < deadline) {
      if (Progress() >= at_least) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return false;
  }
  // Asks the writer to stop and returns its exit status.
  int Stop() {
    std::ofstream(signal_dir_ + "/stop") << 1;
    int status = 0;
    waitpid(pid_, &status, 0);
    pid_ = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }

 private:
  std::string signal_dir_;
  pid_t pid_ = -1;
};

void ExpectCheckpoint(ChunkStore* store, int i) {
  std::string id = "c-" + std::to_string(i);
  std::vector<uint8_t> expected = testing::RandomBytes(kElements * 4, i);
  std::vector<uint8_t> out(expected.size());
  Status s = store->ReadShard(id, "w", {DType::kFloat32, {0}, {kElements}}, out.data(), out.size());
  ASSERT_TRUE(s.ok()) << id << ": " << s;
  EXPECT_TRUE(out == expected) << id << " differs";
  StatusOr<ManifestRecord> m = store->GetManifest(id);
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->payload, "manifest " + id);
}

TEST(ChunkStoreLiveTest, ReadOnlyAndSecondaryWhileAWriterIsActive) {
  testing::TempDir tmp;
  std::string db = tmp.Sub("rank-00000");
  std::filesystem::create_directories(tmp.Sub("signals"));
  WriterProcess writer(db, tmp.Sub("signals"));
  ASSERT_TRUE(writer.WaitForProgress(1)) << "writer made no progress";

  // A second writer is refused: RocksDB's lock keeps one writer per directory.
  std::unique_ptr<ChunkStore> second;
  Status s = ChunkStore::Open(db, {}, &second);
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(s.code(), StatusCode::kIOError) << s;
  EXPECT_EQ(s.reason(), ErrorReason::kLockHeld) << s;
  EXPECT_THAT(s.message(), ::testing::HasSubstr("lock"));

  // Read-only: a snapshot of what was durable at open.
  std::unique_ptr<ChunkStore> ro;
  ASSERT_TRUE(ChunkStore::Open(db, {.mode = OpenMode::kReadOnly}, &ro).ok());
  ExpectCheckpoint(ro.get(), 0);
  ExpectCheckpoint(ro.get(), 1);

  // Secondary: follows the writer. List after one catch-up, read after the next (see
  // ChunkStore::TryCatchUpWithPrimary).
  std::unique_ptr<ChunkStore> sec;
  ASSERT_TRUE(ChunkStore::Open(db, {.mode = OpenMode::kSecondary}, &sec).ok());
  ExpectCheckpoint(sec.get(), 0);
  size_t first_count = sec->ListManifestIds()->size();
  ASSERT_TRUE(writer.WaitForProgress(writer.Progress() + 3));
  ASSERT_TRUE(sec->TryCatchUpWithPrimary().ok());
  std::vector<std::string> ids = *sec->ListManifestIds();
  ASSERT_TRUE(sec->TryCatchUpWithPrimary().ok());
  EXPECT_GT(ids.size(), first_count) << "secondary did not see new checkpoints";
  for (const std::string& id : ids) ExpectCheckpoint(sec.get(), std::stoi(id.substr(2)));

  // The writer was never disturbed and exits cleanly.
  int progress_before_stop = writer.Progress();
  EXPECT_EQ(writer.Stop(), 0);
  EXPECT_GE(writer.Progress(), progress_before_stop);
  ASSERT_TRUE(ro->Close().ok());
  ASSERT_TRUE(sec->Close().ok());

  // After the writer is gone, everything it committed reopens read-write.
  std::unique_ptr<ChunkStore> rw;
  ASSERT_TRUE(ChunkStore::Open(db, {}, &rw).ok());
  for (int i = 0; i <= writer.Progress(); ++i) ExpectCheckpoint(rw.get(), i);
}

// Errors are classified where they are made, so that callers branch on ErrorReason and never on
// RocksDB's wording.
TEST(ChunkStoreOpenErrorTest, ASecondReadWriteHandleInThisProcessIsLockHeld) {
  testing::TempDir tmp;
  std::unique_ptr<ChunkStore> first, second;
  ASSERT_TRUE(ChunkStore::Open(tmp.Sub("rank-00000"), {}, &first).ok());
  Status s = ChunkStore::Open(tmp.Sub("rank-00000"), {}, &second);
  EXPECT_EQ(s.code(), StatusCode::kIOError) << s;
  EXPECT_EQ(s.reason(), ErrorReason::kLockHeld) << s;
  EXPECT_EQ(s.WithContext("gc").reason(), ErrorReason::kLockHeld) << "context keeps the reason";
  // The first handle still works: classifying the error did not disturb its lock.
  EXPECT_TRUE(first->PutManifest({"c-1", 1, "m"}).ok());
  ASSERT_TRUE(first->Close().ok());
  EXPECT_TRUE(ChunkStore::Open(tmp.Sub("rank-00000"), {}, &second).ok()) << "free after close";
}

TEST(ChunkStoreOpenErrorTest, OtherOpenFailuresCarryNoReason) {
  testing::TempDir tmp;
  std::ofstream(tmp.Sub("file")) << "not a directory";
  std::unique_ptr<ChunkStore> store;
  Status s = ChunkStore::Open(tmp.Sub("file") + "/rank-00000", {}, &store);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.reason(), ErrorReason::kNone) << s;
}

TEST(ChunkStoreOpenErrorTest, ARocksDBDatabaseWithoutTheMarkerIsNotADcpkvStore) {
  testing::TempDir tmp;
  const std::string dir = tmp.Sub("rank-00000");
  {
    // A database with the store's column families but no format marker.
    RocksDBConfig config = MakeRocksDBConfig(ChunkStoreOptions());
    config.db.create_if_missing = true;
    config.db.create_missing_column_families = true;
    std::vector<rocksdb::ColumnFamilyHandle*> handles;
    rocksdb::DB* db = nullptr;
    ASSERT_TRUE(rocksdb::DB::Open(config.db, dir, config.column_families, &handles, &db).ok());
    for (auto* h : handles) db->DestroyColumnFamilyHandle(h).PermitUncheckedError();
    delete db;
  }
  std::unique_ptr<ChunkStore> store;
  Status s = ChunkStore::Open(dir, {.mode = OpenMode::kReadOnly}, &store);
  EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition) << s;
  EXPECT_EQ(s.reason(), ErrorReason::kNotADcpkvStore) << s;
}

}  // namespace
}  // namespace dcpkv

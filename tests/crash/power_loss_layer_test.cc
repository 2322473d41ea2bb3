// The power-loss layer itself (power_loss.h): what a simulated cut keeps and throws away, for
// dcpkv's own file operations (store/file_ops.h) and for RocksDB's files through the layer's
// environment. Each case checks that what was not made durable is really gone, so that the
// power-loss harness (power_loss_test.cc) can fail.
#include "tests/crash/power_loss.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>

#include <rocksdb/db.h>

#include "dcpkv/store/file_ops.h"
#include "dcpkv/store/writer_lease.h"
#include "tests/util/temp_dir.h"

namespace dcpkv::testing {
namespace {

namespace fs = std::filesystem;

std::string Read(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

class PowerLossLayerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(BeginPowerLossJournal(journal_, root_).ok());
    StatusOr<std::unique_ptr<PowerLossLayer>> layer = PowerLossLayer::Install(journal_);
    ASSERT_TRUE(layer.ok()) << layer.status();
    layer_ = std::move(layer).value();
  }

  // Writes `text` to a new file through dcpkv's FileOps, synced or not.
  void Write(const std::string& path, const std::string& text, bool sync) {
    const int fd = CurrentFileOps().CreateFile(path, O_WRONLY | O_TRUNC);
    ASSERT_GE(fd, 0) << path;
    ASSERT_EQ(::write(fd, text.data(), text.size()), static_cast<ssize_t>(text.size()));
    if (sync) {
      EXPECT_EQ(CurrentFileOps().SyncFile(fd, path), 0);
    }
    ::close(fd);
  }
  void Append(const std::string& path, const std::string& text) {
    std::ofstream(path, std::ios::app | std::ios::binary) << text;
  }
  PowerCutReport Cut(CutMode mode = CutMode::kTruncate) {
    StatusOr<PowerCutReport> r = ApplyPowerCut(journal_, root_, mode, 7);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : PowerCutReport{};
  }

  TempDir tmp_;
  std::string root_ = tmp_.Sub("root");
  std::string journal_ = tmp_.Sub("journal");
  std::unique_ptr<PowerLossLayer> layer_;
};

TEST_F(PowerLossLayerTest, AFileKeepsItsSyncedBytesAndLosesTheRest) {
  const std::string f = root_ + "/f";
  Write(f, "synced", /*sync=*/true);
  ASSERT_TRUE(SyncDirectory(root_).ok());
  Append(f, " and not synced");
  const PowerCutReport r = Cut();
  EXPECT_EQ(Read(f), "synced");
  EXPECT_EQ(r.files_shortened, 1u);
  EXPECT_EQ(r.bytes_lost, std::string(" and not synced").size());
}

TEST_F(PowerLossLayerTest, GarbageModeKeepsTheLengthWithOtherBytes) {
  const std::string f = root_ + "/f";
  Write(f, "synced", /*sync=*/true);
  ASSERT_TRUE(SyncDirectory(root_).ok());
  const std::string tail(4096, 'x');
  Append(f, tail);
  Cut(CutMode::kGarbage);
  const std::string after = Read(f);
  ASSERT_EQ(after.size(), 6 + tail.size());
  EXPECT_EQ(after.substr(0, 6), "synced");
  EXPECT_NE(after.substr(6), tail);
}

TEST_F(PowerLossLayerTest, AFileWhoseDirectoryWasNotSyncedIsGone) {
  Write(root_ + "/kept", "a", /*sync=*/true);
  ASSERT_TRUE(SyncDirectory(root_).ok());
  Write(root_ + "/lost", "b", /*sync=*/true);  // its bytes synced, its name not
  const PowerCutReport r = Cut();
  EXPECT_TRUE(fs::exists(root_ + "/kept"));
  EXPECT_FALSE(fs::exists(root_ + "/lost"));
  EXPECT_EQ(r.entries_lost, 1u);
}

TEST_F(PowerLossLayerTest, AnUnsyncedFileWhoseNameIsDurableIsEmpty) {
  Write(root_ + "/f", "never synced", /*sync=*/false);
  ASSERT_TRUE(SyncDirectory(root_).ok());
  Cut();
  EXPECT_EQ(Read(root_ + "/f"), "");
}

TEST_F(PowerLossLayerTest, AnUnsyncedRenameIsUndoneAndTheReplacedFileComesBack) {
  Write(root_ + "/current", "old", true);
  Write(root_ + "/current.tmp", "new", true);
  ASSERT_TRUE(SyncDirectory(root_).ok());
  ASSERT_EQ(CurrentFileOps().Rename(root_ + "/current.tmp", root_ + "/current"), 0);
  ASSERT_EQ(Read(root_ + "/current"), "new");
  const PowerCutReport r = Cut();
  EXPECT_EQ(Read(root_ + "/current"), "old");
  EXPECT_EQ(Read(root_ + "/current.tmp"), "new");
  EXPECT_EQ(r.removals_undone, 2u);  // the replaced "old", the renamed "new"

  // Synced after the rename: it stays.
  ASSERT_EQ(CurrentFileOps().Rename(root_ + "/current.tmp", root_ + "/current"), 0);
  ASSERT_TRUE(SyncDirectory(root_).ok());
  Cut();
  EXPECT_EQ(Read(root_ + "/current"), "new");
  EXPECT_FALSE(fs::exists(root_ + "/current.tmp"));
}

TEST_F(PowerLossLayerTest, AnUnsyncedRemovalIsUndone) {
  Write(root_ + "/f", "durable", true);
  ASSERT_TRUE(SyncDirectory(root_).ok());
  ASSERT_EQ(CurrentFileOps().Unlink(root_ + "/f"), 0);
  ASSERT_EQ(RemoveTree(root_ + "/f"), 0);
  Cut();
  EXPECT_EQ(Read(root_ + "/f"), "durable");
  ASSERT_EQ(CurrentFileOps().Unlink(root_ + "/f"), 0);
  ASSERT_TRUE(SyncDirectory(root_).ok());
  Cut();
  EXPECT_FALSE(fs::exists(root_ + "/f"));
}

TEST_F(PowerLossLayerTest, ADirectoryRenamedIntoPlaceWithoutAParentSyncIsNotThere) {
  // Rank creation's shape: a directory made and filled under a temporary name, renamed.
  ASSERT_EQ(MakeDirectories(root_ + "/rank.creating/sub"), 0);
  Write(root_ + "/rank.creating/sub/data", "bytes", true);
  ASSERT_TRUE(SyncDirectory(root_ + "/rank.creating/sub").ok());
  ASSERT_TRUE(SyncDirectory(root_ + "/rank.creating").ok());
  ASSERT_TRUE(SyncDirectory(root_).ok());
  ASSERT_EQ(CurrentFileOps().Rename(root_ + "/rank.creating", root_ + "/rank"), 0);
  Cut();
  EXPECT_FALSE(fs::exists(root_ + "/rank"));
  EXPECT_EQ(Read(root_ + "/rank.creating/sub/data"), "bytes");

  ASSERT_EQ(CurrentFileOps().Rename(root_ + "/rank.creating", root_ + "/rank"), 0);
  ASSERT_TRUE(SyncDirectory(root_).ok());
  Cut();
  EXPECT_EQ(Read(root_ + "/rank/sub/data"), "bytes");
  EXPECT_FALSE(fs::exists(root_ + "/rank.creating"));
}

TEST_F(PowerLossLayerTest, AHardLinkNeedsItsDirectorySynced) {
  Write(root_ + "/a", "x", true);
  ASSERT_TRUE(SyncDirectory(root_).ok());
  ASSERT_EQ(CurrentFileOps().Link(root_ + "/a", root_ + "/b"), 0);
  ASSERT_EQ(CurrentFileOps().Unlink(root_ + "/a"), 0);
  Cut();
  EXPECT_EQ(Read(root_ + "/a"), "x");
  EXPECT_FALSE(fs::exists(root_ + "/b"));
}

// RocksDB through the layer's environment: a write without sync is lost with the cut, a synced
// one survives; the database opens after either.
TEST_F(PowerLossLayerTest, RocksDBWritesAreDurableOnlyWhenSynced) {
  const std::string db_dir = root_ + "/db";
  rocksdb::Options options;
  options.create_if_missing = true;
  options.env = layer_->env();
  for (const bool sync : {false, true}) {
    SCOPED_TRACE(sync ? "synced" : "not synced");
    {
      rocksdb::DB* raw = nullptr;
      ASSERT_TRUE(rocksdb::DB::Open(options, db_dir, &raw).ok());
      std::unique_ptr<rocksdb::DB> db(raw);
      // RocksDB syncs the database's directory, never its parent (dcpkv syncs the root after
      // making a rank directory).
      ASSERT_TRUE(SyncDirectory(root_).ok());
      rocksdb::WriteOptions wo;
      wo.sync = sync;
      ASSERT_TRUE(db->Put(wo, sync ? "synced" : "unsynced", "v").ok());
      // Closed without a flush: the value is only in the write-ahead log.
      ASSERT_TRUE(db->Close().ok());
    }
    Cut();
    rocksdb::DB* raw = nullptr;
    rocksdb::Options plain = options;
    plain.env = rocksdb::Env::Default();
    rocksdb::Status opened = rocksdb::DB::OpenForReadOnly(plain, db_dir, &raw);
    ASSERT_TRUE(opened.ok()) << opened.ToString();
    std::unique_ptr<rocksdb::DB> db(raw);
    std::string value;
    EXPECT_EQ(db->Get({}, "unsynced", &value).IsNotFound(), true);
    if (sync) {
      EXPECT_TRUE(db->Get({}, "synced", &value).ok());
    }
  }
}

// A gap in the layer shows: a journal naming a file in a directory it never saw is an error, not
// a silent keep.
TEST_F(PowerLossLayerTest, AJournalTheModelCannotPlaceIsAnError) {
  std::ofstream(journal_, std::ios::app) << "C\t" << root_ << "/nowhere/f\n";
  StatusOr<PowerCutReport> r = ApplyPowerCut(journal_, root_, CutMode::kTruncate, 1);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("nowhere"), std::string::npos) << r.status();
}

// Found by the power-cut harness (world of 2, PowerLossTest.WorldOfTwoProcesses...): a rank
// that lost the race to make the writer lease removes its scratch file ("writer.lease.new...")
// with an unlink the other rank's sync of the root had not covered; a cut brings the file back,
// and nothing removed it: after a few dozen cuts the root held a few dozen of them. Now the next
// writer removes the scratch files of makers gone from this machine.
TEST_F(PowerLossLayerTest, ALeaseScratchFileACutBringsBackIsRemovedByTheNextWriter) {
  // A maker that is gone: a child process, its start time read before it is reaped.
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ::pause();
    ::_exit(0);
  }
  std::string stat = Read("/proc/" + std::to_string(child) + "/stat");
  std::istringstream fields(stat.substr(stat.rfind(')') + 2));
  std::string field;
  for (int i = 3; i <= 22; ++i) fields >> field;  // field 22: the start time
  ::kill(child, SIGKILL);
  ::waitpid(child, nullptr, 0);
  char host[256] = {};
  ::gethostname(host, sizeof(host) - 1);
  const std::string scratch = root_ + "/writer.lease.new." + host + "." + std::to_string(child) +
                              "." + field + ".00112233aabbccdd";

  const int fd = CurrentFileOps().CreateFile(scratch, O_WRONLY);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(CurrentFileOps().SyncFile(fd, scratch), 0);
  ::close(fd);
  ASSERT_TRUE(SyncDirectory(root_).ok());          // the winner's sync of the root
  ASSERT_EQ(CurrentFileOps().Unlink(scratch), 0);  // the loser's unlink, never synced
  Cut();
  ASSERT_TRUE(fs::exists(scratch)) << "the cut was to bring the scratch file back";

  StatusOr<std::unique_ptr<WriterLease>> lease = WriterLease::Acquire(root_);
  ASSERT_TRUE(lease.ok()) << lease.status();
  EXPECT_FALSE(fs::exists(scratch)) << "the next writer left " << scratch;
}

}  // namespace
}  // namespace dcpkv::testing

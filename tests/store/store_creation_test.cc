// Creating a rank database while other processes create the same one (two jobs started on one
// fresh root, a relaunch racing the old job): one database is made, every creator either opens it
// or is refused because another writer holds it, and nothing is left half made.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <string>
#include <vector>

#include "dcpkv/store/chunk_store.h"
#include "dcpkv/store/store_layout.h"
#include "tests/util/racers.h"
#include "tests/util/temp_dir.h"
#include "tests/util/test_data.h"

namespace dcpkv {
namespace {

constexpr int kCreators = 6;
constexpr int kRounds = 8;

// Exit codes of dcpkv_store_racer.
constexpr int kOpenedAndWrote = 0;
constexpr int kRefused = 10;

// Runs kCreators creators of `dir` (dcpkv_store_racer processes) released at once; returns how
// many opened it.
int RaceCreators(const std::string& dir, const std::string& scratch) {
  static int races = 0;
  const std::string go = scratch + "/go-" + std::to_string(races++);
  std::vector<testing::Racer> racers;
  for (int i = 0; i < kCreators; ++i) {
    racers.push_back(testing::StartRacer(DCPKV_STORE_RACER_PATH,
                                         {"create", dir, std::to_string(i), go}, {},
                                         scratch + "/creator-" + std::to_string(i) + ".out"));
  }
  testing::Go(go);
  int opened = 0;
  for (const testing::Racer& racer : racers) {
    const int code = testing::WaitRacer(racer);
    EXPECT_TRUE(code == kOpenedAndWrote || code == kRefused)
        << "creator exit " << code << ": " << racer.Output();
    if (code == kOpenedAndWrote) ++opened;
  }
  return opened;
}

// Nothing but the rank directories (and no creator's temporary directory) is left in `root`, and
// the database at `dir` opens read-only and holds what the creators that opened it wrote.
void ExpectOneWholeDatabase(const std::string& root, const std::string& dir, int opened) {
  for (const auto& e : std::filesystem::directory_iterator(root)) {
    EXPECT_THAT(e.path().filename().string(), ::testing::Not(::testing::HasSubstr(".creating")));
  }
  EXPECT_TRUE(std::filesystem::exists(dir + "/CURRENT"));
  std::unique_ptr<ChunkStore> store;
  Status s = ChunkStore::Open(dir, {.mode = OpenMode::kReadOnly}, &store);
  ASSERT_TRUE(s.ok()) << s;
  StatusOr<std::vector<std::string>> ids = store->ListChunkCheckpointIds();
  ASSERT_TRUE(ids.ok()) << ids.status();
  EXPECT_EQ(static_cast<int>(ids->size()), opened);
}

TEST(StoreCreationTest, CreatorsRacingOnAFreshRootMakeOneDatabase) {
  for (int round = 0; round < kRounds; ++round) {
    testing::TempDir tmp;
    testing::TempDir scratch;
    const std::string dir = RankDirectory(tmp.path(), 0);
    const int opened = RaceCreators(dir, scratch.path());
    EXPECT_GE(opened, 1) << "round " << round;
    ExpectOneWholeDatabase(tmp.path(), dir, opened);
  }
}

// The race for a new rank next to a rank that holds a committed checkpoint leaves that checkpoint
// readable.
TEST(StoreCreationTest, ARaceForANewRankLeavesTheCommittedRankReadable) {
  testing::TempDir tmp;
  const std::string committed = RankDirectory(tmp.path(), 0);
  {
    std::unique_ptr<ChunkStore> store;
    ASSERT_TRUE(ChunkStore::Open(committed, {}, &store).ok());
    ASSERT_TRUE(store->PutManifest({"step-1", 1, "metadata"}).ok());
    ASSERT_TRUE(store->Close().ok());
  }
  testing::TempDir scratch;
  for (int round = 0; round < kRounds; ++round) {
    const std::string dir = RankDirectory(tmp.path(), 1 + round);
    const int opened = RaceCreators(dir, scratch.path());
    EXPECT_GE(opened, 1);
    std::unique_ptr<ChunkStore> store;
    ASSERT_TRUE(ChunkStore::Open(committed, {.mode = OpenMode::kReadOnly}, &store).ok());
    StatusOr<std::vector<std::string>> manifests = store->ListManifestIds();
    ASSERT_TRUE(manifests.ok()) << manifests.status();
    EXPECT_THAT(*manifests, ::testing::ElementsAre("step-1"));
  }
  for (const auto& e : std::filesystem::directory_iterator(tmp.path())) {
    const std::string name = e.path().filename().string();
    EXPECT_THAT(name, ::testing::Not(::testing::HasSubstr(".creating")));
    EXPECT_TRUE(std::filesystem::exists(e.path() / "CURRENT")) << name << " has no CURRENT";
  }
}

// A creation that a crash interrupted leaves its temporary directory; the next creation on the
// same machine removes it once its process is gone.
TEST(StoreCreationTest, AnAbandonedCreationIsRemovedByTheNextOne) {
  testing::TempDir tmp;
  const std::string dir = RankDirectory(tmp.path(), 0);
  // A process that is gone: a racer that stopped at once (bad usage).
  testing::TempDir scratch;
  const testing::Racer gone =
      testing::StartRacer(DCPKV_STORE_RACER_PATH, {}, {}, scratch.path() + "/gone.out");
  ASSERT_EQ(testing::WaitRacer(gone), 2);
  const pid_t child = gone.pid;
  char host[256] = {};
  ASSERT_EQ(::gethostname(host, sizeof(host) - 1), 0);
  const std::string abandoned =
      dir + ".creating." + host + "." + std::to_string(child) + ".12345.0123456789abcdef";
  std::filesystem::create_directories(abandoned + "/half-made");
  // Someone else's creation in progress (another machine's, recent) is left alone.
  const std::string elsewhere = dir + ".creating.other-host.1.1.fedcba9876543210";
  std::filesystem::create_directories(elsewhere);
  std::unique_ptr<ChunkStore> store;
  ASSERT_TRUE(ChunkStore::Open(dir, {}, &store).ok());
  ASSERT_TRUE(store->Close().ok());
  EXPECT_FALSE(std::filesystem::exists(abandoned));
  EXPECT_TRUE(std::filesystem::exists(elsewhere));
}

}  // namespace
}  // namespace dcpkv

// A store's files follow its live data, not the number of commits: a thousand one-shot commits
// (open, save a little, commit, close, as `dcpkv import` or a short job does) leave a bounded
// number of files in the rank directory, and an open store holds a bounded number of them open.
#include <gtest/gtest.h>

#include <dirent.h>

#include <filesystem>
#include <map>
#include <string>

#include "dcpkv/core/manifest_record_codec.h"
#include "dcpkv/store/chunk_store.h"
#include "dcpkv/store/store_layout.h"
#include "tests/util/temp_dir.h"
#include "tests/util/test_data.h"

namespace dcpkv {
namespace {

// Files in `dir` by kind: "sst", "blob", "log" (write-ahead logs), "other".
std::map<std::string, int> CountFiles(const std::string& dir) {
  std::map<std::string, int> n;
  for (const auto& e : std::filesystem::recursive_directory_iterator(dir)) {
    if (!e.is_regular_file()) continue;
    const std::string ext = e.path().extension().string();
    if (ext == ".sst" || ext == ".blob" || ext == ".log") {
      ++n[ext.substr(1)];
    } else {
      ++n["other"];
    }
  }
  return n;
}

int OpenDescriptors() {
  int n = 0;
  for (const auto& e : std::filesystem::directory_iterator("/proc/self/fd")) {
    (void)e;
    ++n;
  }
  return n;
}

class FileCountTest : public ::testing::TestWithParam<ChunkWritePath> {};

TEST_P(FileCountTest, AThousandOneShotCommitsLeaveABoundedNumberOfFiles) {
  testing::TempDir tmp;
  const std::string dir = RankDirectory(tmp.path(), 0);
  ChunkStoreOptions options;
  options.write_path = GetParam();
  const ShardGeometry g{DType::kUInt8, {0}, {4096}};
  constexpr int kCommits = 1000;
  for (int i = 0; i < kCommits; ++i) {
    const std::string id = "step-" + std::to_string(i);
    std::unique_ptr<ChunkStore> store;
    Status opened = ChunkStore::Open(dir, options, &store);
    ASSERT_TRUE(opened.ok()) << opened;
    std::vector<uint8_t> data = testing::RandomBytes(4096, i);
    ASSERT_TRUE(store->PutShard(id, "w", g, data.data(), data.size()).ok());
    if (options.write_path == ChunkWritePath::kWriteBatch) {
      ASSERT_TRUE(store->Flush().ok());
    }
    ASSERT_TRUE(store->PutManifest(ManifestRecord{id, i, "metadata of " + id}).ok());
    ASSERT_TRUE(store->Close().ok());
  }
  const std::map<std::string, int> files = CountFiles(dir);
  int total = 0;
  for (const auto& [kind, n] : files) total += n;
  std::string listing;
  for (const auto& [kind, n] : files) listing += kind + "=" + std::to_string(n) + " ";
  RecordProperty("files", listing);
  EXPECT_LE(total, 40) << listing;

  const int fds_before = OpenDescriptors();
  std::unique_ptr<ChunkStore> store;
  ASSERT_TRUE(ChunkStore::Open(dir, options, &store).ok());
  const int fds_open = OpenDescriptors() - fds_before;
  EXPECT_LE(fds_open, 40) << listing;
  StatusOr<std::vector<std::string>> ids = store->ListChunkCheckpointIds();
  ASSERT_TRUE(ids.ok()) << ids.status();
  EXPECT_EQ(ids->size(), size_t{kCommits});
  StatusOr<std::vector<std::string>> manifests = store->ListManifestIds();
  ASSERT_TRUE(manifests.ok()) << manifests.status();
  EXPECT_EQ(manifests->size(), size_t{kCommits});
  for (int i : {0, 499, 999}) {
    const std::string id = "step-" + std::to_string(i);
    std::vector<uint8_t> out(4096);
    ASSERT_TRUE(store->ReadShard(id, "w", g, out.data(), out.size()).ok()) << id;
    EXPECT_EQ(out, testing::RandomBytes(4096, i)) << id;
  }
  std::printf("files after %d commits: %s; descriptors of an open store: %d\n", kCommits,
              listing.c_str(), fds_open);
}

INSTANTIATE_TEST_SUITE_P(WritePaths, FileCountTest,
                         ::testing::Values(ChunkWritePath::kWriteBatch,
                                           ChunkWritePath::kIngestTableFiles),
                         [](const ::testing::TestParamInfo<ChunkWritePath>& info) {
                           return info.param == ChunkWritePath::kWriteBatch
                                      ? std::string("WriteBatch")
                                      : std::string("IngestTableFiles");
                         });

}  // namespace
}  // namespace dcpkv

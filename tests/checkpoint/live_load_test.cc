// Loading from a store whose writer keeps running: an evaluation job loads the latest
// checkpoint of a training job that goes on saving and compacting. The reader's read-only opens
// must survive the writer replacing the files they would read.
#include <gtest/gtest.h>

#include <filesystem>

#include "dcpkv/api/kv_storage.h"
#include "dcpkv/checkpoint.h"
#include "dcpkv/store/store_layout.h"
#include "tests/util/raw_db.h"
#include "tests/util/temp_dir.h"
#include "tests/util/test_data.h"

namespace dcpkv {
namespace {

// Compacts the store between reading the manifest (which opens the databases) and reading the
// data, as a writer running concurrently may.
class CompactingLoadPlanner : public DefaultLoadPlanner {
 public:
  explicit CompactingLoadPlanner(std::string dir) : dir_(std::move(dir)) {}
  StatusOr<LoadPlan> CreateLocalPlan() override {
    testing::RawDB(dir_).CompactEverything();
    compacted_ = true;
    return DefaultLoadPlanner::CreateLocalPlan();
  }
  bool compacted() const { return compacted_; }

 private:
  std::string dir_;
  bool compacted_ = false;
};

std::vector<std::string> BlobFiles(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    if (e.path().extension() == ".blob") out.push_back(e.path().filename().string());
  }
  return out;
}

TEST(LiveLoadTest, FilesReplacedByTheWritersCompactionAfterTheOpenAreReadAfterAReopen) {
  testing::TempDir tmp;
  const std::vector<uint8_t> w = testing::RandomBytes(1 << 20, 5);
  const std::vector<uint8_t> v = testing::RandomBytes(256 << 10, 6);
  for (const char* id : {"a", "b"}) {  // two flushes: files a compaction rewrites
    StateDict sd;
    sd.Set("w", Tensor::Wrap(DType::kUInt8, {w.size()}, const_cast<uint8_t*>(w.data())));
    sd.Set("v", Tensor::Wrap(DType::kUInt8, {v.size()}, const_cast<uint8_t*>(v.data())));
    SaveOptions o;
    o.checkpoint_id = id;
    o.store_root = tmp.path();
    ASSERT_TRUE(Save(sd, o).ok());
  }
  const std::string rank0 = RankDirectory(tmp.path(), 0);
  const std::vector<std::string> blobs_before = BlobFiles(rank0);

  std::vector<uint8_t> w_out(w.size()), v_out(v.size());
  StateDict sd;
  sd.Set("w", Tensor::Wrap(DType::kUInt8, {w_out.size()}, w_out.data()));
  sd.Set("v", Tensor::Wrap(DType::kUInt8, {v_out.size()}, v_out.data()));
  auto planner = std::make_shared<CompactingLoadPlanner>(rank0);
  LoadOptions o;
  o.checkpoint_id = "a";
  o.store_root = tmp.path();
  o.planner = planner;
  Status s = Load(sd, o);
  ASSERT_TRUE(planner->compacted());
  for (const std::string& blob : BlobFiles(rank0)) {
    EXPECT_TRUE(std::find(blobs_before.begin(), blobs_before.end(), blob) == blobs_before.end())
        << "the compaction kept " << blob << ": the test would not exercise a vanished file";
  }
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_EQ(w_out, w);
  EXPECT_EQ(v_out, v);
}

}  // namespace
}  // namespace dcpkv

// The public maintenance calls (dcpkv/maintenance.h) through libdcpkv.so, as a program that
// links only the installed library sees them: verify (a damaged byte found), diff, export to
// safetensors, remove and garbage collection.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

#include "dcpkv/catalog.h"
#include "dcpkv/checkpoint.h"
#include "dcpkv/maintenance.h"
#include "tests/util/temp_dir.h"

namespace dcpkv {
namespace {

namespace fs = std::filesystem;

class MaintenanceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = tmp_.Sub("store");
    std::mt19937 rng(5);
    for (uint8_t& b : w_) b = static_cast<uint8_t>(rng());
    for (size_t i = 0; i < v_.size(); ++i) v_[i] = static_cast<float>(i);
  }
  void SaveAs(const std::string& id) {
    StateDict sd;
    sd.Set("w", Tensor::Wrap(DType::kUInt8, {w_.size()}, w_.data()));
    sd.Set("v", Tensor::Wrap(DType::kFloat32, {v_.size()}, v_.data()));
    SaveOptions o;
    o.checkpoint_id = id;
    o.store_root = root_;
    o.incremental = false;
    ASSERT_TRUE(Save(sd, o).ok());
  }

  // Flips a bit of the middle of w's payload where a table file of rank 0 stores it.
  void DamageW() {
    const std::string pattern(reinterpret_cast<const char*>(w_.data()) + 3000, 64);
    for (const auto& f : fs::directory_iterator(root_ + "/rank-00000")) {
      if (f.path().extension() != ".sst") continue;
      std::fstream file(f.path(), std::ios::in | std::ios::out | std::ios::binary);
      std::string data((std::istreambuf_iterator<char>(file)), {});
      const size_t at = data.find(pattern);
      if (at == std::string::npos) continue;
      file.seekp(static_cast<std::streamoff>(at + 32));
      const char flipped = static_cast<char>(data[at + 32] ^ 0x10);
      file.write(&flipped, 1);
      return;
    }
    FAIL() << "w's payload is in no table file";
  }

  testing::TempDir tmp_;
  std::string root_;
  std::vector<uint8_t> w_ = std::vector<uint8_t>(1 << 16);
  std::vector<float> v_ = std::vector<float>(1000);
};

TEST_F(MaintenanceTest, VerifyFindsADamagedByteAndNamesIt) {
  SaveAs("a");
  StatusOr<StoreVerification> clean = VerifyStore(root_);
  ASSERT_TRUE(clean.ok()) << clean.status();
  EXPECT_TRUE(clean->ok());
  EXPECT_EQ(clean->checkpoints, 1u);
  EXPECT_EQ(clean->tensors, 2u);
  EXPECT_EQ(clean->bytes, w_.size() + 4 * v_.size());
  DamageW();
  StatusOr<StoreVerification> damaged = VerifyStore(root_, {"latest"});
  ASSERT_TRUE(damaged.ok()) << damaged.status();
  ASSERT_FALSE(damaged->ok());
  EXPECT_EQ(damaged->problems[0].checkpoint_id, "a");
  EXPECT_NE(damaged->problems[0].description.find("checkpoint \"a\""), std::string::npos)
      << damaged->problems[0].description;
  EXPECT_EQ(VerifyStore(root_, {"absent"}).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(VerifyStore(tmp_.Sub("nothing")).status().code(), StatusCode::kNotFound);
}

TEST_F(MaintenanceTest, DiffExportRemoveAndGc) {
  SaveAs("a");
  v_[7] += 2.5f;
  SaveAs("b");
  StatusOr<CheckpointDifference> diff = DiffStoredCheckpoints(root_, "a", "latest");
  ASSERT_TRUE(diff.ok()) << diff.status();
  EXPECT_EQ(diff->b, "b");
  ASSERT_EQ(diff->entries.size(), 2u);
  EXPECT_EQ(diff->entries[0].fqn, "v");
  EXPECT_EQ(diff->entries[0].kind, "changed");
  EXPECT_EQ(diff->entries[0].elements_changed, 1u);
  EXPECT_DOUBLE_EQ(diff->entries[0].max_abs_diff, 2.5);
  EXPECT_EQ(diff->entries[1].kind, "unchanged");

  const std::string path = tmp_.Sub("b.safetensors");
  StatusOr<SafetensorsExport> exported = ExportCheckpointToSafetensors(root_, "b", path);
  ASSERT_TRUE(exported.ok()) << exported.status();
  EXPECT_EQ(exported->tensors, 2u);
  EXPECT_EQ(exported->file_bytes, fs::file_size(path));
  EXPECT_GT(exported->file_bytes, w_.size() + 4 * v_.size());

  StatusOr<StoreCleanup> removed = RemoveStoredCheckpoints(root_, {"a"});
  ASSERT_TRUE(removed.ok()) << removed.status();
  EXPECT_EQ(removed->removed_ids, std::vector<std::string>{"a"});
  EXPECT_EQ(removed->reclaimed_ids, std::vector<std::string>{"a"});
  EXPECT_EQ(removed->payload_bytes_deleted, w_.size() + 4 * v_.size());
  StatusOr<std::vector<CheckpointSummary>> left = ListCommittedCheckpoints(root_);
  ASSERT_TRUE(left.ok());
  ASSERT_EQ(left->size(), 1u);
  EXPECT_EQ((*left)[0].checkpoint_id, "b");
  EXPECT_EQ(RemoveStoredCheckpoints(root_, {"a"}).status().code(), StatusCode::kNotFound);
  StatusOr<StoreCleanup> gc = CollectStoreGarbage(root_);
  ASSERT_TRUE(gc.ok()) << gc.status();
  EXPECT_TRUE(gc->reclaimed_ids.empty());
}

}  // namespace
}  // namespace dcpkv

// The replica's logic without a network: ReplicaStore validates and stores exactly what the gRPC
// service would, so the service itself only translates messages and statuses.
#include "replication/replica_store.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>

#include "replication/record_hash.h"
#include "tests/replication/replica_test_util.h"
#include "tests/util/temp_dir.h"

namespace dcpkv::replication {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

TEST(ReplicaStoreTest, StoresListsAndDeletesPerNamespace) {
  testing::TempDir tmp;
  ReplicaStore store(tmp.path());
  const std::string a = EncodeManifestRecord(testing::TestRecord("step-1", 1));
  const std::string b = EncodeManifestRecord(testing::TestRecord("step-1", 2));
  ASSERT_TRUE(store.Put("job-a", "step-1", a, RecordHashHex(a)).ok());
  ASSERT_TRUE(store.Put("job-b", "step-1", b, RecordHashHex(b)).ok());
  EXPECT_EQ(*store.Get("job-a", "step-1"), a);
  EXPECT_EQ(*store.Get("job-b", "step-1"), b);
  EXPECT_THAT(*store.List("job-a"), ElementsAre("step-1"));
  EXPECT_TRUE(store.List("job-c")->empty());
  ASSERT_TRUE(store.Delete("job-a", "step-1").ok());
  EXPECT_EQ(store.Get("job-a", "step-1").status().code(), StatusCode::kNotFound);
  EXPECT_TRUE(store.Delete("job-a", "step-1").ok());
  EXPECT_EQ(*store.Get("job-b", "step-1"), b);
}

TEST(ReplicaStoreTest, RejectsBadRequestsBeforeTouchingStorage) {
  testing::TempDir tmp;
  const std::string root = tmp.Sub("root");
  std::filesystem::create_directories(root);
  ReplicaStore store(root);
  const std::string good = EncodeManifestRecord(testing::TestRecord("step-1"));
  std::string flipped = good;
  flipped[flipped.size() / 2] ^= 1;
  struct Case {
    std::string ns, id, record, hash, what;
  } cases[] = {
      {"../escape", "step-1", good, RecordHashHex(good), "namespace"},
      {"", "step-1", good, RecordHashHex(good), "namespace"},
      {std::string(200, 'n'), "step-1", good, RecordHashHex(good), "namespace"},
      {"job", "bad\\nid", good, RecordHashHex(good), "id"},
      {"job", "step-2", good, RecordHashHex(good), "step-2"},
      {"job", "step-1", "garbage", RecordHashHex("garbage"), ""},
      {"job", "step-1", good, RecordHashHex(good.substr(1)), "XXH3-128 does not match"},
      {"job", "step-1", flipped, RecordHashHex(flipped), ""},
  };
  for (const Case& c : cases) {
    Status s = store.Put(c.ns, c.id, c.record, c.hash);
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << c.ns << " " << c.id << ": " << s;
    if (!c.what.empty()) {
      EXPECT_THAT(s.message(), HasSubstr(c.what)) << s;
    }
  }
  // Nothing was written, and nothing appeared next to the root.
  EXPECT_TRUE(std::filesystem::is_empty(root));
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(tmp.path()), {}), 1);
}

}  // namespace
}  // namespace dcpkv::replication

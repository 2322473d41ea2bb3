// The replica's logic without a network: ReplicaStore validates and stores exactly what the gRPC
// service would, so the service itself only translates messages and statuses.
#include "dcpkv/replication/internal/replica_store.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "dcpkv/replication/internal/record_hash.h"
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

// The calls a replica's gRPC handlers make, from several threads at once and without gRPC: the
// "tsan" preset checks ReplicaStore here, since it suppresses every race reported on a thread of
// the uninstrumented gRPC library (tests/tsan.supp).
TEST(ReplicaStoreTest, ConcurrentCallsOnSharedAndOwnNamespaces) {
  testing::TempDir tmp;
  ReplicaStore store(tmp.path());
  constexpr int kThreads = 4;
  constexpr int kRounds = 5;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&store, t] {
      const std::string own = "job-" + std::to_string(t);
      for (int round = 0; round < kRounds; ++round) {
        const std::string id = "step-" + std::to_string(t) + "-" + std::to_string(round);
        const std::string record = EncodeManifestRecord(testing::TestRecord(id, round));
        for (const std::string& ns : {std::string("shared"), own}) {
          EXPECT_TRUE(store.Put(ns, id, record, RecordHashHex(record)).ok());
          StatusOr<std::string> got = store.Get(ns, id);
          EXPECT_TRUE(got.ok() && *got == record) << got.status();
          EXPECT_TRUE(store.List(ns).ok());
        }
        EXPECT_TRUE(store.Delete(own, id).ok());
      }
    });
  }
  for (std::thread& t : threads) t.join();
  StatusOr<std::vector<std::string>> shared = store.List("shared");
  ASSERT_TRUE(shared.ok()) << shared.status();
  EXPECT_EQ(shared->size(), size_t{kThreads * kRounds});
  for (int t = 0; t < kThreads; ++t) EXPECT_TRUE(store.List("job-" + std::to_string(t))->empty());
}

}  // namespace
}  // namespace dcpkv::replication

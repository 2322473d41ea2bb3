// Saves that replicate their manifests to real gRPC replicas on 127.0.0.1, and recovery of a
// store whose coordinator lost its manifests.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "dcpkv/api/kv_storage.h"
#include "dcpkv/catalog.h"
#include "dcpkv/checkpoint.h"
#include "dcpkv/checkpointer.h"
#include "dcpkv/replication/replica.h"
#include "dcpkv/replication/replicator.h"
#include "dcpkv/store/chunk_store.h"
#include "dcpkv/store/key_encoding.h"
#include "dcpkv/store/store_layout.h"
#include "tests/util/gloo_threads.h"
#include "tests/util/raw_db.h"
#include "tests/util/sharding.h"
#include "tests/util/temp_dir.h"
#include "tests/util/test_data.h"

namespace dcpkv::replication {
namespace {

using ::testing::HasSubstr;
using testing::TempDir;

std::unique_ptr<ReplicaServer> StartReplica(const std::string& root, const std::string& listen) {
  ReplicaServerOptions o;
  o.root = root;
  o.listen = listen;
  StatusOr<std::unique_ptr<ReplicaServer>> server = ReplicaServer::Start(o);
  EXPECT_TRUE(server.ok()) << server.status();
  return server.ok() ? std::move(server).value() : nullptr;
}

std::string Target(const ReplicaServer& s) { return "127.0.0.1:" + std::to_string(s.port()); }

// A model of 4 float32 tensors of 64 KiB, version `v` changes the first one.
struct Model {
  std::vector<std::vector<uint8_t>> tensors;
  explicit Model(int v) {
    for (int i = 0; i < 4; ++i) tensors.push_back(testing::RandomBytes(64 << 10, i == 0 ? v : i));
  }
  StateDict State() {
    StateDict sd;
    for (size_t i = 0; i < tensors.size(); ++i) {
      sd.Set("t" + std::to_string(i),
             Tensor::Wrap(DType::kUInt8, {tensors[i].size()}, tensors[i].data()));
    }
    return sd;
  }
};

StatusOr<Metadata> SaveVersion(const std::string& root, int v,
                               std::shared_ptr<ManifestReplication> replication,
                               int keep_last = 0) {
  Model m(v);
  StateDict sd = m.State();
  SaveOptions o;
  o.checkpoint_id = "v" + std::to_string(v);
  o.store_root = root;
  o.replication = std::move(replication);
  o.keep_last = keep_last;
  return Save(sd, o);
}

void ExpectLoads(const std::string& root, int v) {
  Model want(v);
  Model got(0);
  for (auto& t : got.tensors) std::fill(t.begin(), t.end(), 0);
  StateDict sd = got.State();
  LoadOptions o;
  o.checkpoint_id = "v" + std::to_string(v);
  o.store_root = root;
  Status s = Load(sd, o);
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_TRUE(got.tensors == want.tensors) << "v" << v;
}

std::shared_ptr<GrpcManifestReplication> Replicas(const std::vector<std::string>& targets,
                                                  ReplicationMode mode, const std::string& ns,
                                                  int quorum = 0) {
  ReplicatorOptions o;
  o.ns = ns;
  o.targets = targets;
  o.mode = mode;
  o.write_quorum = quorum;
  o.initial_backoff = std::chrono::milliseconds(20);
  o.max_backoff = std::chrono::milliseconds(200);
  o.client.deadline = std::chrono::seconds(2);
  StatusOr<std::shared_ptr<GrpcManifestReplication>> r = GrpcManifestReplication::Create(o);
  EXPECT_TRUE(r.ok()) << r.status();
  return r.ok() ? *r : nullptr;
}

std::string StateOf(const std::string& root, const std::string& id) {
  std::unique_ptr<ChunkStore> db;
  Status s = ChunkStore::Open(RankDirectory(root, 0), {.mode = OpenMode::kReadOnly}, &db);
  if (!s.ok()) return s.ToString();
  StatusOr<std::string> state = db->GetStoreValue(ReplicationStateKey(id));
  return state.ok() ? *state : state.status().ToString();
}

TEST(ReplicationTest, SyncSaveToTwoReplicasThenRecoverLostManifests) {
  TempDir tmp;
  const std::string root = tmp.Sub("store");
  auto a = StartReplica(tmp.Sub("replica-a"), "127.0.0.1:0");
  auto b = StartReplica(tmp.Sub("replica-b"), "127.0.0.1:0");
  ASSERT_TRUE(a && b);
  auto replicas = Replicas({Target(*a), Target(*b)}, ReplicationMode::kSync, "job-a");
  for (int v = 1; v <= 3; ++v) ASSERT_TRUE(SaveVersion(root, v, replicas).ok());
  EXPECT_EQ(StateOf(root, "v3"), "2/2 replicas");
  EXPECT_EQ(*replicas->State("v1"), "2/2 replicas");

  // The coordinator's database loses its manifests: nothing is committed any more.
  {
    testing::RawDB raw(RankDirectory(root, 0));
    for (int v = 1; v <= 3; ++v) {
      raw.Delete(testing::kRawManifestsCf, *EncodeManifestKey("v" + std::to_string(v)));
    }
  }
  ASSERT_TRUE(ListCommittedCheckpoints(root)->empty());

  StatusOr<RecoverReport> report = RecoverManifests(root, Target(*b), "job-a");
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_THAT(report->restored, ::testing::ElementsAre("v1", "v2", "v3"));
  EXPECT_TRUE(report->present.empty());
  for (int v = 1; v <= 3; ++v) ExpectLoads(root, v);
  // Again: nothing to restore.
  report = RecoverManifests(root, Target(*a), "job-a");
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_TRUE(report->restored.empty());
  EXPECT_EQ(report->present.size(), 3u);
}

TEST(ReplicationTest, SyncModeReportsTheShortfallAndTheCommitStands) {
  TempDir tmp;
  const std::string root = tmp.Sub("store");
  auto a = StartReplica(tmp.Sub("replica-a"), "127.0.0.1:0");
  auto b = StartReplica(tmp.Sub("replica-b"), "127.0.0.1:0");
  ASSERT_TRUE(a && b);
  const std::string down = Target(*b);
  b->Shutdown();
  b.reset();
  auto replicas = Replicas({Target(*a), down}, ReplicationMode::kSync, "job-a");
  StatusOr<Metadata> md = SaveVersion(root, 1, replicas);
  EXPECT_EQ(md.status().code(), StatusCode::kUnavailable) << md.status();
  EXPECT_THAT(md.status().message(), HasSubstr("committed and loadable"));
  EXPECT_THAT(md.status().message(), HasSubstr("reached 1 of 2 replicas"));
  EXPECT_THAT(md.status().message(), HasSubstr(down));
  ExpectLoads(root, 1);
  EXPECT_THAT(StateOf(root, "v1"), HasSubstr("1/2 replicas"));

  // A quorum of one is met by the replica that is up.
  auto quorum1 = Replicas({Target(*a), down}, ReplicationMode::kSync, "job-a", 1);
  EXPECT_TRUE(SaveVersion(root, 2, quorum1).ok());
}

TEST(ReplicationTest, AsyncModeRetriesAndCatchesUpAfterTheReplicaRestarts) {
  TempDir tmp;
  const std::string root = tmp.Sub("store");
  auto a = StartReplica(tmp.Sub("replica-a"), "127.0.0.1:0");
  auto b = StartReplica(tmp.Sub("replica-b"), "127.0.0.1:0");
  ASSERT_TRUE(a && b);
  const int b_port = b->port();
  b->Shutdown();
  b.reset();
  auto replicas = Replicas({Target(*a), "127.0.0.1:" + std::to_string(b_port)},
                           ReplicationMode::kAsync, "job-a");
  // A long-lived Checkpointer: its open store records the state as replication proceeds.
  auto checkpointer =
      std::move(Checkpointer::Create({.store_root = root, .replication = replicas}).value());
  for (int v = 1; v <= 2; ++v) {
    Model m(v);
    StateDict sd = m.State();
    ASSERT_TRUE(checkpointer->Save(sd, "v" + std::to_string(v)).ok());
  }
  // One replica has them, the other keeps failing.
  std::shared_future<Status> done = replicas->Completion("v2");
  EXPECT_EQ(done.wait_for(std::chrono::milliseconds(300)), std::future_status::timeout);
  // The reachable replica's acknowledgement may still be on its way (slow under sanitizers).
  for (auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
       std::chrono::steady_clock::now() < deadline;) {
    StatusOr<std::string> state = replicas->State("v2");
    if (state.ok() && state->find("1/2 replicas") != std::string::npos) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_THAT(*replicas->State("v2"), HasSubstr("1/2 replicas, retrying"));
  EXPECT_THAT(StateOf(root, "v2"), HasSubstr("/2 replicas, retrying"));

  // The replica comes back on its port (same root) and catches up.
  b = StartReplica(tmp.Sub("replica-b"), "127.0.0.1:" + std::to_string(b_port));
  ASSERT_TRUE(b);
  ASSERT_EQ(done.wait_for(std::chrono::seconds(20)), std::future_status::ready);
  EXPECT_TRUE(done.get().ok());
  EXPECT_TRUE(replicas->WaitIdle(std::chrono::seconds(20)).ok());
  EXPECT_EQ(*replicas->State("v1"), "2/2 replicas");
  EXPECT_EQ(StateOf(root, "v2"), "2/2 replicas");
  checkpointer.reset();
  ExpectLoads(root, 2);
  StatusOr<std::unique_ptr<ReplicaClient>> client = ReplicaClient::Connect(Target(*b), {});
  ASSERT_TRUE(client.ok());
  EXPECT_THAT(*(*client)->List("job-a"), ::testing::ElementsAre("v1", "v2"));
}

TEST(ReplicationTest, RetentionDeletesPropagateAndJobsStayApart) {
  TempDir tmp;
  auto a = StartReplica(tmp.Sub("replica-a"), "127.0.0.1:0");
  ASSERT_TRUE(a);
  auto job1 = Replicas({Target(*a)}, ReplicationMode::kSync, "job-1");
  auto job2 = Replicas({Target(*a)}, ReplicationMode::kSync, "job-2");
  // Two jobs with different stores save the same ids to one replica, at the same time.
  std::thread t1([&] {
    for (int v = 1; v <= 3; ++v) EXPECT_TRUE(SaveVersion(tmp.Sub("s1"), v, job1, 2).ok());
  });
  std::thread t2([&] {
    for (int v = 10; v <= 11; ++v) EXPECT_TRUE(SaveVersion(tmp.Sub("s2"), v, job2).ok());
  });
  t1.join();
  t2.join();
  StatusOr<std::unique_ptr<ReplicaClient>> client = ReplicaClient::Connect(Target(*a), {});
  ASSERT_TRUE(client.ok());
  // Retention (keep 2) deleted v1 locally and on the replica.
  EXPECT_THAT(*(*client)->List("job-1"), ::testing::ElementsAre("v2", "v3"));
  EXPECT_THAT(*(*client)->List("job-2"), ::testing::ElementsAre("v10", "v11"));
  StatusOr<ManifestRecord> r1 = (*client)->Get("job-1", "v2");
  StatusOr<ManifestRecord> r2 = (*client)->Get("job-2", "v2");
  ASSERT_TRUE(r1.ok()) << r1.status();
  EXPECT_EQ(r2.status().code(), StatusCode::kNotFound);
  // The replica's copy is the store's manifest, byte for byte.
  std::unique_ptr<ChunkStore> db;
  ASSERT_TRUE(
      ChunkStore::Open(RankDirectory(tmp.Sub("s1"), 0), {.mode = OpenMode::kReadOnly}, &db).ok());
  StatusOr<ManifestRecord> local = db->GetManifest("v2");
  ASSERT_TRUE(local.ok());
  EXPECT_EQ(local->payload, r1->payload);
}

}  // namespace
}  // namespace dcpkv::replication

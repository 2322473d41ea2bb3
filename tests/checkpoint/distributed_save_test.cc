// Save and load with several ranks as threads over gloo on 127.0.0.1: deduplication of
// replicated tensors, resharding to other world sizes and split dimensions, failures on one rank,
// collective timeouts, plan caching and subgroup saves.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <mutex>
#include <set>
#include <thread>

#include "dcpkv/api/kv_storage.h"
#include "dcpkv/catalog.h"
#include "dcpkv/checkpoint.h"
#include "dcpkv/checkpointer.h"
#include "dcpkv/core/plan_codec.h"
#include "dcpkv/gloo_process_group.h"
#include "dcpkv/store/chunk_store.h"
#include "dcpkv/store/store_layout.h"
#include "tests/util/gloo_threads.h"
#include "tests/util/sharding.h"
#include "tests/util/temp_dir.h"

namespace dcpkv {
namespace {

using testing::EmptyShardOf;
using ::testing::HasSubstr;
using testing::MakeGlobal;
using testing::RunOnGlooRanks;
using testing::SameBytes;
using testing::ShardOf;

// Which ranks' databases hold chunks of `fqn` in checkpoint `id`.
std::set<int> RanksHolding(const std::string& root, const std::string& id, const std::string& fqn) {
  std::set<int> out;
  const std::vector<int> ranks = *ListRankDirectories(root);
  for (int rank : ranks) {
    std::unique_ptr<ChunkStore> store;
    EXPECT_TRUE(
        ChunkStore::Open(RankDirectory(root, rank), {.mode = OpenMode::kReadOnly}, &store).ok());
    auto it = std::move(store->NewChunkIterator(id)).value();
    for (; it->Valid(); it->Next()) {
      if (it->key().fqn == fqn) out.insert(rank);
    }
    EXPECT_TRUE(it->status().ok()) << it->status();
  }
  return out;
}

std::vector<std::string> CommittedIds(const std::string& root) {
  std::vector<std::string> ids;
  StatusOr<std::vector<int>> ranks = ListRankDirectories(root);
  if (!ranks.ok()) return ids;
  for (int rank : *ranks) {
    std::unique_ptr<ChunkStore> store;
    if (!ChunkStore::Open(RankDirectory(root, rank), {.mode = OpenMode::kReadOnly}, &store).ok())
      continue;
    std::vector<std::string> committed = *store->ListManifestIds();
    ids.insert(ids.end(), committed.begin(), committed.end());
  }
  return ids;
}

SaveOptions SaveOn(ProcessGroup& pg, const std::string& root, const std::string& id) {
  SaveOptions o;
  o.checkpoint_id = id;
  o.store_root = root;
  o.process_group = &pg;
  return o;
}

LoadOptions LoadOn(ProcessGroup& pg, const std::string& root, const std::string& id) {
  LoadOptions o;
  o.checkpoint_id = id;
  o.store_root = root;
  o.process_group = &pg;
  return o;
}

struct ReshardCase {
  int save_world;
  int load_world;
  int save_dim;
  int load_dim;
  Shape shape;
};

class ReshardTest : public ::testing::TestWithParam<ReshardCase> {};

TEST_P(ReshardTest, LoadsElementByElementOnAnotherWorldAndSplit) {
  const ReshardCase c = GetParam();
  testing::TempDir tmp;
  const Tensor w = MakeGlobal(c.shape, 0.25f);
  const Tensor bias = MakeGlobal({7}, 3.0f);
  RunOnGlooRanks(c.save_world, [&](ProcessGroup& pg) {
    StateDict state;
    state.Set("w", ShardOf(w, c.save_dim, pg.size(), pg.rank()));
    state.Set("bias", testing::Slice(bias, {{0}, {7}}));  // replicated on every rank
    state.Set("step", Bytes{"step=9"});
    StatusOr<Metadata> md = Save(state, SaveOn(pg, tmp.path(), "ck"));
    ASSERT_TRUE(md.ok()) << md.status();
    EXPECT_EQ(md->entries.at("w").shards.size(), static_cast<size_t>(pg.size()));
    EXPECT_EQ(md->entries.at("bias").shards.size(), 1u);
  });
  EXPECT_EQ(RanksHolding(tmp.path(), "ck", "bias").size(), 1u) << "replicated tensor stored twice";

  RunOnGlooRanks(c.load_world, [&](ProcessGroup& pg) {
    ShardedTensor mine = EmptyShardOf(w, c.load_dim, pg.size(), pg.rank());
    Tensor my_bias = Tensor::Allocate(DType::kFloat32, {7});
    StateDict state;
    state.Set("w", mine);
    state.Set("bias", my_bias);
    state.Set("step", Bytes{});
    Status s = Load(state, LoadOn(pg, tmp.path(), "ck"));
    ASSERT_TRUE(s.ok()) << s;
    const Shard& shard = mine.local_shards[0];
    Tensor expected = testing::Slice(w, {shard.offsets, shard.tensor.shape()});
    const float* got = shard.tensor.data_as<float>();
    const float* want = expected.data_as<float>();
    for (uint64_t i = 0; i < expected.numel(); ++i) {
      ASSERT_EQ(got[i], want[i]) << "rank " << pg.rank() << " element " << i;
    }
    EXPECT_TRUE(SameBytes(my_bias, bias));
    EXPECT_EQ(std::get<Bytes>(*state.Find("step")).data, "step=9");
  });
}

INSTANTIATE_TEST_SUITE_P(
    Worlds, ReshardTest,
    ::testing::Values(ReshardCase{2, 3, 0, 0, {10, 6}},    // rows 2 -> 3
                      ReshardCase{2, 3, 1, 1, {10, 6}},    // columns 2 -> 3
                      ReshardCase{4, 1, 0, 0, {9, 7}},     // 4 -> 1, uneven rows
                      ReshardCase{4, 1, 1, 1, {9, 7}},     // 4 -> 1, uneven columns
                      ReshardCase{1, 4, 0, 0, {13, 5}},    // 1 -> 4
                      ReshardCase{1, 4, 1, 1, {13, 5}},    // 1 -> 4 columns
                      ReshardCase{2, 2, 0, 1, {8, 12}},    // rows -> columns
                      ReshardCase{2, 3, 2, 0, {4, 5, 7}},  // 3-D, last dim -> first dim
                      ReshardCase{4, 1, 1, 1, {6, 8, 3}}, ReshardCase{1, 4, 0, 2, {5, 3, 9}}),
    [](const ::testing::TestParamInfo<ReshardCase>& info) {
      const ReshardCase& c = info.param;
      return std::to_string(c.shape.size()) + "d_world" + std::to_string(c.save_world) + "dim" +
             std::to_string(c.save_dim) + "_to_world" + std::to_string(c.load_world) + "dim" +
             std::to_string(c.load_dim);
    });

TEST(DistributedSaveTest, ReplicatedTensorsAreBalancedByBytes) {
  testing::TempDir tmp;
  RunOnGlooRanks(4, [&](ProcessGroup& pg) {
    StateDict state;
    for (int i = 0; i < 4; ++i) state.Set("rep" + std::to_string(i), MakeGlobal({256}, float(i)));
    ASSERT_TRUE(Save(state, SaveOn(pg, tmp.path(), "ck")).ok());
  });
  std::set<int> owners;
  for (int i = 0; i < 4; ++i) {
    std::set<int> holders = RanksHolding(tmp.path(), "ck", "rep" + std::to_string(i));
    ASSERT_EQ(holders.size(), 1u);
    owners.insert(*holders.begin());
  }
  EXPECT_EQ(owners.size(), 4u) << "four equal replicated tensors should go to four ranks";
}

TEST(DistributedSaveTest, AnErrorOnOneRankFailsEveryRankAndCommitsNothing) {
  testing::TempDir tmp;
  std::mutex mu;
  std::vector<Status> results(3);
  RunOnGlooRanks(3, [&](ProcessGroup& pg) {
    StateDict state;
    state.Set("w", ShardOf(MakeGlobal({6, 2}, 0), 0, 3, pg.rank()));
    if (pg.rank() == 1) state.Set("broken", Tensor::Wrap(DType::kFloat32, {4}, nullptr));
    Status s = Save(state, SaveOn(pg, tmp.path(), "ck")).status();
    std::lock_guard<std::mutex> lock(mu);
    results[pg.rank()] = s;
  });
  for (int r = 0; r < 3; ++r) {
    EXPECT_EQ(results[r].code(), StatusCode::kInvalidArgument) << "rank " << r;
    EXPECT_THAT(results[r].message(), HasSubstr("failed on rank 1 of 3"));
    EXPECT_THAT(results[r].message(), HasSubstr("\"broken\""));
    EXPECT_EQ(results[r].message(), results[0].message()) << "ranks disagree";
  }
  EXPECT_TRUE(CommittedIds(tmp.path()).empty());
}

class FailingStateful : public Stateful {
 public:
  StatusOr<StateDict> state_dict() override { return AbortedError("optimizer not ready"); }
  Status load_state_dict(const StateDict&) override { return Status::Ok(); }
};

TEST(DistributedSaveTest, AFailingStatefulOnOneRankFailsEveryRank) {
  testing::TempDir tmp;
  std::atomic<int> failed{0};
  RunOnGlooRanks(2, [&](ProcessGroup& pg) {
    StateDict state;
    state.Set("w", MakeGlobal({4}, 1));
    if (pg.rank() == 0) state.Set("optim", std::shared_ptr<Stateful>(new FailingStateful));
    Status s = Save(state, SaveOn(pg, tmp.path(), "ck")).status();
    EXPECT_EQ(s.code(), StatusCode::kAborted);
    EXPECT_THAT(s.message(),
                HasSubstr("rank 0: ABORTED: state_dict() of \"optim\": optimizer not ready"));
    failed += !s.ok();
  });
  EXPECT_EQ(failed.load(), 2);
  EXPECT_TRUE(CommittedIds(tmp.path()).empty());
}

TEST(DistributedSaveTest, ARankThatNeverArrivesTimesOutInsteadOfHanging) {
  testing::TempDir tmp;
  std::atomic<bool> rank0_done{false};
  RunOnGlooRanks(2, [&](ProcessGroup& pg) {
    pg.set_timeout(std::chrono::milliseconds(1500));
    if (pg.rank() == 1) {  // never calls Save
      while (!rank0_done) std::this_thread::sleep_for(std::chrono::milliseconds(10));
      return;
    }
    StateDict state;
    state.Set("w", MakeGlobal({4}, 1));
    auto start = std::chrono::steady_clock::now();
    Status s = Save(state, SaveOn(pg, tmp.path(), "ck")).status();
    auto elapsed = std::chrono::steady_clock::now() - start;
    rank0_done = true;
    EXPECT_EQ(s.code(), StatusCode::kDeadlineExceeded) << s;
    EXPECT_LT(elapsed, std::chrono::seconds(15));
  });
  EXPECT_TRUE(CommittedIds(tmp.path()).empty());
}

TEST(DistributedSaveTest, PlanCachingSkipsThePlanExchange) {
  testing::TempDir tmp;
  RunOnGlooRanks(2, [&](ProcessGroup& pg) {
    auto checkpointer =
        std::move(Checkpointer::Create({.store_root = tmp.path(), .process_group = &pg}).value());
    StateDict state;
    for (int i = 0; i < 50; ++i) {
      state.Set("layers." + std::to_string(i) + ".weight",
                ShardOf(MakeGlobal({8, 4}, float(i)), 0, 2, pg.rank()));
    }
    // What a full local plan costs on the wire.
    DefaultSavePlanner probe;
    FlatStateDict flat;
    std::vector<StatefulBinding> bindings;
    ASSERT_TRUE(FlattenStateDict(state, &flat, &bindings).ok());
    ASSERT_TRUE(probe.SetUpPlanner(&flat, false).ok());
    const size_t plan_bytes = EncodeSavePlan(*probe.CreateLocalPlan()).size();

    uint64_t before = pg.bytes_sent();
    ASSERT_TRUE(checkpointer->Save(state, "s1").ok());
    const uint64_t first = pg.bytes_sent() - before;
    before = pg.bytes_sent();
    ASSERT_TRUE(checkpointer->Save(state, "s2").ok());
    const uint64_t second = pg.bytes_sent() - before;
    std::printf(
        "rank %d: bytes sent by the first save %llu, by the cached second %llu (plan %zu)\n",
        pg.rank(), static_cast<unsigned long long>(first), static_cast<unsigned long long>(second),
        plan_bytes);
    // Rank 1 no longer sends its local plan; the coordinator no longer scatters rank 1's final
    // plan: either way about one plan's bytes fewer. (The second save is incremental: its write
    // results and Metadata name the base, "s1", as the source of each unchanged chunk, a few
    // bytes per chunk; 50 chunks here.)
    const uint64_t reference_bytes = 3 * 50;
    EXPECT_LE(second + plan_bytes - 64 - reference_bytes, first)
        << "rank " << pg.rank() << ": the second save still sent a plan (first " << first
        << " bytes, second " << second << ", plan " << plan_bytes << ")";
    // A changed structure is planned afresh and still loads.
    state.Set("extra", MakeGlobal({3}, 5));
    ASSERT_TRUE(checkpointer->Save(state, "s3").ok());
    Tensor extra = Tensor::Allocate(DType::kFloat32, {3});
    StateDict target;
    target.Set("extra", extra);
    ASSERT_TRUE(checkpointer->Load(target, "s3").ok());
    EXPECT_TRUE(SameBytes(extra, MakeGlobal({3}, 5)));
  });
}

// One rank's plan changes while the other's does not: the coordinator combines the cached plan
// of one rank with the new plan of the other.
TEST(DistributedSaveTest, PlanCachingWithOneRankChanged) {
  testing::TempDir tmp;
  RunOnGlooRanks(2, [&](ProcessGroup& pg) {
    auto checkpointer =
        std::move(Checkpointer::Create({.store_root = tmp.path(), .process_group = &pg}).value());
    StateDict state;
    state.Set("w", ShardOf(MakeGlobal({8, 4}, 1.0f), 0, 2, pg.rank()));
    ASSERT_TRUE(checkpointer->Save(state, "s1").ok());
    // Rank 1 adds a tensor only it holds: its local plan changes, rank 0's does not.
    if (pg.rank() == 1) state.Set("only_on_1", MakeGlobal({5}, 7.0f));
    StatusOr<Metadata> md = checkpointer->Save(state, "s2");
    ASSERT_TRUE(md.ok()) << md.status();
    EXPECT_EQ(md->entries.size(), 2u);
    ASSERT_TRUE(checkpointer->Save(state, "s3").ok());  // now both cached
    ShardedTensor w = EmptyShardOf(MakeGlobal({8, 4}, 1.0f), 0, 2, pg.rank());
    Tensor extra = Tensor::Allocate(DType::kFloat32, {5});
    StateDict target;
    target.Set("w", w);
    target.Set("only_on_1", extra);
    ASSERT_TRUE(checkpointer->Load(target, "s3").ok());
    EXPECT_TRUE(SameBytes(extra, MakeGlobal({5}, 7.0f)));
    EXPECT_TRUE(
        SameBytes(w.local_shards[0].tensor,
                  ShardOf(MakeGlobal({8, 4}, 1.0f), 0, 2, pg.rank()).local_shards[0].tensor));
  });
}

// A storage writer whose PrepareGlobalPlan orders every plan's items by fqn, descending on every
// other save: the local plans come from the cache, but the final plans changed, and each rank
// must write in the order the writer chose.
class ReorderingWriter : public KvStorageWriter {
 public:
  using KvStorageWriter::KvStorageWriter;
  StatusOr<std::vector<SavePlan>> PrepareGlobalPlan(std::vector<SavePlan> plans) override {
    DCPKV_ASSIGN_OR_RETURN(plans, KvStorageWriter::PrepareGlobalPlan(std::move(plans)));
    for (SavePlan& plan : plans) {
      std::sort(plan.items.begin(), plan.items.end(), [this](const auto& a, const auto& b) {
        return reverse_next_ ? a.fqn > b.fqn : a.fqn < b.fqn;
      });
    }
    reverse_next_ = !reverse_next_;
    return plans;
  }
  // It changes more than storage data (without this the cached final plans would be reused).
  bool PrepareGlobalPlanChangesOnlyStorageData() const override { return false; }
  std::future<StatusOr<std::vector<WriteResult>>> WriteData(const SavePlan& plan,
                                                            SavePlanner& planner) override {
    first_written = plan.items.empty() ? "" : plan.items.front().fqn;
    return KvStorageWriter::WriteData(plan, planner);
  }
  std::string first_written;

 private:
  bool reverse_next_ = false;
};

TEST(DistributedSaveTest, PlanCachingSendsFinalPlansTheWriterChanged) {
  testing::TempDir tmp;
  RunOnGlooRanks(2, [&](ProcessGroup& pg) {
    auto writer = std::make_shared<ReorderingWriter>(KvStorageOptions{tmp.path(), {}});
    auto planner = std::make_shared<DefaultSavePlanner>(
        DefaultSavePlannerOptions{.enable_plan_caching = true});
    StateDict state;
    for (const char* name : {"a", "b", "c"}) {
      state.Set(name, ShardOf(MakeGlobal({8, 4}, float(name[0])), 0, 2, pg.rank()));
    }
    for (int step = 0; step < 4; ++step) {
      SaveOptions o = SaveOn(pg, tmp.path(), "s" + std::to_string(step));
      o.storage_writer = writer;
      o.planner = planner;
      StatusOr<Metadata> md = Save(state, o);
      ASSERT_TRUE(md.ok()) << md.status();
      // Only the coordinator's writer prepares the global plan; every rank writes in its order.
      EXPECT_EQ(writer->first_written, step % 2 == 0 ? "a" : "c")
          << "rank " << pg.rank() << " step " << step;
    }
    ShardedTensor b = EmptyShardOf(MakeGlobal({8, 4}, float('b')), 0, 2, pg.rank());
    StateDict target;
    target.Set("b", b);
    ASSERT_TRUE(Load(target, LoadOn(pg, tmp.path(), "s3")).ok());
    EXPECT_TRUE(
        SameBytes(b.local_shards[0].tensor,
                  ShardOf(MakeGlobal({8, 4}, float('b')), 0, 2, pg.rank()).local_shards[0].tensor));
  });
}

TEST(DistributedSaveTest, ASubgroupSavesWhileOtherRanksDoSomethingElse) {
  testing::TempDir tmp;
  const Tensor w = MakeGlobal({6, 4}, 2);
  RunOnGlooRanks(4, [&](ProcessGroup& pg) {
    const std::vector<int> members =
        pg.rank() % 2 ? std::vector<int>{1, 3} : std::vector<int>{0, 2};
    StatusOr<std::unique_ptr<ProcessGroup>> sub = CreateGlooSubgroup(pg, members);
    ASSERT_TRUE(sub.ok()) << sub.status();
    if (pg.rank() % 2 == 0) {
      ASSERT_TRUE((*sub)->Barrier().ok());  // the other half is busy with its own work
      return;
    }
    StateDict state;
    state.Set("w", ShardOf(w, 0, 2, (*sub)->rank()));
    StatusOr<Metadata> md = Save(state, SaveOn(**sub, tmp.path(), "hsdp"));
    ASSERT_TRUE(md.ok()) << md.status();
    EXPECT_EQ(md->world_size, 2);
  });
  Tensor back = Tensor::Allocate(DType::kFloat32, {6, 4});
  StateDict target;
  target.Set("w", back);
  LoadOptions o;
  o.checkpoint_id = "hsdp";
  o.store_root = tmp.path();
  ASSERT_TRUE(Load(target, o).ok());
  EXPECT_TRUE(SameBytes(back, w));
}

TEST(DistributedSaveTest, WithoutCollectivesEveryRankCommitsItsPartAndTheWholeLoads) {
  testing::TempDir tmp;
  const Tensor w = MakeGlobal({9, 4}, 1);
  const Tensor bias = MakeGlobal({4}, 8);
  RunOnGlooRanks(2, [&](ProcessGroup& pg) {
    StateDict state;
    state.Set("w", ShardOf(w, 0, 2, pg.rank()));
    state.Set("bias", testing::Slice(bias, {{0}, {4}}));
    SaveOptions o = SaveOn(pg, tmp.path(), "parts");
    o.use_collectives = false;
    const uint64_t sent_before = pg.bytes_sent();
    StatusOr<Metadata> md = Save(state, o);
    ASSERT_TRUE(md.ok()) << md.status();
    EXPECT_TRUE(md->per_rank_commit);
    EXPECT_EQ(md->entries.at("w").shards.size(), 1u) << "a part holds only this rank's shard";
    EXPECT_LT(pg.bytes_sent() - sent_before, 64u) << "no plans were exchanged";
  });
  EXPECT_EQ(RanksHolding(tmp.path(), "parts", "bias").size(), 2u) << "no dedup without collectives";
  StatusOr<std::vector<CheckpointSummary>> listed = ListCommittedCheckpoints(tmp.path());
  ASSERT_TRUE(listed.ok());
  ASSERT_EQ(listed->size(), 1u);
  EXPECT_EQ((*listed)[0].num_tensors, 2u);

  RunOnGlooRanks(3, [&](ProcessGroup& pg) {
    ShardedTensor mine = EmptyShardOf(w, 1, 3, pg.rank());
    Tensor my_bias = Tensor::Allocate(DType::kFloat32, {4});
    StateDict state;
    state.Set("w", mine);
    state.Set("bias", my_bias);
    Status s = Load(state, LoadOn(pg, tmp.path(), "parts"));
    ASSERT_TRUE(s.ok()) << s;
    const Shard& shard = mine.local_shards[0];
    EXPECT_TRUE(SameBytes(shard.tensor, testing::Slice(w, {shard.offsets, shard.tensor.shape()})));
    EXPECT_TRUE(SameBytes(my_bias, bias));
  });
}

TEST(DistributedSaveTest, WithoutCollectivesAFailedPartLeavesTheCheckpointUncommitted) {
  testing::TempDir tmp;
  RunOnGlooRanks(2, [&](ProcessGroup& pg) {
    StateDict state;
    state.Set("w", ShardOf(MakeGlobal({4, 4}, 0), 0, 2, pg.rank()));
    if (pg.rank() == 1) state.Set("broken", Tensor::Wrap(DType::kFloat32, {2}, nullptr));
    SaveOptions o = SaveOn(pg, tmp.path(), "parts");
    o.use_collectives = false;
    Status s = Save(state, o).status();
    EXPECT_EQ(s.ok(), pg.rank() == 0) << s;  // each rank reports its own outcome
  });
  Tensor back = Tensor::Allocate(DType::kFloat32, {4, 4});
  StateDict target;
  target.Set("w", back);
  LoadOptions o;
  o.checkpoint_id = "parts";
  o.store_root = tmp.path();
  Status s = Load(target, o);
  EXPECT_EQ(s.code(), StatusCode::kNotFound);
  EXPECT_THAT(s.message(), HasSubstr("incomplete: ranks 1 did not commit their part"));
  EXPECT_TRUE(ListCommittedCheckpoints(tmp.path())->empty());
}

}  // namespace
}  // namespace dcpkv

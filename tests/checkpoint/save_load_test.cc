// Save and load in one process (no process group): values, nesting, Stateful, bytes, errors.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <thread>

#include "dcpkv/catalog.h"
#include "dcpkv/checkpoint.h"
#include "dcpkv/store/store_layout.h"
#include "dcpkv/store/writer_lease.h"
#include "tests/util/sharding.h"
#include "tests/util/temp_dir.h"
#include "tests/util/test_data.h"

namespace dcpkv {
namespace {

using ::testing::HasSubstr;
using testing::MakeGlobal;
using testing::SameBytes;

Tensor RandomTensor(DType dtype, Shape shape, uint64_t seed) {
  Tensor t = Tensor::Allocate(dtype, std::move(shape));
  std::vector<uint8_t> bytes = testing::RandomBytes(t.nbytes(), seed);
  if (t.nbytes()) std::memcpy(t.data(), bytes.data(), t.nbytes());
  return t;
}

// A Stateful optimizer-like object holding one tensor and a step counter.
class Counter : public Stateful {
 public:
  explicit Counter(int64_t step) : step_(step), momentum_(MakeGlobal({4, 3}, float(step))) {}
  StatusOr<StateDict> state_dict() override {
    StateDict d;
    d.Set("momentum", momentum_);
    d.Set("step", Bytes{std::to_string(step_)});
    return d;
  }
  Status load_state_dict(const StateDict& state) override {
    const auto* step = std::get_if<Bytes>(state.Find("step"));
    if (step == nullptr) return InvalidArgumentError("no step");
    step_ = std::stoll(step->data);
    ++loads_;
    return Status::Ok();
  }
  int64_t step_;
  Tensor momentum_;
  int loads_ = 0;
};

class SaveLoadTest : public ::testing::Test {
 protected:
  SaveOptions SaveTo(const std::string& id) {
    SaveOptions o;
    o.checkpoint_id = id;
    o.store_root = tmp_.path();
    return o;
  }
  LoadOptions LoadFrom(const std::string& id) {
    LoadOptions o;
    o.checkpoint_id = id;
    o.store_root = tmp_.path();
    return o;
  }
  testing::TempDir tmp_;
};

TEST_F(SaveLoadTest, RoundTripOfEveryDTypeNestingBytesAndStateful) {
  StateDict model;
  std::vector<Tensor> originals;
  for (DType d : kAllDTypes) {
    if (d == DType::kBytes) continue;
    originals.push_back(RandomTensor(d, {3, 5, 2}, static_cast<uint64_t>(d)));
    model.Set(std::string(DTypeName(d)), originals.back());
  }
  model.Set("scalar", RandomTensor(DType::kFloat64, {}, 99));
  model.Set("empty", Tensor::Allocate(DType::kFloat32, {0, 8}));
  auto counter = std::make_shared<Counter>(41);
  StateDict state;
  state.SetDict("model", std::move(model));
  state.Set("optim", std::static_pointer_cast<Stateful>(counter));
  state.Set("config", Bytes{std::string("lr=0.1\0binary", 13)});

  StatusOr<Metadata> md = Save(state, SaveTo("step-41"));
  ASSERT_TRUE(md.ok()) << md.status();
  EXPECT_EQ(md->checkpoint_id, "step-41");
  EXPECT_EQ(md->world_size, 1);
  EXPECT_TRUE(md->entries.count("model.float32"));
  EXPECT_TRUE(md->entries.count("optim.momentum"));
  EXPECT_TRUE(md->entries.at("optim.step").is_bytes());
  EXPECT_GT(md->committed_unix_micros, 0);

  // Load into fresh zero tensors of the same structure.
  StateDict target_model;
  std::vector<Tensor> targets;
  for (DType d : kAllDTypes) {
    if (d == DType::kBytes) continue;
    targets.push_back(Tensor::Allocate(d, {3, 5, 2}));
    target_model.Set(std::string(DTypeName(d)), targets.back());
  }
  Tensor scalar = Tensor::Allocate(DType::kFloat64, {});
  target_model.Set("scalar", scalar);
  target_model.Set("empty", Tensor::Allocate(DType::kFloat32, {0, 8}));
  auto restored = std::make_shared<Counter>(0);
  StateDict target;
  target.SetDict("model", std::move(target_model));
  target.Set("optim", std::static_pointer_cast<Stateful>(restored));
  target.Set("config", Bytes{});
  Status s = Load(target, LoadFrom("step-41"));
  ASSERT_TRUE(s.ok()) << s;
  for (size_t i = 0; i < targets.size(); ++i) {
    EXPECT_TRUE(SameBytes(targets[i], originals[i])) << DTypeName(targets[i].dtype());
  }
  EXPECT_EQ(
      *scalar.data_as<double>(),
      *std::get<Tensor>(*std::get<std::shared_ptr<StateDict>>(*state.Find("model"))->Find("scalar"))
           .data_as<double>());
  EXPECT_EQ(restored->step_, 41);
  EXPECT_EQ(restored->loads_, 1);
  EXPECT_TRUE(SameBytes(restored->momentum_, counter->momentum_));
  EXPECT_EQ(std::get<Bytes>(*target.Find("config")).data, std::string("lr=0.1\0binary", 13));
}

TEST_F(SaveLoadTest, ACommittedCheckpointIsNeverOverwritten) {
  Tensor w = MakeGlobal({16}, 1);
  StateDict state;
  state.Set("w", w);
  ASSERT_TRUE(Save(state, SaveTo("v1")).ok());
  Tensor other = MakeGlobal({16}, 2);
  StateDict changed;
  changed.Set("w", other);
  StatusOr<Metadata> again = Save(changed, SaveTo("v1"));
  EXPECT_EQ(again.status().code(), StatusCode::kAlreadyExists);
  EXPECT_THAT(again.status().message(), HasSubstr("already committed"));
  Tensor back = Tensor::Allocate(DType::kFloat32, {16});
  StateDict target;
  target.Set("w", back);
  ASSERT_TRUE(Load(target, LoadFrom("v1")).ok());
  EXPECT_TRUE(SameBytes(back, w));
}

// Another job's live writer lease on the root (here: another machine's, touched just now): a
// save fails at once naming it, before creating anything; once that lease expired, the save
// takes it over.
TEST_F(SaveLoadTest, ASaveIntoARootAnotherJobHoldsIsRefusedNamingTheJob) {
  const std::string lease_path = tmp_.path() + "/" + kWriterLeaseFileName;
  std::ofstream(lease_path) << "dcpkv writer lease 1\njob=torchelastic:other-run\nmaintenance=0\n"
                               "host=node-17\nboot_id=another-machine\npid=31337\npid_start=9\n"
                               "since=1764900000\nnonce=00000000000000bb\n";
  Tensor w = MakeGlobal({16}, 1);
  StateDict state;
  state.Set("w", w);
  StatusOr<Metadata> refused = Save(state, SaveTo("v1"));
  EXPECT_EQ(refused.status().code(), StatusCode::kFailedPrecondition) << refused.status();
  EXPECT_THAT(refused.status().message(),
              HasSubstr("job \"torchelastic:other-run\" (host node-17, pid 31337, since "
                        "2025-12-05T02:00:00Z"));
  EXPECT_FALSE(std::filesystem::exists(RankDirectory(tmp_.path(), 0))) << "nothing was made";

  ::setenv("DCPKV_LEASE_EXPIRY_SECONDS", "1", 1);
  std::this_thread::sleep_for(std::chrono::milliseconds(1200));
  StatusOr<Metadata> saved = Save(state, SaveTo("v1"));
  ::unsetenv("DCPKV_LEASE_EXPIRY_SECONDS");
  ASSERT_TRUE(saved.ok()) << saved.status();
  EXPECT_FALSE(std::filesystem::exists(lease_path)) << "the save let go of the lease it took";
}

TEST_F(SaveLoadTest, LoadErrorsAreClear) {
  StateDict state;
  state.Set("w", MakeGlobal({4, 4}, 0));
  state.Set("b", Bytes{"x"});
  ASSERT_TRUE(Save(state, SaveTo("c")).ok());

  StateDict missing;
  missing.Set("nope", Tensor::Allocate(DType::kFloat32, {4, 4}));
  Status s = Load(missing, LoadFrom("c"));
  EXPECT_EQ(s.code(), StatusCode::kNotFound);
  EXPECT_THAT(s.message(), HasSubstr("\"nope\" is not in checkpoint \"c\""));

  StateDict wrong_dtype;
  wrong_dtype.Set("w", Tensor::Allocate(DType::kBFloat16, {4, 4}));
  s = Load(wrong_dtype, LoadFrom("c"));
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("dtype float32 in the checkpoint but bfloat16"));

  StateDict wrong_shape;
  wrong_shape.Set("w", Tensor::Allocate(DType::kFloat32, {4, 5}));
  EXPECT_THAT(Load(wrong_shape, LoadFrom("c")).message(), HasSubstr("global shape [4, 4]"));

  StateDict bytes_as_tensor;
  bytes_as_tensor.Set("b", Tensor::Allocate(DType::kUInt8, {1}));
  EXPECT_EQ(Load(bytes_as_tensor, LoadFrom("c")).code(), StatusCode::kInvalidArgument);

  EXPECT_EQ(Load(state, LoadFrom("never-saved")).code(), StatusCode::kNotFound);
  LoadOptions no_storage;
  no_storage.checkpoint_id = "c";
  EXPECT_THAT(Load(state, no_storage).message(),
              HasSubstr("neither storage_reader nor store_root"));

  // Non-strict: missing keys are skipped, present ones loaded.
  Tensor w = Tensor::Allocate(DType::kFloat32, {4, 4});
  StateDict partial;
  partial.Set("w", w);
  partial.Set("nope", Tensor::Allocate(DType::kFloat32, {2}));
  LoadOptions o = LoadFrom("c");
  o.planner = std::make_shared<DefaultLoadPlanner>(DefaultLoadPlannerOptions{true});
  ASSERT_TRUE(Load(partial, o).ok());
  EXPECT_TRUE(SameBytes(w, MakeGlobal({4, 4}, 0)));
}

TEST_F(SaveLoadTest, SaveRejectsBadInputAndCommitsNothing) {
  StateDict state;
  state.Set("w", Tensor::Wrap(DType::kFloat32, {4}, nullptr));
  StatusOr<Metadata> md = Save(state, SaveTo("bad"));
  EXPECT_EQ(md.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(md.status().message(), HasSubstr("\"w\""));

  StateDict bad_name;
  bad_name.Set("has space", MakeGlobal({2}, 0));
  EXPECT_EQ(Save(bad_name, SaveTo("bad")).status().code(), StatusCode::kInvalidArgument);

  StateDict ok;
  ok.Set("w", MakeGlobal({2}, 0));
  EXPECT_EQ(Save(ok, SaveTo("latest")).status().code(), StatusCode::kInvalidArgument);
  SaveOptions none;
  none.checkpoint_id = "x";
  EXPECT_THAT(Save(ok, none).status().message(),
              HasSubstr("neither storage_writer nor store_root"));

  StatusOr<std::vector<CheckpointSummary>> committed = ListCommittedCheckpoints(tmp_.path());
  ASSERT_TRUE(committed.ok()) << committed.status();
  EXPECT_TRUE(committed->empty());
}

TEST_F(SaveLoadTest, LatestAndCommittedMetadataAndChunkSize) {
  StatusOr<std::string> none = ResolveCheckpointId(tmp_.path(), "latest");
  EXPECT_EQ(none.status().code(), StatusCode::kNotFound) << none.status();
  StateDict state;
  state.Set("w", RandomTensor(DType::kFloat32, {64, 64}, 3));  // 16 KiB
  SaveOptions small = SaveTo("first");
  small.chunk_size = 4096;
  ASSERT_TRUE(Save(state, small).ok());
  ASSERT_TRUE(Save(state, SaveTo("second")).ok());
  EXPECT_EQ(*ResolveCheckpointId(tmp_.path(), "latest"), "second");
  EXPECT_EQ(*ResolveCheckpointId(tmp_.path(), "first"), "first");

  StatusOr<Metadata> first = ReadCommittedMetadata(tmp_.path(), "first");
  ASSERT_TRUE(first.ok()) << first.status();
  const EntryMetadata& w = first->entries.at("w");
  EXPECT_EQ(w.dtype, DType::kFloat32);
  EXPECT_EQ(w.global_shape, (Shape{64, 64}));
  EXPECT_EQ(w.shards.at(0).chunks, 4u);  // 16 KiB in chunks of 4 KiB
  StatusOr<Metadata> latest = ReadCommittedMetadata(tmp_.path(), "latest");
  ASSERT_TRUE(latest.ok()) << latest.status();
  EXPECT_EQ(latest->checkpoint_id, "second");
  EXPECT_EQ(ReadCommittedMetadata(tmp_.path(), "third").status().code(), StatusCode::kNotFound);
}

TEST_F(SaveLoadTest, DeprecatedSaveStateDictStillSaves) {
  StateDict state;
  state.Set("w", MakeGlobal({3}, 7));
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
  StatusOr<Metadata> md = SaveStateDict(state, SaveTo("old-api"));
#pragma GCC diagnostic pop
  ASSERT_TRUE(md.ok()) << md.status();
  EXPECT_EQ(md->entries.size(), 1u);
}

}  // namespace
}  // namespace dcpkv

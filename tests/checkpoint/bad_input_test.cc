// Bad input to save and load: invalid checkpoint ids and fqns, invalid dtypes, shapes whose
// element or byte counts overflow 64 bits, shards whose offsets + sizes overflow or leave the
// global tensor, ranks that disagree. Each is INVALID_ARGUMENT (or NOT_FOUND for a checkpoint
// that does not exist) naming what is wrong; none crashes, reads memory it was not given, or
// commits anything.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "dcpkv/catalog.h"
#include "dcpkv/checkpoint.h"
#include "tests/util/gloo_threads.h"
#include "tests/util/sharding.h"
#include "tests/util/temp_dir.h"

namespace dcpkv {
namespace {

using ::testing::HasSubstr;
using testing::MakeGlobal;

constexpr uint64_t kMax = std::numeric_limits<uint64_t>::max();

// Never read: every tensor pointing here has a shape that validation must refuse.
alignas(64) uint8_t kUnreadable[64];

class BadInputTest : public ::testing::Test {
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
  // Saving `state` fails with INVALID_ARGUMENT saying `says`.
  void ExpectSaveRefused(StateDict state, const std::string& says) {
    StatusOr<Metadata> md = Save(state, SaveTo("bad"));
    EXPECT_EQ(md.status().code(), StatusCode::kInvalidArgument) << md.status();
    EXPECT_THAT(md.status().message(), HasSubstr(says));
  }
  void ExpectNothingCommitted() {
    StatusOr<std::vector<CheckpointSummary>> committed = ListCommittedCheckpoints(tmp_.path());
    if (committed.status().code() == StatusCode::kNotFound) return;  // no store created at all
    ASSERT_TRUE(committed.ok()) << committed.status();
    for (const CheckpointSummary& c : *committed) {
      EXPECT_NE(c.checkpoint_id, "bad") << "a refused save committed";
    }
  }
  void TearDown() override { ExpectNothingCommitted(); }

  testing::TempDir tmp_;
};

TEST_F(BadInputTest, InvalidCheckpointIdsAreRefusedBySaveAndLoad) {
  StateDict ok;
  ok.Set("w", MakeGlobal({2}, 0));
  const std::vector<std::string> ids = {
      "",          std::string(129, 'a'),       "a/b",    "../up",      ".hidden", "-dash",
      "has space", std::string("nul\0byte", 8), "latest", "caf\xc3\xa9"};
  for (const std::string& id : ids) {
    SCOPED_TRACE("id \"" + id + "\"");
    StatusOr<Metadata> md = Save(ok, SaveTo(id));
    EXPECT_EQ(md.status().code(), StatusCode::kInvalidArgument) << md.status();
    EXPECT_THAT(md.status().message(), HasSubstr("checkpoint id"));
    Status loaded = Load(ok, LoadFrom(id));
    EXPECT_EQ(loaded.code(), StatusCode::kInvalidArgument) << loaded;
  }
  // The longest valid id works.
  const std::string longest(128, 'x');
  ASSERT_TRUE(Save(ok, SaveTo(longest)).ok());
  EXPECT_TRUE(Load(ok, LoadFrom(longest)).ok());
}

TEST_F(BadInputTest, InvalidFqnsAreRefused) {
  for (const std::string& key :
       {std::string("has space"), std::string("tab\there"), std::string("nul\0x", 5),
        std::string(1025, 'k'), std::string("caf\xc3\xa9")}) {
    SCOPED_TRACE("fqn \"" + key + "\"");
    StateDict sd;
    sd.Set(key, MakeGlobal({2}, 0));
    StatusOr<Metadata> md = Save(sd, SaveTo("bad"));
    EXPECT_EQ(md.status().code(), StatusCode::kInvalidArgument) << md.status();
  }
  // Nesting that flattens two values to the same fqn.
  StateDict inner;
  inner.Set("b", MakeGlobal({2}, 0));
  StateDict clash;
  clash.SetDict("a", std::move(inner));
  clash.Set("a.b", MakeGlobal({2}, 1));
  ExpectSaveRefused(std::move(clash), "a.b");
  // An empty key inside a nested dict would make "a." (or a leading dot).
  StateDict empty_inner;
  empty_inner.Set("", MakeGlobal({2}, 0));
  StateDict nested_empty;
  nested_empty.SetDict("a", std::move(empty_inner));
  StatusOr<Metadata> md = Save(nested_empty, SaveTo("bad"));
  EXPECT_EQ(md.status().code(), StatusCode::kInvalidArgument) << md.status();
}

TEST_F(BadInputTest, InvalidDtypesAreRefused) {
  StateDict bytes_dtype;
  bytes_dtype.Set("w", Tensor::Wrap(DType::kBytes, {4}, kUnreadable));
  ExpectSaveRefused(std::move(bytes_dtype), "dtype");
  StateDict unknown;
  unknown.Set("w", Tensor::Wrap(static_cast<DType>(200), {4}, kUnreadable));
  ExpectSaveRefused(std::move(unknown), "dtype");
  StateDict zero;
  zero.Set("w", Tensor::Wrap(static_cast<DType>(0), {4}, kUnreadable));
  ExpectSaveRefused(std::move(zero), "dtype");
  ShardedTensor st{static_cast<DType>(99), {4}, {}};
  st.local_shards.push_back(Shard{{0}, Tensor::Wrap(static_cast<DType>(99), {4}, kUnreadable)});
  StateDict sharded;
  sharded.Set("w", st);
  ExpectSaveRefused(std::move(sharded), "dtype");
}

// A rank holding no shard of a tensor still checks the tensor's own dtype (else its manifest
// would carry dtype 99).
TEST_F(BadInputTest, ShardedTensorWithInvalidDtypeAndNoLocalShardIsRefused) {
  ShardedTensor st{static_cast<DType>(99), {4}, {}};
  StateDict sharded;
  sharded.Set("w", st);
  ExpectSaveRefused(std::move(sharded), "dtype");
}

TEST_F(BadInputTest, ShapesThatOverflowAreRefused) {
  // Elements overflow 64 bits.
  StateDict numel;
  numel.Set("w",
            Tensor::Wrap(DType::kFloat32, {uint64_t{1} << 32, uint64_t{1} << 32}, kUnreadable));
  ExpectSaveRefused(std::move(numel), "overflows");
  // Elements fit, bytes do not.
  StateDict bytes;
  bytes.Set("w", Tensor::Wrap(DType::kFloat64, {uint64_t{1} << 62}, kUnreadable));
  ExpectSaveRefused(std::move(bytes), "overflows");
  // Zero elements, but the product of the leading dimensions overflows on the way: refused too
  // (NumElements multiplies in order), clearly.
  StateDict huge_dims;
  huge_dims.Set("w", Tensor::Wrap(DType::kUInt8, {kMax, kMax, 0}, kUnreadable));
  ExpectSaveRefused(std::move(huge_dims), "overflows");

  // A global shape that overflows, with a small shard.
  ShardedTensor st{DType::kFloat32, {kMax, 4}, {}};
  st.local_shards.push_back(Shard{{0, 0}, MakeGlobal({1, 4}, 0)});
  StateDict global;
  global.Set("w", st);
  ExpectSaveRefused(std::move(global), "overflows");
}

// More dimensions than the encodings carry (64) are refused by the save's input validation,
// not found later as a "corrupt" plan.
TEST_F(BadInputTest, MoreThan64DimensionsAreInvalidArgument) {
  StateDict too_many_dims;
  too_many_dims.Set("w", Tensor::Wrap(DType::kUInt8, Shape(65, 1), kUnreadable));
  ExpectSaveRefused(std::move(too_many_dims), "dimensions");
}

TEST_F(BadInputTest, ShardsOutsideTheirGlobalTensorAreRefused) {
  auto save_shard = [&](Shape global, Shape offsets, Tensor local) {
    ShardedTensor st{DType::kFloat32, std::move(global), {}};
    st.local_shards.push_back(Shard{std::move(offsets), std::move(local)});
    StateDict sd;
    sd.Set("w", st);
    return Save(sd, SaveTo("bad")).status();
  };
  // offsets + sizes overflow uint64 (and would wrap to inside the tensor).
  Status s = save_shard({8, 4}, {kMax, 0}, MakeGlobal({2, 4}, 0));
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s;
  EXPECT_THAT(s.message(), HasSubstr("exceeds global shape"));
  s = save_shard({8, 4}, {kMax - 1, 0}, MakeGlobal({2, 4}, 0));
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s;
  // Past the end, by one row.
  s = save_shard({8, 4}, {7, 0}, MakeGlobal({2, 4}, 0));
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s;
  // Wrong number of dimensions.
  s = save_shard({8, 4}, {0}, MakeGlobal({2, 4}, 0));
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s;
  s = save_shard({8, 4}, {0, 0}, MakeGlobal({2, 4, 1}, 0));
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s;
  // A shard of another dtype.
  ShardedTensor mixed{DType::kFloat32, {4}, {}};
  mixed.local_shards.push_back(Shard{{0}, Tensor::Allocate(DType::kInt32, {4})});
  StateDict sd;
  sd.Set("w", mixed);
  ExpectSaveRefused(std::move(sd), "dtype");
  // Overlapping local shards.
  ShardedTensor overlap{DType::kFloat32, {8}, {}};
  overlap.local_shards.push_back(Shard{{0}, MakeGlobal({5}, 0)});
  overlap.local_shards.push_back(Shard{{4}, MakeGlobal({4}, 0)});
  StateDict sd2;
  sd2.Set("w", overlap);
  ExpectSaveRefused(std::move(sd2), "overlap");
}

TEST_F(BadInputTest, RanksThatDisagreeFailOnEveryRank) {
  struct Case {
    const char* name;
    // Rank r's value of "w".
    std::function<ShardedTensor(int rank)> shard;
  };
  const Tensor global = MakeGlobal({8, 4}, 0);
  const std::vector<Case> cases = {
      {"global shapes differ",
       [&](int rank) {
         ShardedTensor st = testing::ShardOf(global, 0, 2, rank);
         if (rank == 1) st.global_shape = {9, 4};
         return st;
       }},
      {"dtypes differ",
       [&](int rank) {
         ShardedTensor st = testing::ShardOf(global, 0, 2, rank);
         if (rank == 1) {
           st.dtype = DType::kInt32;
           st.local_shards[0].tensor = Tensor::Allocate(DType::kInt32, {4, 4});
         }
         return st;
       }},
      {"shards overlap with different extents",
       [&](int rank) {
         ShardedTensor st{DType::kFloat32, {8, 4}, {}};
         st.local_shards.push_back(
             Shard{{rank == 0 ? 0u : 3u, 0}, MakeGlobal({rank == 0 ? 4u : 5u, 4}, 0)});
         return st;
       }},
      {"shards leave a hole",
       [&](int rank) {
         ShardedTensor st{DType::kFloat32, {8, 4}, {}};
         st.local_shards.push_back(Shard{{rank == 0 ? 0u : 5u, 0}, MakeGlobal({3, 4}, 0)});
         return st;
       }},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    std::vector<Status> results(2);
    testing::RunOnGlooRanks(2, [&](ProcessGroup& pg) {
      StateDict sd;
      sd.Set("w", c.shard(pg.rank()));
      SaveOptions o = SaveTo("bad");
      o.process_group = &pg;
      results[pg.rank()] = Save(sd, o).status();
    });
    for (int rank = 0; rank < 2; ++rank) {
      EXPECT_EQ(results[rank].code(), StatusCode::kInvalidArgument) << results[rank];
      EXPECT_THAT(results[rank].message(), HasSubstr("\"w\""));
    }
  }
}

TEST_F(BadInputTest, BadOptionsAreRefused) {
  StateDict ok;
  ok.Set("w", MakeGlobal({2}, 0));
  SaveOptions o = SaveTo("bad");
  o.coordinator_rank = 1;  // a world of one
  EXPECT_EQ(Save(ok, o).status().code(), StatusCode::kInvalidArgument);
  o.coordinator_rank = -1;
  EXPECT_EQ(Save(ok, o).status().code(), StatusCode::kInvalidArgument);
  LoadOptions l = LoadFrom("bad");
  l.coordinator_rank = 3;
  EXPECT_EQ(Load(ok, l).code(), StatusCode::kInvalidArgument);
  // A base that does not exist.
  o = SaveTo("bad");
  o.incremental_base = "never-saved";
  StatusOr<Metadata> md = Save(ok, o);
  EXPECT_EQ(md.status().code(), StatusCode::kNotFound) << md.status();
  EXPECT_THAT(md.status().message(), HasSubstr("never-saved"));
  o.incremental_base = "bad/base";
  EXPECT_NE(Save(ok, o).status().code(), StatusCode::kOk);
}

TEST_F(BadInputTest, LoadIntoTensorsThatOverflowOrMismatchIsRefused) {
  StateDict saved;
  saved.Set("w", MakeGlobal({8, 4}, 0));
  ASSERT_TRUE(Save(saved, SaveTo("good")).ok());

  auto load = [&](StateValue value) {
    StateDict sd;
    sd.Set("w", std::move(value));
    return Load(sd, LoadFrom("good"));
  };
  Status s =
      load(Tensor::Wrap(DType::kFloat32, {uint64_t{1} << 32, uint64_t{1} << 32}, kUnreadable));
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s;
  s = load(Tensor::Wrap(static_cast<DType>(77), {8, 4}, kUnreadable));
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s;
  s = load(Tensor::Wrap(DType::kFloat32, {8, 4}, nullptr));
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s;
  // A shard whose offsets + sizes overflow: must not wrap around into the saved tensor.
  ShardedTensor st{DType::kFloat32, {8, 4}, {}};
  st.local_shards.push_back(
      Shard{{kMax - 1, 0}, Tensor::Wrap(DType::kFloat32, {4, 4}, kUnreadable)});
  s = load(st);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s;
  // Bigger than saved.
  ShardedTensor beyond{DType::kFloat32, {8, 4}, {}};
  beyond.local_shards.push_back(Shard{{6, 0}, Tensor::Allocate(DType::kFloat32, {4, 4})});
  s = load(beyond);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s;
  // A load of a valid id that was never saved.
  StateDict sd;
  sd.Set("w", Tensor::Allocate(DType::kFloat32, {8, 4}));
  EXPECT_EQ(Load(sd, LoadFrom("never-saved")).code(), StatusCode::kNotFound);
}

}  // namespace
}  // namespace dcpkv

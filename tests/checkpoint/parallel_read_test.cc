// Loads read large shards in pieces on several threads (KvStorageOptions::read_threads and
// read_piece_bytes). Small pieces and chunks here make every shard span many pieces, cut at
// chunk boundaries that do and do not fall on whole rows, read straight into the destination
// or through a buffer when resharding.
#include <gtest/gtest.h>

#include <filesystem>

#include "dcpkv/api/kv_storage.h"
#include "dcpkv/checkpoint.h"
#include "dcpkv/store/key_encoding.h"
#include "dcpkv/store/store_layout.h"
#include "tests/util/raw_db.h"
#include "tests/util/sharding.h"
#include "tests/util/temp_dir.h"
#include "tests/util/test_data.h"

namespace dcpkv {
namespace {

using testing::EmptyShardOf;
using testing::MakeGlobal;
using testing::SameBytes;
using testing::ShardOf;
using testing::Slice;
using testing::SplitBox;

constexpr uint64_t kChunk = 96 << 10;  // blob values, not a multiple of the 4000-byte rows below
constexpr uint64_t kPiece = 320 << 10;

KvStorageOptions Options(const std::string& root, int threads) {
  KvStorageOptions o;
  o.root = root;
  o.store_options.chunk_size = kChunk;
  o.read_threads = threads;
  o.read_piece_bytes = kPiece;
  return o;
}

class ParallelReadTest : public ::testing::TestWithParam<int> {
 protected:
  void SetUp() override {
    // Saved as two row shards (as if by two ranks), in one process.
    StateDict sd;
    ShardedTensor st{DType::kFloat32, matrix_.shape(), {}};
    for (int r = 0; r < 2; ++r) {
      st.local_shards.push_back(ShardOf(matrix_, 0, 2, r).local_shards[0]);
    }
    sd.Set("m", st);
    sd.Set("v", vector_);
    sd.Set("blob", Bytes{std::string(blob_.begin(), blob_.end())});
    SaveOptions o;
    o.checkpoint_id = "c";
    o.storage_writer = std::make_shared<KvStorageWriter>(Options(tmp_.path(), 0));
    ASSERT_TRUE(Save(sd, o).ok());
  }

  Status LoadInto(StateDict& sd) {
    LoadOptions o;
    o.checkpoint_id = "c";
    o.storage_reader = std::make_shared<KvStorageReader>(Options(tmp_.path(), GetParam()));
    return Load(sd, o);
  }

  testing::TempDir tmp_;
  const Tensor matrix_ = MakeGlobal({700, 1000}, 1.0f);  // 4000-byte rows, 2.8 MB
  const Tensor vector_ = MakeGlobal({300000}, 7.0f);
  const std::vector<uint8_t> blob_ = testing::RandomBytes(600 << 10, 3);
};

TEST_P(ParallelReadTest, SameShardingReadsStraightIntoTheDestinations) {
  StateDict sd;
  ShardedTensor st{DType::kFloat32, matrix_.shape(), {}};
  for (int r = 0; r < 2; ++r)
    st.local_shards.push_back(EmptyShardOf(matrix_, 0, 2, r).local_shards[0]);
  Tensor v = Tensor::Allocate(DType::kFloat32, vector_.shape());
  sd.Set("m", st);
  sd.Set("v", v);
  sd.Set("blob", Bytes{});
  ASSERT_TRUE(LoadInto(sd).ok());
  for (int r = 0; r < 2; ++r) {
    EXPECT_TRUE(
        SameBytes(st.local_shards[r].tensor, Slice(matrix_, SplitBox(matrix_.shape(), 0, 2, r))))
        << "shard " << r;
  }
  EXPECT_TRUE(SameBytes(v, vector_));
  const Bytes* blob = std::get_if<Bytes>(sd.Find("blob"));
  ASSERT_NE(blob, nullptr);
  EXPECT_EQ(blob->data, std::string(blob_.begin(), blob_.end()));
}

TEST_P(ParallelReadTest, ReshardedLoadsCopyEveryBandOfRows) {
  // Three row shards (cuts inside saved shards) and three column shards (every saved row feeds
  // several destinations): both read through buffers, cut at whole rows.
  for (int dim : {0, 1}) {
    for (int world : {3, 4}) {
      StateDict sd;
      ShardedTensor st{DType::kFloat32, matrix_.shape(), {}};
      for (int r = 0; r < world; ++r) {
        st.local_shards.push_back(EmptyShardOf(matrix_, dim, world, r).local_shards[0]);
      }
      sd.Set("m", st);
      ASSERT_TRUE(LoadInto(sd).ok());
      for (int r = 0; r < world; ++r) {
        EXPECT_TRUE(SameBytes(st.local_shards[r].tensor,
                              Slice(matrix_, SplitBox(matrix_.shape(), dim, world, r))))
            << "dim " << dim << " world " << world << " shard " << r;
      }
    }
  }
}

TEST_P(ParallelReadTest, AMissingChunkInTheMiddleOfAShardFailsTheLoad) {
  // Delete a chunk of the first row shard in the middle of its pieces.
  std::string victim;
  {
    testing::RawDB db(RankDirectory(tmp_.path(), 0));
    ASSERT_TRUE(db.ok());
    ChunkKey key{"c", "m", {0, 0}, 5 * kChunk};
    StatusOr<std::string> encoded = EncodeChunkKey(key);
    ASSERT_TRUE(encoded.ok());
    ASSERT_FALSE(db.Get(*encoded).empty());
    db.Delete(*encoded);
  }
  StateDict sd;
  ShardedTensor st{DType::kFloat32, matrix_.shape(), {}};
  for (int r = 0; r < 2; ++r)
    st.local_shards.push_back(EmptyShardOf(matrix_, 0, 2, r).local_shards[0]);
  sd.Set("m", st);
  Status s = LoadInto(sd);
  EXPECT_EQ(s.code(), StatusCode::kDataLoss) << s.ToString();
  EXPECT_NE(s.message().find("\"m\""), std::string::npos) << s.ToString();
  EXPECT_NE(s.message().find(std::to_string(5 * kChunk)), std::string::npos) << s.ToString();
}

INSTANTIATE_TEST_SUITE_P(Threads, ParallelReadTest, ::testing::Values(1, 3, 8),
                         [](const auto& info) { return "threads" + std::to_string(info.param); });

}  // namespace
}  // namespace dcpkv

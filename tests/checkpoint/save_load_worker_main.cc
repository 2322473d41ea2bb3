// One rank of a multi-process save/load test, launched the torchrun way (RANK, WORLD_SIZE,
// MASTER_ADDR, MASTER_PORT).
//
//   dcpkv_save_load_worker save ROOT ID   saves its row shard of "w", a replicated "bias" and
//                                        a bytes entry
//   dcpkv_save_load_worker async-save ROOT ID
//                                        the same through AsyncSave, overwriting its tensors
//                                        once staging is done
//   dcpkv_save_load_worker load ROOT ID   loads its row shard (any world size) and checks every
//                                        element; exit code 0 only if all match
#include <cstdio>
#include <cstring>

#include "dcpkv/async_save.h"
#include "dcpkv/checkpoint.h"
#include "dcpkv/gloo_process_group.h"
#include "tests/util/sharding.h"

int main(int argc, char** argv) {
  using namespace dcpkv;  // NOLINT
  if (argc != 4) {
    std::fprintf(stderr, "usage: %s save|load ROOT ID\n", argv[0]);
    return 2;
  }
  const std::string mode = argv[1], root = argv[2], id = argv[3];
  StatusOr<std::unique_ptr<ProcessGroup>> pg =
      CreateGlooProcessGroupFromEnv(std::chrono::seconds(30));
  if (!pg.ok()) {
    std::fprintf(stderr, "process group: %s\n", pg.status().ToString().c_str());
    return 1;
  }
  const int rank = (*pg)->rank(), world = (*pg)->size();
  const Tensor w = testing::MakeGlobal({25, 6}, 1.5f);
  const Tensor bias = testing::MakeGlobal({6}, -1.0f);
  StateDict state;
  Status s;
  if (mode == "save") {
    state.Set("w", testing::ShardOf(w, 0, world, rank));
    state.Set("bias", testing::Slice(bias, {{0}, {6}}));
    state.Set("step", Bytes{"1234"});
    SaveOptions o;
    o.checkpoint_id = id;
    o.store_root = root;
    o.process_group = pg->get();
    s = Save(state, o).status();
  } else if (mode == "async-save") {
    ShardedTensor mine = testing::ShardOf(w, 0, world, rank);
    Tensor my_bias = testing::Slice(bias, {{0}, {6}});
    state.Set("w", mine);
    state.Set("bias", my_bias);
    state.Set("step", Bytes{"1234"});
    AsyncSaveOptions o;
    o.save.checkpoint_id = id;
    o.save.store_root = root;
    o.save.process_group = pg->get();
    StatusOr<AsyncSaveResponse> r = AsyncSave(state, o);
    s = r.status();
    if (s.ok()) s = r->staging_completion.get();
    if (s.ok()) {  // training goes on: what was staged must be what gets saved
      std::memset(mine.local_shards[0].tensor.data(), 0, mine.local_shards[0].tensor.nbytes());
      std::memset(my_bias.data(), 0, my_bias.nbytes());
      s = r->upload_completion.get().status();
    }
  } else {
    ShardedTensor mine = testing::EmptyShardOf(w, 0, world, rank);
    Tensor my_bias = Tensor::Allocate(DType::kFloat32, {6});
    state.Set("w", mine);
    state.Set("bias", my_bias);
    state.Set("step", Bytes{});
    LoadOptions o;
    o.checkpoint_id = id;
    o.store_root = root;
    o.process_group = pg->get();
    s = Load(state, o);
    const Shard& shard = mine.local_shards[0];
    if (s.ok() && (!testing::SameBytes(shard.tensor,
                                       testing::Slice(w, {shard.offsets, shard.tensor.shape()})) ||
                   !testing::SameBytes(my_bias, bias) ||
                   std::get<Bytes>(*state.Find("step")).data != "1234")) {
      s = DataLossError("rank " + std::to_string(rank) + " loaded different values");
    }
  }
  if (!s.ok()) {
    std::fprintf(stderr, "rank %d: %s\n", rank, s.ToString().c_str());
    return 1;
  }
  return 0;
}

// The state a crash or fault test saves: a small "model" whose every byte is a function of
// (step, seed), so that whoever saved it can die and another process still knows exactly what a
// checkpoint of a given step must hold.
//
// Four tensors (about 750 KiB: large ones in several 64 KiB chunks, blob values, and a small
// one stored inline in SST files) and a bytes entry. Each 16 KiB block of a tensor changes every
// 1, 2, 3 or 7 steps (by block), so incremental saves reuse some chunks of their base and write
// others. In a world of W ranks every tensor is split by rows, rank r saving part r.
#ifndef DCPKV_TESTS_CRASH_CRASH_MODEL_H_
#define DCPKV_TESTS_CRASH_CRASH_MODEL_H_

#include <algorithm>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "dcpkv/checkpoint.h"
#include "tests/util/sharding.h"

namespace dcpkv::testing {

struct ModelTensor {
  std::string fqn;
  DType dtype;
  Shape shape;
};

inline const std::vector<ModelTensor>& ModelTensors() {
  static const std::vector<ModelTensor> tensors = {
      {"model.embed", DType::kFloat32, {256, 512}},      // 512 KiB
      {"model.layer0.w", DType::kFloat32, {96, 384}},    // 144 KiB
      {"model.layer1.w", DType::kBFloat16, {100, 330}},  // 66 KiB, rows of 660 bytes
      {"model.norm", DType::kFloat32, {64, 12}},         // 3 KiB: inline, not a blob
  };
  return tensors;
}

inline constexpr char kModelBytesFqn[] = "trainer.state";

// Checkpoint ids of the steps: "ck-000042".
inline std::string ModelCheckpointId(uint64_t step) {
  char id[32];
  std::snprintf(id, sizeof(id), "ck-%06" PRIu64, step);
  return id;
}

inline uint64_t Mix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// The global bytes of tensor `t` at `step`.
inline std::vector<uint8_t> ModelTensorBytes(size_t t, uint64_t step, uint64_t seed) {
  const ModelTensor& mt = ModelTensors()[t];
  const uint64_t size = *NumElements(mt.shape) * ElementSize(mt.dtype);
  constexpr uint64_t kBlock = 16 << 10;
  static constexpr uint64_t kPeriods[] = {1, 2, 3, 7};
  std::vector<uint8_t> out(size);
  for (uint64_t begin = 0; begin < size; begin += kBlock) {
    const uint64_t block = begin / kBlock;
    const uint64_t h = Mix64(seed * 1000003 + t * 7919 + block);
    const uint64_t period = kPeriods[h % 4];
    const uint64_t version = (step + h / 4 % period) / period;
    uint64_t x = Mix64(h ^ (version * 0x5851F42D4C957F2Dull));
    for (uint64_t i = begin; i < std::min(size, begin + kBlock); i += 8) {
      x = Mix64(x);
      std::memcpy(&out[i], &x, std::min<uint64_t>(8, size - i));
    }
  }
  return out;
}

inline std::string ModelBytesEntry(uint64_t step, uint64_t seed) {
  return "step=" + std::to_string(step) + " seed=" + std::to_string(seed);
}

// Rank `rank`'s part of the model at `step`: its row shard of every tensor (copies owned by the
// returned dict) and, on rank 0 only, the bytes entry.
inline StateDict ModelState(uint64_t step, uint64_t seed, int world, int rank) {
  StateDict sd;
  for (size_t t = 0; t < ModelTensors().size(); ++t) {
    const ModelTensor& mt = ModelTensors()[t];
    std::vector<uint8_t> bytes = ModelTensorBytes(t, step, seed);
    Tensor global = Tensor::Wrap(mt.dtype, mt.shape, bytes.data());
    if (world == 1) {
      sd.Set(mt.fqn, Slice(global, Box{Shape(mt.shape.size(), 0), mt.shape}));
    } else {
      sd.Set(mt.fqn, ShardOf(global, 0, world, rank));
    }
  }
  if (rank == 0) sd.Set(kModelBytesFqn, Bytes{ModelBytesEntry(step, seed)});
  return sd;
}

// Loads checkpoint `id` of `root` whole in this process and compares every byte with the model
// at `step`. OK, the load's error, or DATA_LOSS saying what differs.
inline Status LoadAndCompareModel(const std::string& root, const std::string& id, uint64_t step,
                                  uint64_t seed) {
  StateDict sd;
  std::vector<Tensor> loaded;
  for (const ModelTensor& mt : ModelTensors()) {
    loaded.push_back(Tensor::Allocate(mt.dtype, mt.shape));
    std::memset(loaded.back().data(), 0xA5, loaded.back().nbytes());  // not the expected bytes
    sd.Set(mt.fqn, loaded.back());
  }
  sd.Set(kModelBytesFqn, Bytes{});
  LoadOptions o;
  o.checkpoint_id = id;
  o.store_root = root;
  DCPKV_RETURN_IF_ERROR(Load(sd, o));
  for (size_t t = 0; t < loaded.size(); ++t) {
    const std::vector<uint8_t> want = ModelTensorBytes(t, step, seed);
    if (loaded[t].nbytes() != want.size() ||
        std::memcmp(loaded[t].data(), want.data(), want.size()) != 0) {
      return DataLossError("checkpoint \"" + id + "\" loaded other values of \"" +
                           ModelTensors()[t].fqn + "\" than step " + std::to_string(step) +
                           " saved");
    }
  }
  if (std::get<Bytes>(*sd.Find(kModelBytesFqn)).data != ModelBytesEntry(step, seed)) {
    return DataLossError("checkpoint \"" + id + "\" loaded another \"" + kModelBytesFqn + "\"");
  }
  return Status::Ok();
}

}  // namespace dcpkv::testing

#endif  // DCPKV_TESTS_CRASH_CRASH_MODEL_H_

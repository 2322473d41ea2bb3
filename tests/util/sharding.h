// Test helpers: deterministic global tensors and their shards under a 1-D split.
#ifndef DCPKV_TESTS_UTIL_SHARDING_H_
#define DCPKV_TESTS_UTIL_SHARDING_H_

#include <cstring>
#include <vector>

#include "dcpkv/core/box.h"
#include "dcpkv/tensor.h"

namespace dcpkv::testing {

// A float32 tensor whose element at linear index i is i * 0.5 + seed.
inline Tensor MakeGlobal(const Shape& shape, float seed) {
  Tensor t = Tensor::Allocate(DType::kFloat32, shape);
  for (uint64_t i = 0; i < t.numel(); ++i)
    t.data_as<float>()[i] = static_cast<float>(i) * 0.5f + seed;
  return t;
}

// Offsets and sizes of part `rank` of `world` near-equal parts of `shape` along `dim`
// (the first `extent % world` parts are one longer: uneven splits).
inline Box SplitBox(const Shape& shape, int dim, int world, int rank) {
  Box box{Shape(shape.size(), 0), shape};
  const uint64_t extent = shape[dim], base = extent / world, extra = extent % world;
  const uint64_t r = static_cast<uint64_t>(rank);
  box.offsets[dim] = r * base + std::min<uint64_t>(r, extra);
  box.sizes[dim] = base + (r < extra ? 1 : 0);
  return box;
}

// The part of `global` inside `box`, copied into its own tensor.
inline Tensor Slice(const Tensor& global, const Box& box) {
  Tensor t = Tensor::Allocate(global.dtype(), box.sizes);
  CopyBox(global.data(), Box{Shape(global.shape().size(), 0), global.shape()}, t.data(), box, box,
          ElementSize(global.dtype()));
  return t;
}

// Rank `rank`'s shard of `global` split `world` ways along `dim`.
inline ShardedTensor ShardOf(const Tensor& global, int dim, int world, int rank) {
  Box box = SplitBox(global.shape(), dim, world, rank);
  ShardedTensor st{global.dtype(), global.shape(), {}};
  st.local_shards.push_back(Shard{box.offsets, Slice(global, box)});
  return st;
}

// A zero-filled shard with the same geometry, to load into.
inline ShardedTensor EmptyShardOf(const Tensor& global, int dim, int world, int rank) {
  Box box = SplitBox(global.shape(), dim, world, rank);
  ShardedTensor st{global.dtype(), global.shape(), {}};
  st.local_shards.push_back(Shard{box.offsets, Tensor::Allocate(global.dtype(), box.sizes)});
  return st;
}

inline bool SameBytes(const Tensor& a, const Tensor& b) {
  return a.nbytes() == b.nbytes() && a.dtype() == b.dtype() && a.shape() == b.shape() &&
         std::memcmp(a.data(), b.data(), a.nbytes()) == 0;
}

}  // namespace dcpkv::testing

#endif  // DCPKV_TESTS_UTIL_SHARDING_H_

#include "store/block_buffer_pool.h"

#include <gtest/gtest.h>

#include <cstring>
#include <thread>
#include <vector>

namespace dcpkv {
namespace {

TEST(BlockBufferPoolTest, LargeBuffersAreReusedSmallOnesAreNot) {
  BlockBufferPool pool(/*min_pooled_bytes=*/64 << 10, /*max_pooled_bytes=*/1 << 20);
  void* a = pool.Allocate(300 << 10);
  ASSERT_NE(a, nullptr);
  EXPECT_GE(pool.UsableSize(a, 300 << 10), size_t{300} << 10);
  std::memset(a, 1, 300 << 10);  // usable as allocated
  pool.Deallocate(a);
  EXPECT_GT(pool.pooled_bytes(), 0u);
  void* b = pool.Allocate((300 << 10) - 100);  // nearly the same size: the same buffer
  EXPECT_EQ(b, a);
  EXPECT_EQ(pool.pooled_bytes(), 0u);
  void* small = pool.Allocate(1000);
  pool.Deallocate(small);
  EXPECT_EQ(pool.pooled_bytes(), 0u) << "small buffers go back to malloc";
  void* big = pool.Allocate(900 << 10);  // much larger than the pooled one: a new buffer
  EXPECT_NE(big, b);
  pool.Deallocate(b);
  pool.Deallocate(big);
  EXPECT_LE(pool.pooled_bytes(), size_t{1} << 20) << "the pool keeps at most its bound";
}

TEST(BlockBufferPoolTest, ThreadsShareThePool) {
  BlockBufferPool pool(64 << 10, 8 << 20);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&pool, t] {
      for (int i = 0; i < 200; ++i) {
        const size_t size = (size_t{128} << 10) * (1 + (i + t) % 4);
        auto* p = static_cast<unsigned char*>(pool.Allocate(size));
        p[0] = static_cast<unsigned char>(t);
        p[size - 1] = static_cast<unsigned char>(i);
        EXPECT_EQ(p[0], t);
        pool.Deallocate(p);
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_LE(pool.pooled_bytes(), size_t{8} << 20);
}

}  // namespace
}  // namespace dcpkv

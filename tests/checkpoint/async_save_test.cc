// AsyncSave: staging semantics, background errors, bounded memory, stager ownership,
// overlapping calls, process group requirements.
#include <dirent.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <fstream>
#include <thread>

#include "dcpkv/api/kv_storage.h"
#include "dcpkv/async_save.h"
#include "dcpkv/checkpointer.h"
#include "tests/util/gloo_threads.h"
#include "tests/util/sharding.h"
#include "tests/util/temp_dir.h"

namespace dcpkv {
namespace {

using ::testing::HasSubstr;
using testing::MakeGlobal;
using testing::RunOnGlooRanks;
using testing::SameBytes;
using namespace std::chrono_literals;

AsyncSaveOptions AsyncTo(const std::string& root, const std::string& id) {
  AsyncSaveOptions o;
  o.save.checkpoint_id = id;
  o.save.store_root = root;
  return o;
}

Tensor LoadTensor(const std::string& root, const std::string& id, const std::string& fqn,
                  Shape shape) {
  Tensor t = Tensor::Allocate(DType::kFloat32, std::move(shape));
  StateDict state;
  state.Set(fqn, t);
  LoadOptions o;
  o.checkpoint_id = id;
  o.store_root = root;
  Status s = Load(state, o);
  EXPECT_TRUE(s.ok()) << s;
  return t;
}

bool Ready(const std::shared_future<Status>& f) {
  return f.wait_for(0s) == std::future_status::ready;
}

TEST(AsyncSaveTest, ChangesAfterStagingDoNotReachTheCheckpoint) {
  testing::TempDir tmp;
  for (bool async_staging : {true, false}) {
    const std::string id = async_staging ? "lazy" : "eager";
    Tensor w = MakeGlobal({256, 64}, 1);
    const Tensor at_save = MakeGlobal({256, 64}, 1);
    StateDict state;
    state.Set("w", w);
    AsyncSaveOptions o = AsyncTo(tmp.path(), id);
    o.staging_options.use_async_staging = async_staging;
    StatusOr<AsyncSaveResponse> r = AsyncSave(state, o);
    ASSERT_TRUE(r.ok()) << r.status();
    if (!async_staging) {
      EXPECT_TRUE(Ready(r->staging_completion)) << "eager staging returned early";
    }
    ASSERT_TRUE(r->staging_completion.get().ok());
    // Training resumes: the live tensor changes while the upload may still run.
    for (uint64_t i = 0; i < w.numel(); ++i) w.data_as<float>()[i] = -1.0f;
    StatusOr<Metadata> md = r->upload_completion.get();
    ASSERT_TRUE(md.ok()) << md.status();
    EXPECT_TRUE(SameBytes(LoadTensor(tmp.path(), id, "w", {256, 64}), at_save)) << id;
  }
}

TEST(AsyncSaveTest, BackgroundErrorsSurfaceOnEveryRank) {
  testing::TempDir tmp;
  RunOnGlooRanks(2, [&](ProcessGroup& pg) {
    StateDict state;
    state.Set("w", testing::ShardOf(MakeGlobal({8, 2}, 0), 0, 2, pg.rank()));
    AsyncSaveOptions o = AsyncTo(tmp.path(), "dup");
    o.save.process_group = &pg;
    ASSERT_TRUE(AsyncSave(state, o)->upload_completion.get().ok());
    // The same id again: refused by the coordinator in the background, reported on every rank.
    StatusOr<Metadata> again = AsyncSave(state, o)->upload_completion.get();
    EXPECT_EQ(again.status().code(), StatusCode::kAlreadyExists) << "rank " << pg.rank();

    // A bad tensor on rank 1: its staging fails, and every rank's upload reports it.
    if (pg.rank() == 1) state.Set("broken", Tensor::Wrap(DType::kFloat32, {4}, nullptr));
    o.save.checkpoint_id = "bad";
    StatusOr<AsyncSaveResponse> r = AsyncSave(state, o);
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->staging_completion.get().ok(), pg.rank() == 0);
    StatusOr<Metadata> md = r->upload_completion.get();
    EXPECT_EQ(md.status().code(), StatusCode::kInvalidArgument) << "rank " << pg.rank();
    EXPECT_THAT(md.status().message(), HasSubstr("failed on rank 1 of 2"));
  });
}

uint64_t ResidentBytes() {
  std::ifstream statm("/proc/self/statm");
  uint64_t size = 0, resident = 0;
  statm >> size >> resident;
  return resident * static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
}

TEST(AsyncSaveTest, FiftyAsyncSavesKeepResidentMemoryFlat) {
  testing::TempDir tmp;
  Tensor a = MakeGlobal({1024, 1024}, 1);  // 4 MiB each, 16 MiB of state
  Tensor b = MakeGlobal({1024, 1024}, 2);
  Tensor c = MakeGlobal({2048, 1024}, 3);
  StateDict state;
  state.Set("a", a);
  state.Set("b", b);
  state.Set("c", c);
  state.Set("step", Bytes{"0"});
  auto stager = std::make_shared<DefaultStager>();
  auto save = [&](int i) {
    AsyncSaveOptions o = AsyncTo(tmp.path(), "s" + std::to_string(i));
    o.async_stager = stager;
    std::get<Bytes>(*state.Find("step")).data = std::to_string(i);
    StatusOr<AsyncSaveResponse> r = AsyncSave(state, o);
    ASSERT_TRUE(r.ok()) << r.status();
    ASSERT_TRUE(r->upload_completion.get().ok());
  };
  for (int i = 0; i < 5; ++i) save(i);  // warm-up: pool, RocksDB memtables and caches
  const uint64_t allocations = stager->allocations();
  const uint64_t before = ResidentBytes();
  for (int i = 5; i < 55; ++i) save(i);
  const uint64_t after = ResidentBytes();
  std::printf("resident memory: %.1f MiB after warm-up, %.1f MiB after 50 more async saves\n",
              before / 1048576.0, after / 1048576.0);
  EXPECT_EQ(stager->allocations(), allocations) << "repeated saves allocated staging memory";
  EXPECT_EQ(stager->bytes_reserved(), (4u + 4u + 8u) * 1024 * 1024 + std::string("54").capacity());
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  // ASan keeps freed memory in quarantine (up to 256 MiB by default), and TSan's allocator
  // and shadow memory grow too: resident memory says nothing about leaks there (LeakSanitizer
  // does). The staging pool checks above still hold.
  (void)before;
  (void)after;
#else
  EXPECT_LT(after, before + (24u << 20))
      << "RSS grew from " << before << " to " << after << " over 50 async saves of 16 MiB";
#endif
  stager->Close();
}

int CountStagingMappings() {
  int n = 0;
  DIR* dir = opendir("/proc/self/fd");
  while (dirent* e = readdir(dir)) {
    char target[256];
    ssize_t len = readlinkat(dirfd(dir), e->d_name, target, sizeof(target) - 1);
    if (len > 0 && std::string(target, len).find("dcpkv-staging") != std::string::npos) ++n;
  }
  closedir(dir);
  return n;
}

TEST(AsyncSaveTest, InternalStagerIsClosedAfterItsUploadAndAPassedOneIsNot) {
  testing::TempDir tmp;
  StateDict state;
  state.Set("w", MakeGlobal({64, 64}, 1));
  state.Set("v", MakeGlobal({32}, 2));
  AsyncSaveOptions o = AsyncTo(tmp.path(), "internal");
  o.staging_options.use_shared_memory = true;  // memfd mappings we can count
  StatusOr<AsyncSaveResponse> r = AsyncSave(state, o);
  ASSERT_TRUE(r.ok());
  ASSERT_TRUE(r->upload_completion.get().ok());
  EXPECT_EQ(CountStagingMappings(), 0) << "the internal stager kept its memory";

  auto stager = std::make_shared<DefaultStager>(StagingOptions{.use_shared_memory = true});
  o = AsyncTo(tmp.path(), "passed");
  o.async_stager = stager;
  ASSERT_TRUE(AsyncSave(state, o)->upload_completion.get().ok());
  EXPECT_EQ(CountStagingMappings(), 2) << "a passed-in stager is the caller's to close";
  EXPECT_GT(stager->bytes_reserved(), 0u);
  stager->Close();
  EXPECT_EQ(CountStagingMappings(), 0);
  EXPECT_EQ(stager->bytes_reserved(), 0u);
  o.save.checkpoint_id = "after-close";
  StatusOr<Metadata> md = AsyncSave(state, o)->upload_completion.get();
  EXPECT_EQ(md.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_THAT(md.status().message(), HasSubstr("stager is closed"));
}

TEST(AsyncSaveTest, StagerLimitIsEnforced) {
  DefaultStager stager({}, /*max_bytes=*/1000);
  Tensor t = MakeGlobal({1024}, 0);
  FlatStateDict flat{{"t", t}};
  EXPECT_EQ(stager.Stage(flat).status().code(), StatusCode::kResourceExhausted);
  EXPECT_EQ(stager.bytes_reserved(), 0u);
}

// A storage writer whose WriteData waits until the test opens the gate.
class GatedWriter : public KvStorageWriter {
 public:
  using KvStorageWriter::KvStorageWriter;
  std::future<StatusOr<std::vector<WriteResult>>> WriteData(const SavePlan& plan,
                                                            SavePlanner& planner) override {
    std::unique_lock<std::mutex> lock(mu_);
    entered_ = true;
    cv_.notify_all();
    cv_.wait(lock, [&] { return open_; });
    lock.unlock();
    return KvStorageWriter::WriteData(plan, planner);
  }
  void Open() {
    std::lock_guard<std::mutex> lock(mu_);
    open_ = true;
    cv_.notify_all();
  }
  void WaitEntered() {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return entered_; });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool open_ = false, entered_ = false;
};

TEST(AsyncSaveTest, OverlappingCallsWaitOrAreRefused) {
  testing::TempDir tmp;
  auto writer = std::make_shared<GatedWriter>(KvStorageOptions{tmp.path(), {}});
  StateDict state;
  state.Set("w", MakeGlobal({16}, 1));
  AsyncSaveOptions o;
  o.save.checkpoint_id = "first";
  o.save.storage_writer = writer;
  StatusOr<AsyncSaveResponse> first = AsyncSave(state, o);
  ASSERT_TRUE(first.ok());
  writer->WaitEntered();  // the first upload is now running

  o.save.checkpoint_id = "refused";
  o.overlap_policy = OverlapPolicy::kRefuse;
  StatusOr<AsyncSaveResponse> refused = AsyncSave(state, o);
  EXPECT_EQ(refused.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_THAT(refused.status().message(), HasSubstr("still running"));

  o.save.checkpoint_id = "second";
  o.overlap_policy = OverlapPolicy::kWait;
  std::atomic<bool> returned{false};
  std::thread waiter([&] {
    StatusOr<AsyncSaveResponse> second = AsyncSave(state, o);
    returned = true;
    ASSERT_TRUE(second.ok());
    EXPECT_TRUE(second->upload_completion.get().ok());
  });
  std::this_thread::sleep_for(300ms);
  EXPECT_FALSE(returned.load()) << "a second upload to the same store started while one ran";
  writer->Open();
  EXPECT_TRUE(first->upload_completion.get().ok());
  waiter.join();
  EXPECT_TRUE(returned.load());
}

TEST(AsyncSaveTest, DroppingTheResponseIsSafe) {
  testing::TempDir tmp;
  StateDict state;
  state.Set("w", MakeGlobal({128, 128}, 4));
  { ASSERT_TRUE(AsyncSave(state, AsyncTo(tmp.path(), "dropped")).ok()); }
  // The next save to the same store waits for the dropped one, which still commits.
  ASSERT_TRUE(AsyncSave(state, AsyncTo(tmp.path(), "next"))->upload_completion.get().ok());
  EXPECT_TRUE(
      SameBytes(LoadTensor(tmp.path(), "dropped", "w", {128, 128}), MakeGlobal({128, 128}, 4)));
}

// A group that, like an NCCL one, cannot run collectives on host memory from any thread.
class DeviceOnlyGroup : public ProcessGroup {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  std::string_view backend() const override { return "nccl"; }
  bool supports_cpu() const override { return false; }
  std::chrono::milliseconds timeout() const override { return 1s; }
  void set_timeout(std::chrono::milliseconds) override {}
  StatusOr<std::vector<std::string>> Gather(std::string_view d, int) override {
    return std::vector<std::string>{std::string(d)};
  }
  StatusOr<std::string> Scatter(const std::vector<std::string>& d, int) override { return d.at(0); }
  StatusOr<std::string> Broadcast(std::string_view d, int) override { return std::string(d); }
  StatusOr<std::vector<std::string>> AllGather(std::string_view d) override {
    return std::vector<std::string>{std::string(d)};
  }
  Status Barrier() override { return Status::Ok(); }
  uint64_t bytes_sent() const override { return 0; }
};

TEST(AsyncSaveTest, AGpuOnlyGroupIsRefused) {
  testing::TempDir tmp;
  DeviceOnlyGroup group;
  StateDict state;
  state.Set("w", MakeGlobal({4}, 0));
  AsyncSaveOptions o = AsyncTo(tmp.path(), "x");
  o.save.process_group = &group;
  StatusOr<AsyncSaveResponse> r = AsyncSave(state, o);
  EXPECT_EQ(r.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_THAT(r.status().message(), HasSubstr("add a CPU (gloo) group"));
}

TEST(AsyncSaveTest, WorldOfTwoThreadsReshardsOnLoad) {
  testing::TempDir tmp;
  const Tensor w = MakeGlobal({10, 6}, 5);
  RunOnGlooRanks(2, [&](ProcessGroup& pg) {
    ShardedTensor mine = testing::ShardOf(w, 0, 2, pg.rank());
    StateDict state;
    state.Set("w", mine);
    AsyncSaveOptions o = AsyncTo(tmp.path(), "async2");
    o.save.process_group = &pg;
    StatusOr<AsyncSaveResponse> r = AsyncSave(state, o);
    ASSERT_TRUE(r.ok());
    ASSERT_TRUE(r->staging_completion.get().ok());
    float* live = mine.local_shards[0].tensor.data_as<float>();
    for (uint64_t i = 0; i < mine.local_shards[0].tensor.numel(); ++i) live[i] = 0;
    ASSERT_TRUE(r->upload_completion.get().ok());
  });
  EXPECT_TRUE(SameBytes(LoadTensor(tmp.path(), "async2", "w", {10, 6}), w));
}

TEST(AsyncSaveTest, CheckpointerAsyncSavesInATrainingLoop) {
  testing::TempDir tmp;
  const Tensor w = MakeGlobal({12, 8}, 0);
  RunOnGlooRanks(2, [&](ProcessGroup& pg) {
    auto ckpt =
        std::move(Checkpointer::Create({.store_root = tmp.path(), .process_group = &pg}).value());
    ShardedTensor mine = testing::ShardOf(w, 0, 2, pg.rank());
    Tensor& live = mine.local_shards[0].tensor;
    StateDict state;
    state.Set("w", mine);
    std::shared_future<StatusOr<Metadata>> last;
    for (int step = 1; step <= 4; ++step) {
      for (uint64_t i = 0; i < live.numel(); ++i) live.data_as<float>()[i] = float(step);
      StatusOr<AsyncSaveResponse> r = ckpt->AsyncSave(state, "step-" + std::to_string(step));
      ASSERT_TRUE(r.ok()) << r.status();
      ASSERT_TRUE(r->staging_completion.get().ok());
      last = r->upload_completion;  // training goes on; the next step overwrites `live`
    }
    ASSERT_TRUE(last.get().ok()) << last.get().status();
    for (int step = 1; step <= 4; ++step) {
      ShardedTensor back = testing::EmptyShardOf(w, 0, 2, pg.rank());
      StateDict target;
      target.Set("w", back);
      ASSERT_TRUE(ckpt->Load(target, "step-" + std::to_string(step)).ok());
      const Tensor& t = back.local_shards[0].tensor;
      for (uint64_t i = 0; i < t.numel(); ++i) ASSERT_EQ(t.data_as<float>()[i], float(step));
    }
  });
}

}  // namespace
}  // namespace dcpkv

// The benchmarks of dcpkv_bench, one function per name. Every figure is the median of
// config.repetitions runs, each interleaved with a run of its baseline on the same bytes and
// directory; with several ranks a run's time is the slowest rank's.
#include <cstring>
#include <filesystem>
#include <mutex>

#include "bench.h"
#include "dcpkv/async_save.h"
#include "dcpkv/checkpoint.h"
#include "dcpkv/store/kv_storage.h"

namespace dcpkv::bench {
namespace {

// Per-rank times of one run; the run takes as long as its slowest rank.
class RunTimes {
 public:
  void Add(double seconds) {
    std::lock_guard<std::mutex> lock(mu_);
    max_ = std::max(max_, seconds);
  }
  double max() const { return max_; }

 private:
  std::mutex mu_;
  double max_ = 0;
};

void Sync(ProcessGroup* group) {
  if (group != nullptr) group->Barrier().IgnoreError();
}

int RankOf(ProcessGroup* g) { return g ? g->rank() : 0; }
int WorldOf(ProcessGroup* g) { return g ? g->size() : 1; }

// All shards of a state written one after another into one file, as one rank would.
double RawWrite(const std::string& path, const State& s) {
  std::vector<uint8_t> flat(s.bytes);
  uint64_t at = 0;
  for (const Tensor& t : s.shards) {
    std::memcpy(flat.data() + at, t.data(), t.nbytes());
    at += t.nbytes();
  }
  return RawWriteSeconds(path, flat.data(), flat.size());
}

double TimedSave(const Config& c, const std::string& root, const std::string& id, State& s,
                 ProcessGroup* g) {
  SaveOptions o;
  o.checkpoint_id = id;
  KvStorageOptions storage{root, {}};
  storage.store_options.chunk_size = c.chunk_size;
  o.storage_writer = std::make_shared<KvStorageWriter>(storage);
  o.process_group = g;
  Sync(g);
  const double start = NowSeconds();
  StatusOr<Metadata> md = Save(s.dict, o);
  const double seconds = NowSeconds() - start;
  if (!md.ok()) std::fprintf(stderr, "dcpkv_bench: save: %s\n", md.status().ToString().c_str());
  return seconds;
}

double TimedLoad(const std::string& root, const std::string& id, State& s, ProcessGroup* g) {
  LoadOptions o;
  o.checkpoint_id = id;
  o.store_root = root;
  o.process_group = g;
  Sync(g);
  const double start = NowSeconds();
  Status st = Load(s.dict, o);
  const double seconds = NowSeconds() - start;
  if (!st.ok()) std::fprintf(stderr, "dcpkv_bench: load: %s\n", st.ToString().c_str());
  return seconds;
}

std::string Root(const Config& c, const std::string& name) { return c.dir + "/" + name; }

void BenchMemcpy(const Config& c) {
  std::vector<double> times;
  std::vector<uint8_t> src(c.size, 1), dst(c.size, 0);
  for (int rep = 0; rep < c.repetitions; ++rep) {
    const double start = NowSeconds();
    std::memcpy(dst.data(), src.data(), c.size);
    times.push_back(NowSeconds() - start);
  }
  Report(c, {"memcpy", c.size, Median(times), "memcpy", Median(times), ""});
}

// save vs raw_write, and load (cold) vs raw_read, on the same bytes.
void BenchSaveLoad(const Config& c, bool report_save, bool report_load) {
  static int invocation = 0;  // save and load may both run in one process: distinct ids
  const std::string prefix = "saveload" + std::to_string(invocation++) + "-";
  std::vector<double> raw_w, save, raw_r, load;
  uint64_t bytes = 0;
  for (int rep = 0; rep < c.repetitions; ++rep) {
    RunTimes tw, ts, tr, tl;
    const std::string id = prefix + std::to_string(rep);
    RunRanks(c.world, [&](ProcessGroup* g) {
      State s = MakeState(c, RankOf(g), WorldOf(g), float(rep));
      Sync(g);
      const std::string raw = c.dir + "/raw-" + std::to_string(RankOf(g)) + ".bin";
      tw.Add(RawWrite(raw, s));
      ts.Add(TimedSave(c, Root(c, "store"), id, s, g));
      DropPageCache(Root(c, "store"));
      std::vector<uint8_t> back(s.bytes);
      Sync(g);
      tr.Add(RawReadSeconds(raw, back.data(), back.size()));
      State target = MakeState(c, RankOf(g), WorldOf(g), -1);
      tl.Add(TimedLoad(Root(c, "store"), id, target, g));
    });
    bytes = c.size;  // the state's bytes, summed over ranks
    raw_w.push_back(tw.max());
    save.push_back(ts.max());
    raw_r.push_back(tr.max());
    load.push_back(tl.max());
  }
  if (report_save) Report(c, {"save", bytes, Median(save), "raw_write", Median(raw_w), ""});
  if (report_load) Report(c, {"load", bytes, Median(load), "raw_read", Median(raw_r), "cold"});
}

void BenchSave(const Config& c) { BenchSaveLoad(c, true, false); }
void BenchLoad(const Config& c) { BenchSaveLoad(c, false, true); }

// Saved on world ranks, loaded cold on world and on world + 1 ranks.
void BenchLoadReshard(const Config& c) {
  std::vector<double> same, reshard;
  for (int rep = 0; rep < c.repetitions; ++rep) {
    const std::string id = "reshard-" + std::to_string(rep);
    RunRanks(c.world, [&](ProcessGroup* g) {
      State s = MakeState(c, RankOf(g), WorldOf(g), float(rep));
      TimedSave(c, Root(c, "store"), id, s, g);
    });
    RunTimes t_same, t_reshard;
    DropPageCache(Root(c, "store"));
    RunRanks(c.world, [&](ProcessGroup* g) {
      State target = MakeState(c, RankOf(g), WorldOf(g), -1);
      t_same.Add(TimedLoad(Root(c, "store"), id, target, g));
    });
    DropPageCache(Root(c, "store"));
    RunRanks(c.world + 1, [&](ProcessGroup* g) {
      State target = MakeState(c, RankOf(g), WorldOf(g), -1);
      t_reshard.Add(TimedLoad(Root(c, "store"), id, target, g));
    });
    same.push_back(t_same.max());
    reshard.push_back(t_reshard.max());
  }
  Report(c, {"load_reshard", c.size, Median(reshard), "load", Median(same),
             "world " + std::to_string(c.world) + " -> " + std::to_string(c.world + 1)});
}

// Time the caller is blocked by AsyncSave vs a memcpy of the same bytes into reused memory.
void BenchAsyncBlock(const Config& c, bool lazy) {
  std::vector<double> blocked, copy;
  RunRanks(c.world, [&](ProcessGroup* g) {
    State s = MakeState(c, RankOf(g), WorldOf(g), 0);
    std::vector<uint8_t> dst(s.bytes);
    StagingOptions staging;
    staging.use_async_staging = lazy;
    staging.use_pinned_memory = false;
    auto stager = std::make_shared<DefaultStager>(staging);
    const std::string name = lazy ? "lazy" : "eager";
    for (int rep = -1; rep < c.repetitions; ++rep) {  // rep -1 warms the pool and the store
      uint64_t at = 0;
      Sync(g);
      const double copy_start = NowSeconds();
      for (const Tensor& t : s.shards) {
        std::memcpy(dst.data() + at, t.data(), t.nbytes());
        at += t.nbytes();
      }
      const double copy_seconds = NowSeconds() - copy_start;
      AsyncSaveOptions o;
      o.save.checkpoint_id = name + std::to_string(rep + 1);
      o.save.store_root = Root(c, "async");
      o.save.process_group = g;
      o.async_stager = stager;
      Sync(g);
      const double start = NowSeconds();
      StatusOr<AsyncSaveResponse> r = AsyncSave(s.dict, o);
      const double seconds = NowSeconds() - start;
      if (!r.ok() || !r->upload_completion.get().ok()) {
        std::fprintf(stderr, "dcpkv_bench: async save failed\n");
      }
      if (rep >= 0 && RankOf(g) == 0) {
        blocked.push_back(seconds);
        copy.push_back(copy_seconds);
      }
    }
    stager->Close();
  });
  Report(c, {lazy ? "async_block_lazy" : "async_block", c.size, Median(blocked), "memcpy",
             Median(copy), lazy ? "use_async_staging" : "staging inside the call"});
}

}  // namespace

const std::map<std::string, Benchmark>& Benchmarks() {
  static const auto* const kBenchmarks = new std::map<std::string, Benchmark>{
      {"memcpy", BenchMemcpy},
      {"save", BenchSave},
      {"load", BenchLoad},
      {"load_reshard", BenchLoadReshard},
      {"async_block", [](const Config& c) { BenchAsyncBlock(c, false); }},
      {"async_block_lazy", [](const Config& c) { BenchAsyncBlock(c, true); }},
  };
  return *kBenchmarks;
}

}  // namespace dcpkv::bench

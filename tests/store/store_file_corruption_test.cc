// Random damage to the files of a store on disk (seeded): bytes flipped, a file truncated, a page
// zeroed, in any file of a rank database (SST, blob, write-ahead log, RocksDB's MANIFEST,
// CURRENT, OPTIONS, ...). Whatever is hit, for every checkpoint of the store:
//
//  - load never returns wrong numbers and never crashes: it loads bit-exactly or fails;
//  - a checkpoint that cannot be loaded any more is reported: `verify` (VerifyCheckpoints) names
//    it, or the store cannot be opened at all (a clear error), or it is no longer listed as
//    committed (then loading it is NOT_FOUND, never something else);
//  - damage to a chunk is a DATA_LOSS error on load that names the checkpoint.
//
// Damage in a region nothing reads (an obsolete file, padding, the info LOG) is harmless: the
// checkpoints then still load bit-exactly.
//
// Two copies of a saved store are damaged: one closed cleanly (every manifest in an SST file) and
// one copied while its writer was still open (the newest manifests only in the write-ahead log,
// as after a crash).
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "dcpkv/api/kv_storage.h"
#include "dcpkv/checkpoint.h"
#include "dcpkv/inspect/store_view.h"
#include "dcpkv/inspect/verify.h"
#include "tests/crash/crash_model.h"
#include "tests/util/gloo_threads.h"
#include "tests/util/temp_dir.h"

namespace dcpkv {
namespace {

namespace fs = std::filesystem;

constexpr uint64_t kSeed = 3;
constexpr int kSteps = 3;  // ck-000001 full, ck-000002 and ck-000003 incremental

// Saves steps 1..kSteps with two ranks (threads over gloo) into `root`; copies the store to
// `live_copy` while the writers are still open, before closing them.
void SaveStore(const std::string& root, const std::string& live_copy) {
  std::vector<std::shared_ptr<KvStorageWriter>> writers;
  for (int rank = 0; rank < 2; ++rank) {
    KvStorageOptions o;
    o.root = root;
    o.store_options.chunk_size = 64 << 10;
    writers.push_back(std::make_shared<KvStorageWriter>(o));
  }
  testing::RunOnGlooRanks(2, [&](ProcessGroup& pg) {
    for (uint64_t step = 1; step <= kSteps; ++step) {
      StateDict sd = testing::ModelState(step, kSeed, 2, pg.rank());
      SaveOptions o;
      o.checkpoint_id = testing::ModelCheckpointId(step);
      o.storage_writer = writers[pg.rank()];
      o.process_group = &pg;
      StatusOr<Metadata> md = Save(sd, o);
      ASSERT_TRUE(md.ok()) << md.status();
    }
  });
  fs::copy(root, live_copy, fs::copy_options::recursive);
}

struct Damage {
  std::string file;  // relative to the store root
  std::string what;  // "flip 3 bytes", "truncate to 120 of 4096 bytes", ...
};

// Damages one random file of the store at `root`. Without `sst_content`, SST files are only
// truncated (RandomDamageOfTableFileContents damages their contents).
Damage DamageRandomFile(const std::string& root, std::mt19937_64& rng, bool sst_content) {
  std::vector<fs::path> files;
  for (const auto& e : fs::recursive_directory_iterator(root)) {
    if (e.is_regular_file() && e.file_size() > 0) files.push_back(e.path());
  }
  std::sort(files.begin(), files.end());
  const fs::path file = files[rng() % files.size()];
  const uint64_t size = fs::file_size(file);
  Damage d{fs::relative(file, root).string(), ""};
  std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
  const int mode = static_cast<int>(rng() % 4);
  switch (!sst_content && file.extension() == ".sst" ? 3 : mode) {
    case 0:
    case 1: {  // flip bits of a few random bytes
      const int n = 1 + static_cast<int>(rng() % 4);
      for (int i = 0; i < n; ++i) {
        const uint64_t at = rng() % size;
        f.seekg(at);
        char c = 0;
        f.get(c);
        c = static_cast<char>(c ^ (1 << (rng() % 8)));
        f.seekp(at);
        f.put(c);
        d.what += (i ? ", " : "flip a bit of byte ") + std::to_string(at);
      }
      break;
    }
    case 2: {  // zero a 4 KiB page
      const uint64_t at = rng() % size / 4096 * 4096;
      const std::string zeros(std::min<uint64_t>(4096, size - at), '\0');
      f.seekp(at);
      f.write(zeros.data(), zeros.size());
      d.what = "zero bytes " + std::to_string(at) + ".." + std::to_string(at + zeros.size());
      break;
    }
    default: {  // truncate
      f.close();
      const uint64_t to = rng() % size;
      fs::resize_file(file, to);
      d.what = "truncate to " + std::to_string(to) + " of " + std::to_string(size) + " bytes";
      break;
    }
  }
  return d;
}

// What a damaged store said about one checkpoint.
enum class Outcome {
  kIntact,           // loads bit-exactly
  kReported,         // verify names it (or lists its manifest as damaged); load fails
  kStoreUnreadable,  // the store cannot be opened: a clear error
  // Not listed as committed any more, and load says NOT_FOUND: RocksDB's point-in-time recovery
  // drops the write-ahead log from a damaged record on, and with it the newest commits (whose
  // manifests were only there). Nothing wrong is loaded, but the loss is silent.
  kNoLongerListed,
};

// Whether `s` is a DATA_LOSS naming a chunk of one of the `reported` checkpoints.
bool NamesAChunkOf(const Status& s, const std::set<std::string>& reported) {
  if (s.code() != StatusCode::kDataLoss) return false;
  for (const std::string& id : reported) {
    if (s.message().find("checkpoint \"" + id + "\" fqn") != std::string::npos) return true;
  }
  return false;
}

// Damages a copy of `source` at `root` (trial `trial`'s damage) and checks what the store says
// about each checkpoint. Returns the outcome of each, for the log.
std::vector<std::string> RunTrial(int trial, const std::string& source, const std::string& root,
                                  bool sst_content) {
  fs::copy(source, root, fs::copy_options::recursive);
  std::mt19937_64 rng(20240611 + trial);
  const Damage damage = DamageRandomFile(root, rng, sst_content);
  const std::string label = "trial " + std::to_string(trial) + " on the " +
                            fs::path(source).filename().string() + " copy: " + damage.file + ": " +
                            damage.what;
  std::printf("%s\n", label.c_str());
  std::fflush(stdout);  // names the damage if what follows should crash
  SCOPED_TRACE(label);

  // What `dcpkv ls` and `dcpkv verify` say.
  std::set<std::string> listed, reported;
  StatusOr<std::unique_ptr<inspect::StoreView>> view = inspect::StoreView::Open(root);
  if (view.ok()) {
    for (const inspect::CheckpointListing& c : (*view)->checkpoints()) {
      if (c.state == inspect::CheckpointState::kCommitted) listed.insert(c.checkpoint_id);
      if (c.state == inspect::CheckpointState::kDamaged) reported.insert(c.checkpoint_id);
    }
    StatusOr<inspect::VerifyReport> report = inspect::VerifyCheckpoints(**view, {});
    if (report.ok()) {
      for (const inspect::VerifyProblem& p : report->problems) reported.insert(p.checkpoint_id);
    } else {
      // Verify itself failed: every checkpoint counts as reported, with a clear error.
      EXPECT_FALSE(report.status().message().empty());
      for (uint64_t s = 1; s <= kSteps; ++s) reported.insert(testing::ModelCheckpointId(s));
    }
  } else {
    EXPECT_FALSE(view.status().message().empty());
    EXPECT_NE(view.status().code(), StatusCode::kInternal) << view.status();
  }
  const bool opened = view.ok();
  view = StatusOr<std::unique_ptr<inspect::StoreView>>(InternalError("closed"));

  std::vector<std::string> outcomes;
  for (uint64_t step = 1; step <= kSteps; ++step) {
    const std::string id = testing::ModelCheckpointId(step);
    Status loaded = testing::LoadAndCompareModel(root, id, step, kSeed);
    // Wrong numbers come back as DATA_LOSS "loaded other values": never acceptable.
    EXPECT_EQ(loaded.message().find("loaded other values"), std::string::npos) << loaded;
    EXPECT_EQ(loaded.message().find("loaded another"), std::string::npos) << loaded;
    EXPECT_NE(loaded.code(), StatusCode::kInternal) << loaded;
    Outcome outcome = Outcome::kIntact;
    if (!loaded.ok()) {
      if (reported.count(id)) {
        outcome = Outcome::kReported;
      } else if (!opened) {
        outcome = Outcome::kStoreUnreadable;
      } else if (NamesAChunkOf(loaded, reported)) {
        // A load reads only the chunks it needs: damage to another checkpoint's chunk (next to
        // one this incremental checkpoint uses, say) must not fail it.
        ADD_FAILURE() << id << " is intact by verify but fails on another checkpoint's damage: "
                      << loaded;
      } else {
        outcome = Outcome::kNoLongerListed;
        EXPECT_FALSE(listed.count(id))
            << id << " is listed, verify found nothing, but it does not load: " << loaded;
        EXPECT_EQ(loaded.code(), StatusCode::kNotFound) << loaded;
      }
      if (loaded.code() == StatusCode::kDataLoss) {
        EXPECT_NE(loaded.message().find("checkpoint \""), std::string::npos) << loaded;
      }
    } else {
      // Loaded bit-exactly (LoadAndCompareModel compares every byte), whatever verify said.
      EXPECT_TRUE(listed.count(id) || !opened) << id << " loads but is not listed";
    }
    static const char* kNames[] = {"intact", "reported", "store unreadable", "not listed"};
    outcomes.push_back(
        std::string(kNames[static_cast<int>(outcome)]) +
        (loaded.ok() ? "" : " (" + std::string(StatusCodeName(loaded.code())) + ")"));
  }
  fs::remove_all(root);
  return outcomes;
}

void RunTrials(bool sst_content, int trials) {
  testing::TempDir tmp;
  SaveStore(tmp.Sub("closed"), tmp.Sub("live"));
  for (uint64_t step = 1; step <= kSteps; ++step) {
    for (const char* copy : {"closed", "live"}) {
      ASSERT_TRUE(
          testing::LoadAndCompareModel(tmp.Sub(copy), testing::ModelCheckpointId(step), step, kSeed)
              .ok());
    }
  }
  // Trials in parallel: a damaged store makes opens retry with a backoff (a read-only open
  // cannot tell damage from a writer's flush in progress), so most of a trial is waiting.
  std::atomic<int> next{0};
  std::mutex mu;
  std::map<std::string, int> outcomes;  // for the log
  std::vector<std::thread> workers;
  for (int w = 0; w < 8; ++w) {
    workers.emplace_back([&] {
      for (int trial = next++; trial < trials; trial = next++) {
        const std::string source = tmp.Sub(trial % 2 == 0 ? "closed" : "live");
        std::vector<std::string> o =
            RunTrial(trial, source, tmp.Sub("trial-" + std::to_string(trial)), sst_content);
        std::lock_guard<std::mutex> lock(mu);
        for (const std::string& what : o) outcomes[what]++;
      }
    });
  }
  for (std::thread& t : workers) t.join();
  for (const auto& [what, n] : outcomes) std::printf("  %s: %d\n", what.c_str(), n);
}

TEST(StoreFileCorruptionTest, RandomDamageIsReportedAndNeverLoadsWrongNumbers) {
  RunTrials(/*sst_content=*/false, 50);
}

// Damage inside SST files too: chunk reads keep RocksDB's block checksums on, so a damaged data
// block is a clean "Corruption: block checksum mismatch" (DATA_LOSS), not a block parsed as is
// (which Debian's librocksdb, built with assertions, answers by aborting the process).
TEST(StoreFileCorruptionTest, RandomDamageOfTableFileContents) {
  RunTrials(/*sst_content=*/true, 50);
}

}  // namespace
}  // namespace dcpkv

// The process the crash harness kills (crash_harness_test.cc): one rank of a job that saves
// checkpoints of the crash model (crash_model.h) in a loop, steps FIRST .. FIRST+COUNT-1, into a
// store root, until it is killed or done.
//
//   dcpkv_crash_child --root DIR --log FILE --first STEP --count N --seed S
//                     [--keep-last K] [--full-every F] [--timeout-ms T]
//                     [--crash-at POINT[:N] --crash-rank R] [--tear-commit N]
//                     [--write-path batch|ingest] [--async 0|1] [--power-loss JOURNAL]
//
// With WORLD_SIZE > 1 in the environment the ranks meet over gloo the torchrun way (RANK,
// WORLD_SIZE, MASTER_ADDR, MASTER_PORT), collectives waiting at most T ms (default 3000).
// Rank 0 appends "attempt STEP" to the log and fsyncs it before each save starts, and "ok STEP"
// once the save returned OK: whatever the store holds, the harness knows which steps were tried.
// Step s is a full save when s % F == 0 (default F = 3), else incremental on the newest
// checkpoint; K > 0 keeps the newest K (retention), default 0 keeps all.
//
// --crash-at arms a crash point (store/crash_points.h) on rank R (default 0).
// --tear-commit N: rank 0 tears the write-ahead log record of the N-th commit (manifest) it
// writes in half and dies (a crash in the middle of the manifest write).
//
// --async 1: each step is an AsyncSave (staged, uploaded on the background thread), its upload
// waited for before the next step.
// --die-after-save N: rank 0 SIGKILLs itself right after the N-th save returned OK and was logged
// (a cut at the first moment the save is promised durable).
// --power-loss JOURNAL: every file of the store goes through the power-loss layer
// (power_loss.h), which records in JOURNAL what was made durable, for a simulated power cut.
//
// Exit codes: 0 every save done; 1 a save failed (its error on stderr); 2 bad usage.
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <string>

#include <rocksdb/env.h>

#include "dcpkv/api/kv_storage.h"
#include "dcpkv/async_save.h"
#include "dcpkv/checkpoint.h"
#include "dcpkv/gloo_process_group.h"
#include "dcpkv/store/crash_points.h"
#include "tests/crash/crash_model.h"
#include "tests/crash/fault_injection_fs.h"
#include "tests/crash/power_loss.h"

namespace {

using dcpkv::testing::FaultInjectionFileSystem;

int Usage(const char* argv0) {
  std::fprintf(
      stderr,
      "usage: %s --root DIR --log FILE --first STEP --count N --seed S [--keep-last K] "
      "[--full-every F] [--timeout-ms T] [--crash-at POINT[:N] --crash-rank R] "
      "[--tear-commit N] [--write-path batch|ingest] [--async 0|1] [--power-loss JOURNAL]\n",
      argv0);
  return 2;
}

// Appends a line to the log and makes it durable before returning.
bool LogLine(const std::string& path, const std::string& line) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) return false;
  const std::string text = line + "\n";
  bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()) &&
            ::fsync(fd) == 0;
  return ::close(fd) == 0 && ok;
}

// --tear-commit: the file system under rank 0's store, and which commit to tear.
FaultInjectionFileSystem* tear_fs = nullptr;
long tear_at = 0;
long commits_seen = 0;

void TearCommit(std::string_view point) {
  if (point != "save.before_manifest" || ++commits_seen != tear_at) return;
  dcpkv::testing::FaultSpec spec;
  spec.kind = dcpkv::testing::FaultKind::kTornWriteThenKill;
  spec.files = {".log"};
  spec.on_op = 1;  // the manifest's write-ahead log record
  tear_fs->Arm(spec);
}

}  // namespace

int main(int argc, char** argv) {
  using namespace dcpkv;  // NOLINT
  std::map<std::string, std::string> flags = {{"--keep-last", "0"},      {"--full-every", "3"},
                                              {"--timeout-ms", "3000"},  {"--crash-rank", "0"},
                                              {"--tear-commit", "0"},    {"--crash-at", ""},
                                              {"--write-path", "batch"}, {"--async", "0"},
                                              {"--power-loss", ""},      {"--die-after-save", "0"}};
  for (int i = 1; i < argc; i += 2) {
    if (i + 1 >= argc || std::string(argv[i]).rfind("--", 0) != 0) return Usage(argv[0]);
    flags[argv[i]] = argv[i + 1];
  }
  for (const char* required : {"--root", "--log", "--first", "--count", "--seed"}) {
    if (flags.count(required) == 0) return Usage(argv[0]);
  }
  const std::string root = flags["--root"], log = flags["--log"];
  const uint64_t first = std::strtoull(flags["--first"].c_str(), nullptr, 10);
  const uint64_t count = std::strtoull(flags["--count"].c_str(), nullptr, 10);
  const uint64_t seed = std::strtoull(flags["--seed"].c_str(), nullptr, 10);
  const int keep_last = std::atoi(flags["--keep-last"].c_str());
  const uint64_t full_every =
      std::max(1ull, std::strtoull(flags["--full-every"].c_str(), nullptr, 10));
  const auto timeout = std::chrono::milliseconds(std::atol(flags["--timeout-ms"].c_str()));
  tear_at = std::atol(flags["--tear-commit"].c_str());
  const long die_after_save = std::atol(flags["--die-after-save"].c_str());

  std::unique_ptr<ProcessGroup> group;
  int rank = 0;
  const char* world_env = std::getenv("WORLD_SIZE");
  if (world_env != nullptr && std::atoi(world_env) > 1) {
    StatusOr<std::unique_ptr<ProcessGroup>> pg = CreateGlooProcessGroupFromEnv(timeout);
    if (!pg.ok()) {
      std::fprintf(stderr, "crash child: process group: %s\n", pg.status().ToString().c_str());
      return 1;
    }
    group = std::move(pg).value();
    rank = group->rank();
  }
  const int world = group == nullptr ? 1 : group->size();
  if (!flags["--crash-at"].empty() && rank == std::atoi(flags["--crash-rank"].c_str())) {
    ::setenv(kCrashAtEnv, flags["--crash-at"].c_str(), 1);
  }

  std::unique_ptr<testing::PowerLossLayer> power_loss;
  if (!flags["--power-loss"].empty()) {
    StatusOr<std::unique_ptr<testing::PowerLossLayer>> layer =
        testing::PowerLossLayer::Install(flags["--power-loss"]);
    if (!layer.ok()) {
      std::fprintf(stderr, "crash child: %s\n", layer.status().ToString().c_str());
      return 1;
    }
    power_loss = std::move(layer).value();
  }
  auto fs = std::make_shared<FaultInjectionFileSystem>();
  std::unique_ptr<rocksdb::Env> env = rocksdb::NewCompositeEnv(fs);
  KvStorageOptions storage;
  storage.root = root;
  storage.store_options.chunk_size = 64 << 10;
  storage.store_options.write_batch_bytes = 96 << 10;  // a few batches per save
  // Ingested table files: a few files per save.
  storage.store_options.write_path = flags["--write-path"] == "ingest"
                                         ? ChunkWritePath::kIngestTableFiles
                                         : ChunkWritePath::kWriteBatch;
  storage.store_options.table_file_bytes = 160 << 10;
  // Saves here are small: every chunk into table files, so that their crash points are met.
  storage.store_options.small_write_bytes = 0;
  if (power_loss != nullptr) storage.store_options.env = power_loss->env();
  if (rank == 0 && tear_at > 0) {
    storage.store_options.env = env.get();
    tear_fs = fs.get();
    SetCrashPointObserver(&TearCommit);
  }
  auto writer = std::make_shared<KvStorageWriter>(storage);  // kept across saves, as a job does

  for (uint64_t step = first; step < first + count; ++step) {
    if (rank == 0 && !LogLine(log, "attempt " + std::to_string(step))) {
      std::fprintf(stderr, "crash child: cannot write %s\n", log.c_str());
      return 1;
    }
    StateDict sd = testing::ModelState(step, seed, world, rank);
    SaveOptions o;
    o.checkpoint_id = testing::ModelCheckpointId(step);
    o.storage_writer = writer;
    o.process_group = group.get();
    o.incremental = step % full_every != 0;
    o.keep_last = keep_last;
    StatusOr<Metadata> md = InternalError("no save");
    if (flags["--async"] == "1") {
      AsyncSaveOptions ao;
      ao.save = o;
      StatusOr<AsyncSaveResponse> r = AsyncSave(sd, ao);
      if (r.ok()) {
        Status staged = r->staging_completion.get();
        md = staged.ok() ? r->upload_completion.get() : StatusOr<Metadata>(staged);
      } else {
        md = r.status();
      }
    } else {
      md = Save(sd, o);
    }
    if (!md.ok()) {
      std::fprintf(stderr, "crash child rank %d: step %llu: %s\n", rank,
                   static_cast<unsigned long long>(step), md.status().ToString().c_str());
      return 1;
    }
    if (rank == 0 && !LogLine(log, "ok " + std::to_string(step))) return 1;
    if (rank == 0 && static_cast<long>(step - first + 1) == die_after_save) {
      std::fprintf(stderr, "crash child: step %llu saved: SIGKILL\n",
                   static_cast<unsigned long long>(step));
      ::raise(SIGKILL);
    }
  }
  return 0;
}

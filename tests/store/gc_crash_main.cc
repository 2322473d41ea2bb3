// A process for the removal and garbage collection tests (gc_test.cc).
//
//   dcpkv_gc_crash rm ROOT ID...        RemoveCheckpoints(ROOT, {ID...})
//   dcpkv_gc_crash gc ROOT              CollectGarbage(ROOT)
//   dcpkv_gc_crash hold DB_DIR READY    opens DB_DIR read-write (as a running job would), creates
//                                       the file READY, then waits to be killed (at most 120 s)
//
// With DCPKV_GC_CRASH_AT=<point> in the environment, rm and gc SIGKILL themselves when they
// reach that point of the protocol (GcOptions::on_step names the points): it arms the store's
// crash point of that name (store/crash_points.h; DCPKV_CRASH_AT works too). Exit status: 0 done,
// 1 the operation failed, 2 usage; a crash is death by SIGKILL. With DCPKV_POWER_LOSS_JOURNAL,
// every file rm and gc write goes through the power-loss layer (tests/crash/power_loss.h).
#include <stdlib.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "dcpkv/store/chunk_store.h"
#include "dcpkv/store/crash_points.h"
#include "dcpkv/store/gc.h"
#include "tests/crash/power_loss.h"

namespace {

int Fail(const dcpkv::Status& s) {
  std::fprintf(stderr, "gc crash helper: %s\n", s.ToString().c_str());
  return 1;
}

void PrintReport(const dcpkv::GcReport& r) {
  std::printf("reclaimed %zu pending %zu orphans %zu chunks deleted %llu kept %llu freed %llu\n",
              r.reclaimed_ids.size(), r.pending_ids.size(), r.orphan_ids.size(),
              static_cast<unsigned long long>(r.chunks_deleted),
              static_cast<unsigned long long>(r.chunks_kept),
              static_cast<unsigned long long>(r.disk_bytes_freed()));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s rm ROOT ID... | gc ROOT | hold DB_DIR READY\n", argv[0]);
    return 2;
  }
  const std::string command = argv[1];
  dcpkv::GcOptions options;
  if (const char* point = std::getenv("DCPKV_GC_CRASH_AT"); point != nullptr && *point != '\0') {
    ::setenv(dcpkv::kCrashAtEnv, point, /*overwrite=*/1);  // read at the first point reached
  }
  std::unique_ptr<dcpkv::testing::PowerLossLayer> power_loss;
  if (const char* journal = std::getenv("DCPKV_POWER_LOSS_JOURNAL"); journal != nullptr) {
    dcpkv::StatusOr<std::unique_ptr<dcpkv::testing::PowerLossLayer>> layer =
        dcpkv::testing::PowerLossLayer::Install(journal);
    if (!layer.ok()) return Fail(layer.status());
    power_loss = std::move(layer).value();
    options.env = power_loss->env();
  }
  if (command == "rm" && argc >= 4) {
    std::vector<std::string> ids(argv + 3, argv + argc);
    dcpkv::StatusOr<dcpkv::RemoveReport> report = dcpkv::RemoveCheckpoints(argv[2], ids, options);
    if (!report.ok()) return Fail(report.status());
    PrintReport(report->gc);
    return 0;
  }
  if (command == "gc" && argc == 3) {
    dcpkv::StatusOr<dcpkv::GcReport> report = dcpkv::CollectGarbage(argv[2], options);
    if (!report.ok()) return Fail(report.status());
    PrintReport(*report);
    return 0;
  }
  if (command == "hold" && argc == 4) {
    std::unique_ptr<dcpkv::ChunkStore> store;
    if (auto s = dcpkv::ChunkStore::Open(argv[2], {}, &store); !s.ok()) return Fail(s);
    { std::ofstream(argv[3]) << "ready\n"; }
    std::this_thread::sleep_for(std::chrono::seconds(120));
    return 0;
  }
  std::fprintf(stderr, "usage: %s rm ROOT ID... | gc ROOT | hold DB_DIR READY\n", argv[0]);
  return 2;
}

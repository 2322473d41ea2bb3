// A process that races others on one store root, for the creation and lease tests. It waits until
// GO_FILE exists (so that all racers start together), then:
//   create DIR INDEX GO_FILE   opens (creating) the rank database DIR read-write, writes a shard
//                              under checkpoint "ck-INDEX" and closes it;
//   lease ROOT GO_FILE HOLD_MS takes ROOT's writer lease for the job DCPKV_JOB_ID names, prints
//                              "acquired", holds it HOLD_MS milliseconds (a crash if HOLD_MS is
//                              negative: it never lets go) and lets go; as a maintenance
//                              command ("dcpkv gc") if DCPKV_RACER_MAINTENANCE=1.
// Exit codes: 0 done, 10 refused (a database lock or the lease held by another), 20 other error
// (printed on stderr), 2 usage.
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <thread>

#include "dcpkv/store/chunk_store.h"
#include "dcpkv/store/writer_lease.h"
#include "tests/util/test_data.h"

namespace {

constexpr int kRefused = 10;
constexpr int kFailed = 20;

void WaitFor(const std::string& path) {
  while (!std::filesystem::exists(path))
    std::this_thread::sleep_for(std::chrono::microseconds(200));
}

int Report(const std::string& what, const dcpkv::Status& s) {
  // A database's LOCK that another racer held when RocksDB tried it, and let go of before the
  // open looked at the kernel's lock table, is not classified kLockHeld: its text says so.
  const bool lock_taken =
      s.message().find("/LOCK: Resource temporarily unavailable") != std::string::npos;
  if (s.reason() == dcpkv::ErrorReason::kLockHeld || s.reason() == dcpkv::ErrorReason::kLeaseHeld ||
      lock_taken) {
    std::printf("refused: %s\n", s.ToString().c_str());
    return kRefused;
  }
  std::fprintf(stderr, "%s: %s\n", what.c_str(), s.ToString().c_str());
  return kFailed;
}

int Create(const std::string& dir, int index) {
  std::unique_ptr<dcpkv::ChunkStore> store;
  dcpkv::Status s = dcpkv::ChunkStore::Open(dir, {}, &store);
  if (!s.ok()) return Report("opening " + dir, s);
  dcpkv::ShardGeometry g{dcpkv::DType::kFloat32, {0}, {256}};
  std::vector<uint8_t> data = dcpkv::testing::RandomBytes(*g.ByteSize(), index);
  s = store->PutShard("ck-" + std::to_string(index), "w", g, data.data(), data.size());
  if (s.ok()) s = store->Close();
  return s.ok() ? 0 : Report("writing " + dir, s);
}

int Lease(const std::string& root, int hold_ms) {
  if (const char* m = std::getenv("DCPKV_RACER_MAINTENANCE"); m != nullptr && *m == '1') {
    dcpkv::SetMaintenanceIdentity("gc");
  }
  auto lease = dcpkv::WriterLease::Acquire(root);
  if (!lease.ok()) return Report("leasing " + root, lease.status());
  std::printf("acquired\n");
  std::fflush(stdout);
  if (hold_ms < 0) {
    for (;;) std::this_thread::sleep_for(std::chrono::seconds(1));  // killed by the test
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(hold_ms));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "";
  if (mode == "create" && argc == 5) {
    WaitFor(argv[4]);
    return Create(argv[2], std::stoi(argv[3]));
  }
  if (mode == "lease" && argc == 5) {
    WaitFor(argv[3]);
    return Lease(argv[2], std::stoi(argv[4]));
  }
  std::fprintf(stderr, "usage: %s create DIR INDEX GO_FILE | lease ROOT GO_FILE HOLD_MS\n",
               argv[0]);
  return 2;
}

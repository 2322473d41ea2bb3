// Power cuts (ctest names contain "PowerLoss"): the crash harness (crash_harness.h) with every
// kill a simulated power cut (power_loss.h). Every process of the round dies at once, at a crash
// point of save, of the async upload, of retention, rm or gc, or at a random moment, and the store
// keeps only what was synced: unsynced tails of files cut off (or garbled, every other cut),
// entries of directories not synced since gone, unsynced renames and removals undone. After each
// cut every checkpoint committed before it loads bit-exactly, nothing uncommitted is listed as
// committed, verify is clean, and the job starts again on the store and saves.
//
// CI: at least 200 cuts (worlds of 1 and 2, both write paths). DCPKV_CRASH_LONG=1 (or --long):
// at least 2,000. DCPKV_CRASH_SEED picks another seed.
#include <gtest/gtest.h>

#include <cstring>

#include "tests/crash/crash_harness.h"

namespace dcpkv {
namespace {

HarnessOptions PowerLossOptions(int world, bool ingest, uint64_t seed, int rounds) {
  HarnessOptions o;
  o.world = world;
  o.keep_last = 3;
  o.seed = seed;
  o.ingest = ingest;
  o.power_loss = true;
  o.rounds = LongMode() ? rounds * 10 : rounds;
  return o;
}

TEST(PowerLossTest, WorldOfOneCutAtRandomAndAtEveryCrashPoint) {
  const HarnessOptions o = PowerLossOptions(1, false, 101, 80);
  RunHarness(o, o.rounds);  // every round ends in a cut
}

TEST(PowerLossTest, WorldOfTwoProcessesCutAtRandomAndAtEveryCrashPoint) {
  const HarnessOptions o = PowerLossOptions(2, false, 202, 60);
  RunHarness(o, o.rounds);  // every round ends in a cut
}

TEST(PowerLossTest, IngestedTableFilesCutAtRandomAndAtEveryCrashPoint) {
  for (const int world : {1, 2}) {
    const HarnessOptions o = PowerLossOptions(world, true, 300 + world, 50);
    RunHarness(o, o.rounds);  // every round ends in a cut
    if (::testing::Test::HasFailure()) return;
  }
}

}  // namespace
}  // namespace dcpkv

int main(int argc, char** argv) { return dcpkv::CrashHarnessMain(argc, argv); }

// Crash points: named places in the save and garbage collection paths where a crash test can make
// the process die as a SIGKILL would, at exactly that moment. Not installed: store/ and tests only.
//
// A test arms one point through the environment of the process it starts:
//
//   DCPKV_CRASH_AT=<name>       dies the first time <name> is reached
//   DCPKV_CRASH_AT=<name>:<n>   dies the n-th time (n >= 1) <name> is reached in this process
//
// The variable is read once, at the first point reached. Dying is raise(SIGKILL): no destructor,
// atexit handler or buffered write runs, so the files are left exactly as a kill would leave them.
// Without the variable a point costs one comparison.
//
// Points (kept stable: tests name them):
//   save.after_chunk_batch      a batch of chunks written to the memtable (not yet durable)
//   save.after_table_file       kIngestTableFiles: a table file of chunks written and synced in
//                               <dir>/ingest/, not yet ingested (removed by the next open)
//   save.after_ingest           kIngestTableFiles: a table file ingested (durable, not committed)
//   save.after_flush            this rank's chunks of the save flushed (durable), not committed
//   save.before_manifest        the coordinator is about to write the manifest (commit)
//   save.after_manifest         the manifest is written (committed); retention not yet run
//   save.after_retention        retention moved the old manifests to trash; their data not yet
//                               reclaimed
//   retention.after_trash_first retention moved the first old manifest to trash
//   and the points of GcOptions::on_step (gc.h), under the same names ("after_delete_first",
//   "after_compact_first", ...), reached by RemoveCheckpoints, CollectGarbage and the in-job
//   CollectRankGarbage alike.
//
// Thread safety: MaybeCrashAt may be called from any thread. SetCrashPointObserver must be called
// before any point can be reached concurrently.
#ifndef DCPKV_STORE_CRASH_POINTS_H_
#define DCPKV_STORE_CRASH_POINTS_H_

#include <string_view>

namespace dcpkv {

inline constexpr char kCrashAtEnv[] = "DCPKV_CRASH_AT";

// Dies (SIGKILL) if the armed point is `name` and this is the armed hit; otherwise returns.
// Calls the observer, if one is set, first.
void MaybeCrashAt(std::string_view name);

// Test hook: `observer` (null to remove) is called with the name of every point reached, before
// the crash check. For fault-injection tests that act at a point (arm a fault, tear a write)
// rather than die there.
using CrashPointObserver = void (*)(std::string_view name);
void SetCrashPointObserver(CrashPointObserver observer);

}  // namespace dcpkv

#endif  // DCPKV_STORE_CRASH_POINTS_H_

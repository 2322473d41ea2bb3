// A simulated power cut: a file-system layer for tests that records what each file operation
// made durable, and, once the processes using it are dead, turns a store root into what a machine
// that lost its power at that moment could hold after a reboot.
//
// What survives a power cut, in this model (the strict one of leveldb's and RocksDB's fault
// injection file systems; ext4 and XFS keep at least this much):
//  - a file's bytes up to the length it had when its last fsync/fdatasync began; the rest is
//    lost (CutMode::kTruncate) or, the file keeping its length, garbage (CutMode::kGarbage);
//  - a directory's entries as they were at its last fsync: files and directories created, renamed
//    in or out, linked or removed since are as before (an unsynced creation is gone, an unsynced
//    rename is undone, an unsynced removal is undone, with the file's synced bytes).
// Everything under the root at the start of a journal (BeginPowerLossJournal) counts as durable.
//
// The processes write a journal (one line per operation, appended with one write(2) each: a
// SIGKILL keeps it) and keep a hard link to every file they remove or replace in
// <journal>.graveyard/, so that an undone removal gets its bytes back. An operation is journaled
// after it is done and before its caller sees it return, so a cut never keeps more than the
// callers were told: a sync whose record a kill prevented counts as not done.
//
//   // the test, before starting the processes:
//   BeginPowerLossJournal(journal, root);
//   // each process (the crash child, gc): every file it writes goes through the layer
//   auto layer = PowerLossLayer::Install(journal);   // dcpkv's FileOps (store/file_ops.h)
//   options.store_options.env = layer->env();         // RocksDB's files
//   // the test, once every process is dead (SIGKILL: the cut):
//   StatusOr<PowerCutReport> r = ApplyPowerCut(journal, root, CutMode::kTruncate, seed);
//
// Each operation and its record are done under a lock of the process and an flock(2) of the
// journal, so that the records of several processes (the ranks of a job, on one root) come in
// the order their operations took effect. A file's sync is recorded with the length the file had
// when the sync began.
//
// What it does not model: data written in place over synced bytes (RocksDB writes every file
// once, front to back; a file opened for in-place writes is refused), and metadata such as
// modification times.
#ifndef DCPKV_TESTS_CRASH_POWER_LOSS_H_
#define DCPKV_TESTS_CRASH_POWER_LOSS_H_

#include <rocksdb/env.h>
#include <rocksdb/file_system.h>

#include <cstdint>
#include <memory>
#include <string>

#include "dcpkv/status.h"
#include "dcpkv/store/file_ops.h"

namespace dcpkv::testing {

enum class CutMode {
  kTruncate,  // unsynced tails are cut off
  kGarbage,   // unsynced tails are overwritten with random bytes, files keeping their length
};

// Starts a journal for `root` (made if missing): empties `journal` and its graveyard and records
// everything now under `root` as durable.
Status BeginPowerLossJournal(const std::string& journal, const std::string& root);

// The layer in one process. Install sets dcpkv's FileOps to the recording ones for the life of
// the returned object (one at a time).
class PowerLossLayer {
 public:
  static StatusOr<std::unique_ptr<PowerLossLayer>> Install(const std::string& journal);
  ~PowerLossLayer();
  PowerLossLayer(const PowerLossLayer&) = delete;
  PowerLossLayer& operator=(const PowerLossLayer&) = delete;

  // RocksDB's environment with the recording file system (ChunkStoreOptions::env,
  // GcOptions::env).
  rocksdb::Env* env() const { return env_.get(); }

  class Recorder;

 private:
  PowerLossLayer() = default;
  std::shared_ptr<Recorder> recorder_;
  std::shared_ptr<rocksdb::FileSystem> fs_;
  std::unique_ptr<rocksdb::Env> env_;
  std::unique_ptr<FileOps> ops_;
};

// What a cut did.
struct PowerCutReport {
  uint64_t records = 0;          // journal lines replayed
  uint64_t files_kept = 0;       // files in the root after the cut
  uint64_t files_shortened = 0;  // of those, files with an unsynced tail cut off or garbled
  uint64_t bytes_lost = 0;       // unsynced bytes cut off or garbled in kept files
  uint64_t entries_lost = 0;     // files and directories made since their directory's last sync
  uint64_t removals_undone = 0;  // files removed, replaced or renamed since, back again
};

// Applies a power cut to `root` as the journal since BeginPowerLossJournal says: rebuilds the
// root with what survives (the processes writing it must be dead). The journal then starts again
// from the result (as BeginPowerLossJournal would). An error if the journal names operations the
// model cannot place (a file of unknown directory, removed bytes without a copy): a gap in the
// layer, not in the store.
StatusOr<PowerCutReport> ApplyPowerCut(const std::string& journal, const std::string& root,
                                       CutMode mode, uint64_t seed);

}  // namespace dcpkv::testing

#endif  // DCPKV_TESTS_CRASH_POWER_LOSS_H_

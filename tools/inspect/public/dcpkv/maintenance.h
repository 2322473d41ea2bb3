// Looking after a store root from a program: verify, diff, export to safetensors, remove
// checkpoints and collect garbage — what the `dcpkv` CLI does (docs/cli.md), as calls. Every
// function opens the root itself and closes it before returning.
//
// verify, diff and export read through read-only opens that never block or disturb a job that is
// writing to the root. remove and gc change the root: they need no job to be writing to it
// (IO_ERROR "store is in use by a running job" otherwise).
//
// Thread safety: the functions may run concurrently on different roots; on one root, calls that
// change it exclude each other through the databases' locks.
#ifndef DCPKV_MAINTENANCE_H_
#define DCPKV_MAINTENANCE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "dcpkv/dtype.h"
#include "dcpkv/export.h"
#include "dcpkv/status.h"
#include "dcpkv/tensor.h"

namespace dcpkv {

// One problem verification found.
struct DCPKV_EXPORT StoreProblem {
  std::string checkpoint_id;
  std::string fqn;           // empty for a problem of the whole checkpoint (its manifest)
  Shape shard_offsets;       // of the shard at fault, if any
  int rank = -1;             // database holding it, -1 if none
  uint64_t byte_offset = 0;  // first byte of the shard affected
  uint64_t byte_end = 0;     // one past the last byte affected, as far as known
  // "checkpoint \"c\" fqn \"w\" shard [0, 4] rank 1 byte 4096: <what>"
  std::string description;
};

struct DCPKV_EXPORT StoreVerification {
  uint64_t checkpoints = 0;  // checkpoints examined
  uint64_t tensors = 0;      // fqns examined, bytes entries included
  uint64_t shards = 0;
  uint64_t chunks = 0;  // chunks found intact
  uint64_t bytes = 0;   // their payload bytes
  std::vector<StoreProblem> problems;
  // Committed when verify began, deleted (rm, a job's retention) before their data was read.
  std::vector<std::string> deleted_meanwhile;
  bool ok() const { return problems.empty(); }
};

// Reads every chunk of the checkpoints `ids` ("latest" allowed; empty: every committed
// checkpoint of the root) and checks its checksum and structure, that each tensor's shards tile
// it and that each shard's chunks cover it. Problems in the data are in the result, not errors;
// NOT_FOUND if the root or an id does not exist.
DCPKV_EXPORT StatusOr<StoreVerification> VerifyStore(const std::string& root,
                                                     const std::vector<std::string>& ids = {});

// How one fqn differs between two checkpoints.
struct DCPKV_EXPORT EntryDifference {
  std::string fqn;
  std::string kind;    // "added", "removed", "changed" or "unchanged"
  std::string detail;  // changed: "dtype float32 -> bfloat16", "shape [4] -> [8]" or "values"
  DType dtype = DType::kFloat32;  // in b if added, a otherwise
  Shape shape;
  // changed with equal dtype and shape: elements whose bytes differ, and the largest |b - a|
  // over them where both are numbers (NaN if there is none such).
  uint64_t elements_changed = 0;
  double max_abs_diff = 0;
};

struct DCPKV_EXPORT CheckpointDifference {
  std::string a;  // the ids compared ("latest" resolved)
  std::string b;
  std::vector<EntryDifference> entries;  // by fqn, unchanged ones included
};

// Compares checkpoint `a` with `b` ("latest" allowed) fqn by fqn over the global tensors, so
// checkpoints of different shardings and world sizes compare by value.
DCPKV_EXPORT StatusOr<CheckpointDifference> DiffStoredCheckpoints(const std::string& root,
                                                                  const std::string& a,
                                                                  const std::string& b);

struct DCPKV_EXPORT SafetensorsExport {
  std::string checkpoint_id;  // "latest" resolved
  uint64_t tensors = 0;       // bytes entries included
  uint64_t file_bytes = 0;
};

// Writes every fqn of checkpoint `checkpoint_id` ("latest" allowed), each assembled from all
// ranks' shards, to one safetensors file at `path` (replaced atomically), streaming with
// bounded memory.
DCPKV_EXPORT StatusOr<SafetensorsExport> ExportCheckpointToSafetensors(
    const std::string& root, const std::string& checkpoint_id, const std::string& path);

// What a removal or garbage collection did.
struct DCPKV_EXPORT StoreCleanup {
  std::vector<std::string> removed_ids;    // removal: the ids asked for, none committed any more
  std::vector<std::string> reclaimed_ids;  // deleted checkpoints whose data is all reclaimed
  // Deleted checkpoints whose chunks newer checkpoints still refer to (kept until those go).
  std::vector<std::string> pending_ids;
  std::vector<std::string> orphan_ids;  // data of saves that never committed, deleted
  uint64_t payload_bytes_deleted = 0;
  uint64_t disk_bytes_freed = 0;
};

// Removes checkpoints `ids` (each must be committed or a deleted one still pending), then
// collects the root's garbage; NOT_FOUND and nothing changed if an id is unknown.
DCPKV_EXPORT StatusOr<StoreCleanup> RemoveStoredCheckpoints(const std::string& root,
                                                            const std::vector<std::string>& ids);

// Reclaims deleted checkpoints' data that nothing refers to and the data of saves that never
// committed.
DCPKV_EXPORT StatusOr<StoreCleanup> CollectStoreGarbage(const std::string& root);

// The job this process's writers hold store roots' writer leases for (one job writes to a root
// at a time): DCPKV_JOB_ID, else torchrun's TORCHELASTIC_RUN_ID, else the rendezvous
// (MASTER_ADDR:MASTER_PORT), else one made for this process. Fixed at the first call; the
// environment is left alone (Python's dcpkv.job_id() exports it as DCPKV_JOB_ID).
DCPKV_EXPORT std::string WriterJobId();

}  // namespace dcpkv

#endif  // DCPKV_MAINTENANCE_H_

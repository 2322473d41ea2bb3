// GrpcManifestReplication: copies each committed manifest to N gRPC replicas (replica.h), and
// each deletion. Give it to SaveOptions::replication.
//
// Synchronous mode: OnCommit puts the record on every replica in parallel and returns once they
// all answered; fewer than `write_quorum` acknowledgements is UNAVAILABLE naming each failure
// (the local commit stands; Save reports the shortfall). Asynchronous mode: OnCommit queues the
// record and returns; a background thread puts it on every replica, retrying failures with
// exponential backoff until each acknowledged (or the object is destroyed). Either way the state
// of each checkpoint ("2/2 replicas", "1/2 replicas, retrying ...: <error>") goes to the state
// listener (the store records it for `dcpkv ls`) and can be read with State(); Completion()
// resolves once every replica acknowledged. Deletions are queued and retried the same way.
//
// Thread safety: all methods may be called from any thread.
#ifndef DCPKV_REPLICATION_REPLICATOR_H_
#define DCPKV_REPLICATION_REPLICATOR_H_

#include <chrono>
#include <future>
#include <memory>
#include <string>
#include <vector>

#include "dcpkv/export.h"
#include "dcpkv/manifest_replication.h"
#include "dcpkv/replication/replica.h"
#include "dcpkv/status.h"

namespace dcpkv::replication {

enum class ReplicationMode { kSync, kAsync };

struct DCPKV_EXPORT ReplicatorOptions {
  // The job's or store's namespace on the replicas (ValidateNamespace). Required.
  std::string ns;
  // Replicas, "host:port". At least one.
  std::vector<std::string> targets;
  // TLS, token and deadline of every call.
  ReplicaClientOptions client;
  // Default: synchronous.
  ReplicationMode mode = ReplicationMode::kSync;
  // Synchronous mode: acknowledgements needed, 1..N; 0 means all N. Default: 0.
  int write_quorum = 0;
  // Asynchronous retries: first delay, doubled per failure up to the maximum.
  std::chrono::milliseconds initial_backoff{100};
  std::chrono::milliseconds max_backoff{5000};
};

class DCPKV_EXPORT GrpcManifestReplication : public ManifestReplication {
 public:
  static StatusOr<std::shared_ptr<GrpcManifestReplication>> Create(ReplicatorOptions options);
  ~GrpcManifestReplication() override;  // stops the background thread; queued work is dropped

  Status OnCommit(const std::string& checkpoint_id, const std::string& record) override;
  Status OnDelete(const std::vector<std::string>& checkpoint_ids) override;
  void SetStateListener(StateListener listener) override;

  // The state line of a checkpoint; NOT_FOUND if it was never replicated by this object.
  StatusOr<std::string> State(const std::string& checkpoint_id) const;
  // Resolves with OK once every replica acknowledged the checkpoint's record (at once in
  // synchronous mode). NOT_FOUND (resolved) for an unknown checkpoint.
  std::shared_future<Status> Completion(const std::string& checkpoint_id);
  // Waits until no work is queued, or `timeout`: DEADLINE_EXCEEDED listing what is pending.
  Status WaitIdle(std::chrono::milliseconds timeout);

  struct Impl;

 private:
  explicit GrpcManifestReplication(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// What RecoverManifests did.
struct DCPKV_EXPORT RecoverReport {
  std::vector<std::string> restored;  // manifests written into the store
  std::vector<std::string> present;   // already in the store, left alone
};

// Restores into the store at `root` the manifests of namespace `ns` that replica `target` holds
// and the store lacks (each into the database of its coordinator rank, created if missing).
// Records are verified (checksum, Metadata) before they are written.
DCPKV_EXPORT StatusOr<RecoverReport> RecoverManifests(const std::string& root,
                                                      const std::string& target,
                                                      const std::string& ns,
                                                      const ReplicaClientOptions& client = {});

}  // namespace dcpkv::replication

#endif  // DCPKV_REPLICATION_REPLICATOR_H_

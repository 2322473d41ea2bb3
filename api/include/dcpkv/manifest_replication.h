// ManifestReplication: where a store's committed manifests are copied, so that losing the
// coordinator's disk does not lose the checkpoints' tables of contents. dcpkv::replication
// (replication/) implements it with gRPC replicas; the save protocol only calls this interface.
#ifndef DCPKV_MANIFEST_REPLICATION_H_
#define DCPKV_MANIFEST_REPLICATION_H_

#include <functional>
#include <string>
#include <vector>

#include "dcpkv/export.h"
#include "dcpkv/status.h"

namespace dcpkv {

class DCPKV_EXPORT ManifestReplication {
 public:
  virtual ~ManifestReplication() = default;

  // The coordinator, right after the manifest of `checkpoint_id` became durable in its own
  // database; `record` is the manifest record as stored (store/manifest_record.h). A synchronous
  // implementation returns once enough replicas acknowledged, or an error saying how many did;
  // an asynchronous one queues it and returns OK. Either way the local commit stands.
  virtual Status OnCommit(const std::string& checkpoint_id, const std::string& record) = 0;

  // Checkpoints deleted (rm, retention): their manifests are to be deleted on the replicas too.
  virtual Status OnDelete(const std::vector<std::string>& checkpoint_ids) = 0;

  // Called (from any thread) whenever the replication state of a checkpoint changes, with a
  // one-line summary ("2/2 replicas", "1/2 replicas, retrying: ..."). The store records it for
  // `dcpkv ls`. Setting a new listener replaces the old one; nullptr removes it.
  using StateListener =
      std::function<void(const std::string& checkpoint_id, const std::string& state)>;
  virtual void SetStateListener(StateListener listener) = 0;
};

}  // namespace dcpkv

#endif  // DCPKV_MANIFEST_REPLICATION_H_

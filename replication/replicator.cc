#include "dcpkv/replication/replicator.h"

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "dcpkv/core/manifest_record_codec.h"
#include "dcpkv/core/metadata_codec.h"
#include "dcpkv/store/chunk_store.h"
#include "dcpkv/store/store_layout.h"

namespace dcpkv::replication {
namespace {

using Clock = std::chrono::steady_clock;

// One record or deletion still to reach one replica (asynchronous mode).
struct Task {
  bool is_delete = false;
  std::string checkpoint_id;
  std::string record;  // puts only
  size_t replica = 0;
  Clock::time_point due;
  std::chrono::milliseconds backoff{0};
};

// Where a checkpoint's record stands.
struct Progress {
  std::set<size_t> acked;
  std::map<size_t, std::string> last_error;  // replicas still failing
  std::promise<Status> done;
  std::shared_future<Status> done_future;
  bool resolved = false;

  Progress() : done_future(done.get_future().share()) {}
};

}  // namespace

struct GrpcManifestReplication::Impl {
  ReplicatorOptions options;
  std::vector<std::unique_ptr<ReplicaClient>> clients;
  int quorum = 0;

  mutable std::mutex mu;
  std::condition_variable cv;
  std::deque<Task> queue;
  size_t in_flight = 0;
  bool stopping = false;
  std::map<std::string, Progress> progress;
  // The listener is called under listener_mu (not mu), so that replacing it waits for a call in
  // progress: whoever removes its listener may then destroy what the listener writes to.
  std::mutex listener_mu;
  StateListener listener;
  std::thread worker;

  // The state line of `id`. REQUIRES: mu held.
  std::string StateLine(const std::string& id) const {
    const Progress& p = progress.at(id);
    std::string line =
        std::to_string(p.acked.size()) + "/" + std::to_string(clients.size()) + " replicas";
    if (p.acked.size() == clients.size()) return line;
    std::string failing;
    for (const auto& [replica, error] : p.last_error) {
      failing += (failing.empty() ? "" : "; ") + clients[replica]->target() + ": " + error;
    }
    if (options.mode == ReplicationMode::kAsync) line += ", retrying";
    if (!failing.empty()) line += " (" + failing + ")";
    return line;
  }

  // Records the outcome of one put and tells the listener. Locks mu.
  void Record(const std::string& id, size_t replica, const Status& s) {
    std::string line;
    {
      std::lock_guard<std::mutex> lock(mu);
      Progress& p = progress[id];
      if (s.ok()) {
        p.acked.insert(replica);
        p.last_error.erase(replica);
      } else {
        p.last_error[replica] = s.ToString();
      }
      if (!p.resolved && p.acked.size() == clients.size()) {
        p.resolved = true;
        p.done.set_value(Status::Ok());
      }
      line = StateLine(id);
    }
    std::lock_guard<std::mutex> lock(listener_mu);
    if (listener) listener(id, line);
  }

  Status Run(const Task& t) {
    ReplicaClient& c = *clients[t.replica];
    if (t.is_delete) return c.Delete(options.ns, t.checkpoint_id);
    StatusOr<ManifestRecord> record = DecodeManifestRecord(t.record);
    if (!record.ok()) return record.status();
    return c.Put(options.ns, *record);
  }

  void Loop() {
    std::unique_lock<std::mutex> lock(mu);
    while (!stopping) {
      if (queue.empty()) {
        cv.wait(lock);
        continue;
      }
      auto next = std::min_element(queue.begin(), queue.end(),
                                   [](const Task& a, const Task& b) { return a.due < b.due; });
      if (next->due > Clock::now()) {
        cv.wait_until(lock, next->due);
        continue;
      }
      Task t = std::move(*next);
      queue.erase(next);
      ++in_flight;
      lock.unlock();
      Status s = Run(t);
      if (!t.is_delete) Record(t.checkpoint_id, t.replica, s);
      lock.lock();
      --in_flight;
      if (!s.ok() && !stopping) {
        t.backoff = std::min(options.max_backoff, std::max(options.initial_backoff, t.backoff * 2));
        t.due = Clock::now() + t.backoff;
        queue.push_back(std::move(t));
      }
      cv.notify_all();
    }
  }
};

GrpcManifestReplication::GrpcManifestReplication(std::unique_ptr<Impl> impl)
    : impl_(std::move(impl)) {}

GrpcManifestReplication::~GrpcManifestReplication() {
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    impl_->stopping = true;
  }
  impl_->cv.notify_all();
  if (impl_->worker.joinable()) impl_->worker.join();
}

StatusOr<std::shared_ptr<GrpcManifestReplication>> GrpcManifestReplication::Create(
    ReplicatorOptions options) {
  DCPKV_RETURN_IF_ERROR(ValidateNamespace(options.ns));
  if (options.targets.empty())
    return InvalidArgumentError("replication needs at least one replica");
  const int n = static_cast<int>(options.targets.size());
  if (options.write_quorum < 0 || options.write_quorum > n) {
    return InvalidArgumentError("write_quorum " + std::to_string(options.write_quorum) +
                                " is outside 0.." + std::to_string(n));
  }
  auto impl = std::make_unique<Impl>();
  impl->quorum = options.write_quorum == 0 ? n : options.write_quorum;
  for (const std::string& target : options.targets) {
    DCPKV_ASSIGN_OR_RETURN(std::unique_ptr<ReplicaClient> client,
                           ReplicaClient::Connect(target, options.client));
    impl->clients.push_back(std::move(client));
  }
  impl->options = std::move(options);
  Impl* raw = impl.get();
  if (raw->options.mode == ReplicationMode::kAsync)
    raw->worker = std::thread([raw] { raw->Loop(); });
  return std::shared_ptr<GrpcManifestReplication>(new GrpcManifestReplication(std::move(impl)));
}

Status GrpcManifestReplication::OnCommit(const std::string& checkpoint_id,
                                         const std::string& record) {
  StatusOr<ManifestRecord> decoded = DecodeManifestRecord(record);
  if (!decoded.ok()) return decoded.status().WithContext("replicating " + checkpoint_id);
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    impl_->progress.erase(checkpoint_id);
    impl_->progress[checkpoint_id];
  }
  const size_t n = impl_->clients.size();
  if (impl_->options.mode == ReplicationMode::kAsync) {
    {
      std::lock_guard<std::mutex> lock(impl_->mu);
      for (size_t r = 0; r < n; ++r) {
        impl_->queue.push_back(Task{false, checkpoint_id, record, r, Clock::now(), {}});
      }
    }
    impl_->cv.notify_all();
    return Status::Ok();
  }
  // Synchronous: every replica in parallel, then count.
  std::vector<std::future<Status>> calls;
  for (size_t r = 0; r < n; ++r) {
    calls.push_back(std::async(std::launch::async, [this, r, &decoded] {
      return impl_->clients[r]->Put(impl_->options.ns, *decoded);
    }));
  }
  size_t acked = 0;
  std::string failures;
  for (size_t r = 0; r < n; ++r) {
    Status s = calls[r].get();
    impl_->Record(checkpoint_id, r, s);
    if (s.ok()) {
      ++acked;
    } else {
      failures +=
          (failures.empty() ? "" : "; ") + impl_->clients[r]->target() + ": " + s.ToString();
    }
  }
  if (acked >= static_cast<size_t>(impl_->quorum)) return Status::Ok();
  return UnavailableError("manifest of checkpoint \"" + checkpoint_id + "\" reached " +
                          std::to_string(acked) + " of " + std::to_string(n) + " replicas, " +
                          std::to_string(impl_->quorum) + " needed: " + failures);
}

Status GrpcManifestReplication::OnDelete(const std::vector<std::string>& checkpoint_ids) {
  const size_t n = impl_->clients.size();
  if (impl_->options.mode == ReplicationMode::kAsync) {
    {
      std::lock_guard<std::mutex> lock(impl_->mu);
      for (const std::string& id : checkpoint_ids) {
        impl_->progress.erase(id);
        for (size_t r = 0; r < n; ++r) {
          impl_->queue.push_back(Task{true, id, "", r, Clock::now(), {}});
        }
      }
    }
    impl_->cv.notify_all();
    return Status::Ok();
  }
  std::string failures;
  for (const std::string& id : checkpoint_ids) {
    {
      std::lock_guard<std::mutex> lock(impl_->mu);
      impl_->progress.erase(id);
    }
    for (size_t r = 0; r < n; ++r) {
      Status s = impl_->clients[r]->Delete(impl_->options.ns, id);
      if (!s.ok()) {
        failures += (failures.empty() ? "" : "; ") + impl_->clients[r]->target() + " (" + id +
                    "): " + s.ToString();
      }
    }
  }
  if (failures.empty()) return Status::Ok();
  return UnavailableError("deleting manifests on replicas: " + failures);
}

void GrpcManifestReplication::SetStateListener(StateListener listener) {
  std::lock_guard<std::mutex> lock(impl_->listener_mu);
  impl_->listener = std::move(listener);
}

StatusOr<std::string> GrpcManifestReplication::State(const std::string& checkpoint_id) const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  if (!impl_->progress.count(checkpoint_id)) {
    return NotFoundError("checkpoint \"" + checkpoint_id + "\" was not replicated here");
  }
  return impl_->StateLine(checkpoint_id);
}

std::shared_future<Status> GrpcManifestReplication::Completion(const std::string& checkpoint_id) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  auto it = impl_->progress.find(checkpoint_id);
  if (it == impl_->progress.end()) {
    std::promise<Status> p;
    p.set_value(NotFoundError("checkpoint \"" + checkpoint_id + "\" was not replicated here"));
    return p.get_future().share();
  }
  return it->second.done_future;
}

Status GrpcManifestReplication::WaitIdle(std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(impl_->mu);
  const bool idle = impl_->cv.wait_for(
      lock, timeout, [&] { return impl_->queue.empty() && impl_->in_flight == 0; });
  if (idle) return Status::Ok();
  std::string pending;
  for (const Task& t : impl_->queue) {
    pending += (pending.empty() ? "" : ", ") + std::string(t.is_delete ? "delete " : "put ") +
               t.checkpoint_id + " on " + impl_->clients[t.replica]->target();
  }
  return DeadlineExceededError("replication still pending: " + pending);
}

StatusOr<RecoverReport> RecoverManifests(const std::string& root, const std::string& target,
                                         const std::string& ns,
                                         const ReplicaClientOptions& client_options) {
  DCPKV_RETURN_IF_ERROR(ValidateNamespace(ns));
  DCPKV_ASSIGN_OR_RETURN(std::unique_ptr<ReplicaClient> client,
                         ReplicaClient::Connect(target, client_options));
  DCPKV_ASSIGN_OR_RETURN(std::vector<std::string> ids, client->List(ns));
  RecoverReport report;
  std::map<int, std::unique_ptr<ChunkStore>> stores;
  for (const std::string& id : ids) {
    DCPKV_ASSIGN_OR_RETURN(ManifestRecord record, client->Get(ns, id));
    StatusOr<Metadata> md = DecodeMetadata(record.payload);
    if (!md.ok()) return md.status().WithContext("manifest of \"" + id + "\" from " + target);
    if (record.checkpoint_id != id || md->checkpoint_id != id) {
      return DataLossError(target + " returned a manifest of \"" + record.checkpoint_id +
                           "\" for \"" + id + "\"");
    }
    std::unique_ptr<ChunkStore>& store = stores[md->coordinator_rank];
    if (store == nullptr) {
      DCPKV_RETURN_IF_ERROR(ChunkStore::Open(RankDirectory(root, md->coordinator_rank), {}, &store)
                                .WithContext("recovering into " + root));
    }
    StatusOr<ManifestRecord> local = store->GetManifest(id);
    if (local.ok()) {
      report.present.push_back(id);
      continue;
    }
    if (local.status().code() != StatusCode::kNotFound &&
        local.status().code() != StatusCode::kDataLoss) {
      return local.status();
    }
    DCPKV_RETURN_IF_ERROR(store->PutManifest(record));  // replaces a damaged one too
    report.restored.push_back(id);
  }
  for (auto& [rank, store] : stores) DCPKV_RETURN_IF_ERROR(store->Close());
  return report;
}

}  // namespace dcpkv::replication

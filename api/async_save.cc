// AsyncSave: flatten on the caller's thread, stage (there or on the upload thread), then run
// the ordinary save protocol on a background thread. A process-wide registry keeps uploads to
// one store (or through one stager) from overlapping and joins upload threads at exit.
#include "dcpkv/async_save.h"

#include <condition_variable>
#include <list>
#include <set>
#include <thread>

#include "dcpkv/core/names.h"
#include "save_internal.h"

namespace dcpkv {
namespace {

class UploadRegistry {
 public:
  static UploadRegistry& Instance() {
    static UploadRegistry registry;  // destroyed at exit: waits for running uploads
    return registry;
  }

  ~UploadRegistry() {
    std::list<Upload> running;
    {
      std::lock_guard<std::mutex> lock(mu_);
      running.swap(uploads_);
    }
    for (Upload& u : running) u.thread.join();
  }

  // Marks `keys` busy. If one is busy already: waits until it is free (wait), or returns false.
  bool Acquire(const std::vector<std::string>& keys, bool wait) {
    std::unique_lock<std::mutex> lock(mu_);
    auto any_busy = [&] {
      for (const std::string& k : keys) {
        if (busy_.count(k)) return true;
      }
      return false;
    };
    if (!wait && any_busy()) return false;
    cv_.wait(lock, [&] { return !any_busy(); });
    busy_.insert(keys.begin(), keys.end());
    return true;
  }

  void Release(const std::vector<std::string>& keys) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (const std::string& k : keys) busy_.erase(k);
    }
    cv_.notify_all();
  }

  // Runs `fn` on a new thread. Threads of finished uploads are joined here and at exit.
  void Launch(std::function<void()> fn) {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto it = uploads_.begin(); it != uploads_.end();) {
      if (it->done->load()) {
        it->thread.join();
        it = uploads_.erase(it);
      } else {
        ++it;
      }
    }
    auto done = std::make_shared<std::atomic<bool>>(false);
    uploads_.push_back(Upload{std::thread([fn = std::move(fn), done] {
                                fn();
                                done->store(true);
                              }),
                              done});
  }

 private:
  struct Upload {
    std::thread thread;
    std::shared_ptr<std::atomic<bool>> done;
  };
  std::mutex mu_;
  std::condition_variable cv_;
  std::set<std::string> busy_;  // GUARDED_BY(mu_)
  std::list<Upload> uploads_;   // GUARDED_BY(mu_)
};

// Everything one async save keeps alive until its upload finishes.
struct Job {
  FlatStateDict flat;
  std::vector<StatefulBinding> bindings;  // flat may point into these
  Status flattened;
  StatusOr<FlatStateDict> staged = InternalError("not staged");
  std::shared_ptr<AsyncStager> stager;
  bool owns_stager = false;
  SaveOptions options;
  std::vector<std::string> keys;
  std::promise<Status> staging_done;
  bool staging_reported = false;
  // Stage returned before its copies were done: the upload thread waits for them and reports.
  bool staging_unsynchronized = false;
  std::promise<StatusOr<Metadata>> upload_done;

  void Stage() {
    staged = flattened.ok() ? stager->Stage(flat) : StatusOr<FlatStateDict>(flattened);
    if (staged.ok() && stager->should_synchronize_after_execute()) {
      staging_unsynchronized = true;
      return;
    }
    ReportStaging(staged.status());
  }
  // On the upload thread: waits for copies Stage left running, then reports staging.
  void FinishStaging() {
    if (staging_unsynchronized) {
      staging_unsynchronized = false;
      Status synced = stager->SynchronizeStaging();
      if (!synced.ok()) staged = synced;
    }
    ReportStaging(staged.status());
  }
  void ReportStaging(const Status& s) {
    if (staging_reported) return;
    staging_reported = true;
    staging_done.set_value(s);
  }
};

Status CheckOptions(const AsyncSaveOptions& o) {
  DCPKV_RETURN_IF_ERROR(ValidateCheckpointId(o.save.checkpoint_id));
  if (!o.save.storage_writer && o.save.store_root.empty()) {
    return InvalidArgumentError("async save of checkpoint \"" + o.save.checkpoint_id +
                                "\": neither storage_writer nor store_root is given");
  }
  ProcessGroup* group = o.save.no_dist ? nullptr : o.save.process_group;
  if (group != nullptr && !group->supports_cpu()) {
    return FailedPreconditionError(
        "async save needs a CPU-capable process group for its background collectives, but the "
        "given group is " +
        std::string(group->backend()) +
        ": add a CPU (gloo) group, e.g. CreateGlooProcessGroup or CreateGlooSubgroup, and pass it");
  }
  return Status::Ok();
}

std::vector<std::string> BusyKeys(const AsyncSaveOptions& o, const AsyncStager* stager) {
  ProcessGroup* group = o.save.no_dist ? nullptr : o.save.process_group;
  const int rank = group ? group->rank() : 0;
  std::vector<std::string> keys;
  if (o.save.storage_writer) {
    keys.push_back("writer:" +
                   std::to_string(reinterpret_cast<uintptr_t>(o.save.storage_writer.get())));
  } else {
    keys.push_back("root:" + o.save.store_root + "#" + std::to_string(rank));
  }
  if (stager != nullptr)
    keys.push_back("stager:" + std::to_string(reinterpret_cast<uintptr_t>(stager)));
  return keys;
}

void Upload(const std::shared_ptr<Job>& job, bool stage_here) {
  StatusOr<Metadata> result = InternalError("async save upload did not run");
  try {
    if (stage_here) job->Stage();
    job->FinishStaging();
    result = SaveFlattened(job->staged, job->options);
  } catch (const std::exception& e) {
    result = InternalError(std::string("async save upload threw: ") + e.what());
  } catch (...) {
    result = InternalError("async save upload threw");
  }
  job->ReportStaging(result.status());  // only if staging itself threw
  if (job->owns_stager) job->stager->Close();
  // Drop everything the upload held (storage writer, planner, stager, staged views) before
  // reporting completion: whoever waits on the future may then tear down what these point to,
  // and nothing of this save runs any more.
  std::promise<StatusOr<Metadata>> done = std::move(job->upload_done);
  std::vector<std::string> keys = std::move(job->keys);
  *job = Job();
  UploadRegistry::Instance().Release(keys);
  done.set_value(std::move(result));
}

}  // namespace

StatusOr<AsyncSaveResponse> AsyncSave(StateDict& state_dict, const AsyncSaveOptions& options) {
  DCPKV_RETURN_IF_ERROR(CheckOptions(options));
  auto job = std::make_shared<Job>();
  job->options = options.save;
  job->stager = options.async_stager;
  job->owns_stager = job->stager == nullptr;
  if (job->owns_stager) job->stager = std::make_shared<DefaultStager>(options.staging_options);
  job->keys = BusyKeys(options, options.async_stager.get());
  const bool wait = options.overlap_policy == OverlapPolicy::kWait;
  if (!UploadRegistry::Instance().Acquire(job->keys, wait)) {
    return FailedPreconditionError("async save of checkpoint \"" + options.save.checkpoint_id +
                                   "\": the previous upload to the same store is still running");
  }
  AsyncSaveResponse response{job->staging_done.get_future().share(),
                             job->upload_done.get_future().share()};
  job->flattened = FlattenStateDict(state_dict, &job->flat, &job->bindings);
  const bool async_staging = job->stager->stage_in_background();
  if (!async_staging) job->Stage();
  UploadRegistry::Instance().Launch([job, async_staging] { Upload(job, async_staging); });
  return response;
}

}  // namespace dcpkv

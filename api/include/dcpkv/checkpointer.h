// Checkpointer: save and load for a long-running training loop.
//
// Keeps, between saves, what the free functions set up each time: the process group (not owned),
// this rank's opened database (also used to read it back), a DefaultSavePlanner with plan
// caching on, so a save every N steps whose state dict keeps its structure exchanges only plan
// hashes instead of full plans, and for AsyncSave a DefaultStager whose staging memory is reused
// from one save to the next.
//
// Thread safety: one call at a time. An AsyncSave's upload counts as running until its
// upload_completion resolves: the next Save, AsyncSave or Load waits for it first.
#ifndef DCPKV_CHECKPOINTER_H_
#define DCPKV_CHECKPOINTER_H_

#include <map>
#include <memory>
#include <string>
#include <string_view>

#include "dcpkv/async_save.h"
#include "dcpkv/checkpoint.h"
#include "dcpkv/export.h"

namespace dcpkv {

class KvStorageWriter;
class KvStorageReader;

struct DCPKV_EXPORT CheckpointerOptions {
  // Store root shared by all ranks. Required.
  std::string store_root;
  // Ranks that save together; not owned, must outlive the Checkpointer. Default: null (single
  // process). AsyncSave uploads on a group of the same ranks that the first AsyncSave makes
  // (CreateAsyncSaveGroup; a gloo group of more than one rank), so the caller may go on using
  // this group while an upload runs.
  ProcessGroup* process_group = nullptr;
  // Default: 0.
  int coordinator_rank = 0;
  // Payload bytes per stored chunk. Default: 4 MiB.
  uint64_t chunk_size = uint64_t{4} << 20;
  // Default: true.
  bool enable_plan_caching = true;
  // Staging of AsyncSave. Default: StagingOptions defaults.
  StagingOptions staging_options;
  // Incremental saves against the previous checkpoint (SaveOptions::incremental). Default: true.
  bool incremental = true;
  // Retention after each commit (SaveOptions::keep_last). Default: 0, keep everything.
  int keep_last = 0;
  // Manifest replication (SaveOptions::replication). With an asynchronous replicator the
  // Checkpointer's open store records each checkpoint's replication state as it changes.
  // Default: null.
  std::shared_ptr<ManifestReplication> replication;
  // Where what does not fail a save or load goes (SaveOptions::diagnostics); not owned, must
  // outlive the Checkpointer. Default: null, meaning StderrDiagnostics().
  DiagnosticSink* diagnostics = nullptr;
};

class DCPKV_EXPORT Checkpointer {
 public:
  static StatusOr<std::unique_ptr<Checkpointer>> Create(CheckpointerOptions options);
  ~Checkpointer();

  // `tags` are stored with the manifest (SaveOptions::tags).
  StatusOr<Metadata> Save(StateDict& state_dict, std::string_view checkpoint_id,
                          std::map<std::string, std::string> tags = {});
  // Stages into the Checkpointer's stager and uploads in the background (see async_save.h).
  StatusOr<AsyncSaveResponse> AsyncSave(StateDict& state_dict, std::string_view checkpoint_id);
  Status Load(StateDict& state_dict, std::string_view checkpoint_id,
              DefaultLoadPlannerOptions planner_options = {});

  const CheckpointerOptions& options() const { return options_; }

 private:
  explicit Checkpointer(CheckpointerOptions options);
  SaveOptions MakeSaveOptions(std::string_view checkpoint_id) const;
  // Waits for the previous AsyncSave's upload, if any.
  void WaitForUpload();

  CheckpointerOptions options_;
  std::shared_ptr<KvStorageWriter> writer_;
  std::shared_ptr<KvStorageReader> reader_;
  std::shared_ptr<DefaultSavePlanner> planner_;
  std::shared_ptr<DefaultStager> stager_;
  std::shared_future<StatusOr<Metadata>> upload_;  // of the last AsyncSave
  std::unique_ptr<ProcessGroup> upload_group_;     // made by the first AsyncSave
};

}  // namespace dcpkv

#endif  // DCPKV_CHECKPOINTER_H_

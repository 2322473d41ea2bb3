#include "dcpkv/checkpointer.h"

#include "dcpkv/api/kv_storage.h"
#include "dcpkv/gloo_process_group.h"

namespace dcpkv {

Checkpointer::Checkpointer(CheckpointerOptions options) : options_(std::move(options)) {}
Checkpointer::~Checkpointer() {
  WaitForUpload();  // the upload uses this object's writer, planner and stager
  if (stager_ != nullptr) stager_->Close();
}

StatusOr<std::unique_ptr<Checkpointer>> Checkpointer::Create(CheckpointerOptions options) {
  if (options.store_root.empty()) return InvalidArgumentError("Checkpointer needs a store_root");
  std::unique_ptr<Checkpointer> c(new Checkpointer(std::move(options)));
  KvStorageOptions storage{c->options_.store_root, {}};
  storage.store_options.chunk_size = c->options_.chunk_size;
  storage.store_options.diagnostics = c->options_.diagnostics;
  c->writer_ = std::make_shared<KvStorageWriter>(storage);
  c->reader_ = std::make_shared<KvStorageReader>(storage);
  c->stager_ = std::make_shared<DefaultStager>(c->options_.staging_options);
  c->planner_ = std::make_shared<DefaultSavePlanner>(
      DefaultSavePlannerOptions{.enable_plan_caching = c->options_.enable_plan_caching});
  return c;
}

SaveOptions Checkpointer::MakeSaveOptions(std::string_view checkpoint_id) const {
  SaveOptions o;
  o.checkpoint_id = std::string(checkpoint_id);
  o.storage_writer = writer_;
  o.planner = planner_;
  o.process_group = options_.process_group;
  o.coordinator_rank = options_.coordinator_rank;
  o.incremental = options_.incremental;
  o.keep_last = options_.keep_last;
  o.replication = options_.replication;
  o.diagnostics = options_.diagnostics;
  return o;
}

void Checkpointer::WaitForUpload() {
  if (upload_.valid()) upload_.wait();
}

StatusOr<Metadata> Checkpointer::Save(StateDict& state_dict, std::string_view checkpoint_id,
                                      std::map<std::string, std::string> tags) {
  WaitForUpload();
  SaveOptions o = MakeSaveOptions(checkpoint_id);
  o.tags = std::move(tags);
  StatusOr<Metadata> md = dcpkv::Save(state_dict, o);
  // This rank's own database is open read-write: loads read it through the same handle.
  if (writer_->store() != nullptr) reader_->ShareStore(writer_->rank(), writer_->store());
  return md;
}

StatusOr<AsyncSaveResponse> Checkpointer::AsyncSave(StateDict& state_dict,
                                                    std::string_view checkpoint_id) {
  WaitForUpload();
  AsyncSaveOptions o;
  o.save = MakeSaveOptions(checkpoint_id);
  o.async_stager = stager_;
  ProcessGroup* group = options_.process_group;
  if (group != nullptr && group->size() > 1 && std::string_view(group->backend()) == "gloo") {
    if (upload_group_ == nullptr) {
      DCPKV_ASSIGN_OR_RETURN(upload_group_, CreateAsyncSaveGroup(*group));
    }
    o.save.process_group = upload_group_.get();
  }
  StatusOr<AsyncSaveResponse> response = dcpkv::AsyncSave(state_dict, o);
  if (response.ok()) upload_ = response->upload_completion;
  return response;
}

Status Checkpointer::Load(StateDict& state_dict, std::string_view checkpoint_id,
                          DefaultLoadPlannerOptions planner_options) {
  WaitForUpload();
  if (writer_->store() != nullptr) reader_->ShareStore(writer_->rank(), writer_->store());
  LoadOptions o;
  o.checkpoint_id = std::string(checkpoint_id);
  o.storage_reader = reader_;
  o.planner = std::make_shared<DefaultLoadPlanner>(planner_options);
  o.process_group = options_.process_group;
  o.coordinator_rank = options_.coordinator_rank;
  return dcpkv::Load(state_dict, o);
}

}  // namespace dcpkv

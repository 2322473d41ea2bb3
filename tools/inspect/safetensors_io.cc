#include "dcpkv/inspect/safetensors_io.h"

#include <filesystem>
#include <map>

#include "dcpkv/catalog.h"
#include "dcpkv/checkpoint.h"
#include "dcpkv/core/names.h"
#include "dcpkv/inspect/safetensors.h"

namespace dcpkv::inspect {

StatusOr<ExportSummary> ExportSafetensors(StoreView& view, const std::string& id_or_latest,
                                          const std::string& path, const ProgressCallback& progress,
                                          uint64_t max_slab_bytes) {
  DCPKV_ASSIGN_OR_RETURN(const CheckpointListing* listing, view.Resolve(id_or_latest));
  ExportSummary summary;
  summary.checkpoint_id = listing->checkpoint_id;
  DCPKV_ASSIGN_OR_RETURN(Metadata md, view.ReadMetadata(summary.checkpoint_id));
  std::vector<SafetensorsTensor> tensors;
  for (const auto& [fqn, entry] : md.entries) {
    tensors.push_back({fqn, entry.dtype, entry.global_shape});
  }
  DCPKV_ASSIGN_OR_RETURN(std::unique_ptr<SafetensorsWriter> writer,
                         SafetensorsWriter::Create(path, std::move(tensors), {{"format", "pt"}}));
  uint64_t total = 0;  // tensor bytes, as counted below (the header is not)
  for (const SafetensorsTensor& t : writer->tensors()) total += t.end - t.begin;
  uint64_t done = 0;
  for (const auto& [fqn, entry] : md.entries) {
    TensorStream stream(&view, summary.checkpoint_id, fqn, entry, max_slab_bytes);
    while (!stream.done()) {
      DCPKV_ASSIGN_OR_RETURN(std::span<const uint8_t> slab, stream.Next());
      DCPKV_RETURN_IF_ERROR(writer->Append(slab.data(), slab.size()));
      done += slab.size();
      if (progress) progress(done, total);
    }
    ++summary.tensors;
  }
  DCPKV_RETURN_IF_ERROR(writer->Finish());
  summary.file_bytes = writer->file_size();
  return summary;
}

namespace {

// Plans the file's tensors as write items of bounded size and reads each item's bytes from the
// file when the storage writer asks for them (one at a time: the bytes of an item stay valid
// until the next ResolveData).
class ImportPlanner : public DefaultSavePlanner {
 public:
  ImportPlanner(const SafetensorsReader& reader, uint64_t max_shard_bytes,
                const ProgressCallback& progress)
      : reader_(reader), max_shard_bytes_(max_shard_bytes), progress_(progress) {
    for (const SafetensorsTensor& t : reader_.tensors()) {
      by_name_[t.name] = &t;
      total_ += t.end - t.begin;
    }
  }

  Status SetUpPlanner(const FlatStateDict* state, bool is_coordinator) override {
    return Status::Ok();
  }

  StatusOr<SavePlan> CreateLocalPlan() override {
    SavePlan plan;
    for (const SafetensorsTensor& t : reader_.tensors()) {
      DCPKV_RETURN_IF_ERROR(ValidateFqn(t.name).WithContext("safetensors tensor name"));
      if (t.dtype == DType::kBytes) {
        plan.items.push_back({t.name, WriteItemType::kBytes, t.dtype, t.shape, {0}, t.shape});
        continue;
      }
      SlabCursor cursor(t.shape, ElementSize(t.dtype), max_shard_bytes_);
      if (cursor.total_elements() == 0) {  // an empty tensor: one empty item
        plan.items.push_back(
            {t.name, WriteItemType::kTensor, t.dtype, t.shape, Shape(t.shape.size(), 0), t.shape});
        continue;
      }
      while (!cursor.done()) {
        WriteItem item{t.name, WriteItemType::kShard, t.dtype, t.shape, {}, {}};
        cursor.Next(&item.offsets, &item.sizes);
        if (item.sizes == t.shape) item.type = WriteItemType::kTensor;
        plan.items.push_back(std::move(item));
      }
    }
    return plan;
  }

  StatusOr<ConstBytes> ResolveData(const WriteItem& item) override {
    auto it = by_name_.find(item.fqn);
    if (it == by_name_.end()) return InternalError("import: no tensor \"" + item.fqn + "\"");
    const SafetensorsTensor& t = *it->second;
    // A slab is contiguous in the tensor: it starts at its first element's row-major index.
    uint64_t index = 0;
    for (size_t d = 0; d < t.shape.size(); ++d) index = index * t.shape[d] + item.offsets[d];
    const uint64_t element = ElementSize(t.dtype);
    const uint64_t size = item.nbytes();
    buffer_.resize(size);
    DCPKV_RETURN_IF_ERROR(reader_.Read(t, index * element, buffer_.data(), size));
    done_ += size;
    if (progress_) progress_(done_, total_);
    return ConstBytes{buffer_.data(), size};
  }
  // One buffer, refilled by each ResolveData.
  bool ResolvedDataOutlivesNextResolve() const override { return false; }

 private:
  const SafetensorsReader& reader_;
  uint64_t max_shard_bytes_;
  const ProgressCallback& progress_;
  std::map<std::string, const SafetensorsTensor*> by_name_;
  std::vector<uint8_t> buffer_;
  uint64_t done_ = 0;
  uint64_t total_ = 0;
};

}  // namespace

StatusOr<Metadata> ImportSafetensors(const std::string& path, const std::string& root,
                                     const std::string& checkpoint_id,
                                     const ProgressCallback& progress, uint64_t max_shard_bytes) {
  DCPKV_RETURN_IF_ERROR(ValidateCheckpointId(checkpoint_id));
  DCPKV_ASSIGN_OR_RETURN(std::unique_ptr<SafetensorsReader> reader, SafetensorsReader::Open(path));
  // An id already committed is refused through read-only opens, before the save's read-write
  // ones would write into every database (a new MANIFEST, OPTIONS and log): a refused import
  // leaves no trace.
  if (StatusOr<std::vector<CheckpointSummary>> committed = ListCommittedCheckpoints(root);
      committed.ok()) {
    for (const CheckpointSummary& c : *committed) {
      if (c.checkpoint_id == checkpoint_id) {
        return AlreadyExistsError("checkpoint \"" + checkpoint_id + "\" is already committed in " +
                                  root + "; import under a new id or delete it first");
      }
    }
  }
  std::error_code ec;
  std::filesystem::create_directories(root, ec);
  if (ec) return IOError("cannot create store root " + root + ": " + ec.message());
  StateDict empty;
  SaveOptions options;
  options.checkpoint_id = checkpoint_id;
  options.store_root = root;
  options.planner = std::make_shared<ImportPlanner>(*reader, max_shard_bytes, progress);
  return Save(empty, options);
}

}  // namespace dcpkv::inspect

#include "dcpkv/inspect/report.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <map>
#include <optional>
#include <set>

#include <nlohmann/json.hpp>

#include "dcpkv/catalog.h"

namespace dcpkv::inspect {
namespace {

using json = nlohmann::json;

// A column-aligned table; the last column is not padded.
class Table {
 public:
  explicit Table(std::vector<std::string> header) { rows_.push_back(std::move(header)); }
  void Add(std::vector<std::string> row) { rows_.push_back(std::move(row)); }
  void AddToLast(std::string cell) { rows_.back().push_back(std::move(cell)); }
  void Print(std::ostream& out) const {
    std::vector<size_t> width;
    for (const auto& row : rows_) {
      width.resize(std::max(width.size(), row.size()));
      for (size_t i = 0; i < row.size(); ++i) width[i] = std::max(width[i], row[i].size());
    }
    for (const auto& row : rows_) {
      std::string line;
      for (size_t i = 0; i < row.size(); ++i) {
        line += row[i];
        if (i + 1 < row.size()) line += std::string(width[i] - row[i].size() + 2, ' ');
      }
      out << line << "\n";
    }
  }

 private:
  std::vector<std::vector<std::string>> rows_;
};

// JSON has no NaN or infinity: they become null.
json Number(double v) { return std::isfinite(v) ? json(v) : json(nullptr); }

std::string Double(double v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.6g", v);
  return buf;
}

std::string RanksToString(const std::vector<int>& ranks) {
  std::string out;
  for (int r : ranks) out += (out.empty() ? "" : ",") + std::to_string(r);
  return out.empty() ? "-" : out;
}

// What `show` notes about an entry saved through dcpkv.torch: its torch properties where they
// differ from the defaults, and a torch.save bytes payload. Empty if there is nothing to note.
std::string TorchNotes(const EntryMetadata& e) {
  std::string out;
  auto add = [&out](const std::string& note) { out += (out.empty() ? "" : " ") + note; };
  if (e.torch_properties) {
    const TorchTensorProperties defaults;
    const TorchTensorProperties& p = *e.torch_properties;
    if (p.requires_grad) add("requires_grad=true");
    if (p.pin_memory) add("pin_memory=true");
    if (p.layout != defaults.layout) add("layout=" + p.layout);
    if (p.memory_format != defaults.memory_format) add("memory_format=" + p.memory_format);
  }
  if (e.bytes_encoding == BytesEncoding::kTorchSave) add("torch.save");
  return out;
}

const char* BytesEncodingJson(BytesEncoding encoding) {
  switch (encoding) {
    case BytesEncoding::kRaw: return "raw";
    case BytesEncoding::kTorchSave: return "torch.save";
  }
  return "unknown";
}

json TorchPropertiesJson(const std::optional<TorchTensorProperties>& p) {
  if (!p) return nullptr;
  return {{"layout", p->layout},
          {"memory_format", p->memory_format},
          {"requires_grad", p->requires_grad},
          {"pin_memory", p->pin_memory},
          {"strides", p->has_strides ? json(p->strides) : json(nullptr)}};
}

// The flatten mapping's paths as JSON arrays of keys (strings) and list indices (numbers).
json TorchDcpJson(const std::optional<TorchDcpMetadata>& t) {
  if (!t) return nullptr;
  json mapping = nullptr;
  if (t->has_flatten_mapping) {
    mapping = json::object();
    for (const auto& [fqn, path] : t->flatten_mapping) {
      json elements = json::array();
      for (const TorchPathElement& e : path) {
        elements.push_back(e.index >= 0 ? json(e.index) : json(e.key));
      }
      mapping[fqn] = std::move(elements);
    }
  }
  json storage = nullptr;
  if (t->has_storage_meta) {
    storage = {{"checkpoint_id", t->storage_checkpoint_id},
               {"save_id", t->save_id},
               {"load_id", t->load_id},
               {"modules", t->modules}};
  }
  return {{"version", t->version.empty() ? json(nullptr) : json(t->version)},
          {"flattened_names", t->flatten_mapping.size()},
          {"flatten_mapping", std::move(mapping)},
          {"storage_meta", std::move(storage)}};
}

// One line about the torch.distributed.checkpoint metadata of a checkpoint saved through
// dcpkv.torch.
std::string TorchDcpLine(const TorchDcpMetadata& t) {
  std::string line =
      "torch.distributed.checkpoint: version " + (t.version.empty() ? "none" : t.version) + ", ";
  line += t.has_flatten_mapping ? std::to_string(t.flatten_mapping.size()) + " flattened names"
                                : "no flatten mapping";
  if (!t.has_storage_meta) return line + ", no storage meta";
  std::string modules;
  for (const std::string& m : t.modules) modules += (modules.empty() ? "" : ",") + m;
  line += ", storage meta: save_id " + (t.save_id.empty() ? "-" : t.save_id);
  if (!t.load_id.empty()) line += ", load_id " + t.load_id;
  if (!t.storage_checkpoint_id.empty()) line += ", checkpoint_id " + t.storage_checkpoint_id;
  return line + ", modules " + (modules.empty() ? "-" : modules);
}

int64_t NowNanos() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

}  // namespace

std::string HumanTime(int64_t unix_micros) {
  if (unix_micros == 0) return "-";
  std::time_t secs = static_cast<std::time_t>(unix_micros / 1000000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[64];
  std::strftime(buf, sizeof(buf), "%Y-%m-%d %H:%M:%S UTC", &tm);
  return buf;
}

std::string Rfc3339Time(int64_t unix_micros) {
  std::time_t secs = static_cast<std::time_t>(unix_micros / 1000000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[64];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &tm);
  char out[96];
  std::snprintf(out, sizeof(out), "%s.%06lldZ", buf, static_cast<long long>(unix_micros % 1000000));
  return out;
}

void PrintListing(const StoreView& view, OutputFormat format, std::ostream& out) {
  if (format == OutputFormat::kJson) {
    json list = json::array();
    for (const CheckpointListing& l : view.checkpoints()) {
      json j = {{"id", l.checkpoint_id},
                {"state", CheckpointStateName(l.state)},
                {"ranks_with_data", l.ranks_with_data}};
      if (l.state == CheckpointState::kCommitted) {
        j["committed_unix_micros"] = l.committed_unix_micros;
        j["committed_at"] = Rfc3339Time(l.committed_unix_micros);
        j["world_size"] = l.world_size;
        j["num_tensors"] = l.num_tensors;
        j["logical_bytes"] = l.logical_bytes;
        j["stored_bytes"] = l.stored_bytes;
        j["base"] = l.base_checkpoint_id.empty() ? json(nullptr) : json(l.base_checkpoint_id);
        j["tags"] = l.tags;
        j["replication"] = l.replication.empty() ? json(nullptr) : json(l.replication);
      }
      if (l.state == CheckpointState::kDamaged) j["problem"] = l.problem;
      list.push_back(std::move(j));
    }
    json ranks = json::array();
    for (const DamagedRank& d : view.damaged_ranks()) {
      ranks.push_back({{"rank", d.rank}, {"problem", d.status.ToString()}});
    }
    out << json{{"root", view.root()},
                {"checkpoints", std::move(list)},
                {"damaged_ranks", std::move(ranks)}}
               .dump(2)
        << "\n";
    return;
  }
  bool replicated = false;
  for (const CheckpointListing& l : view.checkpoints()) replicated |= !l.replication.empty();
  std::vector<std::string> header = {"ID",      "COMMITTED", "WORLD", "TENSORS",
                                     "LOGICAL", "STORED",    "STATE", "TAGS"};
  if (replicated) header.push_back("REPLICATION");
  Table table(header);
  for (const CheckpointListing& l : view.checkpoints()) {
    if (l.state == CheckpointState::kCommitted) {
      std::string tags;
      for (const auto& [key, value] : l.tags) {
        tags += (tags.empty() ? "" : " ") + key + (value.empty() ? "" : "=" + value);
      }
      table.Add(
          {l.checkpoint_id, HumanTime(l.committed_unix_micros), std::to_string(l.world_size),
           std::to_string(l.num_tensors), HumanBytes(l.logical_bytes), HumanBytes(l.stored_bytes),
           l.base_checkpoint_id.empty() ? "committed"
                                        : "committed (incremental on " + l.base_checkpoint_id + ")",
           tags});
      if (replicated) table.AddToLast(l.replication.empty() ? "-" : l.replication);
    } else {
      std::string state = std::string(CheckpointStateName(l.state)) + " (data on ranks " +
                          RanksToString(l.ranks_with_data) + ")";
      if (l.state == CheckpointState::kDamaged) state += ": " + l.problem;
      if (l.state == CheckpointState::kDeleted) {
        state = l.ranks_with_data.empty()
                    ? "deleted (nothing left; gc drops the record)"
                    : "deleted (data kept on ranks " + RanksToString(l.ranks_with_data) +
                          " for checkpoints that refer to it)";
      }
      if (l.committed_unix_micros != 0) {  // committed, broken by a rank that cannot be opened
        table.Add({l.checkpoint_id, HumanTime(l.committed_unix_micros),
                   std::to_string(l.world_size), std::to_string(l.num_tensors),
                   HumanBytes(l.logical_bytes), HumanBytes(l.stored_bytes), state});
      } else {
        table.Add({l.checkpoint_id, "-", "-", "-", "-", "-", state});
      }
    }
  }
  table.Print(out);
  for (const DamagedRank& d : view.damaged_ranks()) {
    out << "rank " << d.rank << ": database cannot be opened: " << d.status.ToString() << "\n";
  }
}

void PrintShow(const Metadata& md, OutputFormat format, std::ostream& out) {
  json tensors = json::array();
  Table table({"FQN", "DTYPE", "SHAPE", "SHARDS", "CHUNKS", "BYTES", "STORED", "RANKS"});
  // A TORCH column only for checkpoints with something to note there (saved through
  // dcpkv.torch).
  bool torch_column = false;
  for (const auto& [fqn, entry] : md.entries) torch_column |= !TorchNotes(entry).empty();
  if (torch_column) table.AddToLast("TORCH");
  for (const auto& [fqn, entry] : md.entries) {
    uint64_t bytes = 0, chunks = 0, stored = 0;
    std::set<int> ranks;
    for (const SavedShard& s : entry.shards) {
      bytes += s.bytes;
      chunks += s.chunks;
      ranks.insert(s.rank);
      if (s.chunk_list.empty()) stored += s.bytes;
      for (const SavedChunk& c : s.chunk_list) stored += c.source.empty() ? c.length : 0;
    }
    std::vector<int> rank_list(ranks.begin(), ranks.end());
    if (format == OutputFormat::kJson) {
      tensors.push_back(
          {{"fqn", fqn},
           {"kind", entry.is_bytes() ? "bytes" : "tensor"},
           {"dtype", DTypeName(entry.dtype)},
           {"shape", entry.global_shape},
           {"shards", entry.shards.size()},
           {"chunks", chunks},
           {"bytes", bytes},
           {"stored_bytes", stored},
           {"ranks", rank_list},
           {"torch_properties", TorchPropertiesJson(entry.torch_properties)},
           {"bytes_encoding",
            entry.is_bytes() ? json(BytesEncodingJson(entry.bytes_encoding)) : json(nullptr)}});
    } else {
      table.Add({fqn, entry.is_bytes() ? "bytes" : std::string(DTypeName(entry.dtype)),
                 entry.is_bytes() ? "-" : ShapeToString(entry.global_shape),
                 std::to_string(entry.shards.size()), std::to_string(chunks),
                 entry.is_bytes() ? std::to_string(bytes) + " B" : HumanBytes(bytes),
                 HumanBytes(stored), RanksToString(rank_list)});
      if (torch_column) {
        const std::string notes = TorchNotes(entry);
        table.AddToLast(notes.empty() ? "-" : notes);
      }
    }
  }
  if (format == OutputFormat::kJson) {
    out << json{{"checkpoint_id", md.checkpoint_id},
                {"committed_unix_micros", md.committed_unix_micros},
                {"committed_at", Rfc3339Time(md.committed_unix_micros)},
                {"world_size", md.world_size},
                {"per_rank_commit", md.per_rank_commit},
                {"logical_bytes", md.logical_bytes()},
                {"stored_bytes", md.stored_bytes},
                {"base",
                 md.base_checkpoint_id.empty() ? json(nullptr) : json(md.base_checkpoint_id)},
                {"tags", md.tags},
                {"torch_dcp", TorchDcpJson(md.torch_dcp)},
                {"tensors", std::move(tensors)}}
               .dump(2)
        << "\n";
    return;
  }
  out << "checkpoint " << md.checkpoint_id << ": committed " << HumanTime(md.committed_unix_micros)
      << ", world size " << md.world_size << ", " << md.entries.size() << " entries, "
      << HumanBytes(md.logical_bytes()) << "\n";
  if (md.torch_dcp) out << TorchDcpLine(*md.torch_dcp) << "\n";
  table.Print(out);
}

void PrintStats(const std::string& checkpoint_id, const std::vector<TensorStats>& stats,
                OutputFormat format, std::ostream& out) {
  if (format == OutputFormat::kJson) {
    json tensors = json::array();
    for (const TensorStats& s : stats) {
      json j = {
          {"fqn", s.fqn}, {"dtype", DTypeName(s.dtype)}, {"shape", s.shape}, {"count", s.count}};
      if (s.dtype != DType::kBytes) {
        j["nan"] = s.nan;
        j["inf"] = s.inf;
        j["zeros"] = s.zeros;
        j["min"] = Number(s.min);
        j["max"] = Number(s.max);
        j["mean"] = Number(s.mean);
        j["std"] = Number(s.std);
      }
      json head = json::array();
      for (double v : s.head) head.push_back(Number(v));
      j["head"] = std::move(head);
      tensors.push_back(std::move(j));
    }
    out << json{{"checkpoint_id", checkpoint_id}, {"tensors", std::move(tensors)}}.dump(2) << "\n";
    return;
  }
  Table table({"FQN", "DTYPE", "COUNT", "MIN", "MAX", "MEAN", "STD", "NAN", "INF", "ZEROS"});
  bool any_head = false;
  for (const TensorStats& s : stats) {
    any_head = any_head || !s.head.empty();
    if (s.dtype == DType::kBytes) {
      table.Add({s.fqn, "bytes", std::to_string(s.count), "-", "-", "-", "-", "-", "-", "-"});
      continue;
    }
    table.Add({s.fqn, std::string(DTypeName(s.dtype)), std::to_string(s.count), Double(s.min),
               Double(s.max), Double(s.mean), Double(s.std), std::to_string(s.nan),
               std::to_string(s.inf), std::to_string(s.zeros)});
  }
  out << "checkpoint " << checkpoint_id << "\n";
  table.Print(out);
  if (!any_head) return;
  for (const TensorStats& s : stats) {
    std::string line = s.fqn + ":";
    for (double v : s.head) line += " " + Double(v);
    out << line << "\n";
  }
}

void PrintVerify(const VerifyReport& r, OutputFormat format, std::ostream& out) {
  if (format == OutputFormat::kJson) {
    json problems = json::array();
    for (const VerifyProblem& p : r.problems) {
      json j = {{"checkpoint_id", p.checkpoint_id}, {"what", p.what}};
      if (!p.fqn.empty()) j["fqn"] = p.fqn;
      if (p.rank >= 0) {
        j["shard_offsets"] = p.shard_offsets;
        j["rank"] = p.rank;
        j["byte_offset"] = p.byte_offset;
        j["byte_end"] = p.byte_end;
      }
      problems.push_back(std::move(j));
    }
    out << json{{"ok", r.ok()},
                {"checkpoints", r.checkpoints},
                {"tensors", r.tensors},
                {"shards", r.shards},
                {"chunks", r.chunks},
                {"bytes", r.bytes},
                {"problems", std::move(problems)},
                {"deleted_meanwhile", r.deleted_meanwhile}}
               .dump(2)
        << "\n";
    return;
  }
  for (const VerifyProblem& p : r.problems) out << "PROBLEM " << DescribeProblem(p) << "\n";
  for (const std::string& id : r.deleted_meanwhile) {
    out << "deleted while verify ran (not verified): " << id << "\n";
  }
  out << (r.ok() ? "OK" : "FAILED") << ": " << r.checkpoints << " checkpoints, " << r.tensors
      << " tensors, " << r.shards << " shards, " << r.chunks << " chunks (" << HumanBytes(r.bytes)
      << ") verified intact; " << r.problems.size()
      << (r.problems.size() == 1 ? " problem\n" : " problems\n");
}

void PrintDiff(const DiffReport& r, OutputFormat format, std::ostream& out) {
  std::map<DiffKind, uint64_t> counts;
  for (const TensorDiff& t : r.tensors) ++counts[t.kind];
  if (format == OutputFormat::kJson) {
    json tensors = json::array();
    for (const TensorDiff& t : r.tensors) {
      json j = {{"fqn", t.fqn},
                {"status", DiffKindName(t.kind)},
                {"dtype", DTypeName(t.dtype)},
                {"shape", t.shape}};
      if (t.kind == DiffKind::kChanged) {
        j["detail"] = t.detail;
        j["elements_changed"] = t.elements_changed;
        j["max_abs_diff"] = Number(t.max_abs_diff);
      }
      tensors.push_back(std::move(j));
    }
    out << json{{"a", r.a},
                {"b", r.b},
                {"added", counts[DiffKind::kAdded]},
                {"removed", counts[DiffKind::kRemoved]},
                {"changed", counts[DiffKind::kChanged]},
                {"unchanged", counts[DiffKind::kUnchanged]},
                {"tensors", std::move(tensors)}}
               .dump(2)
        << "\n";
    return;
  }
  out << "diff " << r.a << " -> " << r.b << ": " << counts[DiffKind::kAdded] << " added, "
      << counts[DiffKind::kRemoved] << " removed, " << counts[DiffKind::kChanged] << " changed, "
      << counts[DiffKind::kUnchanged] << " unchanged\n";
  Table table({"STATUS", "FQN", "DTYPE", "SHAPE", "DETAIL"});
  for (const TensorDiff& t : r.tensors) {
    std::string detail;
    if (t.kind == DiffKind::kChanged) {
      detail = t.detail;
      if (t.detail == "values") {
        detail = std::to_string(t.elements_changed) + " elements differ";
        if (!std::isnan(t.max_abs_diff)) detail += ", max |b-a| " + Double(t.max_abs_diff);
      }
    }
    table.Add({std::string(DiffKindName(t.kind)), t.fqn, std::string(DTypeName(t.dtype)),
               ShapeToString(t.shape), detail});
  }
  table.Print(out);
}

void PrintExport(const ExportSummary& s, const std::string& path, OutputFormat format,
                 std::ostream& out) {
  if (format == OutputFormat::kJson) {
    out << json{{"checkpoint_id", s.checkpoint_id},
                {"path", path},
                {"tensors", s.tensors},
                {"file_bytes", s.file_bytes}}
               .dump(2)
        << "\n";
    return;
  }
  out << "exported checkpoint " << s.checkpoint_id << " (" << s.tensors << " tensors) to " << path
      << " (" << HumanBytes(s.file_bytes) << ")\n";
}

void PrintImport(const Metadata& md, OutputFormat format, std::ostream& out) {
  if (format == OutputFormat::kJson) {
    out << json{{"checkpoint_id", md.checkpoint_id},
                {"tensors", md.entries.size()},
                {"logical_bytes", md.logical_bytes()},
                {"committed_unix_micros", md.committed_unix_micros}}
               .dump(2)
        << "\n";
    return;
  }
  out << "imported " << md.entries.size() << " tensors (" << HumanBytes(md.logical_bytes())
      << ") as checkpoint " << md.checkpoint_id << "\n";
}

namespace {

json GcJson(const GcReport& r) {
  return json{{"reclaimed", r.reclaimed_ids},
              {"pending", r.pending_ids},
              {"orphans", r.orphan_ids},
              {"incomplete", r.incomplete_ids},
              {"chunks_deleted", r.chunks_deleted},
              {"payload_bytes_deleted", r.payload_bytes_deleted},
              {"chunks_kept", r.chunks_kept},
              {"disk_bytes_before", r.disk_bytes_before},
              {"disk_bytes_after", r.disk_bytes_after}};
}

std::string Ids(const std::vector<std::string>& ids) {
  std::string out;
  for (const std::string& id : ids) out += (out.empty() ? "" : ", ") + id;
  return out.empty() ? "none" : out;
}

void PrintGcText(const GcReport& r, std::ostream& out) {
  out << "reclaimed: " << Ids(r.reclaimed_ids) << "\n";
  if (!r.pending_ids.empty()) {
    out << "deleted, data kept for newer checkpoints that refer to it: " << Ids(r.pending_ids)
        << "\n";
  }
  if (!r.orphan_ids.empty()) out << "uncommitted data removed: " << Ids(r.orphan_ids) << "\n";
  if (!r.incomplete_ids.empty()) {
    out << "incomplete saves left alone (dcpkv rm removes them): " << Ids(r.incomplete_ids) << "\n";
  }
  out << r.chunks_deleted << " chunks (" << HumanBytes(r.payload_bytes_deleted) << ") deleted, "
      << r.chunks_kept << " kept; store " << HumanBytes(r.disk_bytes_before) << " -> "
      << HumanBytes(r.disk_bytes_after) << " on disk\n";
}

}  // namespace

void PrintGc(const GcReport& r, OutputFormat format, std::ostream& out) {
  if (format == OutputFormat::kJson) {
    out << GcJson(r).dump(2) << "\n";
    return;
  }
  PrintGcText(r, out);
}

void PrintRecover(const std::vector<std::string>& restored, const std::vector<std::string>& present,
                  const std::string& from, OutputFormat format, std::ostream& out) {
  if (format == OutputFormat::kJson) {
    out << json{{"from", from}, {"restored", restored}, {"present", present}}.dump(2) << "\n";
    return;
  }
  out << "restored " << restored.size() << " manifests from " << from << ": " << Ids(restored)
      << "\n"
      << present.size() << " already present\n";
}

void PrintRemove(const RemoveReport& r, OutputFormat format, std::ostream& out) {
  if (format == OutputFormat::kJson) {
    out << json{{"removed", r.removed_ids}, {"gc", GcJson(r.gc)}}.dump(2) << "\n";
    return;
  }
  out << "removed: " << Ids(r.removed_ids) << "\n";
  PrintGcText(r.gc, out);
}

ProgressBar::ProgressBar(std::string label, bool enabled)
    : label_(std::move(label)), enabled_(enabled), start_ns_(NowNanos()) {}

ProgressBar::~ProgressBar() { Finish(); }

void ProgressBar::Update(uint64_t done, uint64_t total) {
  done_ = done;
  total_ = total;
  if (!enabled_ || finished_) return;
  const int64_t now = NowNanos();
  if (drawn_ && now - last_draw_ns_ < 100'000'000) return;
  last_draw_ns_ = now;
  Draw(done, total);
}

void ProgressBar::Finish() {
  if (!enabled_ || finished_) return;
  finished_ = true;
  if (!drawn_) return;
  Draw(done_, total_);
  std::fputc('\n', stderr);
}

ProgressCallback ProgressBar::Callback() {
  return [this](uint64_t done, uint64_t total) { Update(done, total); };
}

void ProgressBar::Draw(uint64_t done, uint64_t total) {
  drawn_ = true;
  constexpr int kWidth = 30;
  const double fraction = total == 0 ? 1.0 : std::min(1.0, static_cast<double>(done) / total);
  const int filled = static_cast<int>(fraction * kWidth);
  const double seconds = std::max(1e-9, (NowNanos() - start_ns_) / 1e9);
  std::string bar(filled, '#');
  bar += std::string(kWidth - filled, '.');
  std::fprintf(stderr, "\r%s [%s] %3d%% %s / %s  %s/s\x1b[K", label_.c_str(), bar.c_str(),
               static_cast<int>(fraction * 100), HumanBytes(done).c_str(),
               HumanBytes(total).c_str(),
               HumanBytes(static_cast<uint64_t>(done / seconds)).c_str());
  std::fflush(stderr);
}

}  // namespace dcpkv::inspect

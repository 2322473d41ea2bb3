// The run's working directory, <dir>/dcpkv-bench-XXXXXX, and what benchmarks share in it.
#ifndef DCPKV_TOOLS_BENCH_WORKSPACE_H_
#define DCPKV_TOOLS_BENCH_WORKSPACE_H_

#include <map>
#include <memory>
#include <string>
#include <string_view>

#include "bench.h"
#include "dcpkv/status.h"

namespace dcpkv::bench {

class Workspace {
 public:
  // Creates a fresh directory under config.dir (made if missing) or the temp directory.
  static StatusOr<std::unique_ptr<Workspace>> Create(const Config& config);
  // The directory config.workspace_dir, made by a launcher (a rank of --processes), which
  // removes it: this object never does.
  static StatusOr<std::unique_ptr<Workspace>> Attach(const Config& config);
  // Removes the directory and everything in it, unless config.keep.
  ~Workspace();
  Workspace(const Workspace&) = delete;
  Workspace& operator=(const Workspace&) = delete;

  const std::string& path() const { return path_; }
  // path()/name
  std::string Path(std::string_view name) const;
  // The store root of save, load and load_reshard.
  std::string StoreRoot() const { return Path("store"); }
  // The raw-file baselines' directory and rank `rank`'s file in it.
  std::string RawDir() const { return Path("raw"); }
  std::string RawFile(int rank) const;
  // "<prefix>-<n>", a checkpoint id not used before in this run.
  std::string NewId(std::string_view prefix);

  // Fixtures benchmarks share so that each is made once per run (e.g. "checkpoint" -> the id of
  // the saved default state); see io_steps.h.
  std::map<std::string, std::string>& fixtures() { return fixtures_; }

 private:
  Workspace(std::string path, bool keep) : path_(std::move(path)), keep_(keep) {}

  std::string path_;
  bool keep_;
  int next_id_ = 0;
  std::map<std::string, std::string> fixtures_;
};

}  // namespace dcpkv::bench

#endif  // DCPKV_TOOLS_BENCH_WORKSPACE_H_

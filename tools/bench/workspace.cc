#include "workspace.h"

#include <stdlib.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

namespace dcpkv::bench {

namespace fs = std::filesystem;

StatusOr<std::unique_ptr<Workspace>> Workspace::Create(const Config& config) {
  std::error_code ec;
  const fs::path parent = config.dir.empty() ? fs::temp_directory_path(ec) : fs::path(config.dir);
  if (ec) return IOError("no temp directory: " + ec.message());
  fs::create_directories(parent, ec);
  if (ec) return IOError("create " + parent.string() + ": " + ec.message());
  std::string templ = (parent / "dcpkv-bench-XXXXXX").string();
  if (mkdtemp(templ.data()) == nullptr) {
    return IOError("mkdtemp " + templ + ": " + std::strerror(errno));
  }
  std::unique_ptr<Workspace> ws(new Workspace(templ, config.keep));
  fs::create_directories(ws->RawDir(), ec);
  if (ec) return IOError("create " + ws->RawDir() + ": " + ec.message());
  return ws;
}

StatusOr<std::unique_ptr<Workspace>> Workspace::Attach(const Config& config) {
  std::error_code ec;
  if (!fs::is_directory(config.workspace_dir, ec)) {
    return NotFoundError("workspace " + config.workspace_dir + " is not a directory");
  }
  return std::unique_ptr<Workspace>(new Workspace(config.workspace_dir, /*keep=*/true));
}

Workspace::~Workspace() {
  std::error_code ec;
  if (!keep_) fs::remove_all(path_, ec);
}

std::string Workspace::Path(std::string_view name) const { return path_ + "/" + std::string(name); }

std::string Workspace::RawFile(int rank) const {
  return RawDir() + "/rank-" + std::to_string(rank) + ".bin";
}

std::string Workspace::NewId(std::string_view prefix) {
  return std::string(prefix) + "-" + std::to_string(next_id_++);
}

}  // namespace dcpkv::bench

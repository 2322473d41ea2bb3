#include "tests/crash/power_loss.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <utility>
#include <vector>

namespace dcpkv::testing {
namespace {

namespace fs = std::filesystem;

std::string GraveyardOf(const std::string& journal) { return journal + ".graveyard"; }

std::string Normal(const std::string& path) {
  std::string p = fs::path(path).lexically_normal().string();
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  return p;
}

}  // namespace

// The journal of one process: records appended under Hold(), each with one write(2).
// Record kinds (tab-separated, one per line):
//   B path f|d size ino baseline entry (durable), with its inode number
//   C path ino          file created (a file there is removed first, with a U record)
//   S path length       file synced; `length` bytes from its start are durable
//   T path length       file truncated
//   D path              directory synced
//   M path              directory made
//   R from to grave     renamed; `grave` names the copy of a replaced file, or "-"
//   L from to           hard link made
//   U path grave        file removed; `grave` names its copy, or "-"
//   X path              directory removed
class PowerLossLayer::Recorder {
 public:
  static StatusOr<std::shared_ptr<Recorder>> Open(const std::string& journal) {
    auto r = std::make_shared<Recorder>();
    r->graveyard_ = GraveyardOf(journal);
    if (::mkdir(r->graveyard_.c_str(), 0755) != 0 && errno != EEXIST) {
      return IOError("cannot make " + r->graveyard_ + ": " + strerror(errno));
    }
    r->fd_ = ::open(journal.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (r->fd_ < 0) return IOError("cannot open journal " + journal + ": " + strerror(errno));
    return r;
  }
  ~Recorder() {
    if (fd_ >= 0) ::close(fd_);
  }

  // Held around an operation and its record: this process's mutex and an exclusive flock(2) of
  // the journal, so that the records of several processes come in the order their operations
  // took effect (a rank renaming a name another rank removes). A process that dies holding it
  // lets go of the flock.
  class Lock {
   public:
    explicit Lock(Recorder* r) : r_(r), guard_(r->mu_) { ::flock(r_->fd_, LOCK_EX); }
    ~Lock() { ::flock(r_->fd_, LOCK_UN); }
    Lock(const Lock&) = delete;
    Lock& operator=(const Lock&) = delete;

   private:
    Recorder* r_;
    std::lock_guard<std::mutex> guard_;
  };
  Lock Hold() { return Lock(this); }

  // Under Hold().
  void Record(const std::vector<std::string>& fields) {
    std::string line;
    for (const std::string& f : fields) {
      if (!line.empty()) line += '\t';
      line += f;
    }
    line += '\n';
    if (::write(fd_, line.data(), line.size()) != static_cast<ssize_t>(line.size())) {
      std::fprintf(stderr, "power-loss journal: write failed: %s\n", strerror(errno));
      std::abort();  // a journal with a gap would make the cut lie
    }
  }

  // Under Hold(), before creating `path`: a file there is removed first (kept in the graveyard,
  // recorded), so that no creation truncates synced bytes in place.
  void RemoveBeforeCreating(const std::string& path) {
    struct stat st {};
    if (::lstat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) return;
    const std::string grave = Preserve(path);
    if (::unlink(path.c_str()) == 0) {
      Record({"U", path, grave});
    } else {
      Forget(grave);
    }
  }

  static bool Succeeded(int rc) { return rc == 0; }
  static bool Succeeded(const rocksdb::IOStatus& s) { return s.ok(); }

  // Under Hold(): a hard link to the regular file at `path` in the graveyard, before it is removed
  // or replaced: its name there, or "-" if there is no such file.
  std::string Preserve(const std::string& path) {
    struct stat st {};
    if (::lstat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) return "-";
    const std::string name = std::to_string(::getpid()) + "." + std::to_string(++graves_);
    if (::link(path.c_str(), (graveyard_ + "/" + name).c_str()) != 0) {
      std::fprintf(stderr, "power-loss journal: cannot keep %s: %s\n", path.c_str(),
                   strerror(errno));
      std::abort();
    }
    return name;
  }
  void Forget(const std::string& grave) {
    if (grave != "-") ::unlink((graveyard_ + "/" + grave).c_str());
  }

  // Does `op` (returning 0 or an errno value, or a RocksDB IOStatus) under Hold(), and records
  // `fields` if it succeeded.
  template <typename Op>
  auto Do(std::vector<std::string> fields, Op op) {
    auto lock = Hold();
    auto result = op();
    if (Succeeded(result)) Record(fields);
    return result;
  }
  // The same for an operation that removes or replaces the file at `victim`: the file is kept
  // in the graveyard first, and the record ends with its name there.
  template <typename Op>
  auto DoRemoving(const std::string& victim, std::vector<std::string> fields, Op op) {
    auto lock = Hold();
    const std::string grave = Preserve(victim);
    auto result = op();
    if (Succeeded(result)) {
      fields.push_back(grave);
      Record(fields);
    } else {
      Forget(grave);
    }
    return result;
  }

 private:
  std::mutex mu_;
  int fd_ = -1;
  std::string graveyard_;
  uint64_t graves_ = 0;
};

namespace {

using Recorder = PowerLossLayer::Recorder;

bool Exists(const std::string& path) {
  struct stat st {};
  return ::lstat(path.c_str(), &st) == 0;
}

// The inode number of the file at `path`, as text ("0" if none): a file's bytes are found by it
// at the cut, wherever the file is then (a process killed between an operation and its record
// leaves a file under a name the journal does not know).
std::string Inode(const std::string& path) {
  struct stat st {};
  return std::to_string(::lstat(path.c_str(), &st) == 0 ? st.st_ino : 0);
}

// dcpkv's own file operations, recorded.
class RecordingFileOps : public FileOps {
 public:
  explicit RecordingFileOps(std::shared_ptr<Recorder> r) : r_(std::move(r)) {}

  int MakeDirectory(const std::string& path) override {
    return r_->Do({"M", path}, [&] { return FileOps::MakeDirectory(path); });
  }
  int Rename(const std::string& from, const std::string& to) override {
    return r_->DoRemoving(to, {"R", from, to}, [&] { return FileOps::Rename(from, to); });
  }
  int Link(const std::string& from, const std::string& to) override {
    return r_->Do({"L", from, to}, [&] { return FileOps::Link(from, to); });
  }
  int Unlink(const std::string& path) override {
    return r_->DoRemoving(path, {"U", path}, [&] { return FileOps::Unlink(path); });
  }
  int RemoveDirectory(const std::string& path) override {
    return r_->Do({"X", path}, [&] { return FileOps::RemoveDirectory(path); });
  }
  int CreateFile(const std::string& path, int flags) override {
    auto lock = r_->Hold();
    if ((flags & O_TRUNC) != 0) r_->RemoveBeforeCreating(path);
    const bool existed = Exists(path);
    const int fd = FileOps::CreateFile(path, flags);
    if (fd >= 0 && !existed) r_->Record({"C", path, Inode(path)});
    return fd;
  }
  int SyncFile(int fd, const std::string& path) override {
    struct stat st {};
    if (::fstat(fd, &st) != 0) return errno;
    const int rc = FileOps::SyncFile(fd, path);
    if (rc == 0) {
      auto lock = r_->Hold();
      r_->Record({"S", path, std::to_string(st.st_size)});
    }
    return rc;
  }
  int SyncDirectory(const std::string& path) override {
    return r_->Do({"D", path}, [&] { return FileOps::SyncDirectory(path); });
  }

 private:
  std::shared_ptr<Recorder> r_;
};

using rocksdb::IODebugContext;
using rocksdb::IOOptions;
using rocksdb::IOStatus;
using rocksdb::Slice;

// A RocksDB file being written: its length as handed to the system, recorded at each sync.
class RecordingWritableFile : public rocksdb::FSWritableFileOwnerWrapper {
 public:
  RecordingWritableFile(std::shared_ptr<Recorder> r, std::string fname,
                        std::unique_ptr<rocksdb::FSWritableFile> file, uint64_t size)
      : FSWritableFileOwnerWrapper(std::move(file)),
        r_(std::move(r)),
        fname_(std::move(fname)),
        size_(size) {}

  IOStatus Append(const Slice& data, const IOOptions& o, IODebugContext* dbg) override {
    IOStatus s = target()->Append(data, o, dbg);
    if (s.ok()) Grow(data.size());
    return s;
  }
  IOStatus Append(const Slice& data, const IOOptions& o, const rocksdb::DataVerificationInfo& v,
                  IODebugContext* dbg) override {
    IOStatus s = target()->Append(data, o, v, dbg);
    if (s.ok()) Grow(data.size());
    return s;
  }
  IOStatus PositionedAppend(const Slice& data, uint64_t offset, const IOOptions& o,
                            IODebugContext* dbg) override {
    IOStatus s = target()->PositionedAppend(data, offset, o, dbg);
    if (s.ok()) GrowTo(offset + data.size());
    return s;
  }
  IOStatus PositionedAppend(const Slice& data, uint64_t offset, const IOOptions& o,
                            const rocksdb::DataVerificationInfo& v, IODebugContext* dbg) override {
    IOStatus s = target()->PositionedAppend(data, offset, o, v, dbg);
    if (s.ok()) GrowTo(offset + data.size());
    return s;
  }
  IOStatus Truncate(uint64_t size, const IOOptions& o, IODebugContext* dbg) override {
    IOStatus s = target()->Truncate(size, o, dbg);
    if (s.ok()) {
      auto lock = r_->Hold();
      size_ = size;
      r_->Record({"T", fname_, std::to_string(size)});
    }
    return s;
  }
  IOStatus Sync(const IOOptions& o, IODebugContext* dbg) override {
    const uint64_t length = Size();
    IOStatus s = target()->Sync(o, dbg);
    if (s.ok()) Synced(length);
    return s;
  }
  IOStatus Fsync(const IOOptions& o, IODebugContext* dbg) override {
    const uint64_t length = Size();
    IOStatus s = target()->Fsync(o, dbg);
    if (s.ok()) Synced(length);
    return s;
  }
  // sync_file_range(2) makes nothing durable: no record.

 private:
  void Grow(uint64_t n) {
    std::lock_guard<std::mutex> lock(size_mu_);
    size_ += n;
  }
  void GrowTo(uint64_t end) {
    std::lock_guard<std::mutex> lock(size_mu_);
    size_ = std::max(size_, end);
  }
  uint64_t Size() {
    std::lock_guard<std::mutex> lock(size_mu_);
    return size_;
  }
  void Synced(uint64_t length) {
    auto lock = r_->Hold();
    r_->Record({"S", fname_, std::to_string(length)});
  }

  std::shared_ptr<Recorder> r_;
  std::string fname_;
  std::mutex size_mu_;
  uint64_t size_;
};

class RecordingDirectory : public rocksdb::FSDirectory {
 public:
  RecordingDirectory(std::shared_ptr<Recorder> r, std::string name,
                     std::unique_ptr<rocksdb::FSDirectory> dir)
      : r_(std::move(r)), name_(std::move(name)), dir_(std::move(dir)) {}

  IOStatus Fsync(const IOOptions& o, IODebugContext* dbg) override {
    return r_->Do({"D", name_}, [&] { return dir_->Fsync(o, dbg); });
  }
  IOStatus FsyncWithDirOptions(const IOOptions& o, IODebugContext* dbg,
                               const rocksdb::DirFsyncOptions& d) override {
    return r_->Do({"D", name_}, [&] { return dir_->FsyncWithDirOptions(o, dbg, d); });
  }
  IOStatus Close(const IOOptions& o, IODebugContext* dbg) override { return dir_->Close(o, dbg); }
  size_t GetUniqueId(char* id, size_t max_size) const override {
    return dir_->GetUniqueId(id, max_size);
  }

 private:
  std::shared_ptr<Recorder> r_;
  std::string name_;
  std::unique_ptr<rocksdb::FSDirectory> dir_;
};

// RocksDB's files, recorded.
class RecordingFileSystem : public rocksdb::FileSystemWrapper {
 public:
  explicit RecordingFileSystem(std::shared_ptr<Recorder> r)
      : FileSystemWrapper(rocksdb::FileSystem::Default()), r_(std::move(r)) {}

  const char* Name() const override { return "DcpkvPowerLossFileSystem"; }

  IOStatus NewWritableFile(const std::string& f, const rocksdb::FileOptions& o,
                           std::unique_ptr<rocksdb::FSWritableFile>* result,
                           IODebugContext* dbg) override {
    auto lock = r_->Hold();
    r_->RemoveBeforeCreating(f);
    IOStatus s = target()->NewWritableFile(f, o, result, dbg);
    if (s.ok()) {
      r_->Record({"C", f, Inode(f)});
      *result = std::make_unique<RecordingWritableFile>(r_, f, std::move(*result), 0);
    }
    return s;
  }
  IOStatus ReopenWritableFile(const std::string& f, const rocksdb::FileOptions& o,
                              std::unique_ptr<rocksdb::FSWritableFile>* result,
                              IODebugContext* dbg) override {
    auto lock = r_->Hold();
    struct stat st {};
    const bool existed = ::stat(f.c_str(), &st) == 0;
    IOStatus s = target()->ReopenWritableFile(f, o, result, dbg);
    if (s.ok()) {
      if (!existed) r_->Record({"C", f, Inode(f)});
      *result = std::make_unique<RecordingWritableFile>(r_, f, std::move(*result),
                                                        existed ? st.st_size : 0);
    }
    return s;
  }
  IOStatus ReuseWritableFile(const std::string& f, const std::string& old,
                             const rocksdb::FileOptions&, std::unique_ptr<rocksdb::FSWritableFile>*,
                             IODebugContext*) override {
    return IOStatus::NotSupported("the power-loss layer does not model reused files: " + old +
                                  " as " + f);
  }
  IOStatus NewRandomRWFile(const std::string& f, const rocksdb::FileOptions&,
                           std::unique_ptr<rocksdb::FSRandomRWFile>*, IODebugContext*) override {
    return IOStatus::NotSupported("the power-loss layer does not model in-place writes: " + f);
  }
  IOStatus NewLogger(const std::string& f, const IOOptions& o,
                     std::shared_ptr<rocksdb::Logger>* result, IODebugContext* dbg) override {
    auto lock = r_->Hold();
    r_->RemoveBeforeCreating(f);
    IOStatus s = target()->NewLogger(f, o, result, dbg);
    if (s.ok()) r_->Record({"C", f, Inode(f)});  // never synced: lost in a cut
    return s;
  }
  IOStatus NewDirectory(const std::string& name, const IOOptions& o,
                        std::unique_ptr<rocksdb::FSDirectory>* result,
                        IODebugContext* dbg) override {
    IOStatus s = target()->NewDirectory(name, o, result, dbg);
    if (s.ok()) *result = std::make_unique<RecordingDirectory>(r_, name, std::move(*result));
    return s;
  }
  IOStatus DeleteFile(const std::string& f, const IOOptions& o, IODebugContext* dbg) override {
    return r_->DoRemoving(f, {"U", f}, [&] { return target()->DeleteFile(f, o, dbg); });
  }
  IOStatus Truncate(const std::string& f, size_t size, const IOOptions& o,
                    IODebugContext* dbg) override {
    return r_->Do({"T", f, std::to_string(size)},
                  [&] { return target()->Truncate(f, size, o, dbg); });
  }
  IOStatus CreateDir(const std::string& d, const IOOptions& o, IODebugContext* dbg) override {
    return r_->Do({"M", d}, [&] { return target()->CreateDir(d, o, dbg); });
  }
  IOStatus CreateDirIfMissing(const std::string& d, const IOOptions& o,
                              IODebugContext* dbg) override {
    auto lock = r_->Hold();
    const bool existed = Exists(d);
    IOStatus s = target()->CreateDirIfMissing(d, o, dbg);
    if (s.ok() && !existed) r_->Record({"M", d});
    return s;
  }
  IOStatus DeleteDir(const std::string& d, const IOOptions& o, IODebugContext* dbg) override {
    return r_->Do({"X", d}, [&] { return target()->DeleteDir(d, o, dbg); });
  }
  IOStatus RenameFile(const std::string& from, const std::string& to, const IOOptions& o,
                      IODebugContext* dbg) override {
    return r_->DoRemoving(to, {"R", from, to},
                          [&] { return target()->RenameFile(from, to, o, dbg); });
  }
  IOStatus LinkFile(const std::string& from, const std::string& to, const IOOptions& o,
                    IODebugContext* dbg) override {
    return r_->Do({"L", from, to}, [&] { return target()->LinkFile(from, to, o, dbg); });
  }

 private:
  std::shared_ptr<Recorder> r_;
};

// The replay: the tree of files and directories under the root, as it is now and as it was at
// each directory's last sync.
class Model {
 public:
  explicit Model(std::string root) : root_(Normal(root)) {
    nodes_.push_back(Node{.dir = true});
    nodes_[0].links.push_back({-1, root_});
  }

  Status Apply(const std::vector<std::string>& f) {
    const std::string& kind = f[0];
    auto need = [&](size_t n) -> Status {
      if (f.size() < n) return InternalError("short journal record " + kind);
      return Status::Ok();
    };
    DCPKV_RETURN_IF_ERROR(need(2));
    std::optional<std::vector<std::string>> path = Split(f[1]);
    if (kind == "R" || kind == "L") {
      DCPKV_RETURN_IF_ERROR(need(3));
      std::optional<std::vector<std::string>> to = Split(f[2]);
      if (!path || !to) {
        if (!path && !to) return Status::Ok();
        return InternalError("journal: " + kind + " across the root's edge: " + f[1] + " -> " +
                             f[2]);
      }
      return kind == "R" ? Rename(*path, *to, f.size() > 3 ? f[3] : "-") : Link(*path, *to);
    }
    if (!path) return Status::Ok();  // outside the root
    if (kind == "B") {
      DCPKV_RETURN_IF_ERROR(need(4));
      if (path->empty()) return Status::Ok();
      DCPKV_ASSIGN_OR_RETURN(int node, Add(*path, f[2] == "d", f[1]));
      nodes_[node].durable = std::stoull(f[3]);
      if (f.size() > 4) nodes_[node].ino = std::stoull(f[4]);
      nodes_[Parent(node)].durable_children[path->back()] = node;
      return Status::Ok();
    }
    if (kind == "C") {
      // A file the journal has there was replaced by a process that died before recording it.
      if (int old = Lookup(*path); old >= 0) Unlink(old, path->back(), "-");
      DCPKV_ASSIGN_OR_RETURN(int node, Add(*path, false, f[1]));
      if (f.size() > 2) nodes_[node].ino = std::stoull(f[2]);
      return Status::Ok();
    }
    if (kind == "M") return Add(*path, true, f[1]).status();
    if (kind == "S" || kind == "T") {
      DCPKV_RETURN_IF_ERROR(need(3));
      DCPKV_ASSIGN_OR_RETURN(int node, Find(*path, f[1]));
      const uint64_t length = std::stoull(f[2]);
      Node& n = nodes_[node];
      n.durable = kind == "S" ? std::max(n.durable, length) : std::min(n.durable, length);
      return Status::Ok();
    }
    if (kind == "D") {
      DCPKV_ASSIGN_OR_RETURN(int node, Find(*path, f[1]));
      nodes_[node].durable_children = nodes_[node].children;
      return Status::Ok();
    }
    if (kind == "U" || kind == "X") {
      DCPKV_ASSIGN_OR_RETURN(int node, Find(*path, f[1]));
      Unlink(node, path->back(), f.size() > 2 ? f[2] : "-");
      return Status::Ok();
    }
    return InternalError("journal: unknown record " + kind);
  }

  // Writes what survives into `out` (made here).
  Status Build(const std::string& out, const std::string& graveyard, CutMode mode, uint64_t seed,
               PowerCutReport* report) {
    std::mt19937_64 rng(seed);
    report->removals_undone = 0;
    for (const std::string& top : {root_, graveyard}) {
      std::error_code ec;
      for (auto it = fs::recursive_directory_iterator(top, ec); !ec && it != fs::end(it);
           it.increment(ec)) {
        struct stat st {};
        if (::lstat(it->path().c_str(), &st) == 0 && S_ISREG(st.st_mode)) {
          inodes_.emplace(st.st_ino, it->path().string());
        }
      }
    }
    DCPKV_RETURN_IF_ERROR(BuildDir(0, out, graveyard, mode, rng, report));
    // Entries made since their directory's sync: reachable now, not durably.
    for (size_t i = 1; i < nodes_.size(); ++i) {
      if (!nodes_[i].links.empty() && !durable_reach_.count(static_cast<int>(i))) {
        ++report->entries_lost;
      }
    }
    return Status::Ok();
  }

 private:
  struct Node {
    bool dir = false;
    uint64_t durable = 0;  // files: bytes from the start that survive
    uint64_t ino = 0;      // files: the inode number, 0 if unknown
    std::string grave;     // files: the copy of its bytes once removed
    std::map<std::string, int> children, durable_children;
    std::vector<std::pair<int, std::string>> links;  // (parent, name) now
  };

  std::optional<std::vector<std::string>> Split(const std::string& path) const {
    const std::string p = Normal(path);
    if (p == root_) return std::vector<std::string>{};
    if (p.compare(0, root_.size() + 1, root_ + "/") != 0) return std::nullopt;
    std::vector<std::string> parts;
    for (const auto& part : fs::path(p.substr(root_.size() + 1))) parts.push_back(part.string());
    return parts;
  }
  int Lookup(const std::vector<std::string>& parts) const {
    int node = 0;
    for (const std::string& part : parts) {
      auto it = nodes_[node].children.find(part);
      if (it == nodes_[node].children.end()) return -1;
      node = it->second;
    }
    return node;
  }
  StatusOr<int> Find(const std::vector<std::string>& parts, const std::string& path) const {
    const int node = Lookup(parts);
    if (node < 0) return InternalError("journal names " + path + ", which the model lacks");
    return node;
  }
  int Parent(int node) const { return nodes_[node].links.front().first; }
  StatusOr<int> DirectoryOf(const std::vector<std::string>& parts, const std::string& path) const {
    std::vector<std::string> parent(parts.begin(), parts.end() - 1);
    const int node = Lookup(parent);
    if (node < 0 || !nodes_[node].dir) {
      return InternalError("journal names " + path + " in a directory the model lacks");
    }
    return node;
  }
  StatusOr<int> Add(const std::vector<std::string>& parts, bool dir, const std::string& path) {
    if (parts.empty()) return InternalError("journal makes the root " + path);
    DCPKV_ASSIGN_OR_RETURN(int parent, DirectoryOf(parts, path));
    if (nodes_[parent].children.count(parts.back())) {
      return InternalError("journal makes " + path + ", which exists");
    }
    nodes_.push_back(Node{.dir = dir});
    const int node = static_cast<int>(nodes_.size() - 1);
    nodes_[parent].children[parts.back()] = node;
    nodes_[node].links.push_back({parent, parts.back()});
    return node;
  }
  void Unlink(int node, const std::string& name, const std::string& grave) {
    Node& n = nodes_[node];
    for (auto it = n.links.begin(); it != n.links.end(); ++it) {
      std::map<std::string, int>& siblings = nodes_[it->first].children;
      if (auto entry = siblings.find(name);
          it->second == name && entry != siblings.end() && entry->second == node) {
        siblings.erase(entry);
        n.links.erase(it);
        break;
      }
    }
    if (grave != "-") n.grave = grave;
  }
  Status Rename(const std::vector<std::string>& from, const std::vector<std::string>& to,
                const std::string& grave) {
    DCPKV_ASSIGN_OR_RETURN(int node, Find(from, Join(from)));
    if (from == to) return Status::Ok();
    DCPKV_ASSIGN_OR_RETURN(int parent, DirectoryOf(to, Join(to)));
    if (int replaced = Lookup(to); replaced >= 0) Unlink(replaced, to.back(), grave);
    Unlink(node, from.back(), "-");
    nodes_[parent].children[to.back()] = node;
    nodes_[node].links.push_back({parent, to.back()});
    return Status::Ok();
  }
  Status Link(const std::vector<std::string>& from, const std::vector<std::string>& to) {
    DCPKV_ASSIGN_OR_RETURN(int node, Find(from, Join(from)));
    DCPKV_ASSIGN_OR_RETURN(int parent, DirectoryOf(to, Join(to)));
    if (nodes_[parent].children.count(to.back())) {
      return InternalError("journal links onto " + Join(to) + ", which exists");
    }
    nodes_[parent].children[to.back()] = node;
    nodes_[node].links.push_back({parent, to.back()});
    return Status::Ok();
  }
  std::string Join(const std::vector<std::string>& parts) const {
    std::string p = root_;
    for (const std::string& part : parts) p += "/" + part;
    return p;
  }
  // Where a node's bytes are now: wherever its inode is (under the root or in the graveyard),
  // else one of its names, or its copy in the graveyard.
  std::string PathNow(int node, const std::string& graveyard) const {
    if (node == 0) return root_;
    const Node& n = nodes_[node];
    if (!n.dir && n.ino != 0) {
      if (auto it = inodes_.find(n.ino); it != inodes_.end()) return it->second;
    }
    if (n.links.empty()) return n.grave.empty() ? "" : graveyard + "/" + n.grave;
    const std::string parent = PathNow(n.links.front().first, graveyard);
    return parent.empty() ? "" : parent + "/" + n.links.front().second;
  }

  Status BuildDir(int dir, const std::string& out, const std::string& graveyard, CutMode mode,
                  std::mt19937_64& rng, PowerCutReport* report) {
    if (::mkdir(out.c_str(), 0755) != 0) {
      return IOError("cannot make " + out + ": " + strerror(errno));
    }
    for (const auto& [name, child] : nodes_[dir].durable_children) {
      durable_reach_.insert(child);
      const std::string target = out + "/" + name;
      if (nodes_[child].dir) {
        DCPKV_RETURN_IF_ERROR(BuildDir(child, target, graveyard, mode, rng, report));
        continue;
      }
      const Node& n = nodes_[child];
      const bool linked_here = [&] {
        for (const auto& [parent, link] : n.links) {
          if (parent == dir && link == name) return true;
        }
        return false;
      }();
      if (!linked_here) ++report->removals_undone;
      const std::string source = PathNow(child, graveyard);
      std::string bytes;
      if (!source.empty()) {
        std::ifstream in(source, std::ios::binary);
        std::ostringstream all;
        all << in.rdbuf();
        bytes = all.str();
      } else if (n.durable > 0) {
        return InternalError("the bytes of " + Join({}) + "/.../" + name +
                             " were removed without a copy");
      }
      if (bytes.size() < n.durable) {
        return InternalError("file " + source + " holds " + std::to_string(bytes.size()) +
                             " bytes, fewer than the " + std::to_string(n.durable) +
                             " synced: written in place?");
      }
      const uint64_t lost = bytes.size() - n.durable;
      if (lost > 0) {
        ++report->files_shortened;
        report->bytes_lost += lost;
        if (mode == CutMode::kTruncate) {
          bytes.resize(n.durable);
        } else {
          for (size_t i = n.durable; i < bytes.size(); ++i) bytes[i] = static_cast<char>(rng());
        }
      }
      std::ofstream o(target, std::ios::binary);
      o.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
      if (!o) return IOError("cannot write " + target);
      ++report->files_kept;
    }
    return Status::Ok();
  }

  std::string root_;
  std::vector<Node> nodes_;
  std::set<int> durable_reach_;
  std::map<uint64_t, std::string> inodes_;  // at the cut: a path of each file, by inode
};

Status WriteBaseline(const std::string& journal, const std::string& root) {
  std::error_code ec;
  fs::remove_all(GraveyardOf(journal), ec);
  fs::create_directories(GraveyardOf(journal), ec);
  if (ec) return IOError("cannot make " + GraveyardOf(journal) + ": " + ec.message());
  fs::create_directories(root, ec);
  std::ofstream out(journal, std::ios::trunc);
  for (auto it = fs::recursive_directory_iterator(root, ec); !ec && it != fs::end(it);
       it.increment(ec)) {
    const bool dir = it->is_directory();
    out << "B\t" << it->path().string() << "\t" << (dir ? "d" : "f") << "\t"
        << (dir ? 0 : it->file_size()) << "\t" << Inode(it->path().string()) << "\n";
  }
  if (ec) return IOError("cannot list " + root + ": " + ec.message());
  out.close();
  if (!out) return IOError("cannot write journal " + journal);
  return Status::Ok();
}

}  // namespace

Status BeginPowerLossJournal(const std::string& journal, const std::string& root) {
  return WriteBaseline(journal, root);
}

StatusOr<std::unique_ptr<PowerLossLayer>> PowerLossLayer::Install(const std::string& journal) {
  std::unique_ptr<PowerLossLayer> layer(new PowerLossLayer());
  DCPKV_ASSIGN_OR_RETURN(layer->recorder_, Recorder::Open(journal));
  layer->fs_ = std::make_shared<RecordingFileSystem>(layer->recorder_);
  layer->env_ = rocksdb::NewCompositeEnv(layer->fs_);
  layer->ops_ = std::make_unique<RecordingFileOps>(layer->recorder_);
  SetFileOpsForTesting(layer->ops_.get());
  return layer;
}

PowerLossLayer::~PowerLossLayer() { SetFileOpsForTesting(nullptr); }

StatusOr<PowerCutReport> ApplyPowerCut(const std::string& journal, const std::string& root,
                                       CutMode mode, uint64_t seed) {
  PowerCutReport report;
  Model model(root);
  std::ifstream in(journal);
  std::string line;
  while (std::getline(in, line)) {
    if (in.eof()) break;  // a last line without its newline: a record never finished
    std::vector<std::string> fields;
    std::stringstream split(line);
    for (std::string field; std::getline(split, field, '\t');) fields.push_back(field);
    if (fields.empty()) continue;
    ++report.records;
    Status s = model.Apply(fields);
    if (!s.ok())
      return Status(s.code(), s.message() + " (journal line " + std::to_string(report.records) +
                                  ": " + line + ")");
  }
  const std::string rebuilt = Normal(root) + ".cut", old = Normal(root) + ".precut";
  std::error_code ec;
  fs::remove_all(rebuilt, ec);
  fs::remove_all(old, ec);
  DCPKV_RETURN_IF_ERROR(model.Build(rebuilt, GraveyardOf(journal), mode, seed, &report));
  fs::rename(root, old, ec);
  if (!ec) fs::rename(rebuilt, root, ec);
  if (ec) return IOError("cannot put the cut root in place: " + ec.message());
  fs::remove_all(old, ec);
  DCPKV_RETURN_IF_ERROR(WriteBaseline(journal, root));
  return report;
}

}  // namespace dcpkv::testing

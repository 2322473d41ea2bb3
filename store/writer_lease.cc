// The writer lease of a store root (writer_lease.h has the protocol).
#include "dcpkv/store/writer_lease.h"

#include <fcntl.h>
#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <map>
#include <mutex>
#include <sstream>
#include <thread>

#include "dcpkv/store/file_ops.h"
#include "process_identity.h"

namespace dcpkv {

// This process's hold on the lease of one root.
struct WriterLeaseHold {
  std::string job_id;
  bool maintenance = false;
  int holds = 0;
  int fd = -1;        // open on the lease file this process made or joined
  bool made = false;  // this process made the file: it removes it when it lets go
  dev_t dev = 0;
  ino_t ino = 0;
};

namespace {

using Held = WriterLeaseHold;

constexpr char kLeaseHeader[] = "dcpkv writer lease 1";
constexpr int kTakeoverAttempts = 16;

std::string LeasePath(const std::string& root) {
  return (std::filesystem::path(root) / kWriterLeaseFileName).string();
}

std::string ErrnoText(int error) { return std::strerror(error); }

// The lease's scratch files: "writer.lease.<kind>.<host>.<pid>.<pid start>.<nonce>" in the root,
// kind "new" (a lease being made), "stale" (one being taken over) or "clock" (a probe of the file
// system's clock). Each lives for a moment, but a crash or a power cut (which can undo an
// unlink not yet synced) may leave one: named by its maker, it is removed once that is gone.
std::string ScratchPath(const std::string& root, const std::string& kind) {
  return (std::filesystem::path(root) /
          (std::string(kWriterLeaseFileName) + "." + kind + "." + MakerTag()))
      .string();
}

// Removes the scratch files of makers gone from this machine, and those of any host (or of the
// earlier naming) untouched for an hour.
void RemoveAbandonedScratchFiles(const std::string& root) {
  namespace fs = std::filesystem;
  const std::string prefix = std::string(kWriterLeaseFileName) + ".";
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(root, ec)) {
    const std::string name = e.path().filename().string();
    if (name.rfind(prefix, 0) != 0 && name.rfind("." + prefix + "clock.", 0) != 0) continue;
    // "writer.lease.<kind>.", then the maker's tag.
    const size_t kind_end = name.find('.', prefix.size());
    const std::string_view named_by(name.data(), kind_end == std::string::npos ? 0 : kind_end + 1);
    if (ScratchIsAbandoned(e.path(), named_by)) CurrentFileOps().Unlink(e.path().string());
  }
}

// IO_ERROR; RESOURCE_EXHAUSTED for a full file system; FAILED_PRECONDITION, said plainly, for
// a store that this process may not write to (read-only media, another user's store): the
// commands that only read work there.
Status FileError(int error, const std::string& what) {
  const std::string message = what + ": " + ErrnoText(error);
  if (error == ENOSPC || error == EDQUOT) return ResourceExhaustedError(message);
  if (error == EROFS) {
    return FailedPreconditionError(message +
                                   ": the store is on a read-only file system, where it can be "
                                   "read (ls, show, verify, diff, export, load) but not written");
  }
  if (error == EACCES || error == EPERM) {
    return FailedPreconditionError(message +
                                   ": this user may not write to the store, which can still be "
                                   "read (ls, show, verify, diff, export, load)");
  }
  return IOError(message);
}

struct Identity {
  std::string job_id;
  bool maintenance = false;
};

std::mutex& IdentityMutex() {
  static auto* mu = new std::mutex;
  return *mu;
}

Identity& MaintenanceIdentity() {
  static auto* identity = new Identity;
  return *identity;
}

double SecondsBetween(const timespec& later, const timespec& earlier) {
  return static_cast<double>(later.tv_sec - earlier.tv_sec) +
         static_cast<double>(later.tv_nsec - earlier.tv_nsec) * 1e-9;
}

// "Now" by the clock of the file system holding `root`: the modification time of a file made
// there just now. The lease's heartbeat is that clock's too, so an age needs no agreement between
// hosts' clocks.
StatusOr<timespec> FileSystemNow(const std::string& root) {
  const std::string probe = ScratchPath(root, "clock");
  const int fd = CurrentFileOps().CreateFile(probe, O_EXCL | O_WRONLY);
  if (fd < 0) {
    return IOError("cannot read the clock of the file system of " + root + ": creating " + probe +
                   ": " + ErrnoText(-fd));
  }
  struct stat st {};
  const bool ok = ::fstat(fd, &st) == 0;
  ::close(fd);
  CurrentFileOps().Unlink(probe);
  if (!ok) return IOError("cannot stat " + probe);
  return st.st_mtim;
}

std::string EncodeLease(const WriterLeaseInfo& info) {
  std::ostringstream out;
  out << kLeaseHeader << "\n"
      << "job=" << info.job_id << "\n"
      << "maintenance=" << (info.maintenance ? 1 : 0) << "\n"
      << "host=" << info.host << "\n"
      << "boot_id=" << info.boot_id << "\n"
      << "pid=" << info.pid << "\n"
      << "pid_start=" << info.pid_start_time << "\n"
      << "since=" << info.since_unix_seconds << "\n"
      << "nonce=" << info.nonce << "\n";
  return out.str();
}

Status DecodeLease(const std::string& path, const std::string& text, WriterLeaseInfo* info) {
  std::istringstream in(text);
  std::string line;
  if (!std::getline(in, line) || line != kLeaseHeader) {
    return DataLossError("the writer lease " + path +
                         " is not a dcpkv lease (or a newer one): its first line is \"" +
                         line.substr(0, 64) + "\"");
  }
  try {
    while (std::getline(in, line)) {
      const size_t eq = line.find('=');
      if (eq == std::string::npos) continue;
      const std::string key = line.substr(0, eq);
      const std::string value = line.substr(eq + 1);
      if (key == "job") info->job_id = value;
      if (key == "maintenance") info->maintenance = value == "1";
      if (key == "host") info->host = value;
      if (key == "boot_id") info->boot_id = value;
      if (key == "pid") info->pid = std::stoi(value);
      if (key == "pid_start") info->pid_start_time = std::stoull(value);
      if (key == "since") info->since_unix_seconds = std::stoll(value);
      if (key == "nonce") info->nonce = value;
    }
  } catch (const std::exception&) {
    return DataLossError("the writer lease " + path + " has a malformed line: \"" +
                         line.substr(0, 64) + "\"");
  }
  if (info->job_id.empty() || info->nonce.empty()) {
    return DataLossError("the writer lease " + path + " names no job");
  }
  return Status::Ok();
}

// Reads the lease file at `path` through `fd` (or opens it): its record and its identity.
struct LeaseFile {
  WriterLeaseInfo info;
  dev_t dev = 0;
  ino_t ino = 0;
  timespec mtime{};
};

StatusOr<LeaseFile> ReadLeaseFile(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return NotFoundError("no writer lease at " + path);
    return IOError("cannot open the writer lease " + path + ": " + ErrnoText(errno));
  }
  LeaseFile file;
  struct stat st {};
  std::string text;
  char buffer[4096];
  ssize_t n = 0;
  while ((n = ::read(fd, buffer, sizeof(buffer))) > 0 && text.size() < 65536)
    text.append(buffer, n);
  const bool stat_ok = ::fstat(fd, &st) == 0;
  ::close(fd);
  if (n < 0 || !stat_ok) return IOError("cannot read the writer lease " + path);
  file.dev = st.st_dev;
  file.ino = st.st_ino;
  file.mtime = st.st_mtim;
  DCPKV_RETURN_IF_ERROR(DecodeLease(path, text, &file.info));
  return file;
}

// Writes `info` to a file of its own and links it to `path`: EEXIST (returned as ALREADY_EXISTS)
// if a lease is there. On success `*fd` is open on the new lease.
Status CreateLeaseFile(const std::string& root, const std::string& path,
                       const WriterLeaseInfo& info, int* fd) {
  const std::string temporary = ScratchPath(root, "new");
  FileOps& ops = CurrentFileOps();
  const int out = ops.CreateFile(temporary, O_EXCL | O_RDWR);
  if (out < 0) return FileError(-out, "cannot create the writer lease " + temporary);
  const std::string text = EncodeLease(info);
  int write_error = ::write(out, text.data(), text.size()) == static_cast<ssize_t>(text.size())
                        ? ops.SyncFile(out, temporary)
                        : errno;
  if (write_error != 0) {
    ::close(out);
    ops.Unlink(temporary);
    return FileError(write_error, "cannot write the writer lease " + temporary);
  }
  const int link_error = ops.Link(temporary, path);
  ops.Unlink(temporary);
  if (link_error != 0) {
    ::close(out);
    if (link_error == EEXIST) return AlreadyExistsError("a writer lease is at " + path);
    return IOError("cannot make the writer lease " + path + ": " + ErrnoText(link_error));
  }
  DCPKV_RETURN_IF_ERROR(SyncDirectory(root));
  *fd = out;
  return Status::Ok();
}

// The leases this process holds, by root, and the heartbeat thread that touches them.
class Registry {
 public:
  static Registry& Get() {
    static Registry* registry = [] {
      auto* r = new Registry;  // never destroyed: the heartbeat thread may run during exit
      ::pthread_atfork([] { Get().mu_.lock(); }, [] { Get().mu_.unlock(); },
                       [] {
                         Registry& g = Get();
                         // A forked child holds nothing: its parent does.
                         for (auto& [root, held] : g.held_) ::close(held.fd);
                         g.held_.clear();
                         g.thread_started_ = false;
                         g.mu_.unlock();
                       });
      std::atexit([] { Get().ReleaseAll(); });
      return r;
    }();
    return *registry;
  }

  std::mutex mu_;
  std::map<std::string, Held> held_;  // guarded by mu_

  void StartHeartbeatLocked() {
    if (thread_started_) return;
    thread_started_ = true;
    std::thread([this] { HeartbeatLoop(); }).detach();
  }

  void ReleaseAll() {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& [root, held] : held_) ReleaseLocked(root, &held);
    held_.clear();
  }

  // Gives up this process's hold on the file (removing it if this process made it and it is
  // still the same file).
  static void ReleaseLocked(const std::string& root, Held* held) {
    if (held->made) {
      const std::string path = LeasePath(root);
      struct stat st {};
      if (::stat(path.c_str(), &st) == 0 && st.st_dev == held->dev && st.st_ino == held->ino) {
        CurrentFileOps().Unlink(path);
      }
    }
    if (held->fd >= 0) ::close(held->fd);
    held->fd = -1;
  }

 private:
  void HeartbeatLoop() {
    auto last = std::chrono::steady_clock::now();
    for (;;) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      // The interval is read each time (the expiry may be set by the environment later).
      const auto interval =
          std::min<std::chrono::milliseconds>(std::chrono::seconds(5), WriterLeaseExpiry() / 6);
      const auto now = std::chrono::steady_clock::now();
      if (now - last < interval) continue;
      last = now;
      std::lock_guard<std::mutex> lock(mu_);
      if (!thread_started_) return;  // a forked child's copy of the flag
      for (auto& [root, held] : held_) {
        // Touches the file this process holds; one that replaced it (a takeover) is not touched.
        if (held.fd >= 0) ::futimens(held.fd, nullptr);
      }
    }
  }

  bool thread_started_ = false;  // guarded by mu_
};

std::string CanonicalRoot(const std::string& root) {
  std::error_code ec;
  std::filesystem::path p = std::filesystem::weakly_canonical(root, ec);
  return ec ? root : p.string();
}

WriterLeaseInfo MyInfo(const std::string& job_id, bool maintenance) {
  WriterLeaseInfo info;
  info.job_id = job_id;
  info.maintenance = maintenance;
  info.host = HostName();
  info.boot_id = BootId();
  info.pid = static_cast<int>(::getpid());
  info.pid_start_time = ProcessStartTime(info.pid);
  info.since_unix_seconds = static_cast<int64_t>(std::time(nullptr));
  info.nonce = RandomNonce();
  return info;
}

Status LeaseHeldError(const std::string& root, const WriterLeaseInfo& owner,
                      std::chrono::milliseconds expiry, bool i_am_maintenance) {
  std::string message = "the store root " + root + " is leased to " + DescribeLeaseHolder(owner) +
                        ": only one job writes to a root at a time";
  if (owner.maintenance) {
    message += "; try again once that command is done";
  } else if (i_am_maintenance) {
    message += "; stop the job first, or let it collect garbage itself (keep_last)";
  } else {
    const double left = static_cast<double>(expiry.count()) / 1000 - owner.heartbeat_age_seconds;
    message +=
        "; if that job is gone, its lease expires " +
        (left > 0 ? "in " + std::to_string(static_cast<int>(left + 1)) + " s" : std::string("now"));
  }
  return FailedPreconditionError(message).WithReason(ErrorReason::kLeaseHeld);
}

// Whether the process that made the lease is gone: made on this machine (since its boot) by a
// process that no longer runs.
bool MakerGone(const WriterLeaseInfo& owner) {
  return !owner.boot_id.empty() && owner.boot_id == BootId() &&
         !ProcessMayBeAlive(owner.pid, owner.pid_start_time);
}

// Whether the holder recorded in `file` can be replaced: its maker gone from this machine, or
// silent for the expiry.
bool Abandoned(const LeaseFile& file, std::chrono::milliseconds expiry) {
  return MakerGone(file.info) ||
         file.info.heartbeat_age_seconds * 1000 > static_cast<double>(expiry.count());
}

// Replaces the abandoned lease `stale` with ours. ALREADY_EXISTS if another taker got there first
// (the caller looks again).
Status TakeOver(const std::string& root, const std::string& path, const LeaseFile& stale,
                const WriterLeaseInfo& mine, int* fd) {
  const std::string moved = ScratchPath(root, "stale");
  FileOps& ops = CurrentFileOps();
  if (const int rc = ops.Rename(path, moved); rc != 0) {
    if (rc == ENOENT) return AlreadyExistsError("taken meanwhile");
    return IOError("cannot move the abandoned writer lease " + path + ": " + ErrnoText(rc));
  }
  struct stat st {};
  const bool same =
      ::stat(moved.c_str(), &st) == 0 && st.st_dev == stale.dev && st.st_ino == stale.ino;
  if (!same) {
    // Another taker replaced the stale lease between our look and our rename: put its lease back
    // (unless a third one made a lease meanwhile; its holder's fence then sees it lost).
    if (const int rc = ops.Link(moved, path); rc != 0 && rc != EEXIST) {
      ops.Unlink(moved);
      return IOError("cannot put back the writer lease " + path + ": " + ErrnoText(rc));
    }
    ops.Unlink(moved);
    return AlreadyExistsError("taken meanwhile");
  }
  ops.Unlink(moved);
  return CreateLeaseFile(root, path, mine, fd);
}

}  // namespace

std::chrono::milliseconds WriterLeaseExpiry() {
  if (const char* env = std::getenv("DCPKV_LEASE_EXPIRY_SECONDS"); env != nullptr && *env) {
    char* end = nullptr;
    const double seconds = std::strtod(env, &end);
    if (end != env && seconds > 0) {
      return std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000));
    }
  }
  return std::chrono::seconds(30);
}

std::string ProcessJobId() {
  std::lock_guard<std::mutex> lock(IdentityMutex());
  if (!MaintenanceIdentity().job_id.empty()) return MaintenanceIdentity().job_id;
  // Fixed at the first call: the environment may change later (a rendezvous of a subgroup).
  static auto* fixed = new std::string;
  if (!fixed->empty()) return *fixed;
  auto env = [](const char* name) -> std::string {
    const char* value = std::getenv(name);
    return value != nullptr ? value : "";
  };
  if (std::string id = env("DCPKV_JOB_ID"); !id.empty()) {
    *fixed = id;
  } else if (std::string run = env("TORCHELASTIC_RUN_ID"); !run.empty() && run != "none") {
    *fixed = "torchelastic:" + run;
  } else if (std::string addr = env("MASTER_ADDR"), port = env("MASTER_PORT");
             !addr.empty() && !port.empty()) {
    *fixed = "rendezvous:" + addr + ":" + port;
  } else {
    *fixed = "process:" + HostName() + ":" + std::to_string(::getpid()) + ":" + RandomNonce();
  }
  return *fixed;
}

void SetMaintenanceIdentity(const std::string& command) {
  std::lock_guard<std::mutex> lock(IdentityMutex());
  MaintenanceIdentity().job_id = "dcpkv " + command + " on " + HostName() + ", pid " +
                                 std::to_string(::getpid()) + " (" + RandomNonce() + ")";
  MaintenanceIdentity().maintenance = true;
}

std::string DescribeLeaseHolder(const WriterLeaseInfo& info) {
  char since[64] = "?";
  const time_t t = static_cast<time_t>(info.since_unix_seconds);
  struct tm utc {};
  if (::gmtime_r(&t, &utc) != nullptr)
    std::strftime(since, sizeof(since), "%Y-%m-%dT%H:%M:%SZ", &utc);
  char age[32];
  std::snprintf(age, sizeof(age), "%.1f", info.heartbeat_age_seconds);
  return std::string(info.maintenance ? "maintenance command " : "job ") + "\"" + info.job_id +
         "\" (host " + info.host + ", pid " + std::to_string(info.pid) + ", since " + since +
         ", last heartbeat " + age + " s ago)";
}

StatusOr<WriterLeaseInfo> ReadWriterLease(const std::string& root) {
  DCPKV_ASSIGN_OR_RETURN(LeaseFile file, ReadLeaseFile(LeasePath(root)));
  StatusOr<timespec> now = FileSystemNow(root);
  // A read-only root cannot take a probe file: the local clock then.
  timespec local{};
  ::clock_gettime(CLOCK_REALTIME, &local);
  file.info.heartbeat_age_seconds = SecondsBetween(now.ok() ? *now : local, file.mtime);
  return file.info;
}

StatusOr<std::unique_ptr<WriterLease>> WriterLease::Acquire(const std::string& root_arg,
                                                            const WriterLeaseOptions& options) {
  if (const int rc = MakeDirectories(root_arg); rc != 0) {
    return FileError(rc, "cannot create store root " + root_arg);
  }
  const std::string root = CanonicalRoot(root_arg);
  const std::string path = LeasePath(root);
  RemoveAbandonedScratchFiles(root);
  bool maintenance = false;
  {
    std::lock_guard<std::mutex> lock(IdentityMutex());
    maintenance = MaintenanceIdentity().maintenance;
  }
  const std::string job_id = options.job_id.empty() ? ProcessJobId() : options.job_id;
  const std::chrono::milliseconds expiry = WriterLeaseExpiry();
  const auto deadline = std::chrono::steady_clock::now() + options.wait_for_maintenance;

  Registry& registry = Registry::Get();
  std::unique_lock<std::mutex> lock(registry.mu_);
  // Held in this process already (by another writer, or meanwhile by another thread while this
  // one waited for a maintenance command): one more hold.
  auto join_in_process = [&](WriterLeaseHold* hold) -> StatusOr<std::unique_ptr<WriterLease>> {
    if (hold->job_id != job_id) {
      return FailedPreconditionError("this process holds the writer lease of " + root +
                                     " for job \"" + hold->job_id + "\", not for job \"" + job_id +
                                     "\"")
          .WithReason(ErrorReason::kLeaseHeld);
    }
    ++hold->holds;
    std::unique_ptr<WriterLease> lease(new WriterLease(root));
    if (Status s = lease->CheckLocked(hold); !s.ok()) {
      --hold->holds;
      lease->root_.clear();
      return s;
    }
    return lease;
  };
  const WriterLeaseInfo mine = MyInfo(job_id, maintenance);
  int races = 0;  // the file changed between two looks
  for (;;) {
    if (races > 4 * kTakeoverAttempts) {
      return UnavailableError("the writer lease of " + root + " changed hands " +
                              std::to_string(races) + " times meanwhile");
    }
    if (auto it = registry.held_.find(root); it != registry.held_.end()) {
      return join_in_process(&it->second);
    }
    Held held;
    held.job_id = job_id;
    held.maintenance = maintenance;
    held.holds = 1;
    Status made = CreateLeaseFile(root, path, mine, &held.fd);
    if (made.ok()) {
      held.made = true;
    } else if (made.code() != StatusCode::kAlreadyExists) {
      return made;
    } else {
      StatusOr<LeaseFile> existing = ReadLeaseFile(path);
      if (existing.status().code() == StatusCode::kNotFound) {
        ++races;  // released meanwhile
        continue;
      }
      if (!existing.ok()) return existing.status();
      if (existing->info.job_id == job_id && !MakerGone(existing->info)) {
        // Our job's, made by another of its processes: joined.
        held.fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
        struct stat st {};
        if (held.fd < 0 || ::fstat(held.fd, &st) != 0 || st.st_ino != existing->ino) {
          if (held.fd >= 0) ::close(held.fd);
          ++races;  // released or replaced meanwhile
          continue;
        }
        ::futimens(held.fd, nullptr);
        held.made = false;
      } else {
        DCPKV_ASSIGN_OR_RETURN(timespec now, FileSystemNow(root));
        existing->info.heartbeat_age_seconds = SecondsBetween(now, existing->mtime);
        // Abandoned, or our job's whose maker is gone (an earlier run of it: made ours, so that
        // another job does not take it for abandoned while this run holds it).
        if (existing->info.job_id == job_id || Abandoned(*existing, expiry)) {
          Status taken = TakeOver(root, path, *existing, mine, &held.fd);
          if (taken.code() == StatusCode::kAlreadyExists) {
            ++races;
            continue;
          }
          DCPKV_RETURN_IF_ERROR(taken);
          held.made = true;
        } else if (existing->info.maintenance && !maintenance &&
                   std::chrono::steady_clock::now() < deadline) {
          lock.unlock();  // a dcpkv command: waited for
          std::this_thread::sleep_for(std::chrono::milliseconds(100));
          lock.lock();
          continue;
        } else {
          return LeaseHeldError(root, existing->info, expiry, maintenance);
        }
      }
    }
    struct stat st {};
    ::fstat(held.fd, &st);
    held.dev = st.st_dev;
    held.ino = st.st_ino;
    registry.held_[root] = held;
    registry.StartHeartbeatLocked();
    return std::unique_ptr<WriterLease>(new WriterLease(root));
  }
}

WriterLease::~WriterLease() {
  if (root_.empty()) return;
  Registry& registry = Registry::Get();
  std::lock_guard<std::mutex> lock(registry.mu_);
  auto it = registry.held_.find(root_);
  if (it == registry.held_.end()) return;
  if (--it->second.holds > 0) return;
  Registry::ReleaseLocked(root_, &it->second);
  registry.held_.erase(it);
}

Status WriterLease::Check() {
  Registry& registry = Registry::Get();
  std::lock_guard<std::mutex> lock(registry.mu_);
  auto it = registry.held_.find(root_);
  if (it == registry.held_.end()) {
    return FailedPreconditionError("the writer lease of " + root_ + " is not held");
  }
  return CheckLocked(&it->second);
}

Status WriterLease::CheckLocked(WriterLeaseHold* hold) {
  WriterLeaseHold& held = *hold;
  const std::string path = LeasePath(root_);
  for (int attempt = 0; attempt < kTakeoverAttempts; ++attempt) {
    struct stat st {};
    if (::stat(path.c_str(), &st) == 0 && st.st_dev == held.dev && st.st_ino == held.ino) {
      return Status::Ok();
    }
    StatusOr<LeaseFile> now = ReadLeaseFile(path);
    if (now.ok() && now->info.job_id == held.job_id) {
      // Made again by another process of this job: joined.
      const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
      if (fd < 0) continue;
      ::close(held.fd);
      held.fd = fd;
      held.made = false;
      held.dev = now->dev;
      held.ino = now->ino;
      return Status::Ok();
    }
    if (now.ok()) {
      if (StatusOr<timespec> fs_now = FileSystemNow(root_); fs_now.ok()) {
        now->info.heartbeat_age_seconds = SecondsBetween(*fs_now, now->mtime);
      }
      return LeaseHeldError(root_, now->info, WriterLeaseExpiry(), held.maintenance)
          .WithContext(
              "this job's writer lease was taken over (its heartbeat stopped for longer "
              "than the expiry)");
    }
    if (now.status().code() != StatusCode::kNotFound) return now.status();
    // Removed (a process of this job let go of it): made again.
    WriterLeaseInfo mine = MyInfo(held.job_id, held.maintenance);
    int fd = -1;
    Status made = CreateLeaseFile(root_, path, mine, &fd);
    if (made.code() == StatusCode::kAlreadyExists) continue;
    DCPKV_RETURN_IF_ERROR(made);
    ::close(held.fd);
    held.fd = fd;
    held.made = true;
    ::fstat(fd, &st);
    held.dev = st.st_dev;
    held.ino = st.st_ino;
    return Status::Ok();
  }
  return UnavailableError("the writer lease of " + root_ + " changed hands " +
                          std::to_string(kTakeoverAttempts) + " times meanwhile");
}

}  // namespace dcpkv

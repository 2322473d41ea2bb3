// The writer lease of a store root: one job writes to a root at a time.
//
// A job (every process of one training job that writes: its ranks, a PROCESS-executor upload
// daemon, on any host) holds the lease of the root it saves into while it has a writer open
// there; a second job's writer fails at once with a message naming the owner (host, pid, job id,
// since when). Readers never look at it. The lease is a file, <root>/writer.lease, created with
// link(2) (atomic, also on NFS), holding who made it; each process holding it touches it every
// heartbeat interval (its mtime, set by the file system's clock). A lease is free to take when it
// is the taker's own job's (a torchrun restart of the same job), when it was made on this machine
// by a process that is gone, or when no heartbeat has touched it for the expiry (a dead job on
// another host; the age is measured against the same file system's clock, so hosts' clocks need
// not agree). A commit checks that the lease is still its job's (a fence: a job that stalled past
// the expiry and lost its lease cannot commit over the new owner). Maintenance (`dcpkv gc`, `rm`,
// `import`) takes the lease for its duration under an identity of its own: it is refused while a
// job holds the root, and a job's writer waits for it (up to a limit) rather than failing.
#ifndef DCPKV_STORE_WRITER_LEASE_H_
#define DCPKV_STORE_WRITER_LEASE_H_

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "dcpkv/status.h"

namespace dcpkv {

// The file name of the lease, in the root.
inline constexpr char kWriterLeaseFileName[] = "writer.lease";

// Who holds (or held) a lease, as its file records it.
struct WriterLeaseInfo {
  std::string job_id;
  bool maintenance = false;  // a dcpkv command, not a job
  std::string host;
  std::string boot_id;
  int pid = 0;
  uint64_t pid_start_time = 0;
  int64_t since_unix_seconds = 0;
  std::string nonce;
  // Seconds since its last heartbeat, by the file system's clock.
  double heartbeat_age_seconds = 0;
};

// The job id of this process, fixed at the first call: DCPKV_JOB_ID if set; else
// TORCHELASTIC_RUN_ID (set by torchrun, the same across an elastic restart) unless it is
// torchrun's default "none"; else "rendezvous:MASTER_ADDR:MASTER_PORT" when a torchrun-style
// rendezvous is set; else one made for this process ("process:<host>:<pid>:<nonce>"). The
// environment is not changed here (setenv races with other threads' getenv); Python's
// dcpkv.job_id() exports it as DCPKV_JOB_ID, so that a PROCESS-executor daemon started
// afterwards (with a rendezvous of its own) belongs to the same job.
std::string ProcessJobId();

// Makes this process a maintenance command with its own identity ("dcpkv <command> on <host>,
// pid <pid>"): its leases are refused while a job holds the root, and jobs wait for them.
void SetMaintenanceIdentity(const std::string& command);

struct WriterLeaseOptions {
  // Default: ProcessJobId().
  std::string job_id;
  // How long a job's writer waits for a maintenance command's lease before failing.
  std::chrono::milliseconds wait_for_maintenance{std::chrono::minutes(5)};
};

// The lease's timing. Expiry: DCPKV_LEASE_EXPIRY_SECONDS if set (tests), else 30 s; heartbeat
// every expiry / 6 (at most 5 s).
std::chrono::milliseconds WriterLeaseExpiry();

struct WriterLeaseHold;

// A hold on the lease of a root. Holds in one process share the lease; the last one released
// (destroyed) gives it up (removes the file if this process made it and it is still its own).
class WriterLease {
 public:
  // Takes the lease of `root` (made if absent) for this process's job. FAILED_PRECONDITION with
  // reason kLeaseHeld naming the owner if another job holds it.
  static StatusOr<std::unique_ptr<WriterLease>> Acquire(const std::string& root,
                                                        const WriterLeaseOptions& options = {});
  ~WriterLease();
  WriterLease(const WriterLease&) = delete;
  WriterLease& operator=(const WriterLease&) = delete;

  // The fence before a commit: OK if the lease is still this job's (taken again if its file was
  // removed meanwhile, by a process of the same job that let go of it); FAILED_PRECONDITION with
  // reason kLeaseHeld if another job took it over.
  Status Check();

  const std::string& root() const { return root_; }

 private:
  explicit WriterLease(std::string root) : root_(std::move(root)) {}
  Status CheckLocked(WriterLeaseHold* hold);  // the registry's entry, under its lock
  std::string root_;                          // as the process-wide registry keys it
};

// The lease file of `root`, if there is one: NOT_FOUND if none.
StatusOr<WriterLeaseInfo> ReadWriterLease(const std::string& root);

// "job J (host H, pid P, since T, last heartbeat N s ago)".
std::string DescribeLeaseHolder(const WriterLeaseInfo& info);

}  // namespace dcpkv

#endif  // DCPKV_STORE_WRITER_LEASE_H_

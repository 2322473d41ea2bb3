// Who this process is, for names and records other processes read: the host, the running
// kernel's boot id, the pid and its start time, a random nonce; and whether a process recorded so
// is still alive. Internal to store/.
#ifndef DCPKV_STORE_PROCESS_IDENTITY_H_
#define DCPKV_STORE_PROCESS_IDENTITY_H_

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

namespace dcpkv {

// gethostname(), or "unknown-host".
std::string HostName();

// /proc/sys/kernel/random/boot_id: the same for every process on this kernel since it booted,
// different on any other machine or after a reboot. Empty if it cannot be read.
std::string BootId();

// The start time of process `pid` in clock ticks since boot (/proc/<pid>/stat, field 22); 0 if
// the process does not exist or the file cannot be read. With the pid it names one process for
// as long as the machine runs (a pid alone is reused).
uint64_t ProcessStartTime(int pid);

// 16 random hex digits from the kernel's generator.
std::string RandomNonce();

// True unless process `pid`, started at `start_time` (0: unknown), is known to be gone: no such
// process, or one with another start time (the pid reused). Only meaningful on the machine that
// recorded it (the same BootId()).
bool ProcessMayBeAlive(int pid, uint64_t start_time);

// "<host>.<pid>.<pid start time>.<nonce>": the name of a scratch file or directory ends in its
// maker's tag, so that a later process can tell when it was abandoned (ScratchIsAbandoned).
std::string MakerTag();

// Whether the scratch entry at `path`, named `prefix` followed by its maker's MakerTag(), can no
// longer be finished: its maker is gone from this machine, or (made on another machine, or named
// without a tag by an earlier version) it has not been modified for an hour. Another maker's
// entry in progress is not abandoned.
bool ScratchIsAbandoned(const std::filesystem::path& path, std::string_view prefix);

}  // namespace dcpkv

#endif  // DCPKV_STORE_PROCESS_IDENTITY_H_

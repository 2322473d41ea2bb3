// A network of hosts for tests, made of Linux network namespaces: each host is a namespace
// whose eth0 (10.99.0.<host + 1>/24) is one end of a veth pair; the other ends are ports of a
// bridge in a "switch" namespace of its own, so that nothing is added to the machine's own
// network. Faults: a host's cable pulled (its switch port down), a rate limit (a TBF qdisc on
// both directions of its cable), random loss (an nftables rule dropping a share of its packets
// at random; numgen random). The kernels these tests run on have no netem qdisc, so there is no
// added latency beyond what a rate limit's queue gives.
//
// Processes run on a host through `ip netns exec`; the file system is shared by every host (a
// store on a shared directory). Needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN), iproute2 and nft.
// Namespaces are named dcpkv-<pid>-{switch,h<i>}: those of processes that are gone (an earlier
// test killed part-way) are deleted on creation.
#ifndef DCPKV_TESTS_MULTIHOST_NETWORK_H_
#define DCPKV_TESTS_MULTIHOST_NETWORK_H_

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "dcpkv/status.h"
#include "tests/util/spawn.h"

extern char** environ;

namespace dcpkv::testing {

// Runs `command` with /bin/sh, stdout and stderr together; *output gets them.
inline int RunShell(const std::string& command, std::string* output = nullptr) {
  FILE* p = ::popen((command + " 2>&1").c_str(), "r");
  if (p == nullptr) return -1;
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), p)) > 0) out.append(buf, n);
  const int status = ::pclose(p);
  if (output != nullptr) *output = std::move(out);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

inline Status Shell(const std::string& command) {
  std::string out;
  const int rc = RunShell(command, &out);
  if (rc == 0) return Status::Ok();
  return FailedPreconditionError("'" + command + "' exited with " + std::to_string(rc) + ": " +
                                 out);
}

class Network {
 public:
  // Makes `hosts` hosts on one switch. FAILED_PRECONDITION naming the command that failed.
  static StatusOr<std::unique_ptr<Network>> Create(int hosts) {
    RemoveStale();
    std::unique_ptr<Network> net(new Network(hosts));
    DCPKV_RETURN_IF_ERROR(Shell("ip netns add " + net->switch_ns_));
    net->made_.push_back(net->switch_ns_);
    DCPKV_RETURN_IF_ERROR(Shell("ip -n " + net->switch_ns_ + " link add br0 type bridge"));
    DCPKV_RETURN_IF_ERROR(Shell("ip -n " + net->switch_ns_ + " link set br0 up"));
    for (int h = 0; h < hosts; ++h) {
      const std::string ns = net->ns(h), port = Port(h);
      DCPKV_RETURN_IF_ERROR(Shell("ip netns add " + ns));
      net->made_.push_back(ns);
      DCPKV_RETURN_IF_ERROR(Shell("ip link add eth0 netns " + ns + " type veth peer name " + port +
                                  " netns " + net->switch_ns_));
      DCPKV_RETURN_IF_ERROR(
          Shell("ip -n " + net->switch_ns_ + " link set " + port + " master br0 up"));
      DCPKV_RETURN_IF_ERROR(Shell("ip -n " + ns + " addr add " + net->addr(h) + "/24 dev eth0"));
      DCPKV_RETURN_IF_ERROR(Shell("ip -n " + ns + " link set eth0 up"));
      DCPKV_RETURN_IF_ERROR(Shell("ip -n " + ns + " link set lo up"));
    }
    return net;
  }

  ~Network() {
    for (auto it = made_.rbegin(); it != made_.rend(); ++it) RunShell("ip netns del " + *it);
  }

  int hosts() const { return hosts_; }
  const std::string& ns(int host) const { return host_ns_[host]; }
  std::string addr(int host) const { return "10.99.0." + std::to_string(host + 1); }

  // Pulls the host's cable (its switch port down) or plugs it back in. Plugging it back also
  // forgets every host's failed address resolutions: the kernel answers "No route to host" for
  // a while to a neighbour whose ARP failed during the cut, and a test that starts the next job
  // at once would otherwise meet that instead of the link.
  Status Cut(int host) {
    return Shell("ip -n " + switch_ns_ + " link set " + Port(host) + " down");
  }
  Status Restore(int host) {
    DCPKV_RETURN_IF_ERROR(Shell("ip -n " + switch_ns_ + " link set " + Port(host) + " up"));
    for (int h = 0; h < hosts_; ++h) {
      DCPKV_RETURN_IF_ERROR(Shell("ip -n " + ns(h) + " neigh flush all"));
    }
    return Status::Ok();
  }

  // Limits both directions of the host's cable to `rate` (tc's syntax, e.g. "4mbit").
  Status RateLimit(int host, const std::string& rate) {
    const std::string tbf = " root tbf rate " + rate + " burst 16kb latency 2s";
    DCPKV_RETURN_IF_ERROR(Shell("tc -n " + ns(host) + " qdisc replace dev eth0" + tbf));
    return Shell("tc -n " + switch_ns_ + " qdisc replace dev " + Port(host) + tbf);
  }
  Status ClearRateLimit(int host) {
    DCPKV_RETURN_IF_ERROR(Shell("tc -n " + ns(host) + " qdisc del dev eth0 root"));
    return Shell("tc -n " + switch_ns_ + " qdisc del dev " + Port(host) + " root");
  }

  // Drops `percent` % of the packets the host sends and of those it receives, at random.
  Status DropRandomly(int host, int percent) {
    const std::string nft = "ip netns exec " + ns(host) + " nft ";
    const std::string rule = "numgen random mod 100 < " + std::to_string(percent) + " counter drop";
    DCPKV_RETURN_IF_ERROR(Shell(nft + "add table inet loss"));
    DCPKV_RETURN_IF_ERROR(
        Shell(nft + "'add chain inet loss in { type filter hook input priority 0; }'"));
    DCPKV_RETURN_IF_ERROR(
        Shell(nft + "'add chain inet loss out { type filter hook output priority 0; }'"));
    DCPKV_RETURN_IF_ERROR(Shell(nft + "'add rule inet loss in iifname \"eth0\" " + rule + "'"));
    return Shell(nft + "'add rule inet loss out oifname \"eth0\" " + rule + "'");
  }
  // Packets the host's loss rules dropped so far.
  StatusOr<long> DroppedPackets(int host) {
    std::string out;
    if (RunShell("ip netns exec " + ns(host) + " nft list table inet loss", &out) != 0) {
      return FailedPreconditionError("nft list table inet loss: " + out);
    }
    long total = 0;
    for (size_t at = out.find("packets "); at != std::string::npos;
         at = out.find("packets ", at + 1)) {
      total += std::strtol(out.c_str() + at + 8, nullptr, 10);
    }
    return total;
  }
  Status StopDropping(int host) {
    return Shell("ip netns exec " + ns(host) + " nft delete table inet loss");
  }

 private:
  explicit Network(int hosts) : hosts_(hosts) {
    const std::string prefix = "dcpkv-" + std::to_string(::getpid()) + "-";
    switch_ns_ = prefix + "switch";
    for (int h = 0; h < hosts; ++h) host_ns_.push_back(prefix + "h" + std::to_string(h));
  }

  static std::string Port(int host) { return "port" + std::to_string(host); }

  // Deletes the namespaces of test processes that are gone.
  static void RemoveStale() {
    std::string out;
    if (RunShell("ip netns list", &out) != 0) return;
    std::istringstream lines(out);
    for (std::string line; std::getline(lines, line);) {
      const std::string name = line.substr(0, line.find(' '));
      if (name.rfind("dcpkv-", 0) != 0) continue;
      const long pid = std::strtol(name.c_str() + 6, nullptr, 10);
      if (pid > 0 && ::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH) {
        RunShell("ip netns del " + name);
      }
    }
  }

  const int hosts_;
  std::string switch_ns_;
  std::vector<std::string> host_ns_;
  std::vector<std::string> made_;
};

// A process on one host of a Network (through `ip netns exec`, which execs it: the pid is the
// process's own), its stdout and stderr in a log file. Killed (SIGKILL) and
// reaped when destroyed.
class HostProcess {
 public:
  // Starts `argv` in namespace `ns` with this process's environment plus `env`.
  static StatusOr<std::unique_ptr<HostProcess>> Start(const std::string& ns,
                                                      const std::vector<std::string>& argv,
                                                      const std::map<std::string, std::string>& env,
                                                      const std::string& log) {
    std::vector<std::string> envs;
    for (char** e = environ; *e != nullptr; ++e) {
      std::string var(*e);
      if (env.count(var.substr(0, var.find('='))) == 0) envs.push_back(std::move(var));
    }
    for (const auto& [name, value] : env) envs.push_back(name + "=" + value);
    std::vector<std::string> args = {"/usr/sbin/ip", "netns", "exec", ns};
    args.insert(args.end(), argv.begin(), argv.end());
    pid_t pid = -1;
    if (std::string error = SpawnWithOutput(args, envs, log, &pid); !error.empty()) {
      return InternalError(error);
    }
    return std::unique_ptr<HostProcess>(new HostProcess(pid, log));
  }

  ~HostProcess() { Kill(); }

  // The exit code once it exited (-N if killed by signal N), or nullopt at `deadline`.
  std::optional<int> WaitUntil(std::chrono::steady_clock::time_point deadline) {
    while (!code_.has_value()) {
      int status = 0;
      const pid_t r = ::waitpid(pid_, &status, WNOHANG);
      if (r == pid_) {
        code_ = WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
        exited_at_ = std::chrono::steady_clock::now();
        break;
      }
      if (std::chrono::steady_clock::now() >= deadline) return std::nullopt;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return code_;
  }

  // When it exited (valid once WaitUntil returned a code).
  std::chrono::steady_clock::time_point exited_at() const { return exited_at_; }

  void Kill() {
    if (code_.has_value()) return;
    ::kill(pid_, SIGKILL);
    WaitUntil(std::chrono::steady_clock::time_point::max());
  }

  std::string Output() const { return ReadFile(log_); }

  // The backtraces of its threads, by gdb (at most 60 s), for a process that hangs; why not if
  // they cannot be had.
  std::string Stacks() const {
    const std::string out = log_ + ".stacks";
    pid_t gdb = -1;
    const std::string error =
        SpawnWithOutput({"/usr/bin/timeout", "60", "/usr/bin/gdb", "-p", std::to_string(pid_),
                         "-batch", "-nx", "-ex", "thread apply all bt"},
                        {}, out, &gdb);
    if (!error.empty()) return "(no stacks: " + error + ")\n";
    int status = 0;
    ::waitpid(gdb, &status, 0);
    return ReadFile(out);
  }

 private:
  HostProcess(pid_t pid, std::string log) : pid_(pid), log_(std::move(log)) {}
  const pid_t pid_;
  const std::string log_;
  std::optional<int> code_;
  std::chrono::steady_clock::time_point exited_at_;
};

}  // namespace dcpkv::testing

#endif  // DCPKV_TESTS_MULTIHOST_NETWORK_H_

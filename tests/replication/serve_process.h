// `dcpkv serve` in a process of its own, for the tests and the attack measurements that look at
// the server from outside: its descriptors and memory in /proc.
#ifndef DCPKV_TESTS_REPLICATION_SERVE_PROCESS_H_
#define DCPKV_TESTS_REPLICATION_SERVE_PROCESS_H_

#include <arpa/inet.h>
#include <grpcpp/grpcpp.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include <unistd.h>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "replication.grpc.pb.h"
#include "tests/util/spawn.h"

extern char** environ;

namespace dcpkv::testing {

// `dcpkv serve` in a process of its own, its open-file limit lowered first.
class ServeProcess {
 public:
  // `cli` empty: this build's dcpkv, or DCPKV_TEST_SERVE_CLI if set (another build's, to measure
  // its server under the same load).
  ServeProcess(const std::string& root, int max_open_files, const std::string& log,
               const std::string& more_args = "", std::string cli = "")
      : log_(log) {
    std::vector<std::string> env;
    for (char** e = environ; *e != nullptr; ++e) env.push_back(*e);
    if (cli.empty()) {
      const char* other = std::getenv("DCPKV_TEST_SERVE_CLI");
      cli = other != nullptr ? other : DCPKV_CLI;
    }
    const std::string command = "ulimit -n " + std::to_string(max_open_files) + " && exec " + cli +
                                " serve --root " + root + " --listen 127.0.0.1:0 " + more_args;
    error_ = SpawnWithOutput({"/bin/bash", "-c", command}, env, log, &pid_);
    if (!error_.empty()) return;
    for (const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(30);
         std::chrono::steady_clock::now() < give_up;) {
      const std::string out = Output();
      if (const size_t at = out.find("listening on 127.0.0.1:"); at != std::string::npos) {
        port_ = std::atoi(out.c_str() + at + 23);
        if (port_ > 0) return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    error_ = "the replica did not start: " + Output();
  }
  ~ServeProcess() {
    if (pid_ > 0) {
      ::kill(pid_, SIGTERM);
      ::waitpid(pid_, nullptr, 0);
    }
  }

  const std::string& error() const { return error_; }
  int port() const { return port_; }
  std::string target() const { return "127.0.0.1:" + std::to_string(port_); }
  std::string Output() const { return ReadFile(log_); }
  // Descriptors the server holds open now.
  int OpenFiles() const {
    int n = 0;
    std::error_code ec;
    for (auto it = std::filesystem::directory_iterator("/proc/" + std::to_string(pid_) + "/fd", ec);
         !ec && it != std::filesystem::directory_iterator(); it.increment(ec)) {
      ++n;
    }
    return n;
  }
  // Resident memory now (VmRSS) and at its peak so far (VmHWM), in KiB.
  long RssKiB() const { return StatusField("VmRSS:"); }
  long PeakRssKiB() const { return StatusField("VmHWM:"); }

 private:
  long StatusField(const std::string& name) const {
    std::ifstream in("/proc/" + std::to_string(pid_) + "/status");
    for (std::string line; std::getline(in, line);) {
      if (line.rfind(name, 0) == 0) return std::atol(line.c_str() + name.size());
    }
    return -1;
  }

  const std::string log_;
  pid_t pid_ = -1;
  int port_ = 0;
  std::string error_;
};

// A TCP connection from `from` (an address of the loopback network 127/8) to 127.0.0.1:port that
// sends nothing; -1 if it cannot connect.
inline int ConnectAndStall(int port, const char* from = "127.0.0.1") {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in source{};
  source.sin_family = AF_INET;
  ::inet_pton(AF_INET, from, &source.sin_addr);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&source), sizeof(source)) != 0 ||
      ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    if (fd >= 0) ::close(fd);
    return -1;
  }
  return fd;
}

// True once the peer closed `fd`: reading what it sent (the server's HTTP/2 settings) reaches
// the end, or the connection was reset.
inline bool ClosedByPeer(int fd) {
  char buf[4096];
  for (;;) {
    const ssize_t n = ::recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
    if (n > 0) continue;
    return n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK);
  }
}

// On a connection of its own (`tag` tells it apart), `rounds` times: `in_flight` unary Puts
// without a token, with a record of `record_bytes`, in flight at once. `done` gets each status.
inline void PutWithoutToken(const std::string& target, int tag, size_t record_bytes, int in_flight,
                            int rounds, const std::function<void(const grpc::Status&)>& done) {
  namespace v1 = ::dcpkv::replication::v1;
  grpc::ChannelArguments args;
  args.SetMaxSendMessageSize(-1);
  args.SetInt("dcpkv.test.channel", tag);
  auto stub = v1::ManifestReplica::NewStub(
      grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), args));
  v1::PutRequest request;
  request.set_namespace_("job");
  request.set_checkpoint_id("step-x");
  request.set_record(std::string(record_bytes, 'x'));
  for (int round = 0; round < rounds; ++round) {
    std::mutex mu;
    std::condition_variable cv;
    int pending = in_flight;
    std::vector<grpc::ClientContext> contexts(in_flight);
    std::vector<v1::PutResponse> responses(in_flight);
    for (int i = 0; i < in_flight; ++i) {
      contexts[i].set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
      stub->async()->Put(&contexts[i], &request, &responses[i], [&](grpc::Status s) {
        done(s);
        std::lock_guard<std::mutex> lock(mu);
        if (--pending == 0) cv.notify_one();
      });
    }
    std::unique_lock<std::mutex> lock(mu);
    cv.wait(lock, [&] { return pending == 0; });
  }
}

}  // namespace dcpkv::testing

#endif  // DCPKV_TESTS_REPLICATION_SERVE_PROCESS_H_

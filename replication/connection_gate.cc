#include "connection_gate.h"

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <grpcpp/server.h>
#include <grpcpp/server_posix.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>

namespace dcpkv::replication {
namespace {

using Clock = std::chrono::steady_clock;

constexpr char kPreface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
constexpr size_t kPrefaceSize = sizeof(kPreface) - 1;
// A connection that sent part of its preface is looked at again after this long.
constexpr auto kRecheck = std::chrono::milliseconds(5);
// Accepting is paused this long when the process is out of descriptors.
constexpr auto kOutOfDescriptorsPause = std::chrono::milliseconds(100);

// Who connected: the family (4 or 6), then an IPv4 address or the /64 network of an IPv6 one (a
// host may have many addresses in its /64). IPv4 clients of a dual-stack socket arrive as
// v4-mapped addresses and count as IPv4.
using Source = std::array<uint8_t, 9>;

Source SourceOf(const sockaddr_storage& peer) {
  Source source{};
  if (peer.ss_family == AF_INET) {
    source[0] = 4;
    std::memcpy(&source[1], &reinterpret_cast<const sockaddr_in&>(peer).sin_addr, 4);
  } else if (peer.ss_family == AF_INET6) {
    const in6_addr& a = reinterpret_cast<const sockaddr_in6&>(peer).sin6_addr;
    const bool v4 = IN6_IS_ADDR_V4MAPPED(&a);
    source[0] = v4 ? 4 : 6;
    std::memcpy(&source[1], v4 ? a.s6_addr + 12 : a.s6_addr, v4 ? 4 : 8);
  }
  return source;
}

// A connection waiting for its preface.
struct Waiting {
  int fd;
  Source source;
  Clock::time_point deadline;
  Clock::time_point recheck;  // epoch: poll it for input
};

// A connection handed to gRPC, known by its socket's inode: once gRPC closes it, the descriptor
// is gone or names another file.
struct HandedOver {
  int fd;
  Source source;
  dev_t dev;
  ino_t ino;
};

bool StillOpen(const HandedOver& c) {
  struct stat st;
  return ::fstat(c.fd, &st) == 0 && st.st_dev == c.dev && st.st_ino == c.ino;
}

// Splits "<host>:<port>" ("[v6]:port" for IPv6 literals).
bool SplitAddress(const std::string& address, std::string* host, std::string* port) {
  const size_t colon = address.rfind(':');
  if (colon == std::string::npos) return false;
  *host = address.substr(0, colon);
  *port = address.substr(colon + 1);
  if (host->size() >= 2 && host->front() == '[' && host->back() == ']') {
    *host = host->substr(1, host->size() - 2);
  }
  return true;
}

}  // namespace

StatusOr<std::unique_ptr<ConnectionGate>> ConnectionGate::Listen(const std::string& address,
                                                                 const Options& options) {
  std::string host, port;
  if (!SplitAddress(address, &host, &port)) {
    return InvalidArgumentError("replica listen address \"" + address + "\" is not <host>:<port>");
  }
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* found = nullptr;
  if (const int rc =
          ::getaddrinfo(host.empty() ? nullptr : host.c_str(), port.c_str(), &hints, &found);
      rc != 0) {
    return UnavailableError("replica cannot listen on " + address + ": " + ::gai_strerror(rc));
  }
  std::string error = "no address";
  int fd = -1;
  for (addrinfo* a = found; a != nullptr && fd < 0; a = a->ai_next) {
    fd = ::socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) {
      error = std::strerror(errno);
      continue;
    }
    const int on = 1, off = 0;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
    if (a->ai_family == AF_INET6) ::setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof(off));
    if (::bind(fd, a->ai_addr, a->ai_addrlen) != 0 || ::listen(fd, SOMAXCONN) != 0) {
      error = std::strerror(errno);
      ::close(fd);
      fd = -1;
    }
  }
  ::freeaddrinfo(found);
  if (fd < 0) return UnavailableError("replica cannot listen on " + address + ": " + error);
  sockaddr_storage bound{};
  socklen_t len = sizeof(bound);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &len);
  const int bound_port =
      ntohs(bound.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port
                                        : reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
  const int wake = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (wake < 0) {
    const int err = errno;
    ::close(fd);
    return IOError(std::string("replica: eventfd: ") + std::strerror(err));
  }
  return std::unique_ptr<ConnectionGate>(new ConnectionGate(fd, wake, bound_port, options));
}

ConnectionGate::ConnectionGate(int listen_fd, int wake_fd, int port, const Options& options)
    : listen_fd_(listen_fd), wake_fd_(wake_fd), port_(port), options_(options) {}

ConnectionGate::~ConnectionGate() {
  Stop();
  ::close(listen_fd_);
  ::close(wake_fd_);
}

void ConnectionGate::Start(grpc::Server* server) {
  server_ = server;
  thread_ = std::thread([this] { Loop(); });
}

void ConnectionGate::Stop() {
  if (stopped_.exchange(true)) return;
  const uint64_t one = 1;
  (void)!::write(wake_fd_, &one, sizeof(one));
  if (thread_.joinable()) thread_.join();
}

void ConnectionGate::Loop() {
  std::vector<Waiting> waiting;
  std::vector<HandedOver> handed_over;
  const size_t cap = static_cast<size_t>(options_.max_connections);
  const ptrdiff_t per_source = options_.max_connections_per_address;
  Clock::time_point accept_paused_until{};
  std::vector<pollfd> fds;
  for (;;) {
    const Clock::time_point now = Clock::now();
    // What to wait for: Stop(), new connections, and the input of those waiting for a preface.
    fds.assign({{wake_fd_, POLLIN, 0}, {now < accept_paused_until ? -1 : listen_fd_, POLLIN, 0}});
    Clock::time_point wake_at = now + std::chrono::seconds(1);
    if (now < accept_paused_until) wake_at = std::min(wake_at, accept_paused_until);
    for (const Waiting& w : waiting) {
      const bool rechecking = w.recheck != Clock::time_point{};
      fds.push_back({rechecking ? -1 : w.fd, POLLIN, 0});
      wake_at = std::min({wake_at, w.deadline, rechecking ? w.recheck : wake_at});
    }
    const auto timeout =
        std::chrono::duration_cast<std::chrono::milliseconds>(wake_at - now).count() + 1;
    if (::poll(fds.data(), fds.size(), static_cast<int>(std::max<int64_t>(timeout, 0))) < 0 &&
        errno != EINTR) {
      break;
    }
    if (fds[0].revents != 0 || stopped_.load()) break;

    // Connections waiting for their preface: hand over, keep waiting, or close.
    const Clock::time_point after = Clock::now();
    std::vector<Waiting> still_waiting;
    for (size_t i = 0; i < waiting.size(); ++i) {
      Waiting w = waiting[i];
      const bool due =
          fds[2 + i].revents != 0 || (w.recheck != Clock::time_point{} && after >= w.recheck);
      if (due) {
        char head[kPrefaceSize];
        const ssize_t n = ::recv(w.fd, head, sizeof(head), MSG_PEEK | MSG_DONTWAIT);
        if (n == static_cast<ssize_t>(kPrefaceSize) &&
            std::memcmp(head, kPreface, kPrefaceSize) == 0) {
          struct stat st;
          if (::fstat(w.fd, &st) == 0) {
            handed_over.push_back({w.fd, w.source, st.st_dev, st.st_ino});
          }
          const int nodelay = 1;
          ::setsockopt(w.fd, IPPROTO_TCP, TCP_NODELAY, &nodelay, sizeof(nodelay));
          grpc::AddInsecureChannelFromFd(server_, w.fd);  // gRPC owns it now
          continue;
        }
        const bool partial = n > 0 && std::memcmp(head, kPreface, static_cast<size_t>(n)) == 0;
        const bool again = n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR);
        if (!partial && !again) {
          ::close(w.fd);
          continue;
        }
        w.recheck = partial ? after + kRecheck : Clock::time_point{};
      }
      if (after >= w.deadline) {
        ::close(w.fd);
        continue;
      }
      still_waiting.push_back(w);
    }
    waiting.swap(still_waiting);

    // New connections: kept while under the cap, closed at once past it.
    if (fds[1].revents == 0) continue;
    for (;;) {
      sockaddr_storage peer{};
      socklen_t peer_len = sizeof(peer);
      const int fd = ::accept4(listen_fd_, reinterpret_cast<sockaddr*>(&peer), &peer_len,
                               SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) {
        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
          accept_paused_until = Clock::now() + kOutOfDescriptorsPause;
        }
        break;  // EAGAIN: no more; others (ECONNABORTED, ...): that connection is gone
      }
      const Source source = SourceOf(peer);
      const auto from_source = [&] {
        return std::count_if(waiting.begin(), waiting.end(),
                             [&](const Waiting& w) { return w.source == source; }) +
               std::count_if(handed_over.begin(), handed_over.end(),
                             [&](const HandedOver& c) { return c.source == source; });
      };
      const auto full = [&] {
        return waiting.size() + handed_over.size() >= cap || from_source() >= per_source;
      };
      if (full()) {  // connections gRPC closed since are no longer counted
        handed_over.erase(std::remove_if(handed_over.begin(), handed_over.end(),
                                         [](const HandedOver& c) { return !StillOpen(c); }),
                          handed_over.end());
      }
      if (full()) {
        ::close(fd);
        continue;
      }
      waiting.push_back({fd, source, Clock::now() + options_.handshake_timeout, {}});
    }
  }
  for (const Waiting& w : waiting) ::close(w.fd);
}

}  // namespace dcpkv::replication

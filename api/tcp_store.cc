// TcpStoreServer (a poll(2) loop on one thread) and TcpStoreClient. See tcp_store.h.
#include "tcp_store.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <thread>
#include <unordered_map>
#include <utility>

#include "dcpkv/core/wire.h"

namespace dcpkv {
namespace {

using Clock = std::chrono::steady_clock;
using tcp_store::Deadline;

constexpr size_t kRequestHeaderSize = 1 + 4 + 4;
constexpr size_t kResponseHeaderSize = 1 + 4;
// The server reads a connection's input up to one largest request plus this much.
constexpr size_t kReadChunk = 64 << 10;
// The server stops reading a connection whose unsent responses exceed this.
constexpr size_t kMaxPendingOutput = size_t{64} << 20;

std::string ErrnoString(int err) {
  char buf[256];
  return strerror_r(err, buf, sizeof(buf));  // the GNU variant: returns the message
}

void PutU32(std::string* out, uint32_t v) { wire::AppendLittleEndian(out, v); }
uint32_t GetU32(const char* p) { return wire::ReadLittleEndian<uint32_t>(p); }

std::string Endpoint(const std::string& host, int port) {
  if (host.find(':') != std::string::npos) return "[" + host + "]:" + std::to_string(port);
  return host + ":" + std::to_string(port);
}

// Milliseconds left until `deadline`, at least 0, rounded up.
int RemainingMs(Deadline deadline) {
  auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return static_cast<int>(std::clamp<int64_t>(left, 0, 1 << 30));
}

// Waits until `fd` is ready for `events`. DEADLINE_EXCEEDED when the deadline passes.
Status PollUntil(int fd, short events, Deadline deadline) {
  for (;;) {
    pollfd p{fd, events, 0};
    int n = ::poll(&p, 1, RemainingMs(deadline));
    if (n > 0) return Status::Ok();
    if (n == 0) return DeadlineExceededError("timed out");
    if (errno != EINTR) return UnavailableError("poll: " + ErrnoString(errno));
  }
}

Status WriteAll(int fd, const char* data, size_t size, Deadline deadline) {
  while (size > 0) {
    ssize_t n = ::send(fd, data, size, MSG_NOSIGNAL);
    if (n > 0) {
      data += n;
      size -= static_cast<size_t>(n);
    } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      DCPKV_RETURN_IF_ERROR(PollUntil(fd, POLLOUT, deadline));
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else {
      return UnavailableError("send: " + ErrnoString(n < 0 ? errno : EPIPE));
    }
  }
  return Status::Ok();
}

Status ReadAll(int fd, char* data, size_t size, Deadline deadline) {
  while (size > 0) {
    ssize_t n = ::recv(fd, data, size, 0);
    if (n > 0) {
      data += n;
      size -= static_cast<size_t>(n);
    } else if (n == 0) {
      return UnavailableError("the server closed the connection");
    } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
      DCPKV_RETURN_IF_ERROR(PollUntil(fd, POLLIN, deadline));
    } else if (errno != EINTR) {
      return UnavailableError("recv: " + ErrnoString(errno));
    }
  }
  return Status::Ok();
}

// The client's limits on what it sends, whatever the protocol.
Status CheckRequest(std::string_view key, std::string_view value) {
  if (key.empty() || key.size() > tcp_store::kMaxKeySize) {
    return InvalidArgumentError("rendezvous key of " + std::to_string(key.size()) +
                                " bytes (allowed: 1.." + std::to_string(tcp_store::kMaxKeySize) +
                                ")");
  }
  if (value.size() > tcp_store::kMaxValueSize) {
    return InvalidArgumentError("rendezvous value of " + std::to_string(value.size()) +
                                " bytes is over the limit of " +
                                std::to_string(tcp_store::kMaxValueSize));
  }
  return Status::Ok();
}

struct AddrInfoDeleter {
  void operator()(addrinfo* ai) const { freeaddrinfo(ai); }
};
using AddrInfoPtr = std::unique_ptr<addrinfo, AddrInfoDeleter>;

// Resolves host:port. A name that cannot be resolved is INVALID_ARGUMENT, a temporary failure
// UNAVAILABLE.
StatusOr<AddrInfoPtr> Resolve(const std::string& host, int port, bool passive) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0);
  addrinfo* result = nullptr;
  int rc = ::getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &result);
  if (rc != 0) {
    std::string msg = "cannot resolve '" + host + "': " + gai_strerror(rc);
    if (rc == EAI_AGAIN || rc == EAI_MEMORY || rc == EAI_SYSTEM) return UnavailableError(msg);
    return InvalidArgumentError(msg);
  }
  return AddrInfoPtr(result);
}

// ---------------------------------------------------------------------------------------------
// Server

class TcpStoreServerImpl final : public TcpStoreServer {
 public:
  TcpStoreServerImpl(std::string host, int port, int listen_fd, int wake_read, int wake_write)
      : host_(std::move(host)),
        port_(port),
        listen_fd_(listen_fd),
        wake_read_(wake_read),
        wake_write_(wake_write) {
    thread_ = std::thread([this] { Run(); });
  }

  ~TcpStoreServerImpl() override {
    char byte = 1;
    while (::write(wake_write_, &byte, 1) < 0 && errno == EINTR) {
    }
    thread_.join();
    for (Conn& c : conns_) ::close(c.fd);
    ::close(listen_fd_);
    ::close(wake_read_);
    ::close(wake_write_);
  }

  const std::string& host() const override { return host_; }
  int port() const override { return port_; }

 private:
  struct Conn {
    int fd = -1;
    bool greeted = false;  // the magic has been received
    bool closed = false;
    std::string in;
    size_t in_pos = 0;
    std::string out;
    size_t out_pos = 0;
    size_t pending_out() const { return out.size() - out_pos; }
  };

  void Run();
  void Accept();
  bool ReadFrom(Conn& c);
  bool Process(Conn& c);
  bool WriteTo(Conn& c);
  void Respond(Conn& c, tcp_store::Code code, std::string_view value);
  void Handle(Conn& c, uint8_t op, std::string_view key, std::string_view value);

  const std::string host_;
  const int port_;
  const int listen_fd_;
  const int wake_read_;
  const int wake_write_;
  std::thread thread_;

  // Owned by the server thread.
  std::vector<Conn> conns_;
  std::unordered_map<std::string, std::string> data_;
  size_t stored_bytes_ = 0;
};

void TcpStoreServerImpl::Run() {
  std::vector<pollfd> fds;
  for (;;) {
    fds.clear();
    fds.push_back({wake_read_, POLLIN, 0});
    fds.push_back({listen_fd_, POLLIN, 0});
    for (const Conn& c : conns_) {
      short events = 0;
      if (c.pending_out() < kMaxPendingOutput) events |= POLLIN;
      if (c.pending_out() > 0) events |= POLLOUT;
      fds.push_back({c.fd, events, 0});
    }
    int n = ::poll(fds.data(), fds.size(), -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      return;  // cannot happen with valid descriptors; clients then time out
    }
    if (fds[0].revents != 0) return;  // shutdown
    for (size_t i = 0; i < conns_.size(); ++i) {
      Conn& c = conns_[i];
      bool ok = true;
      if (fds[i + 2].revents & (POLLIN | POLLHUP | POLLERR)) ok = ReadFrom(c);
      if (ok) ok = Process(c);
      if (ok && c.pending_out() > 0) ok = WriteTo(c);
      if (!ok) c.closed = true;
    }
    for (Conn& c : conns_) {
      if (c.closed) ::close(c.fd);
    }
    std::erase_if(conns_, [](const Conn& c) { return c.closed; });
    if (fds[1].revents & POLLIN) Accept();
  }
}

void TcpStoreServerImpl::Accept() {
  for (;;) {
    int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
        // The connection stays queued; retry soon rather than spin on its readiness.
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
      }
      return;
    }
    if (conns_.size() >= tcp_store::kMaxConnections) {
      ::close(fd);
      continue;
    }
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    Conn c;
    c.fd = fd;
    conns_.push_back(std::move(c));
  }
}

bool TcpStoreServerImpl::ReadFrom(Conn& c) {
  const size_t limit =
      kRequestHeaderSize + tcp_store::kMaxKeySize + tcp_store::kMaxValueSize + kReadChunk;
  while (c.in.size() - c.in_pos < limit) {
    size_t old = c.in.size();
    c.in.resize(old + kReadChunk);
    ssize_t n = ::recv(c.fd, c.in.data() + old, kReadChunk, 0);
    c.in.resize(old + static_cast<size_t>(std::max<ssize_t>(n, 0)));
    if (n > 0) continue;
    if (n == 0) return false;  // the client is gone: nobody to answer
    if (errno == EINTR) continue;
    return errno == EAGAIN || errno == EWOULDBLOCK;
  }
  return true;
}

bool TcpStoreServerImpl::Process(Conn& c) {
  while (c.pending_out() < kMaxPendingOutput) {
    const size_t avail = c.in.size() - c.in_pos;
    const char* p = c.in.data() + c.in_pos;
    if (!c.greeted) {
      if (avail < tcp_store::kMagic.size()) break;
      if (std::string_view(p, tcp_store::kMagic.size()) != tcp_store::kMagic) return false;
      c.greeted = true;
      c.in_pos += tcp_store::kMagic.size();
      continue;
    }
    if (avail < kRequestHeaderSize) break;
    const uint8_t op = static_cast<uint8_t>(p[0]);
    const uint32_t key_size = GetU32(p + 1);
    const uint32_t value_size = GetU32(p + 5);
    if (op != tcp_store::kSet && op != tcp_store::kGet) return false;
    if (key_size == 0 || key_size > tcp_store::kMaxKeySize) return false;
    if (value_size > tcp_store::kMaxValueSize) return false;
    if (op == tcp_store::kGet && value_size != 0) return false;
    const size_t total = kRequestHeaderSize + key_size + value_size;
    if (avail < total) break;
    Handle(c, op, std::string_view(p + kRequestHeaderSize, key_size),
           std::string_view(p + kRequestHeaderSize + key_size, value_size));
    c.in_pos += total;
  }
  if (c.in_pos == c.in.size()) {
    c.in.clear();
    c.in_pos = 0;
  } else if (c.in_pos > kReadChunk) {
    c.in.erase(0, c.in_pos);
    c.in_pos = 0;
  }
  return true;
}

void TcpStoreServerImpl::Handle(Conn& c, uint8_t op, std::string_view key, std::string_view value) {
  if (op == tcp_store::kGet) {
    auto it = data_.find(std::string(key));
    if (it == data_.end()) return Respond(c, tcp_store::kNotFound, {});
    return Respond(c, tcp_store::kOk, it->second);
  }
  auto it = data_.find(std::string(key));
  const size_t old_bytes = it == data_.end() ? 0 : key.size() + it->second.size();
  const size_t new_bytes = key.size() + value.size();
  if (stored_bytes_ - old_bytes + new_bytes > tcp_store::kMaxStoredBytes) {
    return Respond(c, tcp_store::kRefused, {});
  }
  stored_bytes_ = stored_bytes_ - old_bytes + new_bytes;
  if (it == data_.end()) {
    data_.emplace(std::string(key), std::string(value));
  } else {
    it->second.assign(value);
  }
  Respond(c, tcp_store::kOk, {});
}

void TcpStoreServerImpl::Respond(Conn& c, tcp_store::Code code, std::string_view value) {
  c.out.push_back(static_cast<char>(code));
  PutU32(&c.out, static_cast<uint32_t>(value.size()));
  c.out.append(value);
}

bool TcpStoreServerImpl::WriteTo(Conn& c) {
  while (c.pending_out() > 0) {
    ssize_t n = ::send(c.fd, c.out.data() + c.out_pos, c.pending_out(), MSG_NOSIGNAL);
    if (n > 0) {
      c.out_pos += static_cast<size_t>(n);
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else {
      return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
    }
  }
  c.out.clear();
  c.out_pos = 0;
  return true;
}

}  // namespace

StatusOr<std::shared_ptr<TcpStoreServer>> StartTcpStoreServer(const std::string& host, int port) {
  if (host.empty()) return InvalidArgumentError("rendezvous server host is empty");
  if (port < 0 || port > 65535) {
    return InvalidArgumentError("rendezvous server port " + std::to_string(port) +
                                " is outside [0, 65535]");
  }
  DCPKV_ASSIGN_OR_RETURN(AddrInfoPtr addrs, Resolve(host, port, /*passive=*/true));
  std::string error = "no address";
  int fd = -1;
  for (addrinfo* ai = addrs.get(); ai != nullptr; ai = ai->ai_next) {
    fd = ::socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) {
      error = "socket: " + ErrnoString(errno);
      continue;
    }
    int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (::bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && ::listen(fd, 1024) == 0) break;
    error = ErrnoString(errno);
    ::close(fd);
    fd = -1;
  }
  if (fd < 0) {
    return UnavailableError("cannot listen on " + Endpoint(host, port) + ": " + error);
  }
  sockaddr_storage bound{};
  socklen_t len = sizeof(bound);
  int bound_port = port;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &len) == 0) {
    if (bound.ss_family == AF_INET) {
      bound_port = ntohs(reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
    } else if (bound.ss_family == AF_INET6) {
      bound_port = ntohs(reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port);
    }
  }
  int wake[2];
  if (::pipe2(wake, O_NONBLOCK | O_CLOEXEC) != 0) {
    int err = errno;
    ::close(fd);
    return UnavailableError("pipe2: " + ErrnoString(err));
  }
  return std::shared_ptr<TcpStoreServer>(
      std::make_shared<TcpStoreServerImpl>(host, bound_port, fd, wake[0], wake[1]));
}

StatusOr<std::shared_ptr<TcpStoreServer>> TcpStoreServer::Start(const std::string& host, int port) {
  return StartTcpStoreServer(host, port);
}

// ---------------------------------------------------------------------------------------------
// Client

StatusOr<std::shared_ptr<TcpStoreClient>> TcpStoreClient::Connect(const std::string& host, int port,
                                                                  std::chrono::milliseconds timeout,
                                                                  RendezvousProtocol protocol) {
  if (host.empty()) return InvalidArgumentError("rendezvous server host is empty");
  if (port <= 0 || port > 65535) {
    return InvalidArgumentError("rendezvous server port " + std::to_string(port) +
                                " is outside [1, 65535]");
  }
  std::shared_ptr<TcpStoreClient> client(new TcpStoreClient(host, port, protocol));
  std::lock_guard<std::mutex> lock(client->mu_);
  DCPKV_RETURN_IF_ERROR(client->EnsureConnectedLocked(Clock::now() + timeout));
  return client;
}

TcpStoreClient::~TcpStoreClient() { CloseLocked(); }

void TcpStoreClient::Disconnect() {
  std::lock_guard<std::mutex> lock(mu_);
  CloseLocked();
}

void TcpStoreClient::CloseLocked() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

namespace {

// torch's c10d TCPStore, the part a rendezvous uses (docs/protocol.md). A request is a query
// type byte and its arguments; strings and byte vectors go as a u64 length and the bytes;
// integers in the host's order (little-endian on every platform dcpkv builds for).
namespace torch_store {
constexpr uint32_t kValidationMagic = 0x3C85F7CE;
enum Query : uint8_t { kValidate = 0, kSet = 1, kGet = 3, kCheck = 5, kPing = 13 };
enum CheckResponse : uint8_t { kReady = 0, kNotReady = 1 };
// How long a server gets to answer the PING of a new connection.
constexpr auto kPingTimeout = std::chrono::seconds(10);

void PutU64(std::string* out, uint64_t v) { wire::AppendLittleEndian(out, v); }
void PutString(std::string* out, std::string_view bytes) {
  PutU64(out, bytes.size());
  out->append(bytes);
}
}  // namespace torch_store

// One attempt to connect to `ai`; returns the connected socket or an error.
StatusOr<int> TryConnect(const addrinfo* ai, Deadline deadline) {
  int fd = ::socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
  if (fd < 0) return UnavailableError("socket: " + ErrnoString(errno));
  auto fail = [fd](const std::string& what) {
    ::close(fd);
    return UnavailableError(what);
  };
  if (::connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
    if (errno != EINPROGRESS && errno != EINTR) return fail(ErrnoString(errno));
    Status s = PollUntil(fd, POLLOUT, deadline);
    if (!s.ok()) return fail("connect: " + s.message());
    int err = 0;
    socklen_t len = sizeof(err);
    if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
    if (err != 0) return fail(ErrnoString(err));
  }
  // A connect to a local port nobody listens on can, rarely, connect the socket to itself.
  sockaddr_storage self{}, peer{};
  socklen_t self_len = sizeof(self), peer_len = sizeof(peer);
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&self), &self_len) != 0 ||
      ::getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &peer_len) != 0) {
    return fail(ErrnoString(errno));
  }
  if (self_len == peer_len && std::memcmp(&self, &peer, self_len) == 0) {
    return fail("connected to itself");
  }
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  return fd;
}

}  // namespace

Status TcpStoreClient::EnsureConnectedLocked(Deadline deadline) {
  if (fd_ >= 0) return Status::Ok();
  const auto start = Clock::now();
  auto backoff = std::chrono::milliseconds(10);
  std::string last_error;
  for (;;) {
    StatusOr<AddrInfoPtr> addrs = Resolve(host_, port_, /*passive=*/false);
    if (!addrs.ok()) {
      if (addrs.status().code() == StatusCode::kInvalidArgument) {
        return addrs.status().WithContext("rendezvous server");
      }
      last_error = addrs.status().message();
    } else {
      for (addrinfo* ai = addrs->get(); ai != nullptr; ai = ai->ai_next) {
        StatusOr<int> fd = TryConnect(ai, deadline);
        if (!fd.ok()) {
          last_error = fd.status().message();
          continue;
        }
        Status s = HelloLocked(*fd, deadline);
        if (!s.ok()) {
          ::close(*fd);
          if (s.code() == StatusCode::kFailedPrecondition) return s;  // the wrong kind of server
          last_error = s.message();
          continue;
        }
        fd_ = *fd;
        return Status::Ok();
      }
    }
    const auto now = Clock::now();
    if (now >= deadline) {
      const auto waited = std::chrono::duration_cast<std::chrono::milliseconds>(now - start);
      return UnavailableError("cannot reach the rendezvous server at " + Endpoint(host_, port_) +
                              " (tried for " + std::to_string(waited.count()) +
                              " ms): " + last_error);
    }
    std::this_thread::sleep_for(std::min<Clock::duration>(backoff, deadline - now));
    backoff = std::min(backoff * 2, std::chrono::milliseconds(500));
  }
}

Status TcpStoreClient::HelloLocked(int fd, Deadline deadline) {
  if (protocol_ == RendezvousProtocol::kDcpkv) {
    return WriteAll(fd, tcp_store::kMagic.data(), tcp_store::kMagic.size(), deadline);
  }
  std::string hello;
  hello.push_back(static_cast<char>(torch_store::kValidate));
  PutU32(&hello, torch_store::kValidationMagic);
  hello.push_back(static_cast<char>(torch_store::kPing));
  const uint32_t nonce = static_cast<uint32_t>(::getpid());
  PutU32(&hello, nonce);
  DCPKV_RETURN_IF_ERROR(WriteAll(fd, hello.data(), hello.size(), deadline));
  char echo[4];
  Status s =
      ReadAll(fd, echo, sizeof(echo), std::min(deadline, Clock::now() + torch_store::kPingTimeout));
  if (s.ok() && GetU32(echo) == nonce) return Status::Ok();
  return FailedPreconditionError(
      "the rendezvous server at " + Endpoint(host_, port_) +
      " does not answer as torch's c10d TCPStore (torchrun's agent store, "
      "TORCHELASTIC_USE_AGENT_STORE=True) of the torch versions dcpkv speaks to "
      "(docs/protocol.md): " +
      (s.ok() ? std::string("its answer to PING is not the nonce sent") : s.message()) +
      ". With another launcher or torch version, run a dcpkv rendezvous server and set "
      "DCPKV_RENDEZVOUS_PROTOCOL=dcpkv");
}

Status TcpStoreClient::FailedLocked(const Status& s) {
  CloseLocked();  // the connection is in an unknown state
  return Status(s.code(), "rendezvous server " + Endpoint(host_, port_) + ": " + s.message());
}

Status TcpStoreClient::TorchSetLocked(std::string_view key, std::string_view value,
                                      Deadline deadline) {
  DCPKV_RETURN_IF_ERROR(EnsureConnectedLocked(deadline));
  std::string request;
  request.reserve(1 + 16 + key.size() + value.size());
  request.push_back(static_cast<char>(torch_store::kSet));
  torch_store::PutString(&request, key);
  torch_store::PutString(&request, value);
  Status s = WriteAll(fd_, request.data(), request.size(), deadline);
  return s.ok() ? s : FailedLocked(s);
}

StatusOr<std::optional<std::string>> TcpStoreClient::TorchTryGetLocked(std::string_view key,
                                                                       Deadline deadline) {
  DCPKV_RETURN_IF_ERROR(EnsureConnectedLocked(deadline));
  // GET of a key the server lacks is an error that closes the connection: CHECK first.
  std::string request;
  request.push_back(static_cast<char>(torch_store::kCheck));
  torch_store::PutU64(&request, 1);
  torch_store::PutString(&request, key);
  char ready = 0;
  Status s = WriteAll(fd_, request.data(), request.size(), deadline);
  if (s.ok()) s = ReadAll(fd_, &ready, 1, deadline);
  if (!s.ok()) return FailedLocked(s);
  if (ready == torch_store::kNotReady) return std::optional<std::string>();
  if (ready != torch_store::kReady) return FailedLocked(UnavailableError("malformed CHECK answer"));
  request.clear();
  request.push_back(static_cast<char>(torch_store::kGet));
  torch_store::PutString(&request, key);
  char size_bytes[8];
  s = WriteAll(fd_, request.data(), request.size(), deadline);
  if (s.ok()) s = ReadAll(fd_, size_bytes, sizeof(size_bytes), deadline);
  if (!s.ok()) return FailedLocked(s);
  const uint64_t size = wire::ReadLittleEndian<uint64_t>(size_bytes);
  if (size > tcp_store::kMaxValueSize) {
    return FailedLocked(UnavailableError("value of " + std::to_string(size) + " bytes for key '" +
                                         std::string(key) + "' is over the limit of " +
                                         std::to_string(tcp_store::kMaxValueSize)));
  }
  std::string value(size, '\0');
  s = ReadAll(fd_, value.data(), value.size(), deadline);
  if (!s.ok()) return FailedLocked(s);
  return std::optional<std::string>(std::move(value));
}

Status TcpStoreClient::RequestLocked(tcp_store::Op op, std::string_view key, std::string_view value,
                                     Deadline deadline, uint8_t* code, std::string* response) {
  DCPKV_RETURN_IF_ERROR(EnsureConnectedLocked(deadline));
  std::string request;
  request.reserve(kRequestHeaderSize + key.size() + value.size());
  request.push_back(static_cast<char>(op));
  PutU32(&request, static_cast<uint32_t>(key.size()));
  PutU32(&request, static_cast<uint32_t>(value.size()));
  request.append(key);
  request.append(value);
  char header[kResponseHeaderSize];
  Status s = WriteAll(fd_, request.data(), request.size(), deadline);
  if (s.ok()) s = ReadAll(fd_, header, sizeof(header), deadline);
  if (s.ok()) {
    *code = static_cast<uint8_t>(header[0]);
    const uint32_t size = GetU32(header + 1);
    if (*code > tcp_store::kRefused || size > tcp_store::kMaxValueSize) {
      s = UnavailableError("malformed response");
    } else {
      response->resize(size);
      s = ReadAll(fd_, response->data(), size, deadline);
    }
  }
  return s.ok() ? s : FailedLocked(s);
}

Status TcpStoreClient::Set(std::string_view key, std::string_view value, Deadline deadline) {
  DCPKV_RETURN_IF_ERROR(CheckRequest(key, value));
  std::lock_guard<std::mutex> lock(mu_);
  if (protocol_ == RendezvousProtocol::kTorchTcpStore) return TorchSetLocked(key, value, deadline);
  uint8_t code = 0;
  std::string response;
  DCPKV_RETURN_IF_ERROR(RequestLocked(tcp_store::kSet, key, value, deadline, &code, &response));
  if (code == tcp_store::kRefused) {
    return ResourceExhaustedError("rendezvous server " + Endpoint(host_, port_) +
                                  " is full: refused key '" + std::string(key) + "'");
  }
  return Status::Ok();
}

StatusOr<std::optional<std::string>> TcpStoreClient::TryGet(std::string_view key,
                                                            Deadline deadline) {
  DCPKV_RETURN_IF_ERROR(CheckRequest(key, {}));
  std::lock_guard<std::mutex> lock(mu_);
  if (protocol_ == RendezvousProtocol::kTorchTcpStore) return TorchTryGetLocked(key, deadline);
  uint8_t code = 0;
  std::string response;
  DCPKV_RETURN_IF_ERROR(RequestLocked(tcp_store::kGet, key, {}, deadline, &code, &response));
  if (code != tcp_store::kOk) return std::optional<std::string>();
  return std::optional<std::string>(std::move(response));
}

StatusOr<std::string> TcpStoreClient::WaitGet(std::string_view key, Deadline deadline) {
  auto backoff = std::chrono::milliseconds(1);
  for (;;) {
    DCPKV_ASSIGN_OR_RETURN(std::optional<std::string> value, TryGet(key, deadline));
    if (value.has_value()) return std::move(*value);
    const auto now = Clock::now();
    if (now >= deadline) {
      return DeadlineExceededError("timed out waiting for rendezvous key '" + std::string(key) +
                                   "'");
    }
    std::this_thread::sleep_for(std::min<Clock::duration>(backoff, deadline - now));
    backoff = std::min(backoff * 2, std::chrono::milliseconds(50));
  }
}

}  // namespace dcpkv

// The rendezvous key-value store of gloo groups: a small TCP server (TcpStoreServer, public in
// gloo_process_group.h; started by rank 0 or by a launcher) and its client.
//
// Wire protocol (all integers little-endian). A client opens a connection with the 8 bytes
// "DCPKVKV1", then sends requests and reads one response to each, in order:
//   request:  op (1 byte), key length (u32), value length (u32), key, value
//   response: code (1 byte), value length (u32), value
// ops: 1 SET key=value (response code 0); 2 GET key (code 0 with the value, or 1: no such
// key, with an empty value). Response code 2 means the request was refused (the store is
// full). Keys are 1..kMaxKeySize bytes, values at most kMaxValueSize bytes. The server closes
// a connection that sends anything else.
//
// The client also speaks the part of torch's c10d TCPStore protocol that a rendezvous needs,
// for torchrun's agent store (RendezvousProtocol::kTorchTcpStore; docs/protocol.md): VALIDATE
// and PING on connecting (a server that does not echo the PING is not one of the torch versions
// dcpkv was tested with: FAILED_PRECONDITION), then SET, CHECK and GET.
//
// Thread safety: TcpStoreClient is safe for concurrent use (calls are serialized).
#ifndef DCPKV_API_TCP_STORE_H_
#define DCPKV_API_TCP_STORE_H_

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "dcpkv/gloo_process_group.h"
#include "dcpkv/status.h"

namespace dcpkv {
namespace tcp_store {

inline constexpr std::string_view kMagic = "DCPKVKV1";
inline constexpr size_t kMaxKeySize = 4096;
inline constexpr size_t kMaxValueSize = size_t{16} << 20;
// Sum of key and value sizes the server keeps before it refuses SETs of new data.
inline constexpr size_t kMaxStoredBytes = size_t{1} << 30;
inline constexpr size_t kMaxConnections = 4096;

enum Op : uint8_t { kSet = 1, kGet = 2 };
enum Code : uint8_t { kOk = 0, kNotFound = 1, kRefused = 2 };

using Deadline = std::chrono::steady_clock::time_point;

}  // namespace tcp_store

// A connection to a TcpStoreServer. A request that fails mid-way (timeout, lost connection)
// closes the connection; the next request reconnects.
class TcpStoreClient {
 public:
  // Connects to host:port, retrying refused or failed connections (the server may start later
  // than its clients) until `timeout` has passed: then UNAVAILABLE. An unknown host is
  // INVALID_ARGUMENT at once.
  static StatusOr<std::shared_ptr<TcpStoreClient>> Connect(
      const std::string& host, int port, std::chrono::milliseconds timeout,
      RendezvousProtocol protocol = RendezvousProtocol::kDcpkv);
  ~TcpStoreClient();
  TcpStoreClient(const TcpStoreClient&) = delete;
  TcpStoreClient& operator=(const TcpStoreClient&) = delete;

  const std::string& host() const { return host_; }
  int port() const { return port_; }

  Status Set(std::string_view key, std::string_view value, tcp_store::Deadline deadline);
  // The value of `key`, or nullopt if it is not set (yet). Does not wait for the key.
  StatusOr<std::optional<std::string>> TryGet(std::string_view key, tcp_store::Deadline deadline);
  // Waits until `key` is set and returns its value; DEADLINE_EXCEEDED when the deadline passes.
  StatusOr<std::string> WaitGet(std::string_view key, tcp_store::Deadline deadline);
  // Closes the connection (an idle client holds no descriptor of the server's); the next
  // request reconnects.
  void Disconnect();

 private:
  TcpStoreClient(std::string host, int port, RendezvousProtocol protocol)
      : host_(std::move(host)), port_(port), protocol_(protocol) {}
  Status EnsureConnectedLocked(tcp_store::Deadline deadline);
  // Opens a connection on `fd` in the client's protocol (the dcpkv magic, or torch's VALIDATE
  // and a PING that must come back).
  Status HelloLocked(int fd, tcp_store::Deadline deadline);
  // torch's c10d TCPStore: SET (no answer), and CHECK then GET of one key.
  Status TorchSetLocked(std::string_view key, std::string_view value, tcp_store::Deadline deadline);
  StatusOr<std::optional<std::string>> TorchTryGetLocked(std::string_view key,
                                                         tcp_store::Deadline deadline);
  // Closes the connection after a failed exchange and names the server in the error.
  Status FailedLocked(const Status& s);
  Status RequestLocked(tcp_store::Op op, std::string_view key, std::string_view value,
                       tcp_store::Deadline deadline, uint8_t* code, std::string* response);
  void CloseLocked();

  const std::string host_;
  const int port_;
  const RendezvousProtocol protocol_;
  std::mutex mu_;
  int fd_ = -1;
};

// Starts a server; used by TcpStoreServer::Start.
StatusOr<std::shared_ptr<TcpStoreServer>> StartTcpStoreServer(const std::string& host, int port);

}  // namespace dcpkv

#endif  // DCPKV_API_TCP_STORE_H_

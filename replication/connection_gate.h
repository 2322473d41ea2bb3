// The accept loop of a plaintext replica server. gRPC 1.51 has no cap on incoming connections,
// so a plaintext server listens itself: it accepts, holds each new connection until the client's
// HTTP/2 preface has arrived, and only then hands the socket to gRPC
// (grpc::AddInsecureChannelFromFd). Connections past the cap are closed as soon as they are
// accepted, and those that send no preface within the handshake timeout are closed (gRPC applies
// its own handshake timeout only to the connections it accepts itself).
#ifndef DCPKV_REPLICATION_CONNECTION_GATE_H_
#define DCPKV_REPLICATION_CONNECTION_GATE_H_

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "dcpkv/status.h"

namespace grpc {
class Server;
}

namespace dcpkv::replication {

class ConnectionGate {
 public:
  struct Options {
    // Connections open at once: waiting for their preface, or handed to gRPC and not yet closed.
    int max_connections = 256;
    // Of those, from one client address (IPv4, or IPv6 /64): a single host cannot take every
    // connection.
    int max_connections_per_address = 64;
    // How long a new connection may take to send the HTTP/2 preface.
    std::chrono::milliseconds handshake_timeout{10000};
  };

  // Binds "<host>:<port>" (IPv6 hosts in brackets; port 0: the system picks). UNAVAILABLE if the
  // address cannot be bound.
  static StatusOr<std::unique_ptr<ConnectionGate>> Listen(const std::string& address,
                                                          const Options& options);
  ~ConnectionGate();  // Stop()

  int port() const { return port_; }
  // Starts the accept loop; connections go to `server`, which must be started and outlive Stop().
  void Start(grpc::Server* server);
  // Stops accepting and closes the listening socket and the connections still waiting for their
  // preface. Those handed over belong to gRPC. Idempotent.
  void Stop();

 private:
  ConnectionGate(int listen_fd, int wake_fd, int port, const Options& options);
  void Loop();

  const int listen_fd_;
  const int wake_fd_;  // an eventfd that Stop() signals
  const int port_;
  const Options options_;
  grpc::Server* server_ = nullptr;
  std::thread thread_;
  std::atomic<bool> stopped_{false};
};

}  // namespace dcpkv::replication

#endif  // DCPKV_REPLICATION_CONNECTION_GATE_H_

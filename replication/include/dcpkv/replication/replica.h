// Manifest replicas over gRPC: the server that keeps committed manifests of many jobs in its own
// embedded store, and the client that talks to it.
//
// A replica keeps, per namespace (a job's or store's name), the manifest records
// (dcpkv/manifest_record.h: checkpoint id, commit time, the encoded Metadata
// and its XXH3-128) of committed checkpoints. Every request is validated before it touches the
// store: namespace and id syntax, sizes, the record's checksum and that its Metadata decodes;
// bad requests are INVALID_ARGUMENT, missing or wrong credentials UNAUTHENTICATED. Namespaces
// map to directories below the replica's root by a reversible hex encoding, so no request can
// name a path outside it.
//
// Security: the server binds loopback unless told otherwise; TLS with a server certificate and
// key from files, optionally requiring client certificates signed by a CA (mTLS); optionally a
// shared bearer token checked on every call ("authorization: Bearer <token>" metadata).
#ifndef DCPKV_REPLICATION_REPLICA_H_
#define DCPKV_REPLICATION_REPLICA_H_

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "dcpkv/diagnostics.h"
#include "dcpkv/export.h"
#include "dcpkv/manifest_record.h"
#include "dcpkv/status.h"

namespace dcpkv::replication {

// Namespaces: 1..128 bytes of [A-Za-z0-9._:@/-], no '/'-separated segment "." or ".." (a
// namespace never names a path, but one that looks like a traversal is refused all the same);
// INVALID_ARGUMENT otherwise.
DCPKV_EXPORT Status ValidateNamespace(std::string_view ns);

// Largest request or response a replica or client accepts. Default: 64 MiB.
inline constexpr size_t kDefaultMaxMessageBytes = size_t{64} << 20;

// What one replica server lets its clients hold, with what Debian 12's gRPC (1.51) can bound:
// every connection and call counts against these, before any token is checked. Every call's
// token is checked from its headers before its request is read.
struct DCPKV_EXPORT ReplicaServerLimits {
  // A connection that has not sent its HTTP/2 preface (plaintext) or finished its TLS handshake
  // by then is closed: a client that connects and stalls holds a descriptor this long at most.
  // Default: 10 s.
  std::chrono::milliseconds handshake_timeout{10000};
  // A connection with no call in flight for this long is closed (clients reconnect when they
  // next call). Default: 2 min.
  std::chrono::milliseconds connection_idle{120000};
  // Pings a connection that was silent this long, and closes it if the ping is not answered
  // within keepalive_timeout: a peer that vanished does not hold its connection. Default: 60 s
  // and 20 s.
  std::chrono::milliseconds keepalive_time{60000};
  std::chrono::milliseconds keepalive_timeout{20000};
  // Connections open at once, of a plaintext server (gRPC 1.51 has no such cap; the server owns
  // its accept loop): past it, a new connection is closed as soon as it is accepted. Connections
  // still in their handshake count. A TLS server is not capped: gRPC accepts its connections.
  // Default: 256.
  int max_connections = 256;
  // Of those, from one client address (an IPv4 address, or an IPv6 /64), so that one host cannot
  // take them all. Default: 64.
  int max_connections_per_address = 64;
  // Calls in flight on one connection. Default: 16.
  int max_concurrent_streams = 16;
  // Header bytes a call may send (its metadata: the token, gRPC's own). Default: 16 KiB.
  int max_metadata_bytes = 16 << 10;
  // Memory gRPC may use for connections and calls (its ResourceQuota): past it, gRPC refuses
  // new calls and reads instead of growing. Default: 256 MiB.
  size_t memory_quota_bytes = size_t{256} << 20;
  // Largest message the server reads, once a call's token was checked: a unary request, or one
  // piece of a PutStream. Also bounded by ReplicaServerOptions::max_message_bytes. Default:
  // 4 MiB + 64 KiB.
  size_t max_request_bytes = (size_t{4} << 20) + (size_t{64} << 10);
  // Largest record a PutStream may announce (manifests of thousands of ranks are tens of MiB).
  // Default: 256 MiB.
  uint64_t max_record_bytes = uint64_t{256} << 20;
  // Record bytes every PutStream holds at once, together; a stream that would go past it is
  // RESOURCE_EXHAUSTED before it is read. Default: 512 MiB.
  uint64_t put_stream_bytes = uint64_t{512} << 20;
};

struct DCPKV_EXPORT ReplicaServerOptions {
  // Directory holding the replica's data (created if missing). Required.
  std::string root;
  // Address to bind, "<host>:<port>". Default: loopback on a port the system picks.
  std::string listen = "127.0.0.1:0";
  // TLS: server certificate chain and private key (PEM files). Both empty: plaintext.
  std::string tls_cert_file;
  std::string tls_key_file;
  // mTLS: CA certificate (PEM file) that client certificates must be signed by. Empty: client
  // certificates are not requested. Requires TLS.
  std::string client_ca_file;
  // Bearer token every call must carry. Empty: no token check.
  std::string token;
  size_t max_message_bytes = kDefaultMaxMessageBytes;
  // Bounds on what clients may hold.
  ReplicaServerLimits limits;
  // Where failures that no call returns go (closing a namespace's store). Not owned; must outlive
  // the server. Default: null, meaning StderrDiagnostics().
  DiagnosticSink* diagnostics = nullptr;
};

class DCPKV_EXPORT ReplicaServer {
 public:
  // Creates options.root if missing, locks it (<root>/LOCK) and starts serving; each namespace's
  // store is opened on first use. INVALID_ARGUMENT for bad options (naming a TLS file that cannot
  // be read), FAILED_PRECONDITION if another replica serves the root, IO_ERROR if it cannot be
  // created, UNAVAILABLE if the address cannot be bound (in use, not local).
  static StatusOr<std::unique_ptr<ReplicaServer>> Start(const ReplicaServerOptions& options);
  ~ReplicaServer();  // Shutdown()

  // The port bound (the one the system picked for port 0).
  int port() const;
  // Stops accepting calls, finishes those in flight (at most `grace`), closes the stores and
  // unlocks the root. Idempotent.
  void Shutdown(std::chrono::milliseconds grace = std::chrono::seconds(5));

  struct Impl;

 private:
  explicit ReplicaServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

struct DCPKV_EXPORT ReplicaClientOptions {
  // TLS: CA certificate (PEM file) to verify the server with. Empty: plaintext.
  std::string tls_ca_file;
  // mTLS: this client's certificate chain and key (PEM files).
  std::string tls_cert_file;
  std::string tls_key_file;
  // Overrides the name checked against the server certificate (tests use "localhost").
  std::string tls_server_name;
  // Bearer token sent with every call. Empty: none.
  std::string token;
  // Deadline of each call. Default: 10 s.
  std::chrono::milliseconds deadline = std::chrono::seconds(10);
  size_t max_message_bytes = kDefaultMaxMessageBytes;
};

// A connection to one replica ("host:port"). Thread-safe. Errors carry the gRPC status mapped to
// a dcpkv StatusCode (UNAVAILABLE for an unreachable replica, DEADLINE_EXCEEDED, ...), naming
// the target.
class DCPKV_EXPORT ReplicaClient {
 public:
  // Checks the options and reads the TLS files (INVALID_ARGUMENT naming one that cannot be
  // read). The connection is made by the first call and remade as needed, so an unreachable
  // replica is an UNAVAILABLE call, not a failed Connect.
  static StatusOr<std::unique_ptr<ReplicaClient>> Connect(const std::string& target,
                                                          const ReplicaClientOptions& options);
  ~ReplicaClient();

  const std::string& target() const;

  // Stores the record of a committed checkpoint, replacing one with the same id (normally an
  // identical one: a retried Put). The replica validates it in full first (INVALID_ARGUMENT).
  Status Put(const std::string& ns, const ManifestRecord& record);
  // NOT_FOUND if the replica has no such record; DATA_LOSS if what arrived fails its checksums.
  StatusOr<ManifestRecord> Get(const std::string& ns, const std::string& checkpoint_id);
  // Ids of every record in the namespace, sorted.
  StatusOr<std::vector<std::string>> List(const std::string& ns);
  // Deleting a record that is not there is OK.
  Status Delete(const std::string& ns, const std::string& checkpoint_id);

  struct Impl;

 private:
  explicit ReplicaClient(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace dcpkv::replication

#endif  // DCPKV_REPLICATION_REPLICA_H_

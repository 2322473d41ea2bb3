// The gloo backend of ProcessGroup: collectives over TCP between processes (or threads).
//
// Rendezvous needs no shared directory: as with torch's TCPStore, one small TCP key-value server
// (TcpStoreServer) runs on master_addr:master_port, started by rank 0's group (or by a launcher,
// or by a test), and every rank is its client. Ranks publish their gloo addresses there and
// connect to each other directly; the server is used again only to create subgroups. Clients
// retry connecting until the timeout, so ranks may start in any order.
//
//   dcpkv::GlooProcessGroupOptions options;
//   options.rank = rank;
//   options.world_size = world_size;
//   options.master_addr = "10.0.0.1";   // where rank 0 runs
//   options.hostname = "10.0.0.7";      // this host's address, reachable by the other ranks
//   auto group = dcpkv::CreateGlooProcessGroup(options);   // or CreateGlooProcessGroupFromEnv()
//
// Collectives exchange variable-size byte buffers point to point (each transfer is an 8-byte
// size header, then the payload; bytes_sent() counts both): Gather sends each buffer to root
// only, Scatter and Broadcast send from root to each rank, AllGather from every rank to every
// other, Barrier a one-byte token to rank 0 and back. Every call waits at most timeout() in all
// (see process_group.h for the error model). A wait for a peer whose connection fails ends
// with UNAVAILABLE within about 50 ms, also in the middle of a transfer. A failed call leaves
// its error at the rendezvous server (key "<prefix>failed/<rank>", at most 1 s) and closes this
// rank's connections, so that its peers fail fast too; a call that failed on a peer's account
// (the peer's connection closed, or it did not answer in time) waits up to 2 s for that peer's
// report and adds it ("...; rank 0 reported: Gather: rank 0 timed out ... waiting for rank 2"),
// so that the ranks waiting on a coordinator that gave up on a lost rank name the lost rank.
// Nothing is waited for when the server cannot be reached.
//
// Each group of more than one rank runs one watchdog thread (idle unless a call is waiting);
// subgroups share their parent's gloo device (one event-loop thread per process and world).
// SIGPIPE is blocked in threads while they run gloo code; no signal disposition is changed.
//
// Thread safety: as ProcessGroup. TcpStoreServer is thread-safe.
#ifndef DCPKV_GLOO_PROCESS_GROUP_H_
#define DCPKV_GLOO_PROCESS_GROUP_H_

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "dcpkv/export.h"
#include "dcpkv/process_group.h"
#include "dcpkv/status.h"

namespace dcpkv {

// The rendezvous server: an in-memory key-value store served on a background thread.
// Destroying the last reference stops the thread and closes every connection.
class DCPKV_EXPORT TcpStoreServer {
 public:
  // Listens on host:port; port 0 picks a free port (see port()). `host` is an address or a
  // name to bind, e.g. "127.0.0.1" (loopback only) or "0.0.0.0" (every interface).
  // UNAVAILABLE if the address cannot be bound (e.g. the port is in use).
  static StatusOr<std::shared_ptr<TcpStoreServer>> Start(const std::string& host, int port);

  virtual ~TcpStoreServer() = default;
  // The host given to Start.
  virtual const std::string& host() const = 0;
  // The port the server listens on.
  virtual int port() const = 0;
};

// The protocol of a rendezvous server this rank connects to (one it did not start itself).
enum class RendezvousProtocol {
  // A TcpStoreServer: started by rank 0's group, by a test, or by a launcher that runs one.
  kDcpkv,
  // torch's c10d TCPStore, as torchrun's elastic agent serves it on MASTER_PORT
  // (TORCHELASTIC_USE_AGENT_STORE=True). Its wire format is internal to torch: dcpkv speaks the
  // part it needs (docs/protocol.md), checked against the torch versions listed there, and
  // fails with FAILED_PRECONDITION when a server does not answer as they do.
  kTorchTcpStore,
};

struct DCPKV_EXPORT GlooProcessGroupOptions {
  // This process's rank in [0, world_size). Default: 0.
  int rank = 0;
  // Number of ranks. A world of 1 binds and connects nothing. Default: 1.
  int world_size = 1;
  // Address of the rendezvous server (where rank 0 runs). Default: "127.0.0.1".
  std::string master_addr = "127.0.0.1";
  // Port of the rendezvous server. Rank 0 may pass 0 to let its server pick a free port (then
  // only useful with `server` below or a world of 1). Default: 29500.
  int master_port = 29500;
  // Longest wait of the rendezvous and of each collective. Default: 60 s.
  std::chrono::milliseconds timeout{60000};
  // Address (or name) of this host's interface that gloo's TCP connections bind; the other
  // ranks must reach it. Default: "127.0.0.1" (loopback: every rank on this host).
  std::string hostname = "127.0.0.1";
  // Namespace of this group's rendezvous keys, so that several groups can share one server.
  // Every rank of a group passes the same prefix, and no two groups of one server use the same
  // prefix (subgroups derive theirs). Default: "" (fine for one group per server).
  std::string prefix;
  // A server already running in this process to rendezvous at instead of
  // master_addr:master_port (its host and port are used). The group keeps it alive.
  // Default: null.
  std::shared_ptr<TcpStoreServer> server;
  // Without `server`: whether rank 0 starts the server on master_addr:master_port. False when a
  // launcher runs it (torchrun's agent store). Default: true.
  bool start_server = true;
  // The protocol of the server at master_addr:master_port when this rank does not start it.
  // kTorchTcpStore requires start_server = false. Default: kDcpkv.
  RendezvousProtocol server_protocol = RendezvousProtocol::kDcpkv;
};

// Joins a gloo group: starts (rank 0) or reaches the rendezvous server, connects to every other
// rank, and returns once every rank is connected (a barrier). Blocks until then or until
// options.timeout has passed.
// Errors: INVALID_ARGUMENT for bad options; UNAVAILABLE if the server cannot be reached or
// started, or a peer cannot be connected; DEADLINE_EXCEEDED if some rank did not join in time.
DCPKV_EXPORT StatusOr<std::unique_ptr<ProcessGroup>> CreateGlooProcessGroup(
    const GlooProcessGroupOptions& options);

// Options from the torchrun environment: RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT are
// required, LOCAL_RANK is checked if set.
// - TORCHELASTIC_USE_AGENT_STORE=True (or 1): torchrun's agent serves torch's TCPStore on
//   MASTER_PORT: start_server is cleared and server_protocol is kTorchTcpStore.
//   DCPKV_RENDEZVOUS_PROTOCOL=dcpkv (or torch) names the protocol of a launcher's server instead.
// - TORCHELASTIC_RUN_ID (and TORCHELASTIC_RESTART_COUNT, default 0) scope the rendezvous keys:
//   prefix is "<run id>/<restart count>", so that an elastic restart, whose agent store still
//   holds the keys of the attempt before, never meets them.
// hostname is DCPKV_GLOO_HOSTNAME if set, else "127.0.0.1" when MASTER_ADDR is a loopback
// address or "localhost", else this machine's host name. INVALID_ARGUMENT naming the variable
// that is missing or malformed.
DCPKV_EXPORT StatusOr<GlooProcessGroupOptions> GlooProcessGroupOptionsFromEnv(
    std::chrono::milliseconds timeout = std::chrono::milliseconds(60000));

// CreateGlooProcessGroup(GlooProcessGroupOptionsFromEnv(timeout)).
DCPKV_EXPORT StatusOr<std::unique_ptr<ProcessGroup>> CreateGlooProcessGroupFromEnv(
    std::chrono::milliseconds timeout = std::chrono::milliseconds(60000));

// A group of the parent's ranks `ranks` (parent ranks, no duplicates), in that order: parent
// rank ranks[i] is rank i of the subgroup. Called by the members only, each with the same list;
// members that create several subgroups create them in the same order. Reuses the parent's
// rendezvous server (under a prefix derived from the list and how many groups of this list the
// parent has made) and its gloo device, so the server must still run (a group of rank 0's,
// or the launcher's server, still alive); the subgroup has the parent's current timeout and
// does not depend on the parent object staying alive. Blocks like CreateGlooProcessGroup; a
// list of one rank needs no peers and returns at once. INVALID_ARGUMENT (at once, without
// communication) if the parent is not a gloo group, the list is empty, has duplicates or ranks
// out of range, or the caller is not in it.
DCPKV_EXPORT StatusOr<std::unique_ptr<ProcessGroup>> CreateGlooSubgroup(
    ProcessGroup& parent, const std::vector<int>& ranks);

// A group of all of `parent`'s ranks, in the same order, for the background uploads of
// AsyncSave: they run collectives from another thread while the caller goes on using `parent`,
// so they need a group of their own (CreateGlooSubgroup(parent, {0, ..., size - 1})).
// Checkpointer::AsyncSave makes one itself. Every rank calls it, as CreateGlooSubgroup.
// INVALID_ARGUMENT if the parent is not a gloo group.
DCPKV_EXPORT StatusOr<std::unique_ptr<ProcessGroup>> CreateAsyncSaveGroup(ProcessGroup& parent);

}  // namespace dcpkv

#endif  // DCPKV_GLOO_PROCESS_GROUP_H_

// Internals of the gloo ProcessGroup: the transfers of one collective call (Call), the watch on
// peer connections that keeps a dead peer from stalling a call until its timeout (PeerWatch),
// SIGPIPE handling, and the conversion of gloo's exceptions to statuses.
#ifndef DCPKV_API_GLOO_CALL_H_
#define DCPKV_API_GLOO_CALL_H_

#include <signal.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "dcpkv/status.h"

namespace gloo {
class Context;
namespace transport {
class UnboundBuffer;
}  // namespace transport
}  // namespace gloo

namespace dcpkv::gloo_internal {

using Clock = std::chrono::steady_clock;

// Gloo writes to its sockets with writev(2), so a write to a peer that died raises SIGPIPE,
// whose default action kills the process. This blocks SIGPIPE in the calling thread while it
// lives (such a write then fails with EPIPE, which gloo handles); on destruction it discards a
// SIGPIPE raised meanwhile and restores the mask. Gloo's event-loop thread, created under such
// a block, inherits the blocked mask for good.
class ScopedSigpipeBlock {
 public:
  ScopedSigpipeBlock();
  ~ScopedSigpipeBlock();
  ScopedSigpipeBlock(const ScopedSigpipeBlock&) = delete;
  ScopedSigpipeBlock& operator=(const ScopedSigpipeBlock&) = delete;

 private:
  sigset_t set_;
  sigset_t old_;
  bool was_pending_ = false;
  bool blocked_ = false;
};

// Carries a rendezvous failure through gloo's code, which calls our store and lets it pass.
class StoreError : public std::runtime_error {
 public:
  explicit StoreError(Status status)
      : std::runtime_error(status.ToString()), status_(std::move(status)) {}
  const Status& status() const { return status_; }

 private:
  Status status_;
};

// The status of the exception being handled, prefixed by `context`; call only inside a catch
// block. gloo::IoException is UNAVAILABLE, or DEADLINE_EXCEEDED for timeouts; StoreError its
// status; gloo's failed assertions INTERNAL; bad_alloc RESOURCE_EXHAUSTED.
Status CurrentExceptionStatus(std::string_view context);

// Gloo signals a failed connection to the operations waiting for their peer, but not to one
// already in the middle of its transfer (a large send or receive), whose wait would then last
// until the timeout. PeerWatch posts a "sentinel" receive to every peer on a slot nobody sends
// to; gloo fails it when that peer's connection fails. While a call waits for a transfer (Begin
// .. End), a watchdog thread checks the sentinel of the transfer's peer every 50 ms and aborts
// the wait if that connection has failed.
class PeerWatch {
 public:
  // The slot of the sentinels; collectives use slots far below.
  static constexpr uint64_t kSentinelSlot = uint64_t{1} << 62;

  // Posts the sentinels on a connected context. Throws what gloo throws.
  PeerWatch(gloo::Context* context, int rank, int size);
  ~PeerWatch();
  PeerWatch(const PeerWatch&) = delete;
  PeerWatch& operator=(const PeerWatch&) = delete;

  // Watches `peer` while this thread waits for `buffer` (a receive if `recv`, else a send).
  void Begin(gloo::transport::UnboundBuffer* buffer, int peer, bool recv);
  // Ends the watch. Returns the peer's connection error if the watchdog aborted the wait.
  std::optional<std::string> End();

 private:
  void Run();
  // The error gloo signalled to `peer`'s sentinel, if any. Watchdog thread only.
  std::optional<std::string> Poll(int peer);

  std::vector<char> sentinel_bytes_;
  std::vector<std::unique_ptr<gloo::transport::UnboundBuffer>> sentinels_;  // by peer

  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  gloo::transport::UnboundBuffer* buffer_ = nullptr;  // the watched wait, if any
  int peer_ = -1;
  bool recv_ = false;
  std::optional<std::string> error_;  // set when the watched wait was aborted
  std::thread thread_;
};

// Which of the two transfers to a peer in one collective a message is; part of its slot.
enum Part : uint64_t { kSizeHeader = 0, kPayload = 1 };
inline constexpr uint64_t kSlotsPerCall = 2;

// Largest buffer a peer may announce: a corrupt size header must not turn into a huge
// allocation that happens to succeed.
inline constexpr uint64_t kMaxBufferSize = uint64_t{1} << 46;

// The transfers of one collective call: posts sends and receives of unbound buffers on the
// call's slots and waits for them within the call's deadline, turning failures into statuses
// that name the call, this rank and the peer.
class Call {
 public:
  Call(std::string_view name, int rank, gloo::Context* context, PeerWatch* watch, uint64_t seq,
       std::chrono::milliseconds timeout, std::atomic<uint64_t>* bytes_sent);
  ~Call();

  // Posts a send of `size` bytes at `data`, which must stay valid until WaitSends returns.
  // Empty payloads are not sent (the receiver knows the size).
  Status Send(int peer, const void* data, size_t size, Part part);
  // Posts the 8-byte size header announcing a payload of `size` bytes.
  Status SendSize(int peer, uint64_t size);
  // Posts a receive of `size` bytes into `data`, which must stay valid until WaitRecvs returns.
  Status Recv(int peer, void* data, size_t size, Part part);
  // Posts the receive of a size header from `peer` into *size (valid after WaitRecvs).
  Status RecvSize(int peer, uint64_t* size);
  // Checks a received size header.
  Status CheckSize(int peer, uint64_t size) const;

  // Waits for every receive posted so far.
  Status WaitRecvs();
  // Waits for every send posted so far and counts its bytes.
  Status WaitSends();
  Status WaitAll();

  // The peer of the transfer that failed, or -1 if none did (or the failure named no peer).
  int failed_peer() const { return failed_peer_; }

 private:
  struct Transfer {
    std::unique_ptr<gloo::transport::UnboundBuffer> buffer;
    int peer;
    size_t size;
    Part part;
  };

  Status Wait(Transfer& t, bool recv);
  std::chrono::milliseconds Remaining() const;
  std::string Describe(int peer, Part part, bool sending) const;
  // The status of the gloo exception being handled, for a transfer with `peer`.
  Status Failure(int peer, Part part, bool sending);

  const std::string name_;
  const int rank_;
  gloo::Context* const context_;
  PeerWatch* const watch_;
  const uint64_t slot_base_;
  const Clock::time_point start_;
  const Clock::time_point deadline_;
  std::atomic<uint64_t>* const bytes_sent_;
  std::deque<uint64_t> headers_;  // outgoing size headers; a deque keeps their addresses
  std::vector<Transfer> sends_;
  std::vector<Transfer> recvs_;
  size_t next_send_ = 0;
  size_t next_recv_ = 0;
  int failed_peer_ = -1;
};

}  // namespace dcpkv::gloo_internal

#endif  // DCPKV_API_GLOO_CALL_H_

// Call, PeerWatch and the gloo error handling of the gloo ProcessGroup. See gloo_call.h.
#include "gloo_call.h"

#include <errno.h>
#include <gloo/common/error.h>
#include <gloo/common/logging.h>
#include <gloo/context.h>
#include <gloo/transport/unbound_buffer.h>
#include <pthread.h>
#include <time.h>

#include <algorithm>
#include <exception>
#include <new>
#include <utility>

namespace dcpkv::gloo_internal {
namespace {

constexpr std::chrono::milliseconds kWatchInterval(50);

bool IsTimeoutMessage(std::string_view what) {
  return what.find("Timed out") != std::string_view::npos ||
         what.find("timeout") != std::string_view::npos;
}

}  // namespace

ScopedSigpipeBlock::ScopedSigpipeBlock() {
  sigemptyset(&set_);
  sigaddset(&set_, SIGPIPE);
  sigset_t pending;
  sigemptyset(&pending);
  was_pending_ = sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE) == 1;
  blocked_ = pthread_sigmask(SIG_BLOCK, &set_, &old_) == 0;
}

ScopedSigpipeBlock::~ScopedSigpipeBlock() {
  if (!blocked_) return;
  if (!was_pending_) {
    sigset_t pending;
    sigemptyset(&pending);
    if (sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE) == 1) {
      const timespec zero{0, 0};
      while (sigtimedwait(&set_, nullptr, &zero) < 0 && errno == EINTR) {
      }
    }
  }
  pthread_sigmask(SIG_SETMASK, &old_, nullptr);
}

Status CurrentExceptionStatus(std::string_view context) {
  const std::string prefix = std::string(context) + ": ";
  try {
    throw;
  } catch (const StoreError& e) {
    return e.status().WithContext(context);
  } catch (const gloo::IoException& e) {
    if (IsTimeoutMessage(e.what())) return DeadlineExceededError(prefix + e.what());
    return UnavailableError(prefix + e.what());
  } catch (const gloo::EnforceNotMet& e) {
    return InternalError(prefix + "gloo: " + e.what());
  } catch (const gloo::Exception& e) {
    return UnavailableError(prefix + "gloo: " + e.what());
  } catch (const std::bad_alloc&) {
    return ResourceExhaustedError(prefix + "out of memory");
  } catch (const std::exception& e) {
    return InternalError(prefix + e.what());
  } catch (...) {
    return InternalError(prefix + "unknown exception");
  }
}

// ---------------------------------------------------------------------------------------------
// PeerWatch

PeerWatch::PeerWatch(gloo::Context* context, int rank, int size)
    : sentinel_bytes_(size), sentinels_(size) {
  for (int peer = 0; peer < size; ++peer) {
    if (peer == rank) continue;
    sentinels_[peer] = context->createUnboundBuffer(&sentinel_bytes_[peer], 1);
    sentinels_[peer]->recv(peer, kSentinelSlot, 0, 1);
  }
  thread_ = std::thread([this] { Run(); });
}

PeerWatch::~PeerWatch() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void PeerWatch::Begin(gloo::transport::UnboundBuffer* buffer, int peer, bool recv) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    buffer_ = buffer;
    peer_ = peer;
    recv_ = recv;
    error_.reset();
  }
  cv_.notify_all();
}

std::optional<std::string> PeerWatch::End() {
  std::lock_guard<std::mutex> lock(mu_);
  buffer_ = nullptr;
  return std::move(error_);
}

std::optional<std::string> PeerWatch::Poll(int peer) {
  // An abort makes the next wait return at once, after it has rethrown a signalled error; a
  // timed-out wait would instead close every connection of the context.
  gloo::transport::UnboundBuffer* sentinel = sentinels_[peer].get();
  sentinel->abortWaitRecv();
  try {
    sentinel->waitRecv(nullptr, std::chrono::hours(1));
    return std::nullopt;
  } catch (const std::exception& e) {
    return std::string(e.what());
  } catch (...) {
    return std::string("unknown error");
  }
}

void PeerWatch::Run() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stop_) {
    if (buffer_ == nullptr || error_.has_value()) {
      cv_.wait(lock);
      continue;
    }
    cv_.wait_for(lock, kWatchInterval);
    if (stop_ || buffer_ == nullptr || error_.has_value()) continue;
    if (std::optional<std::string> error = Poll(peer_)) {
      error_ = std::move(error);
      if (recv_) {
        buffer_->abortWaitRecv();
      } else {
        buffer_->abortWaitSend();
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Call

Call::Call(std::string_view name, int rank, gloo::Context* context, PeerWatch* watch, uint64_t seq,
           std::chrono::milliseconds timeout, std::atomic<uint64_t>* bytes_sent)
    : name_(name),
      rank_(rank),
      context_(context),
      watch_(watch),
      slot_base_(seq * kSlotsPerCall),
      start_(Clock::now()),
      deadline_(start_ + timeout),
      bytes_sent_(bytes_sent) {}

Call::~Call() = default;

Status Call::Send(int peer, const void* data, size_t size, Part part) {
  if (size == 0) return Status::Ok();
  try {
    auto buffer = context_->createUnboundBuffer(const_cast<void*>(data), size);
    buffer->send(peer, slot_base_ + part, 0, size);
    sends_.push_back({std::move(buffer), peer, size, part});
    return Status::Ok();
  } catch (...) {
    return Failure(peer, part, /*sending=*/true);
  }
}

Status Call::SendSize(int peer, uint64_t size) {
  headers_.push_back(size);
  return Send(peer, &headers_.back(), sizeof(uint64_t), kSizeHeader);
}

Status Call::Recv(int peer, void* data, size_t size, Part part) {
  if (size == 0) return Status::Ok();
  try {
    auto buffer = context_->createUnboundBuffer(data, size);
    buffer->recv(peer, slot_base_ + part, 0, size);
    recvs_.push_back({std::move(buffer), peer, size, part});
    return Status::Ok();
  } catch (...) {
    return Failure(peer, part, /*sending=*/false);
  }
}

Status Call::RecvSize(int peer, uint64_t* size) {
  return Recv(peer, size, sizeof(uint64_t), kSizeHeader);
}

Status Call::CheckSize(int peer, uint64_t size) const {
  if (size <= kMaxBufferSize) return Status::Ok();
  return InternalError(name_ + ": rank " + std::to_string(peer) + " announced a buffer of " +
                       std::to_string(size) + " bytes");
}

Status Call::WaitRecvs() {
  for (; next_recv_ < recvs_.size(); ++next_recv_) {
    DCPKV_RETURN_IF_ERROR(Wait(recvs_[next_recv_], /*recv=*/true));
  }
  return Status::Ok();
}

Status Call::WaitSends() {
  for (; next_send_ < sends_.size(); ++next_send_) {
    Transfer& t = sends_[next_send_];
    DCPKV_RETURN_IF_ERROR(Wait(t, /*recv=*/false));
    bytes_sent_->fetch_add(t.size, std::memory_order_relaxed);
  }
  return Status::Ok();
}

Status Call::WaitAll() {
  DCPKV_RETURN_IF_ERROR(WaitRecvs());
  return WaitSends();
}

Status Call::Wait(Transfer& t, bool recv) {
  gloo::transport::UnboundBuffer* b = t.buffer.get();
  bool done = false;
  watch_->Begin(b, t.peer, recv);
  try {
    // On timeout gloo closes every connection of the context and throws.
    done = recv ? b->waitRecv(nullptr, Remaining()) : b->waitSend(nullptr, Remaining());
  } catch (...) {
    watch_->End();
    return Failure(t.peer, t.part, !recv);
  }
  std::optional<std::string> peer_error = watch_->End();
  if (done) return Status::Ok();
  // The watchdog aborted the wait: the peer's connection failed. The transfer may still have
  // completed just before; if not, this zero wait fails (and closes the context's connections).
  try {
    if (recv ? b->waitRecv(nullptr, std::chrono::milliseconds(0))
             : b->waitSend(nullptr, std::chrono::milliseconds(0))) {
      return Status::Ok();
    }
  } catch (...) {
  }
  failed_peer_ = t.peer;
  return UnavailableError(name_ + ": rank " + std::to_string(rank_) + ", " +
                          Describe(t.peer, t.part, !recv) + ": " +
                          peer_error.value_or("the wait was aborted"));
}

std::chrono::milliseconds Call::Remaining() const {
  auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline_ - Clock::now());
  return std::max(left, std::chrono::milliseconds(0));
}

std::string Call::Describe(int peer, Part part, bool sending) const {
  return std::string(part == kSizeHeader ? "size header" : "payload") +
         (sending ? " to rank " : " from rank ") + std::to_string(peer);
}

Status Call::Failure(int peer, Part part, bool sending) {
  failed_peer_ = peer;
  const std::string what = Describe(peer, part, sending);
  Status s = CurrentExceptionStatus(name_ + ": rank " + std::to_string(rank_) + ", " + what);
  if (s.code() == StatusCode::kDeadlineExceeded) {
    const auto waited =
        std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start_);
    return DeadlineExceededError(name_ + ": rank " + std::to_string(rank_) + " timed out after " +
                                 std::to_string(waited.count()) + " ms waiting for rank " +
                                 std::to_string(peer) + " (" + what + ")");
  }
  return s;
}

}  // namespace dcpkv::gloo_internal

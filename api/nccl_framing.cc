// The NCCL group's framing: variable-size byte buffers over DeviceCollectives' fixed-size
// primitives (nccl_transport.h). No CUDA or NCCL here, so that tests run it anywhere.
#include <algorithm>
#include <atomic>
#include <cstring>
#include <utility>

#include "dcpkv/api/nccl_transport.h"
#include "dcpkv/core/wire.h"

namespace dcpkv::nccl {
namespace {

constexpr size_t kHeader = 8;

std::string EncodeSize(uint64_t v) {
  std::string out;
  wire::AppendLittleEndian(&out, v);
  return out;
}

uint64_t DecodeSize(const char* p) { return wire::ReadLittleEndian<uint64_t>(p); }

class DeviceCollectivesGroup final : public ProcessGroup {
 public:
  DeviceCollectivesGroup(std::unique_ptr<DeviceCollectives> transport, DeviceGroupOptions options)
      : transport_(std::move(transport)),
        rank_(transport_->rank()),
        size_(transport_->size()),
        backend_(std::move(options.backend)),
        timeout_(options.timeout),
        keep_alive_(std::move(options.keep_alive)) {}

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string_view backend() const override { return backend_; }
  bool supports_cpu() const override { return false; }
  std::chrono::milliseconds timeout() const override { return timeout_.load(); }
  void set_timeout(std::chrono::milliseconds timeout) override { timeout_.store(timeout); }
  uint64_t bytes_sent() const override { return bytes_sent_.load(); }

  StatusOr<std::vector<std::string>> Gather(std::string_view data, int root) override;
  StatusOr<std::string> Scatter(const std::vector<std::string>& data, int root) override;
  StatusOr<std::string> Broadcast(std::string_view data, int root) override;
  StatusOr<std::vector<std::string>> AllGather(std::string_view data) override;
  Status Barrier() override;

  // The creation handshake: every rank has the same max_transfer_bytes.
  Status Handshake(Clock::time_point deadline);

 private:
  Status CheckRoot(std::string_view name, int root) const {
    if (root >= 0 && root < size_) return Status::Ok();
    return InvalidArgumentError(std::string(name) + ": root " + std::to_string(root) +
                                " is not a rank of this group of " + std::to_string(size_));
  }
  Status CheckAnnounced(int peer, uint64_t size) const {
    if (size <= kMaxMessageBytes) return Status::Ok();
    return InternalError("rank " + std::to_string(peer) + " announced a buffer of " +
                         std::to_string(size) + " bytes");
  }

  // Runs one collective: fails fast if the group is broken; a failure breaks it and aborts
  // the transport.
  template <typename T, typename Body>
  StatusOr<T> Run(std::string_view name, Body&& body) {
    if (!broken_.ok()) {
      return AbortedError(std::string(name) + ": the " + backend_ + " group (rank " +
                          std::to_string(rank_) + " of " + std::to_string(size_) +
                          ") is broken by an earlier failure: " + broken_.ToString());
    }
    StatusOr<T> result = body(Clock::now() + timeout_.load());
    if (!result.ok()) {
      broken_ = result.status().WithContext(std::string(name));
      transport_->Abort();
      return broken_;
    }
    return result;
  }

  // Fixed-size all-gather of any size: `out` gets rank r's `bytes` at r * bytes.
  Status AllGatherFixed(const char* in, size_t bytes, std::string* out, Clock::time_point d);
  // Broadcast of any size, in rounds.
  Status BroadcastChunked(char* data, size_t bytes, int root, Clock::time_point d);
  // Whole messages to and from peers (at most one each way per peer), in rounds: round j moves
  // piece j of every message, pieces of max_transfer_bytes / (size - 1) bytes, so that no rank
  // moves more than max_transfer_bytes in one round. Both ends of a message know its size.
  Status Exchange(const std::vector<SendOp>& sends, const std::vector<RecvOp>& recvs,
                  Clock::time_point d);

  std::unique_ptr<DeviceCollectives> transport_;
  const int rank_;
  const int size_;
  const std::string backend_;
  std::atomic<std::chrono::milliseconds> timeout_;
  std::atomic<uint64_t> bytes_sent_{0};
  Status broken_;
  std::shared_ptr<void> keep_alive_;
};

Status DeviceCollectivesGroup::AllGatherFixed(const char* in, size_t bytes, std::string* out,
                                              Clock::time_point d) {
  out->assign(bytes * size_, '\0');
  const size_t piece = std::max<size_t>(1, transport_->max_transfer_bytes() / size_);
  std::string round;
  for (size_t off = 0; off < bytes; off += piece) {
    const size_t n = std::min(piece, bytes - off);
    round.resize(n * size_);
    DCPKV_RETURN_IF_ERROR(transport_->AllGather(in + off, round.data(), n, d));
    bytes_sent_ += n;
    for (int r = 0; r < size_; ++r) std::memcpy(out->data() + r * bytes + off, &round[r * n], n);
  }
  return Status::Ok();
}

Status DeviceCollectivesGroup::BroadcastChunked(char* data, size_t bytes, int root,
                                                Clock::time_point d) {
  const size_t piece = transport_->max_transfer_bytes();
  for (size_t off = 0; off < bytes; off += piece) {
    const size_t n = std::min(piece, bytes - off);
    DCPKV_RETURN_IF_ERROR(transport_->Broadcast(data + off, n, root, d));
    if (rank_ == root) bytes_sent_ += n;
  }
  return Status::Ok();
}

Status DeviceCollectivesGroup::Exchange(const std::vector<SendOp>& sends,
                                        const std::vector<RecvOp>& recvs, Clock::time_point d) {
  const size_t piece = std::max<size_t>(
      1, transport_->max_transfer_bytes() / static_cast<size_t>(std::max(1, size_ - 1)));
  size_t rounds = 0;
  for (const SendOp& s : sends) rounds = std::max(rounds, (s.bytes + piece - 1) / piece);
  for (const RecvOp& r : recvs) rounds = std::max(rounds, (r.bytes + piece - 1) / piece);
  std::vector<SendOp> round_sends;
  std::vector<RecvOp> round_recvs;
  for (size_t j = 0; j < rounds; ++j) {
    const size_t off = j * piece;
    round_sends.clear();
    round_recvs.clear();
    uint64_t sent = 0;
    for (const SendOp& s : sends) {
      if (s.bytes <= off) continue;
      const size_t n = std::min(piece, s.bytes - off);
      round_sends.push_back(SendOp{s.peer, static_cast<const char*>(s.data) + off, n});
      sent += n;
    }
    for (const RecvOp& r : recvs) {
      if (r.bytes <= off) continue;
      round_recvs.push_back(
          RecvOp{r.peer, static_cast<char*>(r.data) + off, std::min(piece, r.bytes - off)});
    }
    DCPKV_RETURN_IF_ERROR(transport_->SendRecv(round_sends, round_recvs, d));
    bytes_sent_ += sent;
  }
  return Status::Ok();
}

StatusOr<std::vector<std::string>> DeviceCollectivesGroup::Gather(std::string_view data, int root) {
  DCPKV_RETURN_IF_ERROR(CheckRoot("Gather", root));
  if (size_ == 1) return std::vector<std::string>{std::string(data)};
  return Run<std::vector<std::string>>(
      "Gather", [&](Clock::time_point d) -> StatusOr<std::vector<std::string>> {
        if (rank_ != root) {
          const std::string header = EncodeSize(data.size());
          DCPKV_RETURN_IF_ERROR(Exchange({SendOp{root, header.data(), kHeader}}, {}, d));
          DCPKV_RETURN_IF_ERROR(Exchange({SendOp{root, data.data(), data.size()}}, {}, d));
          return std::vector<std::string>();
        }
        std::vector<std::string> headers(size_, std::string(kHeader, '\0'));
        std::vector<RecvOp> recvs;
        for (int r = 0; r < size_; ++r) {
          if (r != root) recvs.push_back(RecvOp{r, headers[r].data(), kHeader});
        }
        DCPKV_RETURN_IF_ERROR(Exchange({}, recvs, d));
        std::vector<std::string> out(size_);
        recvs.clear();
        for (int r = 0; r < size_; ++r) {
          if (r == root) continue;
          const uint64_t n = DecodeSize(headers[r].data());
          DCPKV_RETURN_IF_ERROR(CheckAnnounced(r, n));
          out[r].resize(n);
          recvs.push_back(RecvOp{r, out[r].data(), out[r].size()});
        }
        DCPKV_RETURN_IF_ERROR(Exchange({}, recvs, d));
        out[root] = std::string(data);
        return out;
      });
}

StatusOr<std::string> DeviceCollectivesGroup::Scatter(const std::vector<std::string>& data,
                                                      int root) {
  DCPKV_RETURN_IF_ERROR(CheckRoot("Scatter", root));
  if (rank_ == root && data.size() != static_cast<size_t>(size_)) {
    return InvalidArgumentError("Scatter: root has " + std::to_string(data.size()) +
                                " buffers for a group of " + std::to_string(size_) + " ranks");
  }
  if (size_ == 1) return data[0];
  return Run<std::string>("Scatter", [&](Clock::time_point d) -> StatusOr<std::string> {
    if (rank_ == root) {
      std::vector<std::string> headers(size_);
      std::vector<SendOp> sends;
      for (int r = 0; r < size_; ++r) {
        if (r == root) continue;
        headers[r] = EncodeSize(data[r].size());
        sends.push_back(SendOp{r, headers[r].data(), kHeader});
      }
      DCPKV_RETURN_IF_ERROR(Exchange(sends, {}, d));
      sends.clear();
      for (int r = 0; r < size_; ++r) {
        if (r != root) sends.push_back(SendOp{r, data[r].data(), data[r].size()});
      }
      DCPKV_RETURN_IF_ERROR(Exchange(sends, {}, d));
      return data[root];
    }
    std::string header(kHeader, '\0');
    DCPKV_RETURN_IF_ERROR(Exchange({}, {RecvOp{root, header.data(), kHeader}}, d));
    const uint64_t n = DecodeSize(header.data());
    DCPKV_RETURN_IF_ERROR(CheckAnnounced(root, n));
    std::string out(n, '\0');
    DCPKV_RETURN_IF_ERROR(Exchange({}, {RecvOp{root, out.data(), out.size()}}, d));
    return out;
  });
}

StatusOr<std::string> DeviceCollectivesGroup::Broadcast(std::string_view data, int root) {
  DCPKV_RETURN_IF_ERROR(CheckRoot("Broadcast", root));
  // A group of one runs the primitives too, so that a one-device job exercises its device.
  return Run<std::string>("Broadcast", [&](Clock::time_point d) -> StatusOr<std::string> {
    std::string header = EncodeSize(rank_ == root ? data.size() : 0);
    DCPKV_RETURN_IF_ERROR(BroadcastChunked(header.data(), kHeader, root, d));
    const uint64_t n = DecodeSize(header.data());
    DCPKV_RETURN_IF_ERROR(CheckAnnounced(root, n));
    std::string out = rank_ == root ? std::string(data) : std::string(n, '\0');
    DCPKV_RETURN_IF_ERROR(BroadcastChunked(out.data(), n, root, d));
    return out;
  });
}

StatusOr<std::vector<std::string>> DeviceCollectivesGroup::AllGather(std::string_view data) {
  return Run<std::vector<std::string>>(
      "AllGather", [&](Clock::time_point d) -> StatusOr<std::vector<std::string>> {
        const std::string header = EncodeSize(data.size());
        std::string headers;
        DCPKV_RETURN_IF_ERROR(AllGatherFixed(header.data(), kHeader, &headers, d));
        std::vector<uint64_t> sizes(size_);
        uint64_t longest = 0;
        for (int r = 0; r < size_; ++r) {
          sizes[r] = DecodeSize(&headers[r * kHeader]);
          DCPKV_RETURN_IF_ERROR(CheckAnnounced(r, sizes[r]));
          longest = std::max(longest, sizes[r]);
        }
        // Payloads padded to the longest, gathered, and cut back to their sizes.
        std::string padded(data);
        padded.resize(longest, '\0');
        std::string gathered;
        DCPKV_RETURN_IF_ERROR(AllGatherFixed(padded.data(), longest, &gathered, d));
        std::vector<std::string> out(size_);
        for (int r = 0; r < size_; ++r) out[r] = gathered.substr(r * longest, sizes[r]);
        return out;
      });
}

Status DeviceCollectivesGroup::Barrier() {
  StatusOr<bool> done = Run<bool>("Barrier", [&](Clock::time_point d) -> StatusOr<bool> {
    const char token = 1;
    std::string tokens;
    DCPKV_RETURN_IF_ERROR(AllGatherFixed(&token, 1, &tokens, d));
    return true;
  });
  return done.status();
}

Status DeviceCollectivesGroup::Handshake(Clock::time_point deadline) {
  const auto timeout = timeout_.load();
  timeout_.store(std::max(std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now()),
                          std::chrono::milliseconds(1)));
  StatusOr<bool> agreed = Run<bool>("handshake", [&](Clock::time_point d) -> StatusOr<bool> {
    const std::string mine = EncodeSize(transport_->max_transfer_bytes());
    std::string all;
    DCPKV_RETURN_IF_ERROR(AllGatherFixed(mine.data(), kHeader, &all, d));
    for (int r = 0; r < size_; ++r) {
      const uint64_t theirs = DecodeSize(&all[r * kHeader]);
      if (theirs != transport_->max_transfer_bytes()) {
        return InvalidArgumentError("max_transfer_bytes differs between ranks: " +
                                    std::to_string(transport_->max_transfer_bytes()) + " on rank " +
                                    std::to_string(rank_) + ", " + std::to_string(theirs) +
                                    " on rank " + std::to_string(r));
      }
    }
    return true;
  });
  timeout_.store(timeout);
  bytes_sent_.store(0);
  return agreed.status();
}

}  // namespace

StatusOr<std::unique_ptr<ProcessGroup>> NewDeviceCollectivesGroup(
    std::unique_ptr<DeviceCollectives> transport, DeviceGroupOptions options,
    Clock::time_point deadline) {
  if (transport == nullptr) return InvalidArgumentError("NewDeviceCollectivesGroup: no transport");
  if (transport->max_transfer_bytes() < static_cast<size_t>(std::max(transport->size(), 1))) {
    return InvalidArgumentError(
        "max_transfer_bytes " + std::to_string(transport->max_transfer_bytes()) +
        " is less than the group's size " + std::to_string(transport->size()));
  }
  auto group = std::make_unique<DeviceCollectivesGroup>(std::move(transport), std::move(options));
  DCPKV_RETURN_IF_ERROR(group->Handshake(deadline));
  return std::unique_ptr<ProcessGroup>(std::move(group));
}

}  // namespace dcpkv::nccl

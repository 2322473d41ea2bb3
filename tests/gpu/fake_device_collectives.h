// A CPU fake of the NCCL group's transport (api/nccl_transport.h): ranks are threads of this
// process sharing a FakeWorld. It enforces what NCCL would: every call moves at most
// max_transfer_bytes per rank, all-gather and broadcast sizes agree across ranks, and each
// receive matches the peer's next send to this rank in size.
#ifndef DCPKV_TESTS_GPU_FAKE_DEVICE_COLLECTIVES_H_
#define DCPKV_TESTS_GPU_FAKE_DEVICE_COLLECTIVES_H_

#include <condition_variable>
#include <cstring>
#include <deque>
#include <functional>
#include <latch>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "dcpkv/api/nccl_transport.h"

namespace dcpkv::testing {

class FakeWorld {
 public:
  explicit FakeWorld(int size) : size_(size) {}
  int size() const { return size_; }

 private:
  friend class FakeCollectives;
  struct Collective {
    std::vector<std::string> parts;
    std::vector<bool> arrived;
    int taken = 0;
  };
  const int size_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::map<uint64_t, Collective> collectives_;                   // GUARDED_BY(mu_), by sequence
  std::map<std::pair<int, int>, std::deque<std::string>> mail_;  // GUARDED_BY(mu_), (from, to)
  bool aborted_ = false;                                         // GUARDED_BY(mu_)
};

class FakeCollectives final : public nccl::DeviceCollectives {
 public:
  FakeCollectives(std::shared_ptr<FakeWorld> world, int rank, size_t max_transfer_bytes)
      : world_(std::move(world)), rank_(rank), max_(max_transfer_bytes) {}

  int rank() const override { return rank_; }
  int size() const override { return world_->size(); }
  size_t max_transfer_bytes() const override { return max_; }
  // Primitive calls made so far (all kinds).
  int calls() const { return calls_; }

  Status AllGather(const void* in, void* out, size_t bytes,
                   nccl::Clock::time_point deadline) override {
    DCPKV_RETURN_IF_ERROR(Fits("AllGather", bytes * size()));
    std::vector<std::string> parts;
    DCPKV_RETURN_IF_ERROR(
        Collect(std::string(static_cast<const char*>(in), bytes), -1, deadline, &parts));
    for (int r = 0; r < size(); ++r) {
      if (parts[r].size() != bytes) {
        return InternalError("AllGather: rank " + std::to_string(r) + " gave " +
                             std::to_string(parts[r].size()) + " bytes, rank " +
                             std::to_string(rank_) + " " + std::to_string(bytes));
      }
      std::memcpy(static_cast<char*>(out) + r * bytes, parts[r].data(), bytes);
    }
    return Status::Ok();
  }

  Status Broadcast(void* data, size_t bytes, int root, nccl::Clock::time_point deadline) override {
    DCPKV_RETURN_IF_ERROR(Fits("Broadcast", bytes));
    std::vector<std::string> parts;
    DCPKV_RETURN_IF_ERROR(
        Collect(std::string(static_cast<const char*>(data), bytes), root, deadline, &parts));
    if (parts[root].size() != bytes) {
      return InternalError("Broadcast: root sent " + std::to_string(parts[root].size()) +
                           " bytes, rank " + std::to_string(rank_) + " expected " +
                           std::to_string(bytes));
    }
    std::memcpy(data, parts[root].data(), bytes);
    return Status::Ok();
  }

  Status SendRecv(const std::vector<nccl::SendOp>& sends, const std::vector<nccl::RecvOp>& recvs,
                  nccl::Clock::time_point deadline) override {
    ++calls_;
    size_t out = 0, in = 0;
    for (const nccl::SendOp& s : sends) out += s.bytes;
    for (const nccl::RecvOp& r : recvs) in += r.bytes;
    DCPKV_RETURN_IF_ERROR(Fits("SendRecv sends", out));
    DCPKV_RETURN_IF_ERROR(Fits("SendRecv receives", in));
    std::unique_lock<std::mutex> lock(world_->mu_);
    for (const nccl::SendOp& s : sends) {
      world_->mail_[{rank_, s.peer}].emplace_back(static_cast<const char*>(s.data), s.bytes);
    }
    world_->cv_.notify_all();
    for (const nccl::RecvOp& r : recvs) {
      std::deque<std::string>& box = world_->mail_[{r.peer, rank_}];
      if (!world_->cv_.wait_until(lock, deadline,
                                  [&] { return world_->aborted_ || !box.empty(); })) {
        return DeadlineExceededError("rank " + std::to_string(rank_) + " waited for rank " +
                                     std::to_string(r.peer));
      }
      if (box.empty()) return UnavailableError("a peer aborted");
      if (box.front().size() != r.bytes) {
        return InternalError("rank " + std::to_string(rank_) + " expected " +
                             std::to_string(r.bytes) + " bytes from rank " +
                             std::to_string(r.peer) + ", which sent " +
                             std::to_string(box.front().size()));
      }
      std::memcpy(r.data, box.front().data(), r.bytes);
      box.pop_front();
    }
    return Status::Ok();
  }

  void Abort() override {
    std::lock_guard<std::mutex> lock(world_->mu_);
    world_->aborted_ = true;
    world_->cv_.notify_all();
  }

 private:
  Status Fits(const char* what, size_t bytes) const {
    if (bytes <= max_) return Status::Ok();
    return InternalError(std::string(what) + " of " + std::to_string(bytes) +
                         " bytes exceeds max_transfer_bytes " + std::to_string(max_));
  }

  // The seq-th all-gather or broadcast: waits for every rank's part (root >= 0: only root's).
  Status Collect(std::string mine, int root, nccl::Clock::time_point deadline,
                 std::vector<std::string>* parts) {
    ++calls_;
    const uint64_t seq = seq_++;
    std::unique_lock<std::mutex> lock(world_->mu_);
    FakeWorld::Collective& c = world_->collectives_[seq];
    c.parts.resize(size());
    c.arrived.resize(size(), false);
    c.parts[rank_] = std::move(mine);
    c.arrived[rank_] = true;
    world_->cv_.notify_all();
    auto complete = [&] {
      if (root >= 0) return static_cast<bool>(c.arrived[root]);
      for (bool a : c.arrived) {
        if (!a) return false;
      }
      return true;
    };
    // A peer's abort fails only the ranks still waiting (as NCCL's abort is local).
    if (!world_->cv_.wait_until(lock, deadline, [&] { return complete() || world_->aborted_; })) {
      return DeadlineExceededError("rank " + std::to_string(rank_) + " waited for its peers");
    }
    if (!complete()) return UnavailableError("a peer aborted");
    *parts = c.parts;
    // The last rank to take its copy removes the entry (a broadcast's root may leave early,
    // so every rank takes once).
    if (++c.taken == size()) world_->collectives_.erase(seq);
    return Status::Ok();
  }

  std::shared_ptr<FakeWorld> world_;
  const int rank_;
  const size_t max_;
  uint64_t seq_ = 0;
  int calls_ = 0;
};

// Runs body(group, rank) on `world` threads, each with a framed group ("nccl" backend, CPU
// unsupported) over a FakeCollectives of the same FakeWorld. Groups are destroyed after every
// body has returned. max_transfer[r] is rank r's limit (one value: every rank's).
inline void RunOnFakeNcclRanks(
    int world, std::vector<size_t> max_transfer, std::chrono::milliseconds timeout,
    const std::function<void(StatusOr<std::unique_ptr<ProcessGroup>>&, int rank)>& body) {
  auto shared = std::make_shared<FakeWorld>(world);
  if (max_transfer.size() == 1) max_transfer.assign(world, max_transfer[0]);
  std::latch done(world);
  std::vector<std::thread> threads;
  for (int rank = 0; rank < world; ++rank) {
    threads.emplace_back([&, rank] {
      nccl::DeviceGroupOptions options;
      options.timeout = timeout;
      StatusOr<std::unique_ptr<ProcessGroup>> group = nccl::NewDeviceCollectivesGroup(
          std::make_unique<FakeCollectives>(shared, rank, max_transfer[rank]), options,
          nccl::Clock::now() + timeout);
      body(group, rank);
      done.arrive_and_wait();
    });
  }
  for (std::thread& t : threads) t.join();
}

}  // namespace dcpkv::testing

#endif  // DCPKV_TESTS_GPU_FAKE_DEVICE_COLLECTIVES_H_

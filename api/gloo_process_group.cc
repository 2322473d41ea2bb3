// The gloo ProcessGroup: rendezvous through TcpStoreServer, collectives as point-to-point
// transfers of gloo unbound buffers. See gloo_process_group.h.
#include "dcpkv/gloo_process_group.h"

#include <gloo/context.h>
#include <gloo/rendezvous/context.h>
#include <gloo/rendezvous/store.h>
#include <gloo/transport/tcp/attr.h>
#include <gloo/transport/tcp/device.h>

#include <algorithm>
#include <atomic>
#include <map>
#include <utility>

#include "gloo_call.h"
#include "group_options.h"
#include "tcp_store.h"

namespace dcpkv {
namespace {

using gloo_internal::Call;
using gloo_internal::Clock;
using gloo_internal::CurrentExceptionStatus;
using gloo_internal::kPayload;
using gloo_internal::kSizeHeader;
using gloo_internal::PeerWatch;
using gloo_internal::ScopedSigpipeBlock;
using gloo_internal::StoreError;

// The rendezvous store gloo's connectFullMesh uses: keys under `prefix` on a TcpStoreServer,
// every wait bounded by one deadline for the whole rendezvous.
class GlooStore final : public gloo::rendezvous::Store {
 public:
  GlooStore(std::shared_ptr<TcpStoreClient> client, std::string prefix, Clock::time_point deadline,
            std::chrono::milliseconds timeout)
      : client_(std::move(client)),
        prefix_(std::move(prefix)),
        deadline_(deadline),
        timeout_(timeout) {}

  void set(const std::string& key, const std::vector<char>& data) override {
    Check(client_->Set(prefix_ + key, std::string_view(data.data(), data.size()), deadline_), key);
  }

  std::vector<char> get(const std::string& key) override {
    StatusOr<std::string> value = client_->WaitGet(prefix_ + key, deadline_);
    Check(value.status(), key);
    return std::vector<char>(value->begin(), value->end());
  }

  void wait(const std::vector<std::string>& keys) override { wait(keys, timeout_); }

  void wait(const std::vector<std::string>& keys,
            const std::chrono::milliseconds& timeout) override {
    const auto deadline = std::min(deadline_, Clock::now() + timeout);
    for (const std::string& key : keys) {
      Check(client_->WaitGet(prefix_ + key, deadline).status(), key);
    }
  }

 private:
  // Throws a StoreError for a failed status; names the rank a timed-out key belongs to (gloo's
  // keys are "<rank>" and "rank_<rank>").
  void Check(const Status& s, const std::string& key) const {
    if (s.ok()) return;
    if (s.code() == StatusCode::kDeadlineExceeded) {
      std::string rank = key.rfind("rank_", 0) == 0 ? key.substr(5) : key;
      const auto is_digit = [](char c) { return c >= '0' && c <= '9'; };
      if (!rank.empty() && std::all_of(rank.begin(), rank.end(), is_digit)) {
        throw StoreError(DeadlineExceededError(
            "rank " + rank + " did not join within " + std::to_string(timeout_.count()) +
            " ms (rendezvous key '" + prefix_ + key + "' missing)"));
      }
    }
    throw StoreError(s);
  }

  std::shared_ptr<TcpStoreClient> client_;
  const std::string prefix_;
  const Clock::time_point deadline_;
  const std::chrono::milliseconds timeout_;
};

// What a group shares with its subgroups.
struct Shared {
  std::shared_ptr<TcpStoreServer> server;  // set where this process runs the server
  std::shared_ptr<TcpStoreClient> store;
  std::shared_ptr<gloo::transport::Device> device;
};

// Connects rank `rank` of a group of `size` (> 1) to its peers through the keys under
// `key_prefix`, giving up at `deadline`; the group's collectives then wait up to `timeout`.
StatusOr<std::unique_ptr<ProcessGroup>> Rendezvous(int rank, int size, Clock::time_point deadline,
                                                   std::chrono::milliseconds timeout, Shared shared,
                                                   std::string key_prefix);

class GlooGroup final : public ProcessGroup {
 public:
  // `context` and `watch` are null for a group of one rank.
  GlooGroup(int rank, int size, std::chrono::milliseconds timeout, Shared shared,
            std::shared_ptr<gloo::Context> context, std::unique_ptr<PeerWatch> watch,
            std::string key_prefix)
      : rank_(rank),
        size_(size),
        timeout_(timeout),
        shared_(std::move(shared)),
        context_(std::move(context)),
        watch_(std::move(watch)),
        key_prefix_(std::move(key_prefix)) {}

  ~GlooGroup() override {
    ScopedSigpipeBlock block;
    watch_.reset();
    context_.reset();
  }

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string_view backend() const override { return "gloo"; }
  bool supports_cpu() const override { return true; }
  std::chrono::milliseconds timeout() const override { return timeout_.load(); }
  void set_timeout(std::chrono::milliseconds timeout) override { timeout_.store(timeout); }
  uint64_t bytes_sent() const override { return bytes_sent_.load(); }

  StatusOr<std::vector<std::string>> Gather(std::string_view data, int root) override;
  StatusOr<std::string> Scatter(const std::vector<std::string>& data, int root) override;
  StatusOr<std::string> Broadcast(std::string_view data, int root) override;
  StatusOr<std::vector<std::string>> AllGather(std::string_view data) override;
  Status Barrier() override;

  StatusOr<std::unique_ptr<ProcessGroup>> Subgroup(const std::vector<int>& ranks);

  // The last step of the rendezvous: a Barrier that must end by `deadline`; not counted in
  // bytes_sent().
  Status FinishRendezvous(Clock::time_point deadline) {
    const auto timeout = timeout_.load();
    timeout_.store(std::max(std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now()),
                            std::chrono::milliseconds(1)));
    Status s = Barrier();
    timeout_.store(timeout);
    bytes_sent_.store(0);
    return s;
  }

 private:
  Status CheckRoot(std::string_view name, int root) const {
    if (root >= 0 && root < size_) return Status::Ok();
    return InvalidArgumentError(std::string(name) + ": root " + std::to_string(root) +
                                " is not a rank of this group of " + std::to_string(size_));
  }

  // Runs one collective of a group of more than one rank: fails fast if the group is broken;
  // otherwise runs body(call) and, if it fails, marks the group broken, reports the failure at
  // the rendezvous server and closes this rank's connections (its peers then fail at once
  // instead of at their deadline). A failure on a peer's account (its connection closed, or it
  // did not answer in time) gets that peer's own report added when one comes in time, so that
  // a rank whose coordinator gave up on a lost rank names the lost rank, not the coordinator.
  template <typename T, typename Body>
  StatusOr<T> Run(std::string_view name, Body&& body) {
    if (!broken_.ok()) {
      return AbortedError(std::string(name) + ": the gloo group (rank " + std::to_string(rank_) +
                          " of " + std::to_string(size_) +
                          ") is broken by an earlier failure: " + broken_.ToString());
    }
    ScopedSigpipeBlock block;
    Call call(name, rank_, context_.get(), watch_.get(), seq_++, timeout_.load(), &bytes_sent_);
    StatusOr<T> result = [&]() -> StatusOr<T> {
      try {
        return body(call);
      } catch (...) {
        return CurrentExceptionStatus(name);
      }
    }();
    if (result.ok()) return result;
    const bool reported = PublishFailure(result.status());
    try {
      context_->closeConnections();
    } catch (...) {
    }
    // A server this rank cannot reach has no report of the peer's for it either.
    broken_ = reported ? WithPeerReport(result.status(), call.failed_peer()) : result.status();
    return broken_;
  }

  // The rendezvous key of rank `rank`'s failure report. A group fails once (it is broken from
  // then on), so one key per rank is enough.
  std::string FailureKey(int rank) const { return key_prefix_ + "failed/" + std::to_string(rank); }

  // Leaves this rank's failure at the rendezvous server for its peers (best effort, at most
  // kPublishWait: the server may be unreachable, which is often why the call failed). False if
  // the server did not take it.
  bool PublishFailure(const Status& failure) {
    if (shared_.store == nullptr) return false;
    const auto deadline = Clock::now() + std::min(kPublishWait, timeout_.load());
    const Status s = shared_.store->Set(FailureKey(rank_), failure.message(), deadline);
    shared_.store->Disconnect();
    return s.ok();
  }

  // `failure` with the report of `peer` added, if `failure` is on the peer's account and the
  // peer reports within kPeerReportWait; otherwise `failure` as it is.
  Status WithPeerReport(const Status& failure, int peer) {
    if (shared_.store == nullptr || peer < 0 || peer == rank_ ||
        (failure.code() != StatusCode::kUnavailable &&
         failure.code() != StatusCode::kDeadlineExceeded)) {
      return failure;
    }
    const auto deadline = Clock::now() + std::min(kPeerReportWait, timeout_.load());
    StatusOr<std::string> report = shared_.store->WaitGet(FailureKey(peer), deadline);
    shared_.store->Disconnect();
    if (!report.ok()) return failure;
    return Status(failure.code(),
                  failure.message() + "; rank " + std::to_string(peer) + " reported: " + *report);
  }

  static constexpr std::chrono::milliseconds kPublishWait{1000};
  static constexpr std::chrono::milliseconds kPeerReportWait{2000};

  const int rank_;
  const int size_;
  std::atomic<std::chrono::milliseconds> timeout_;
  Shared shared_;                           // outlives context_, which uses the device
  std::shared_ptr<gloo::Context> context_;  // null if size_ == 1
  std::unique_ptr<PeerWatch> watch_;        // null if size_ == 1; uses context_
  const std::string key_prefix_;
  uint64_t seq_ = 0;  // collectives so far: slots of the next one
  std::atomic<uint64_t> bytes_sent_{0};
  Status broken_;
  std::map<std::vector<int>, int> subgroups_made_;  // per rank list
};

// Once every peer's size header has been posted for receipt: waits for the sizes, receives
// each peer's payload (self's is `own`, at index `self`) and waits for every transfer.
StatusOr<std::vector<std::string>> ReceivePayloads(Call& call, const std::vector<uint64_t>& sizes,
                                                   int self, std::string_view own) {
  DCPKV_RETURN_IF_ERROR(call.WaitRecvs());
  std::vector<std::string> out(sizes.size());
  out[self] = std::string(own);
  for (int r = 0; r < static_cast<int>(sizes.size()); ++r) {
    if (r == self) continue;
    DCPKV_RETURN_IF_ERROR(call.CheckSize(r, sizes[r]));
    out[r].resize(sizes[r]);
    DCPKV_RETURN_IF_ERROR(call.Recv(r, out[r].data(), out[r].size(), kPayload));
  }
  DCPKV_RETURN_IF_ERROR(call.WaitAll());
  return out;
}

StatusOr<std::vector<std::string>> GlooGroup::Gather(std::string_view data, int root) {
  DCPKV_RETURN_IF_ERROR(CheckRoot("Gather", root));
  if (size_ == 1) return std::vector<std::string>{std::string(data)};
  return Run<std::vector<std::string>>(
      "Gather", [&](Call& call) -> StatusOr<std::vector<std::string>> {
        if (rank_ != root) {
          DCPKV_RETURN_IF_ERROR(call.SendSize(root, data.size()));
          DCPKV_RETURN_IF_ERROR(call.Send(root, data.data(), data.size(), kPayload));
          DCPKV_RETURN_IF_ERROR(call.WaitAll());
          return std::vector<std::string>();
        }
        std::vector<uint64_t> sizes(size_);
        for (int r = 0; r < size_; ++r) {
          if (r != root) DCPKV_RETURN_IF_ERROR(call.RecvSize(r, &sizes[r]));
        }
        return ReceivePayloads(call, sizes, root, data);
      });
}

StatusOr<std::string> GlooGroup::Scatter(const std::vector<std::string>& data, int root) {
  DCPKV_RETURN_IF_ERROR(CheckRoot("Scatter", root));
  if (rank_ == root && data.size() != static_cast<size_t>(size_)) {
    return InvalidArgumentError("Scatter: root has " + std::to_string(data.size()) +
                                " buffers for a group of " + std::to_string(size_) + " ranks");
  }
  if (size_ == 1) return data[0];
  return Run<std::string>("Scatter", [&](Call& call) -> StatusOr<std::string> {
    if (rank_ == root) {
      for (int r = 0; r < size_; ++r) {
        if (r == root) continue;
        DCPKV_RETURN_IF_ERROR(call.SendSize(r, data[r].size()));
        DCPKV_RETURN_IF_ERROR(call.Send(r, data[r].data(), data[r].size(), kPayload));
      }
      DCPKV_RETURN_IF_ERROR(call.WaitAll());
      return data[root];
    }
    uint64_t size = 0;
    DCPKV_RETURN_IF_ERROR(call.RecvSize(root, &size));
    DCPKV_RETURN_IF_ERROR(call.WaitRecvs());
    DCPKV_RETURN_IF_ERROR(call.CheckSize(root, size));
    std::string out(size, '\0');
    DCPKV_RETURN_IF_ERROR(call.Recv(root, out.data(), out.size(), kPayload));
    DCPKV_RETURN_IF_ERROR(call.WaitAll());
    return out;
  });
}

StatusOr<std::string> GlooGroup::Broadcast(std::string_view data, int root) {
  DCPKV_RETURN_IF_ERROR(CheckRoot("Broadcast", root));
  if (size_ == 1) return std::string(data);
  return Run<std::string>("Broadcast", [&](Call& call) -> StatusOr<std::string> {
    if (rank_ == root) {
      for (int r = 0; r < size_; ++r) {
        if (r == root) continue;
        DCPKV_RETURN_IF_ERROR(call.SendSize(r, data.size()));
        DCPKV_RETURN_IF_ERROR(call.Send(r, data.data(), data.size(), kPayload));
      }
      DCPKV_RETURN_IF_ERROR(call.WaitAll());
      return std::string(data);
    }
    uint64_t size = 0;
    DCPKV_RETURN_IF_ERROR(call.RecvSize(root, &size));
    DCPKV_RETURN_IF_ERROR(call.WaitRecvs());
    DCPKV_RETURN_IF_ERROR(call.CheckSize(root, size));
    std::string out(size, '\0');
    DCPKV_RETURN_IF_ERROR(call.Recv(root, out.data(), out.size(), kPayload));
    DCPKV_RETURN_IF_ERROR(call.WaitAll());
    return out;
  });
}

StatusOr<std::vector<std::string>> GlooGroup::AllGather(std::string_view data) {
  if (size_ == 1) return std::vector<std::string>{std::string(data)};
  return Run<std::vector<std::string>>(
      "AllGather", [&](Call& call) -> StatusOr<std::vector<std::string>> {
        std::vector<uint64_t> sizes(size_);
        for (int r = 0; r < size_; ++r) {
          if (r == rank_) continue;
          DCPKV_RETURN_IF_ERROR(call.SendSize(r, data.size()));
          DCPKV_RETURN_IF_ERROR(call.Send(r, data.data(), data.size(), kPayload));
          DCPKV_RETURN_IF_ERROR(call.RecvSize(r, &sizes[r]));
        }
        return ReceivePayloads(call, sizes, rank_, data);
      });
}

Status GlooGroup::Barrier() {
  if (size_ == 1) return Status::Ok();
  // Every rank sends a token to rank 0, which answers each once it has them all.
  StatusOr<bool> done = Run<bool>("Barrier", [&](Call& call) -> StatusOr<bool> {
    static const char kToken = 1;
    std::vector<char> tokens(size_);
    if (rank_ != 0) {
      DCPKV_RETURN_IF_ERROR(call.Send(0, &kToken, 1, kSizeHeader));
      DCPKV_RETURN_IF_ERROR(call.Recv(0, &tokens[0], 1, kPayload));
      DCPKV_RETURN_IF_ERROR(call.WaitAll());
      return true;
    }
    for (int r = 1; r < size_; ++r) {
      DCPKV_RETURN_IF_ERROR(call.Recv(r, &tokens[r], 1, kSizeHeader));
    }
    DCPKV_RETURN_IF_ERROR(call.WaitRecvs());
    for (int r = 1; r < size_; ++r) DCPKV_RETURN_IF_ERROR(call.Send(r, &kToken, 1, kPayload));
    DCPKV_RETURN_IF_ERROR(call.WaitSends());
    return true;
  });
  return done.status();
}

StatusOr<std::unique_ptr<ProcessGroup>> GlooGroup::Subgroup(const std::vector<int>& ranks) {
  if (ranks.empty()) return InvalidArgumentError("CreateGlooSubgroup: the rank list is empty");
  int new_rank = -1;
  std::vector<bool> seen(size_);
  std::string list;
  for (size_t i = 0; i < ranks.size(); ++i) {
    const int r = ranks[i];
    if (r < 0 || r >= size_) {
      return InvalidArgumentError("CreateGlooSubgroup: rank " + std::to_string(r) +
                                  " is not a rank of the parent group of " + std::to_string(size_));
    }
    if (seen[r]) {
      return InvalidArgumentError("CreateGlooSubgroup: rank " + std::to_string(r) +
                                  " is listed twice");
    }
    seen[r] = true;
    if (r == rank_) new_rank = static_cast<int>(i);
    list += (i == 0 ? "" : ",") + std::to_string(r);
  }
  if (new_rank < 0) {
    return InvalidArgumentError("CreateGlooSubgroup: rank " + std::to_string(rank_) +
                                " is not a member of the subgroup [" + list + "]");
  }
  const int size = static_cast<int>(ranks.size());
  if (size == 1) {
    return std::unique_ptr<ProcessGroup>(std::make_unique<GlooGroup>(
        0, 1, timeout_.load(), Shared{}, nullptr, nullptr, std::string()));
  }
  const int n = subgroups_made_[ranks]++;
  if (list.size() > 256) {
    // Long lists: a 64-bit FNV-1a hash of the list keeps the keys short.
    uint64_t h = 14695981039346656037ull;
    for (char c : list) h = (h ^ static_cast<uint8_t>(c)) * 1099511628211ull;
    list = std::to_string(size) + "ranks-" + std::to_string(h);
  }
  const auto timeout = timeout_.load();
  return Rendezvous(new_rank, size, Clock::now() + timeout, timeout, shared_,
                    key_prefix_ + "sub[" + list + "]#" + std::to_string(n) + "/");
}

StatusOr<std::unique_ptr<ProcessGroup>> Rendezvous(int rank, int size, Clock::time_point deadline,
                                                   std::chrono::milliseconds timeout, Shared shared,
                                                   std::string key_prefix) {
  const std::string where = "gloo rendezvous of rank " + std::to_string(rank) + " of " +
                            std::to_string(size) + " (keys '" + key_prefix + "')";
  const auto left = std::max(std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now()),
                             std::chrono::milliseconds(1));
  ScopedSigpipeBlock block;
  std::shared_ptr<gloo::rendezvous::Context> context;
  std::unique_ptr<PeerWatch> watch;
  try {
    GlooStore store(shared.store, key_prefix, deadline, timeout);
    context = std::make_shared<gloo::rendezvous::Context>(rank, size);
    context->setTimeout(left);  // bounds the connection of each pair
    context->connectFullMesh(store, shared.device);
    watch = std::make_unique<PeerWatch>(context.get(), rank, size);
  } catch (...) {
    shared.store->Disconnect();
    return CurrentExceptionStatus(where);
  }
  shared.store->Disconnect();  // until a subgroup needs the server
  auto group =
      std::make_unique<GlooGroup>(rank, size, timeout, std::move(shared), std::move(context),
                                  std::move(watch), std::move(key_prefix));
  // A rank returns only once every rank is connected: one that then leaves at once (closing
  // its connections) cannot fail a peer that is still connecting.
  DCPKV_RETURN_IF_ERROR(group->FinishRendezvous(deadline).WithContext(where));
  return std::unique_ptr<ProcessGroup>(std::move(group));
}

Status CheckOptions(const GlooProcessGroupOptions& o) {
  DCPKV_RETURN_IF_ERROR(CheckGroupOptions(o.rank, o.world_size, o.timeout));
  if (o.world_size == 1) return Status::Ok();
  if (o.hostname.empty()) return InvalidArgumentError("hostname is empty");
  if (o.server != nullptr) return Status::Ok();
  return CheckRendezvousServer(o.rank, o.master_addr, o.master_port, o.start_server,
                               o.server_protocol);
}

}  // namespace

StatusOr<std::unique_ptr<ProcessGroup>> CreateGlooProcessGroup(
    const GlooProcessGroupOptions& options) {
  DCPKV_RETURN_IF_ERROR(CheckOptions(options).WithContext("CreateGlooProcessGroup"));
  const auto deadline = Clock::now() + options.timeout;
  const std::string key_prefix = "dcpkv/gloo/" + options.prefix + "/";
  if (options.world_size == 1) {
    return std::unique_ptr<ProcessGroup>(
        std::make_unique<GlooGroup>(0, 1, options.timeout, Shared{options.server, nullptr, nullptr},
                                    nullptr, nullptr, key_prefix));
  }
  Shared shared;
  shared.server = options.server;
  std::string host = options.master_addr;
  int port = options.master_port;
  if (shared.server != nullptr) {
    host = shared.server->host();
    port = shared.server->port();
  } else if (options.rank == 0 && options.start_server) {
    DCPKV_ASSIGN_OR_RETURN(shared.server, TcpStoreServer::Start(host, port));
    port = shared.server->port();
  }
  {
    ScopedSigpipeBlock block;  // gloo's event-loop thread inherits it
    try {
      gloo::transport::tcp::attr attr;
      attr.hostname = options.hostname;
      shared.device = gloo::transport::tcp::CreateDevice(attr);
    } catch (...) {
      Status s = CurrentExceptionStatus("cannot create a gloo TCP device for hostname '" +
                                        options.hostname + "'");
      return s.code() == StatusCode::kInternal ? InvalidArgumentError(s.message()) : s;
    }
  }
  const RendezvousProtocol protocol =
      shared.server != nullptr ? RendezvousProtocol::kDcpkv : options.server_protocol;
  DCPKV_ASSIGN_OR_RETURN(shared.store,
                         TcpStoreClient::Connect(host, port, options.timeout, protocol));
  return Rendezvous(options.rank, options.world_size, deadline, options.timeout, std::move(shared),
                    key_prefix);
}

StatusOr<std::unique_ptr<ProcessGroup>> CreateGlooSubgroup(ProcessGroup& parent,
                                                           const std::vector<int>& ranks) {
  auto* gloo_parent = dynamic_cast<GlooGroup*>(&parent);
  if (gloo_parent == nullptr) {
    return InvalidArgumentError("CreateGlooSubgroup: the parent is a '" +
                                std::string(parent.backend()) + "' group, not a gloo group");
  }
  return gloo_parent->Subgroup(ranks);
}

StatusOr<std::unique_ptr<ProcessGroup>> CreateAsyncSaveGroup(ProcessGroup& parent) {
  std::vector<int> all(static_cast<size_t>(parent.size()));
  for (int r = 0; r < parent.size(); ++r) all[r] = r;
  StatusOr<std::unique_ptr<ProcessGroup>> group = CreateGlooSubgroup(parent, all);
  if (!group.ok()) return group.status().WithContext("CreateAsyncSaveGroup");
  return group;
}

}  // namespace dcpkv

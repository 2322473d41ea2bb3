#include "ranks.h"

#include <algorithm>
#include <latch>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "dcpkv/gloo_process_group.h"
#include "stats.h"

namespace dcpkv::bench {
namespace {

// Collectives wait this long: a 1 GiB save of one rank may keep its peers waiting a while.
constexpr std::chrono::minutes kGroupTimeout{10};

Status FirstError(const std::vector<Status>& per_rank) {
  for (size_t r = 0; r < per_rank.size(); ++r) {
    if (!per_rank[r].ok()) return per_rank[r].WithContext("rank " + std::to_string(r));
  }
  return Status::Ok();
}

StatusOr<std::unique_ptr<ProcessGroup>> JoinGroup(const std::shared_ptr<TcpStoreServer>& server,
                                                  int rank, int world) {
  GlooProcessGroupOptions o;
  o.rank = rank;
  o.world_size = world;
  o.server = server;
  o.timeout = kGroupTimeout;
  return CreateGlooProcessGroup(o);
}

}  // namespace

Status RunRanks(int world, const std::function<Status(const Rank&)>& body) {
  if (world == 1) return body(Rank{0, 1, nullptr});
  DCPKV_ASSIGN_OR_RETURN(std::shared_ptr<TcpStoreServer> server,
                         TcpStoreServer::Start("127.0.0.1", 0));
  std::vector<Status> status(world);
  std::latch done(world);
  std::vector<std::thread> threads;
  for (int rank = 0; rank < world; ++rank) {
    threads.emplace_back([&, rank] {
      StatusOr<std::unique_ptr<ProcessGroup>> group = JoinGroup(server, rank, world);
      status[rank] = group.ok() ? body(Rank{rank, world, group->get()}) : group.status();
      done.arrive_and_wait();
    });
  }
  for (std::thread& t : threads) t.join();
  return FirstError(status);
}

StatusOr<double> MaxOnRanks(int world, const std::function<StatusOr<double>(const Rank&)>& step) {
  std::mutex mu;
  double largest = 0;
  DCPKV_RETURN_IF_ERROR(RunRanks(world, [&](const Rank& r) -> Status {
    DCPKV_ASSIGN_OR_RETURN(double seconds, step(r));
    std::lock_guard<std::mutex> lock(mu);
    largest = std::max(largest, seconds);
    return Status::Ok();
  }));
  return largest;
}

StatusOr<double> TimeOnRanks(int world, const std::function<Status(const Rank&)>& step) {
  return MaxOnRanks(world, [&](const Rank& r) -> StatusOr<double> {
    if (r.group != nullptr) DCPKV_RETURN_IF_ERROR(r.group->Barrier());
    Stopwatch watch;
    DCPKV_RETURN_IF_ERROR(step(r));
    return watch.Seconds();
  });
}

}  // namespace dcpkv::bench

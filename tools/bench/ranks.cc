#include "ranks.h"

#include <algorithm>
#include <cstdio>
#include <latch>
#include <map>
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

// The process world of --processes: this process's rank, the group of all processes and the
// groups of the first n of them.
struct ProcessWorld {
  int rank = 0;
  int size = 0;
  std::unique_ptr<ProcessGroup> all;
  std::map<int, std::unique_ptr<ProcessGroup>> first;  // n -> ranks 0..n-1, for n < size

  ProcessGroup* FirstRanks(int n) { return n == size ? all.get() : first.at(n).get(); }
};

ProcessWorld* process_world = nullptr;

// Every process learns every rank's outcome: "" for OK, else the code's byte and the message.
Status ShareOutcome(const Status& mine) {
  const std::string encoded =
      mine.ok() ? std::string() : std::string(1, static_cast<char>(mine.code())) + mine.message();
  DCPKV_ASSIGN_OR_RETURN(std::vector<std::string> all, process_world->all->AllGather(encoded));
  for (size_t r = 0; r < all.size(); ++r) {
    if (all[r].empty()) continue;
    return Status(static_cast<StatusCode>(all[r][0]), all[r].substr(1))
        .WithContext("rank " + std::to_string(r));
  }
  return Status::Ok();
}

Status RunLocalRank(int world, const std::function<Status(const Rank&)>& body) {
  const int me = process_world->rank;
  Status mine;
  if (me < world) {
    mine = body(Rank{me, world, world == 1 ? nullptr : process_world->FirstRanks(world)});
  }
  return ShareOutcome(mine);
}

}  // namespace

Status JoinProcessWorld() {
  if (process_world != nullptr) return FailedPreconditionError("already in a process world");
  DCPKV_ASSIGN_OR_RETURN(GlooProcessGroupOptions options,
                         GlooProcessGroupOptionsFromEnv(kGroupTimeout));
  auto world = std::make_unique<ProcessWorld>();
  world->rank = options.rank;
  world->size = options.world_size;
  DCPKV_ASSIGN_OR_RETURN(world->all, CreateGlooProcessGroup(options));
  for (int n = 2; n < world->size; ++n) {
    if (world->rank >= n) continue;
    std::vector<int> ranks(n);
    for (int r = 0; r < n; ++r) ranks[r] = r;
    DCPKV_ASSIGN_OR_RETURN(world->first[n], CreateGlooSubgroup(*world->all, ranks));
  }
  process_world = world.release();  // lives as long as the process
  return Status::Ok();
}

bool InProcessWorld() { return process_world != nullptr; }
int ProcessRank() { return process_world == nullptr ? 0 : process_world->rank; }
bool IsLocalRank(int rank) { return process_world == nullptr || process_world->rank == rank; }

Status RunRanks(int world, const std::function<Status(const Rank&)>& body) {
  if (process_world != nullptr) {
    if (world > process_world->size) {
      return InvalidArgumentError("a step on " + std::to_string(world) + " ranks in a world of " +
                                  std::to_string(process_world->size) + " processes");
    }
    return RunLocalRank(world, body);
  }
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
  if (process_world != nullptr) {  // the largest of every process's own
    char mine[32];
    std::snprintf(mine, sizeof(mine), "%.17g", largest);
    DCPKV_ASSIGN_OR_RETURN(std::vector<std::string> all, process_world->all->AllGather(mine));
    for (const std::string& s : all) largest = std::max(largest, std::stod(s));
  }
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

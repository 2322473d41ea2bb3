// A gloo world of threads in one test process: RunOnGlooRanks(world, body) runs body on each
// rank's group, one thread per rank.
#ifndef DCPKV_TESTS_UTIL_GLOO_THREADS_H_
#define DCPKV_TESTS_UTIL_GLOO_THREADS_H_

#include <gtest/gtest.h>

#include <chrono>
#include <functional>
#include <latch>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "dcpkv/gloo_process_group.h"
#include "dcpkv/process_group.h"

namespace dcpkv::testing {

// Options for rank `rank` of a world of `world` meeting at `server` (in this process).
inline GlooProcessGroupOptions GlooThreadOptions(const std::shared_ptr<TcpStoreServer>& server,
                                                 int rank, int world,
                                                 std::chrono::milliseconds timeout,
                                                 const std::string& prefix = "") {
  GlooProcessGroupOptions options;
  options.rank = rank;
  options.world_size = world;
  options.timeout = timeout;
  options.server = server;
  options.prefix = prefix;
  return options;
}

// Creates a gloo group of `world` ranks on `world` threads, rendezvousing at `server` under
// `prefix`, and calls body(group) on each; returns when every thread has finished. Groups are
// destroyed only after every body has returned, so a rank that returns early does not fail its
// peers' calls. A group that cannot be created is an ADD_FAILURE (its body does not run).
inline void RunOnGlooRanksWithServer(const std::shared_ptr<TcpStoreServer>& server, int world,
                                     const std::function<void(ProcessGroup&)>& body,
                                     std::chrono::milliseconds timeout,
                                     const std::string& prefix = "") {
  std::latch done(world);
  std::vector<std::thread> threads;
  threads.reserve(world);
  for (int rank = 0; rank < world; ++rank) {
    threads.emplace_back([&, rank] {
      StatusOr<std::unique_ptr<ProcessGroup>> group =
          CreateGlooProcessGroup(GlooThreadOptions(server, rank, world, timeout, prefix));
      if (!group.ok()) {
        ADD_FAILURE() << "rank " << rank << " of " << world
                      << ": CreateGlooProcessGroup: " << group.status();
      } else {
        body(**group);
      }
      done.arrive_and_wait();
    });
  }
  for (std::thread& t : threads) t.join();
}

// As RunOnGlooRanksWithServer, with a fresh rendezvous server on 127.0.0.1 (a free port).
inline void RunOnGlooRanks(int world, const std::function<void(ProcessGroup&)>& body,
                           std::chrono::milliseconds timeout = std::chrono::seconds(30)) {
  StatusOr<std::shared_ptr<TcpStoreServer>> server = TcpStoreServer::Start("127.0.0.1", 0);
  if (!server.ok()) {
    ADD_FAILURE() << "TcpStoreServer::Start: " << server.status();
    return;
  }
  RunOnGlooRanksWithServer(*server, world, body, timeout);
}

}  // namespace dcpkv::testing

#endif  // DCPKV_TESTS_UTIL_GLOO_THREADS_H_

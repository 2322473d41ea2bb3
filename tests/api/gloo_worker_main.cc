// One rank of a multi-process gloo test, launched by tests/util/multiprocess.h with the torchrun
// variables set. Exits 0 if every check passed.
//
// Usage: dcpkv_gloo_worker collectives   AllGather, Gather, Scatter, Broadcast and Barrier with
//                                        rank-dependent sizes (empty up to 2 MiB), results checked
//        dcpkv_gloo_worker peer-dies     rank 1 kills itself while receiving 64 MiB broadcasts
//                                        from rank 0, which must then fail with UNAVAILABLE (not
//                                        die of SIGPIPE) well before its timeout
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "dcpkv/gloo_process_group.h"
#include "tests/util/test_data.h"

namespace {

int Fail(int rank, const std::string& what) {
  std::fprintf(stderr, "gloo worker rank %d: %s\n", rank, what.c_str());
  return 1;
}

// The buffer rank `rank` contributes in step `step`.
std::string Payload(int rank, int step) {
  static const size_t kSizes[] = {0, 1, (size_t{2} << 20) + 3, 4097};
  std::vector<uint8_t> bytes =
      dcpkv::testing::RandomBytes(kSizes[(rank + step) % 4], rank * 100 + step);
  return std::string(bytes.begin(), bytes.end());
}

int Collectives(dcpkv::ProcessGroup& pg) {
  const int rank = pg.rank();
  const int n = pg.size();
  auto all = pg.AllGather(Payload(rank, 0));
  if (!all.ok()) return Fail(rank, "AllGather: " + all.status().ToString());
  if (all->size() != static_cast<size_t>(n)) return Fail(rank, "AllGather: wrong count");
  for (int r = 0; r < n; ++r) {
    if ((*all)[r] != Payload(r, 0))
      return Fail(rank, "AllGather: wrong buffer of rank " + std::to_string(r));
  }

  const int gather_root = n - 1;
  auto gathered = pg.Gather(Payload(rank, 1), gather_root);
  if (!gathered.ok()) return Fail(rank, "Gather: " + gathered.status().ToString());
  if (rank == gather_root) {
    if (gathered->size() != static_cast<size_t>(n)) return Fail(rank, "Gather: wrong count");
    for (int r = 0; r < n; ++r) {
      if ((*gathered)[r] != Payload(r, 1))
        return Fail(rank, "Gather: wrong buffer of rank " + std::to_string(r));
    }
  } else if (!gathered->empty()) {
    return Fail(rank, "Gather: a non-root received buffers");
  }

  std::vector<std::string> parts;
  if (rank == 0) {
    for (int r = 0; r < n; ++r) parts.push_back(Payload(r, 2));
  }
  auto part = pg.Scatter(parts, 0);
  if (!part.ok()) return Fail(rank, "Scatter: " + part.status().ToString());
  if (*part != Payload(rank, 2)) return Fail(rank, "Scatter: wrong buffer");

  const int bcast_root = n > 1 ? 1 : 0;
  auto bcast = pg.Broadcast(rank == bcast_root ? Payload(bcast_root, 3) : std::string("ignored"),
                            bcast_root);
  if (!bcast.ok()) return Fail(rank, "Broadcast: " + bcast.status().ToString());
  if (*bcast != Payload(bcast_root, 3)) return Fail(rank, "Broadcast: wrong buffer");

  if (dcpkv::Status s = pg.Barrier(); !s.ok()) return Fail(rank, "Barrier: " + s.ToString());
  return 0;
}

int PeerDies(dcpkv::ProcessGroup& pg) {
  const int rank = pg.rank();
  if (dcpkv::Status s = pg.Barrier(); !s.ok()) return Fail(rank, "Barrier: " + s.ToString());
  const std::string big(size_t{64} << 20, 'x');
  if (rank == 1) {
    // Dies while receiving one of rank 0's broadcasts: rank 0 is writing to a dead socket.
    std::thread([] {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      ::kill(::getpid(), SIGKILL);
    }).detach();
    for (;;) {
      if (!pg.Broadcast("", 0).ok()) ::pause();
    }
  }
  for (int i = 0; i < 1000; ++i) {
    const auto start = std::chrono::steady_clock::now();
    auto got = pg.Broadcast(big, 0);
    const auto elapsed = std::chrono::steady_clock::now() - start;
    if (got.ok()) continue;
    std::fprintf(stderr, "gloo worker rank %d: Broadcast %d failed as expected after %lld ms: %s\n",
                 rank, i,
                 static_cast<long long>(
                     std::chrono::duration_cast<std::chrono::milliseconds>(elapsed).count()),
                 got.status().ToString().c_str());
    if (got.status().code() != dcpkv::StatusCode::kUnavailable) {
      return Fail(rank, "expected UNAVAILABLE");
    }
    if (elapsed > pg.timeout() / 2) return Fail(rank, "the failure was not detected promptly");
    if (pg.Barrier().code() != dcpkv::StatusCode::kAborted) return Fail(rank, "expected ABORTED");
    return 0;
  }
  return Fail(rank, "Broadcast kept succeeding with a dead peer");
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s collectives|peer-dies\n", argv[0]);
    return 2;
  }
  const std::string mode = argv[1];
  auto group = dcpkv::CreateGlooProcessGroupFromEnv(std::chrono::seconds(20));
  if (!group.ok()) return Fail(-1, "CreateGlooProcessGroupFromEnv: " + group.status().ToString());
  if (mode == "collectives") return Collectives(**group);
  if (mode == "peer-dies") return PeerDies(**group);
  return Fail((*group)->rank(), "unknown mode " + mode);
}

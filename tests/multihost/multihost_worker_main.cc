// One rank of the multi-host tests, launched the torchrun way (RANK, WORLD_SIZE, MASTER_ADDR,
// MASTER_PORT, and DCPKV_GLOO_HOSTNAME: this host's address) inside a network namespace.
//
//   dcpkv_multihost_worker save ROOT ID [flags]   saves this rank's row shard of --tensors
//                                                 float32 tensors, a replicated "bias" and a
//                                                 bytes entry, all made from --seed
//   dcpkv_multihost_worker load ROOT ID [flags]   loads them at this world size and checks
//                                                 every byte against --seed
// Flags:
//   --seed=N --tensors=N --rows=N --cols=N       the state (defaults 1, 4, 512, 256)
//   --timeout-ms=N                                the gloo group's timeout (default 10000)
//   --signal-dir=DIR --stall-at=POINT             save: rank --stall-rank (default 0) stops at
//   --stall-rank=N                                crash point POINT, creates
//                                                 DIR/stalled.<rank> and goes on once
//                                                 DIR/resume exists
//   --replica=HOST:PORT --namespace=NS            save: replicate the manifest there,
//   --replication=sync|async --quorum=N            synchronously (with a write quorum) or not
//   --replica-deadline-ms=N                       deadline of each replica call (default 3000)
//   --wait-replication-ms=N                       async: once the save returned, create
//                                                 DIR/saved.<rank> and wait up to N ms for
//                                                 every replica to acknowledge
// Prints one line "rank R <mode> ok|failed after N ms[: error]"; exit code 0 if it succeeded,
// 1 if not, 2 for bad usage.
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <string>
#include <thread>

#include "dcpkv/checkpoint.h"
#include "dcpkv/checkpointer.h"
#include "dcpkv/gloo_process_group.h"
#include "dcpkv/replication/replicator.h"
#include "dcpkv/store/crash_points.h"
#include "tests/util/sharding.h"

namespace {

using namespace dcpkv;  // NOLINT
using Clock = std::chrono::steady_clock;

// Where this rank stalls (crash_points.h observers take no context).
std::string g_stall_point;
std::string g_signal_dir;
int g_rank = 0;
bool g_stalled = false;

bool Exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

void Touch(const std::string& path) {
  if (FILE* f = std::fopen(path.c_str(), "w"); f != nullptr) std::fclose(f);
}

void StallAt(std::string_view name) {
  if (g_stalled || name != g_stall_point) return;
  g_stalled = true;
  Touch(g_signal_dir + "/stalled." + std::to_string(g_rank));
  const auto give_up = Clock::now() + std::chrono::minutes(2);
  while (!Exists(g_signal_dir + "/resume") && Clock::now() < give_up) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

struct Flags {
  std::map<std::string, std::string> values;
  std::string Get(const std::string& name, const std::string& fallback) const {
    auto it = values.find(name);
    return it == values.end() ? fallback : it->second;
  }
  long Int(const std::string& name, long fallback) const {
    auto it = values.find(name);
    return it == values.end() ? fallback : std::strtol(it->second.c_str(), nullptr, 10);
  }
};

// The global tensors of version `seed`: --tensors tensors of [rows, cols], and the bias.
struct Model {
  std::vector<Tensor> tensors;
  Tensor bias;
  Model(const Flags& f) {
    const long seed = f.Int("seed", 1);
    const Shape shape = {static_cast<uint64_t>(f.Int("rows", 512)),
                         static_cast<uint64_t>(f.Int("cols", 256))};
    for (long k = 0; k < f.Int("tensors", 4); ++k) {
      tensors.push_back(testing::MakeGlobal(shape, static_cast<float>(seed * 1000 + k)));
    }
    bias = testing::MakeGlobal({1024}, static_cast<float>(-seed));
  }
};

std::string Name(size_t k) { return "layers." + std::to_string(k) + ".w"; }

StatusOr<std::shared_ptr<ManifestReplication>> MakeReplication(const Flags& f) {
  replication::ReplicatorOptions o;
  o.ns = f.Get("namespace", "multihost");
  o.targets = {f.Get("replica", "")};
  o.mode = f.Get("replication", "sync") == "async" ? replication::ReplicationMode::kAsync
                                                   : replication::ReplicationMode::kSync;
  o.write_quorum = static_cast<int>(f.Int("quorum", 0));
  o.client.deadline = std::chrono::milliseconds(f.Int("replica-deadline-ms", 3000));
  o.max_backoff = std::chrono::milliseconds(1000);
  DCPKV_ASSIGN_OR_RETURN(auto r, replication::GrpcManifestReplication::Create(o));
  return std::shared_ptr<ManifestReplication>(std::move(r));
}

Status Save(ProcessGroup& pg, const std::string& root, const std::string& id, const Flags& f) {
  const int rank = pg.rank(), world = pg.size();
  Model m(f);
  StateDict state;
  for (size_t k = 0; k < m.tensors.size(); ++k) {
    state.Set(Name(k), testing::ShardOf(m.tensors[k], 0, world, rank));
  }
  state.Set("bias", m.bias);
  state.Set("step", Bytes{std::to_string(f.Int("seed", 1))});
  // A training loop's Checkpointer: its open store records the replication state as it changes.
  CheckpointerOptions o;
  o.store_root = root;
  o.process_group = &pg;
  std::shared_ptr<replication::GrpcManifestReplication> replicator;
  if (!f.Get("replica", "").empty()) {
    DCPKV_ASSIGN_OR_RETURN(o.replication, MakeReplication(f));
    replicator = std::dynamic_pointer_cast<replication::GrpcManifestReplication>(o.replication);
  }
  DCPKV_ASSIGN_OR_RETURN(std::unique_ptr<Checkpointer> checkpointer,
                         Checkpointer::Create(std::move(o)));
  DCPKV_RETURN_IF_ERROR(checkpointer->Save(state, id).status());
  const long wait_ms = f.Int("wait-replication-ms", 0);
  if (wait_ms > 0 && replicator != nullptr && rank == 0) {
    Touch(g_signal_dir + "/saved." + std::to_string(rank));
    const auto start = Clock::now();
    Status idle = replicator->WaitIdle(std::chrono::milliseconds(wait_ms));
    const auto ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start).count();
    StatusOr<std::string> state = replicator->State(id);
    std::printf("rank %d replication of %s after %lld ms: %s\n", rank, id.c_str(),
                static_cast<long long>(ms),
                !idle.ok()   ? idle.ToString().c_str()
                : state.ok() ? state->c_str()
                             : state.status().ToString().c_str());
    return idle;
  }
  return Status::Ok();
}

Status Load(ProcessGroup& pg, const std::string& root, const std::string& id, const Flags& f) {
  const int rank = pg.rank(), world = pg.size();
  Model want(f);
  StateDict state;
  std::vector<ShardedTensor> mine;
  for (size_t k = 0; k < want.tensors.size(); ++k) {
    mine.push_back(testing::EmptyShardOf(want.tensors[k], 0, world, rank));
    state.Set(Name(k), mine.back());
  }
  Tensor bias = Tensor::Allocate(DType::kFloat32, {1024});
  state.Set("bias", bias);
  state.Set("step", Bytes{});
  LoadOptions o;
  o.checkpoint_id = id;
  o.store_root = root;
  o.process_group = &pg;
  DCPKV_RETURN_IF_ERROR(dcpkv::Load(state, o));
  for (size_t k = 0; k < mine.size(); ++k) {
    const Shard& shard = mine[k].local_shards[0];
    if (!testing::SameBytes(
            shard.tensor, testing::Slice(want.tensors[k], {shard.offsets, shard.tensor.shape()}))) {
      return DataLossError(Name(k) + " loaded on rank " + std::to_string(rank) +
                           " differs from what was saved");
    }
  }
  if (!testing::SameBytes(bias, want.bias)) return DataLossError("bias differs");
  if (std::get<Bytes>(*state.Find("step")).data != std::to_string(f.Int("seed", 1))) {
    return DataLossError("step differs");
  }
  return Status::Ok();
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 4 || (std::string(argv[1]) != "save" && std::string(argv[1]) != "load")) {
    std::fprintf(stderr, "usage: %s save|load ROOT ID [--flag=value ...]\n", argv[0]);
    return 2;
  }
  const std::string mode = argv[1], root = argv[2], id = argv[3];
  Flags f;
  for (int i = 4; i < argc; ++i) {
    const std::string arg = argv[i];
    const size_t eq = arg.find('=');
    if (arg.rfind("--", 0) != 0 || eq == std::string::npos) {
      std::fprintf(stderr, "bad flag '%s'\n", arg.c_str());
      return 2;
    }
    f.values[arg.substr(2, eq - 2)] = arg.substr(eq + 1);
  }
  if (const char* rank = std::getenv("RANK"); rank != nullptr) g_rank = std::atoi(rank);
  g_signal_dir = f.Get("signal-dir", ".");
  g_stall_point = f.Get("stall-at", "");
  if (!g_stall_point.empty() && g_rank == f.Int("stall-rank", 0)) {
    SetCrashPointObserver(&StallAt);
  }

  const auto start = Clock::now();
  StatusOr<std::unique_ptr<ProcessGroup>> pg =
      CreateGlooProcessGroupFromEnv(std::chrono::milliseconds(f.Int("timeout-ms", 10000)));
  Status s = pg.status();
  if (s.ok()) {
    s = mode == "save" ? Save(**pg, root, id, f) : Load(**pg, root, id, f);
  }
  const auto ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start).count();
  std::printf("rank %d %s %s after %lld ms%s%s\n", g_rank, mode.c_str(), s.ok() ? "ok" : "failed",
              static_cast<long long>(ms), s.ok() ? "" : ": ", s.ok() ? "" : s.ToString().c_str());
  std::fflush(stdout);
  if (pg.ok()) {
    (*pg).reset();  // closes its connections
    std::printf(
        "rank %d left its group after %lld ms\n", g_rank,
        static_cast<long long>(
            std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start).count()));
  }
  return s.ok() ? 0 : 1;
}

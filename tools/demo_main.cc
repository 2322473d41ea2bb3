// dcpkv_demo: a small training job that checkpoints into an embedded store, restarts on a
// different number of ranks.
//
//   dcpkv_demo [--root DIR] [--steps N] [--save-every K]
//
// 1. Trains on 2 ranks (separate processes, gloo over 127.0.0.1, launched the torchrun way with
//    RANK/WORLD_SIZE/MASTER_ADDR/MASTER_PORT): a linear layer whose weight [kRows, kCols] and its
//    momentum are sharded by rows, a bias replicated on every rank, and a step counter; every K
//    steps a Checkpointer saves the state.
// 2. Restarts on 3 ranks from the last checkpoint, checks every loaded value against a replay
//    of the training, trains a few more steps and saves again (now from 3 ranks).
// scripts/demo.sh then inspects the store with the dcpkv CLI.
//
// Run with RANK set, it is one worker: `dcpkv_demo --worker train|resume ...`, as torchrun runs
// it (`torchrun --nproc-per-node=2 --no-python dcpkv_demo --worker train --root DIR`). A train
// worker whose store already holds a checkpoint (an elastic restart) resumes from the newest
// one. --crash-at-step N makes the last rank of the first attempt (TORCHELASTIC_RESTART_COUNT
// unset or 0) kill itself after step N, and join a second late on the next attempt (the other
// ranks then look for it in the rendezvous store before it has written its new address there),
// to exercise such a restart.
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "dcpkv/catalog.h"
#include "dcpkv/checkpointer.h"
#include "dcpkv/gloo_process_group.h"

extern char** environ;

namespace {

using namespace dcpkv;  // NOLINT: a small program

constexpr uint64_t kRows = 96, kCols = 64;
constexpr float kLearningRate = 0.05f, kMomentum = 0.5f;

struct Args {
  std::string root;
  int steps = 20;
  int save_every = 5;
  std::string worker;      // "train" or "resume" in a worker process
  std::string checkpoint;  // resume: which checkpoint
  int crash_at_step = 0;   // train: the last rank of the first attempt dies after this step
};

// TORCHELASTIC_RESTART_COUNT, 0 when unset: which attempt of an elastic run this is.
int RestartCount() {
  const char* v = std::getenv("TORCHELASTIC_RESTART_COUNT");
  return v == nullptr ? 0 : std::atoi(v);
}

// Rows [first, first + count) of the weight held by `rank` of `world` (uneven splits allowed).
std::pair<uint64_t, uint64_t> RowsOf(int rank, int world) {
  const uint64_t base = kRows / world, extra = kRows % world, r = rank;
  return {r * base + std::min<uint64_t>(r, extra), base + (r < extra ? 1 : 0)};
}

// The model state of one rank and the training rule, deterministic so a restart can check it.
struct Model {
  uint64_t first_row = 0, rows = 0;
  Tensor weight, momentum, bias;
  Bytes step{"0"};

  Model(int rank, int world) {
    std::tie(first_row, rows) = RowsOf(rank, world);
    weight = Tensor::Allocate(DType::kFloat32, {rows, kCols});
    momentum = Tensor::Allocate(DType::kFloat32, {rows, kCols});
    bias = Tensor::Allocate(DType::kFloat32, {kCols});
  }
  void Initialize() {
    for (uint64_t i = 0; i < rows; ++i)
      for (uint64_t j = 0; j < kCols; ++j)
        weight.data_as<float>()[i * kCols + j] = std::sin(0.1f * (first_row + i) + 0.01f * j);
  }
  // One SGD-with-momentum step towards a fixed target; returns this rank's squared error.
  double Train(int t) {
    double loss = 0;
    float* w = weight.data_as<float>();
    float* m = momentum.data_as<float>();
    for (uint64_t i = 0; i < rows; ++i) {
      for (uint64_t j = 0; j < kCols; ++j) {
        const uint64_t k = i * kCols + j;
        const float grad = w[k] - std::cos(0.05f * (first_row + i) - 0.02f * j);
        loss += double(grad) * grad;
        m[k] = kMomentum * m[k] + grad;
        w[k] -= kLearningRate * m[k];
      }
    }
    for (uint64_t j = 0; j < kCols; ++j) bias.data_as<float>()[j] += 0.001f * (t + 1);
    step.data = std::to_string(t + 1);
    return loss;
  }
  StateDict State() {
    StateDict model, optim, state;
    model.Set("linear.weight",
              ShardedTensor{DType::kFloat32, {kRows, kCols}, {{{first_row, 0}, weight}}});
    model.Set("linear.bias", bias);  // replicated: written once, by one rank
    optim.Set("linear.weight.momentum",
              ShardedTensor{DType::kFloat32, {kRows, kCols}, {{{first_row, 0}, momentum}}});
    state.SetDict("model", std::move(model));
    state.SetDict("optim", std::move(optim));
    state.Set("trainer.step", step);
    return state;
  }
};

int Fail(const std::string& what, const Status& s) {
  std::fprintf(stderr, "dcpkv_demo: %s: %s\n", what.c_str(), s.ToString().c_str());
  return 1;
}

double AllSum(ProcessGroup& pg, double local) {
  std::string bytes(reinterpret_cast<const char*>(&local), sizeof(local));
  StatusOr<std::vector<std::string>> all = pg.AllGather(bytes);
  double sum = 0;
  if (all.ok()) {
    for (const std::string& b : *all) {
      double v;
      std::memcpy(&v, b.data(), sizeof(v));
      sum += v;
    }
  }
  return sum;
}

int Train(ProcessGroup& pg, Checkpointer& ckpt, Model& model, int from, int to, int save_every,
          int crash_at_step = 0) {
  for (int t = from; t < to; ++t) {
    const double loss = AllSum(pg, model.Train(t));
    if (t + 1 == crash_at_step && pg.rank() == pg.size() - 1 && RestartCount() == 0) {
      std::fprintf(stderr, "[world %d] rank %d: killing itself after step %d (--crash-at-step)\n",
                   pg.size(), pg.rank(), t + 1);
      std::fflush(stderr);
      raise(SIGKILL);
    }
    if ((t + 1) % save_every == 0 || t + 1 == to) {
      StateDict state = model.State();
      const std::string id = "step-" + std::to_string(t + 1);
      StatusOr<Metadata> md = ckpt.Save(state, id, {{"step", std::to_string(t + 1)}});
      if (!md.ok()) return Fail("save " + id, md.status());
      if (pg.rank() == 0) {
        std::printf("[world %d] step %3d  loss %10.4f  saved %s (%s, %s stored)\n", pg.size(),
                    t + 1, loss, id.c_str(), HumanBytes(md->logical_bytes()).c_str(),
                    HumanBytes(md->stored_bytes).c_str());
      }
    }
  }
  return 0;
}

int RunWorker(Args args) {
  std::string resume_from = args.worker == "resume" ? args.checkpoint : "";
  if (args.worker == "train" && std::filesystem::exists(args.root)) {
    // An elastic restart: go on from the newest committed checkpoint.
    StatusOr<std::vector<CheckpointSummary>> saved = ListCommittedCheckpoints(args.root);
    if (!saved.ok() && saved.status().code() != StatusCode::kNotFound) {
      return Fail("listing " + args.root, saved.status());
    }
    if (saved.ok() && !saved->empty()) resume_from = saved->back().checkpoint_id;
  }
  if (args.crash_at_step > 0 && RestartCount() > 0) {
    const char* rank = std::getenv("RANK");
    const char* world = std::getenv("WORLD_SIZE");
    if (rank != nullptr && world != nullptr && std::atoi(rank) == std::atoi(world) - 1) {
      std::this_thread::sleep_for(std::chrono::seconds(1));
    }
  }
  StatusOr<std::unique_ptr<ProcessGroup>> pg =
      CreateGlooProcessGroupFromEnv(std::chrono::seconds(60));
  if (!pg.ok()) return Fail("process group", pg.status());
  ProcessGroup& group = **pg;
  // Incremental saves (the default) and retention: the newest four checkpoints are kept.
  auto ckpt =
      Checkpointer::Create({.store_root = args.root, .process_group = &group, .keep_last = 4});
  if (!ckpt.ok()) return Fail("checkpointer", ckpt.status());
  Model model(group.rank(), group.size());
  if (resume_from.empty()) {
    model.Initialize();
    return Train(group, **ckpt, model, 0, args.steps, args.save_every, args.crash_at_step);
  }
  // Load the checkpoint resharded onto this world, check it against a replay.
  StateDict state = model.State();
  if (Status s = (*ckpt)->Load(state, resume_from); !s.ok()) return Fail("load", s);
  model.step = std::get<Bytes>(*state.Find("trainer.step"));
  const int done = std::stoi(model.step.data);
  Model replay(group.rank(), group.size());
  replay.Initialize();
  for (int t = 0; t < done; ++t) replay.Train(t);
  const bool same =
      std::memcmp(model.weight.data(), replay.weight.data(), model.weight.nbytes()) == 0 &&
      std::memcmp(model.momentum.data(), replay.momentum.data(), model.momentum.nbytes()) == 0 &&
      std::memcmp(model.bias.data(), replay.bias.data(), model.bias.nbytes()) == 0;
  std::printf(
      "[world %d] rank %d resumed %s at step %d: rows [%llu, %llu) of weight and momentum, "
      "and the bias, %s the replayed training bit for bit\n",
      group.size(), group.rank(), resume_from.c_str(), done,
      static_cast<unsigned long long>(model.first_row),
      static_cast<unsigned long long>(model.first_row + model.rows),
      same ? "match" : "DO NOT match");
  if (!same) return 1;
  std::fflush(stdout);
  const int to = args.worker == "train" ? args.steps : done + args.save_every;
  return Train(group, **ckpt, model, done, to, args.save_every);
}

// Starts `world` workers of this program, the torchrun way, and waits for all of them.
int Launch(const char* self, const Args& args, int world,
           const std::vector<std::string>& worker_args) {
  StatusOr<std::shared_ptr<TcpStoreServer>> server = TcpStoreServer::Start("127.0.0.1", 0);
  if (!server.ok()) return Fail("rendezvous server", server.status());
  std::vector<pid_t> pids;
  for (int rank = 0; rank < world; ++rank) {
    std::vector<std::string> env_strings;
    for (char** e = environ; *e != nullptr; ++e) env_strings.emplace_back(*e);
    for (std::string kv :
         {"RANK=" + std::to_string(rank), "LOCAL_RANK=" + std::to_string(rank),
          "WORLD_SIZE=" + std::to_string(world), std::string("MASTER_ADDR=127.0.0.1"),
          "MASTER_PORT=" + std::to_string((*server)->port()),
          std::string("TORCHELASTIC_USE_AGENT_STORE=True"),
          std::string("DCPKV_RENDEZVOUS_PROTOCOL=dcpkv")}) {
      env_strings.push_back(kv);
    }
    std::vector<char*> env, argv;
    for (auto& s : env_strings) env.push_back(s.data());
    env.push_back(nullptr);
    std::vector<std::string> arg_strings = {self, "--root", args.root};
    arg_strings.insert(arg_strings.end(), worker_args.begin(), worker_args.end());
    for (auto& s : arg_strings) argv.push_back(s.data());
    argv.push_back(nullptr);
    pid_t pid;
    if (posix_spawn(&pid, self, nullptr, nullptr, argv.data(), env.data()) != 0) {
      std::perror("posix_spawn");
      return 1;
    }
    pids.push_back(pid);
  }
  int failures = 0;
  for (pid_t pid : pids) {
    int status = 0;
    waitpid(pid, &status, 0);
    failures += !(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  }
  return failures == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  Args args;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string { return i + 1 < argc ? argv[++i] : ""; };
    if (a == "--root")
      args.root = next();
    else if (a == "--steps")
      args.steps = std::atoi(next().c_str());
    else if (a == "--save-every")
      args.save_every = std::atoi(next().c_str());
    else if (a == "--worker")
      args.worker = next();
    else if (a == "--checkpoint")
      args.checkpoint = next();
    else if (a == "--crash-at-step")
      args.crash_at_step = std::atoi(next().c_str());
    else {
      std::fprintf(stderr, "usage: %s [--root DIR] [--steps N] [--save-every K]\n", argv[0]);
      return 2;
    }
  }
  if (args.steps <= 0 || args.save_every <= 0) {
    std::fprintf(stderr, "dcpkv_demo: --steps and --save-every must be positive\n");
    return 2;
  }
  if (!args.worker.empty()) {
    if (args.worker != "train" && args.worker != "resume") {
      std::fprintf(stderr, "dcpkv_demo: --worker is train or resume\n");
      return 2;
    }
    if (args.root.empty()) {
      std::fprintf(stderr, "dcpkv_demo: a worker needs --root\n");
      return 2;
    }
    return RunWorker(args);
  }
  if (args.root.empty()) {
    std::string templ = (std::filesystem::temp_directory_path() / "dcpkv-demo-XXXXXX").string();
    if (mkdtemp(templ.data()) == nullptr) return 1;
    args.root = templ;
  }
  const std::string self = std::filesystem::canonical("/proc/self/exe").string();
  std::printf("dcpkv demo: store root %s\n", args.root.c_str());
  std::fflush(stdout);  // before the workers write to the same terminal
  const std::string steps = std::to_string(args.steps), every = std::to_string(args.save_every);
  if (Launch(self.c_str(), args, 2,
             {"--worker", "train", "--steps", steps, "--save-every", every}) != 0) {
    return Fail("training on 2 ranks", InternalError("a worker failed"));
  }
  const std::string last = "step-" + steps;
  if (Launch(self.c_str(), args, 3,
             {"--worker", "resume", "--checkpoint", last, "--save-every", every}) != 0) {
    return Fail("resuming on 3 ranks", InternalError("a worker failed"));
  }
  std::printf("\ndcpkv demo: done; inspect the store with `dcpkv ls %s`\n", args.root.c_str());
  return 0;
}

// A user's program against an installed dcpkv (public headers and libdcpkv.so only): saves a
// state dict with dcpkv::Save, replicating its manifest to a `dcpkv serve` it starts from the
// same prefix, lists the store, loads the checkpoint into other memory with dcpkv::Load, and reads
// the manifest back from the replica.
//
// Usage: dcpkv_consumer STORE_ROOT DCPKV_EXECUTABLE REPLICA_ROOT
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include <dcpkv/catalog.h>
#include <dcpkv/checkpoint.h>
#include <dcpkv/diagnostics.h>
#include <dcpkv/replication/replica.h>
#include <dcpkv/replication/replicator.h>

extern char** environ;

namespace {

int Fail(const std::string& what, const dcpkv::Status& s) {
  std::fprintf(stderr, "consumer: %s: %s\n", what.c_str(), s.ToString().c_str());
  return 1;
}

// `dcpkv serve --root ROOT` as a child process; its first line of output says where it listens.
struct Replica {
  pid_t pid = -1;
  std::string target;  // "127.0.0.1:PORT"

  bool Start(const std::string& dcpkv, const std::string& root) {
    int out[2];
    if (pipe(out) != 0) return false;
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, out[1], STDOUT_FILENO);
    posix_spawn_file_actions_addclose(&actions, out[0]);
    std::vector<std::string> args = {dcpkv, "serve", "--root", root};
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    const int spawned = posix_spawn(&pid, dcpkv.c_str(), &actions, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    close(out[1]);
    if (spawned != 0) {
      close(out[0]);
      pid = -1;
      return false;
    }
    std::string line;
    char c;
    while (read(out[0], &c, 1) == 1 && c != '\n') line += c;
    close(out[0]);
    const std::string prefix = "listening on ";
    if (line.rfind(prefix, 0) != 0) return false;
    target = line.substr(prefix.size());
    return true;
  }
  ~Replica() {
    if (pid > 0) {
      kill(pid, SIGTERM);
      waitpid(pid, nullptr, 0);
    }
  }
};

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: %s STORE_ROOT DCPKV_EXECUTABLE REPLICA_ROOT\n", argv[0]);
    return 2;
  }
  const std::string root = argv[1];
  Replica replica;
  if (!replica.Start(argv[2], argv[3])) {
    std::fprintf(stderr, "consumer: %s serve did not start\n", argv[2]);
    return 1;
  }

  dcpkv::replication::ReplicatorOptions ro;
  ro.ns = "consumer";
  ro.targets = {replica.target};
  auto replication = dcpkv::replication::GrpcManifestReplication::Create(ro);
  if (!replication.ok()) return Fail("replicator", replication.status());

  std::vector<float> w(4096), w_back(4096);
  for (size_t i = 0; i < w.size(); ++i) w[i] = 0.25f * static_cast<float>(i);
  // A [64, 64] weight saved as two column shards [64, 32]: strided views of the row-major
  // buffer, each placed in the global tensor with FromLocal.
  dcpkv::ShardedTensor model_w = dcpkv::ShardedTensor::FromLocal(
      dcpkv::Tensor::WrapStrided(dcpkv::DType::kFloat32, {64, 32}, {64, 1}, w.data()), {64, 64},
      {0, 0});
  model_w.local_shards.push_back(
      {{0, 32},
       dcpkv::Tensor::WrapStrided(dcpkv::DType::kFloat32, {64, 32}, {64, 1}, w.data() + 32)});
  dcpkv::StateDict state;
  state.Set("model.w", model_w);
  state.Set("step", dcpkv::Bytes{"100"});

  dcpkv::DiagnosticCollector diagnostics;
  dcpkv::SaveOptions save;
  save.checkpoint_id = "step-100";
  save.store_root = root;
  save.replication = *replication;
  save.diagnostics = &diagnostics;
  dcpkv::StatusOr<dcpkv::Metadata> md = dcpkv::Save(state, save);
  if (!md.ok()) return Fail("save", md.status());
  if (!diagnostics.entries().empty()) {
    return Fail("save diagnostics", diagnostics.entries().front().status);
  }

  auto listed = dcpkv::ListCommittedCheckpoints(root);
  if (!listed.ok()) return Fail("list", listed.status());
  if (listed->size() != 1 || listed->front().checkpoint_id != "step-100") {
    std::fprintf(stderr, "consumer: the store lists %zu checkpoints\n", listed->size());
    return 1;
  }

  dcpkv::StateDict into;
  into.Set("model.w", dcpkv::Tensor::Wrap(dcpkv::DType::kFloat32, {64, 64}, w_back.data()));
  into.Set("step", dcpkv::Bytes{});
  dcpkv::LoadOptions load;
  load.checkpoint_id = "step-100";
  load.store_root = root;
  if (dcpkv::Status s = dcpkv::Load(into, load); !s.ok()) return Fail("load", s);
  dcpkv::StatusOr<dcpkv::Bytes*> step = into.GetBytes("step");
  if (!step.ok()) return Fail("step", step.status());
  if (std::memcmp(w.data(), w_back.data(), w.size() * sizeof(float)) != 0 ||
      (*step)->data != "100") {
    std::fprintf(stderr, "consumer: loaded values differ\n");
    return 1;
  }

  auto client = dcpkv::replication::ReplicaClient::Connect(replica.target, {});
  if (!client.ok()) return Fail("replica client", client.status());
  auto record = (*client)->Get("consumer", "step-100");
  if (!record.ok()) return Fail("replica get", record.status());
  if (record->checkpoint_id != "step-100" || record->payload.empty()) {
    std::fprintf(stderr, "consumer: the replica holds another record\n");
    return 1;
  }
  std::printf(
      "consumer: saved, listed, loaded %zu floats and read the replicated manifest of %s "
      "from %s\n",
      w.size(), record->checkpoint_id.c_str(), replica.target.c_str());
  return 0;
}

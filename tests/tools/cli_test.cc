// The dcpkv CLI as users run it: the real binary started as a child process (posix_spawn, with
// pipes for stdout and stderr), its exit code, output and error messages checked against stores
// saved by real gloo process groups, against stores damaged underneath RocksDB, and while a
// writer process keeps saving to the store.
#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <rocksdb/db.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "dcpkv/api/kv_storage.h"
#include "dcpkv/catalog.h"
#include "dcpkv/checkpoint.h"
#include "dcpkv/core/metadata_codec.h"
#include "dcpkv/replication/replica.h"
#include "dcpkv/replication/replicator.h"
#include "dcpkv/store/chunk_store.h"
#include "dcpkv/store/key_encoding.h"
#include "dcpkv/store/store_format.h"
#include "dcpkv/store/store_layout.h"
#include "dcpkv/store/writer_lease.h"
#include "tests/tools/inspect_fixture.h"
#include "tests/util/raw_db.h"
#include "tests/util/spawn.h"
#include "tests/util/temp_dir.h"
#include "tests/util/test_data.h"

extern char** environ;

namespace dcpkv {
namespace {

using json = nlohmann::json;
using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;
using testing::RawDB;

// Longest a child may run before it is killed (a hang guard, not a timing check).
constexpr auto kChildTimeout = std::chrono::seconds(120);

// ---------------------------------------------------------------------------------------------
// Child processes.

struct CliResult {
  int exit_code = -1;  // the exit status; 128 + N if killed by signal N
  std::string out;
  std::string err;
  std::string command;
};

// For failure messages.
std::string Describe(const CliResult& r) {
  return "$ " + r.command + "\nexit " + std::to_string(r.exit_code) + "\n--- stdout:\n" +
         r.out.substr(0, 4000) + "\n--- stderr:\n" + r.err.substr(0, 4000);
}

int DecodeWaitStatus(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

// argv for posix_spawn: the strings must outlive the returned pointers.
std::vector<char*> MakeArgv(std::vector<std::string>& strings) {
  std::vector<char*> argv;
  for (std::string& s : strings) argv.push_back(s.data());
  argv.push_back(nullptr);
  return argv;
}

// Runs `exe` with `args`, stdin from /dev/null, and returns its exit code, stdout and stderr
// (both pipes are drained together so that neither can fill up and block the child).
CliResult RunExe(const std::string& exe, const std::vector<std::string>& args) {
  CliResult result;
  std::vector<std::string> strings = {exe};
  strings.insert(strings.end(), args.begin(), args.end());
  for (const std::string& s : strings) result.command += (result.command.empty() ? "" : " ") + s;
  int out_pipe[2], err_pipe[2];
  if (::pipe2(out_pipe, O_CLOEXEC) != 0 || ::pipe2(err_pipe, O_CLOEXEC) != 0) {
    ADD_FAILURE() << "pipe2: " << std::strerror(errno);
    return result;
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, out_pipe[1], 1);
  posix_spawn_file_actions_adddup2(&actions, err_pipe[1], 2);
  posix_spawn_file_actions_addclosefrom_np(&actions, 3);
  posix_spawnattr_t attr;
  testing::InitSpawnAttrUnblocked(&attr);
  std::vector<char*> argv = MakeArgv(strings);
  pid_t pid = -1;
  const int rc = posix_spawn(&pid, exe.c_str(), &actions, &attr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  ::close(out_pipe[1]);
  ::close(err_pipe[1]);
  if (rc != 0) {
    ::close(out_pipe[0]);
    ::close(err_pipe[0]);
    ADD_FAILURE() << "posix_spawn " << exe << ": " << std::strerror(rc);
    return result;
  }
  pollfd fds[2] = {{out_pipe[0], POLLIN, 0}, {err_pipe[0], POLLIN, 0}};
  std::string* sinks[2] = {&result.out, &result.err};
  int open_fds = 2;
  bool killed = false;
  const auto deadline = std::chrono::steady_clock::now() + kChildTimeout;
  while (open_fds > 0) {
    if (!killed && std::chrono::steady_clock::now() >= deadline) {
      ::kill(pid, SIGKILL);
      killed = true;
      ADD_FAILURE() << "killed after " << kChildTimeout.count() << " s: " << result.command;
    }
    if (::poll(fds, 2, 1000) < 0 && errno != EINTR) break;
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || fds[i].revents == 0) continue;
      char buf[65536];
      const ssize_t n = ::read(fds[i].fd, buf, sizeof(buf));
      if (n > 0) {
        sinks[i]->append(buf, static_cast<size_t>(n));
      } else if (n == 0 || errno != EINTR) {
        ::close(fds[i].fd);
        fds[i].fd = -1;
        --open_fds;
      }
    }
  }
  for (pollfd& p : fds) {
    if (p.fd >= 0) ::close(p.fd);
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  result.exit_code = DecodeWaitStatus(status);
  return result;
}

CliResult RunCli(const std::vector<std::string>& args) { return RunExe(DCPKV_CLI_PATH, args); }

// A child running in the background with stdout and stderr sent to files; SIGKILLed if still
// running when destroyed.
class BackgroundProcess {
 public:
  BackgroundProcess(const std::string& exe, const std::vector<std::string>& args,
                    const std::string& out_path, const std::string& err_path)
      : out_path_(out_path), err_path_(err_path) {
    std::vector<std::string> strings = {exe};
    strings.insert(strings.end(), args.begin(), args.end());
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&actions, 1, out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC,
                                     0644);
    posix_spawn_file_actions_addopen(&actions, 2, err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC,
                                     0644);
    posix_spawn_file_actions_addclosefrom_np(&actions, 3);
    std::vector<char*> argv = MakeArgv(strings);
    const int rc = posix_spawn(&pid_, exe.c_str(), &actions, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    if (rc != 0) {
      pid_ = -1;
      ADD_FAILURE() << "posix_spawn " << exe << ": " << std::strerror(rc);
    }
  }
  ~BackgroundProcess() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }
  BackgroundProcess(const BackgroundProcess&) = delete;
  BackgroundProcess& operator=(const BackgroundProcess&) = delete;

  bool started() const { return pid_ > 0 || exit_code_ >= 0; }
  void Signal(int sig) {
    if (pid_ > 0) ::kill(pid_, sig);
  }
  // Whether the process is still running (reaps it if it has exited).
  bool Running() {
    if (pid_ <= 0) return false;
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      exit_code_ = DecodeWaitStatus(status);
      pid_ = -1;
    }
    return pid_ > 0;
  }
  // Waits (killing the process after kChildTimeout) and returns its exit code.
  int Wait() {
    const auto deadline = std::chrono::steady_clock::now() + kChildTimeout;
    while (Running()) {
      if (std::chrono::steady_clock::now() >= deadline) {
        ADD_FAILURE() << "background process killed after " << kChildTimeout.count() << " s";
        ::kill(pid_, SIGKILL);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return exit_code_;
  }
  std::string Stdout() const { return ReadFile(out_path_); }
  std::string Stderr() const { return ReadFile(err_path_); }

 private:
  static std::string ReadFile(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }

  std::string out_path_, err_path_;
  pid_t pid_ = -1;
  int exit_code_ = -1;
};

// Parses stdout as one JSON document (a failure and null if it is not).
json ParseJson(const CliResult& r) {
  json j = json::parse(r.out, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) {
    ADD_FAILURE() << "stdout is not JSON\n" << Describe(r);
    return json();
  }
  return j;
}

std::string ReadFileBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

// ---------------------------------------------------------------------------------------------
// Fixture values.

uint64_t FixtureBytes(const testing::FixtureState& state) {
  uint64_t n = 0;
  for (const auto& [fqn, t] : state) n += t.bytes.size();
  return n;
}

std::vector<float> Floats(const testing::FixtureTensor& t) {
  std::vector<float> v(t.bytes.size() / 4);
  std::memcpy(v.data(), t.bytes.data(), v.size() * 4);
  return v;
}

std::vector<int> AllRanks(int world) {
  std::vector<int> ranks;
  for (int r = 0; r < world; ++r) ranks.push_back(r);
  return ranks;
}

// ---------------------------------------------------------------------------------------------
// A store of three fixture checkpoints, committed in an order that is not their ids' order:
//   step-9   world 2, seed 1
//   step-10  world 3, seed 1, model.w and model.grid reseeded, model.mask left out, model.extra
//   step-11  world 3, seed 2 (every value and the bytes entry differ from step-10)

constexpr char kA[] = "step-9";
constexpr char kB[] = "step-10";
constexpr char kC[] = "step-11";

class CliStoreTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    tmp_ = new testing::TempDir();
    root_ = new std::string(tmp_->Sub("store"));
    specs_ = new std::vector<testing::FixtureSpec>{
        {.id = kA, .world = 2, .seed = 1},
        {.id = kB,
         .world = 3,
         .seed = 1,
         .reseeded = {"model.w", "model.grid"},
         .omit = {"model.mask"},
         .extra = true},
        {.id = kC, .world = 3, .seed = 2},
    };
    states_ = new std::vector<testing::FixtureState>;
    for (testing::FixtureSpec& spec : *specs_) {
      spec.incremental = true;  // each on the one before: ls shows what each stored
      states_->push_back(testing::SaveFixture(*root_, spec));
    }
  }
  static void TearDownTestSuite() {
    delete states_;
    delete specs_;
    delete root_;
    delete tmp_;
  }

  static const std::string& root() { return *root_; }
  static const testing::FixtureState& state(size_t i) { return (*states_)[i]; }
  static const testing::FixtureSpec& spec(size_t i) { return (*specs_)[i]; }

 private:
  static inline testing::TempDir* tmp_ = nullptr;
  static inline std::string* root_ = nullptr;
  static inline std::vector<testing::FixtureSpec>* specs_ = nullptr;
  static inline std::vector<testing::FixtureState>* states_ = nullptr;
};

// Every file under `root` with its size and modification time.
std::map<std::string, std::pair<uintmax_t, int64_t>> Snapshot(const std::string& root) {
  std::map<std::string, std::pair<uintmax_t, int64_t>> out;
  for (const auto& e : std::filesystem::recursive_directory_iterator(root)) {
    const int64_t mtime = e.last_write_time().time_since_epoch().count();
    out[e.path().string()] = {e.is_regular_file() ? e.file_size() : 0, mtime};
  }
  return out;
}

// Read-only commands modify nothing in the store: no rotated info LOG, no LOCK, no new file.
TEST_F(CliStoreTest, ReadOnlyCommandsLeaveTheStoreAsItWas) {
  testing::TempDir out;
  const auto before = Snapshot(root());
  const std::vector<std::vector<std::string>> commands = {
      {"ls", root()},           {"show", root(), kB},
      {"stats", root(), kB},    {"verify", root()},
      {"diff", root(), kA, kB}, {"export", root(), kB, "--output", out.Sub("b.safetensors")},
  };
  for (const std::vector<std::string>& args : commands) {
    CliResult r = RunCli(args);
    EXPECT_EQ(r.exit_code, 0) << args[0] << ": " << r.err;
    EXPECT_EQ(Snapshot(root()), before) << args[0] << " changed the store";
  }
}

// A refused removal (an id that is not there) is found through read-only opens: it leaves no
// rotated MANIFEST, OPTIONS, write-ahead log or info LOG behind.
TEST_F(CliStoreTest, ARefusedRemovalLeavesNoTrace) {
  const auto before = Snapshot(root());
  CliResult r = RunCli({"rm", root(), "no-such-checkpoint"});
  EXPECT_EQ(r.exit_code, 3) << r.err;
  EXPECT_THAT(r.err, HasSubstr("no-such-checkpoint"));
  EXPECT_EQ(Snapshot(root()), before);
}

// gc with nothing to collect finds that out read-only: the store is left as it was.
TEST_F(CliStoreTest, GcWithNothingToCollectLeavesTheStoreAsItWas) {
  const auto before = Snapshot(root());
  CliResult r = RunCli({"gc", root()});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(Snapshot(root()), before);
}

// An import under an id already committed is refused through read-only opens: no trace.
TEST_F(CliStoreTest, ARefusedImportLeavesNoTrace) {
  testing::TempDir out;
  const std::string file = out.Sub("b.safetensors");
  ASSERT_EQ(RunCli({"export", root(), kB, "--output", file}).exit_code, 0);
  const auto before = Snapshot(root());
  CliResult r = RunCli({"import", file, root(), kB});
  EXPECT_EQ(r.exit_code, 3) << r.err;
  EXPECT_THAT(r.err, HasSubstr("already committed"));
  EXPECT_EQ(Snapshot(root()), before);
}

// A store owned by another user (here: run as nobody, the store root's): the reading commands
// work and write nothing; the writing ones fail in plain words. Switching users needs root: in
// CI (CI set) the test fails rather than skip without it.
TEST_F(CliStoreTest, AnotherUsersStoreIsReadAndWritesAreRefusedPlainly) {
  if (::geteuid() != 0) {
    if (std::getenv("CI") != nullptr) FAIL() << "running as another user needs root";
    GTEST_SKIP() << "running as another user needs root";
  }
  namespace fs = std::filesystem;
  const fs::path tmp = fs::path(root()).parent_path();
  const fs::perms was = fs::status(tmp).permissions();
  fs::permissions(tmp, fs::perms::others_read | fs::perms::others_exec, fs::perm_options::add);
  testing::TempDir out;
  fs::permissions(out.path(), fs::perms::all, fs::perm_options::add);
  auto as_nobody = [](std::vector<std::string> args) {
    args.insert(args.begin(),
                {"--reuid=nobody", "--regid=nogroup", "--clear-groups", DCPKV_CLI_PATH});
    return RunExe("/usr/bin/setpriv", args);
  };
  const auto before = Snapshot(root());
  for (const std::vector<std::string>& args : std::vector<std::vector<std::string>>{
           {"ls", root()},
           {"show", root(), kB},
           {"verify", root()},
           {"diff", root(), kA, kB},
           {"export", root(), kB, "--output", out.Sub("b.safetensors")}}) {
    CliResult r = as_nobody(args);
    EXPECT_EQ(r.exit_code, 0) << args[0] << ": " << r.err;
  }
  CliResult r = as_nobody({"rm", root(), kA});
  EXPECT_EQ(r.exit_code, 3) << r.err;
  EXPECT_THAT(r.err, HasSubstr("this user may not write to the store, which can still be read"));
  EXPECT_EQ(Snapshot(root()), before);
  fs::permissions(tmp, was);
}

TEST_F(CliStoreTest, LsJsonListsCheckpointsInCommitOrder) {
  CliResult r = RunCli({"ls", "--json", root()});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  EXPECT_EQ(r.err, "");
  json j = ParseJson(r);
  EXPECT_EQ(j["root"], root());
  ASSERT_TRUE(j["checkpoints"].is_array()) << Describe(r);
  ASSERT_EQ(j["checkpoints"].size(), 3u) << Describe(r);
  int64_t previous_commit = 0;
  for (size_t i = 0; i < 3; ++i) {
    const json& c = j["checkpoints"][i];
    SCOPED_TRACE(spec(i).id);
    EXPECT_EQ(c["id"], spec(i).id);
    EXPECT_EQ(c["state"], "committed");
    EXPECT_EQ(c["world_size"], spec(i).world);
    EXPECT_EQ(c["num_tensors"], state(i).size());
    EXPECT_EQ(c["logical_bytes"], FixtureBytes(state(i)));
    // The first checkpoint is a full save; the later ones are incremental on the one before and
    // store only the chunks that changed (the fixture's chunks are whole shards).
    if (i == 0) {
      EXPECT_EQ(c["stored_bytes"], FixtureBytes(state(i)));
      EXPECT_TRUE(c["base"].is_null());
    } else {
      EXPECT_LT(c["stored_bytes"].get<uint64_t>(), FixtureBytes(state(i)));
      EXPECT_EQ(c["base"], spec(i - 1).id);
    }
    EXPECT_EQ(c["ranks_with_data"], AllRanks(spec(i).world));
    const int64_t committed = c["committed_unix_micros"];
    EXPECT_GE(committed, previous_commit);
    previous_commit = committed;
    // "2024-05-01T12:00:00.123456Z"
    EXPECT_THAT(c["committed_at"].get<std::string>(),
                ::testing::MatchesRegex("[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:]{8}\\.[0-9]{6}Z"));
  }
}

TEST_F(CliStoreTest, LsTextHasOneLinePerCheckpoint) {
  CliResult r = RunCli({"ls", root()});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  std::vector<std::string> lines = Lines(r.out);
  ASSERT_EQ(lines.size(), 4u) << Describe(r);
  EXPECT_THAT(lines[0], AllOf(HasSubstr("ID"), HasSubstr("COMMITTED"), HasSubstr("WORLD"),
                              HasSubstr("LOGICAL"), HasSubstr("STATE")));
  for (size_t i = 0; i < 3; ++i) {
    const std::string& line = lines[i + 1];
    EXPECT_EQ(line.substr(0, line.find(' ')), spec(i).id) << line;
    EXPECT_THAT(line, HasSubstr(" " + HumanBytes(FixtureBytes(state(i))) + " ")) << line;
    EXPECT_THAT(line, ::testing::ContainsRegex(" [0-9]+ B "));  // < 1 KiB: in bytes
    EXPECT_THAT(line, HasSubstr("committed"));
    EXPECT_THAT(line, HasSubstr(" UTC "));
  }
}

TEST_F(CliStoreTest, ShowJsonOfAWorldThreeCheckpoint) {
  CliResult r = RunCli({"show", "--json", root(), kB});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  json j = ParseJson(r);
  EXPECT_EQ(j["checkpoint_id"], kB);
  EXPECT_EQ(j["world_size"], 3);
  EXPECT_EQ(j["per_rank_commit"], false);
  EXPECT_EQ(j["logical_bytes"], FixtureBytes(state(1)));
  EXPECT_TRUE(j.contains("torch_dcp") && j["torch_dcp"].is_null()) << Describe(r);
  const testing::FixtureState& s = state(1);
  ASSERT_EQ(j["tensors"].size(), s.size()) << Describe(r);
  auto it = s.begin();
  for (const json& t : j["tensors"]) {
    const auto& [fqn, want] = *it++;
    SCOPED_TRACE(fqn);
    EXPECT_EQ(t["fqn"], fqn);
    EXPECT_EQ(t["kind"], want.is_bytes ? "bytes" : "tensor");
    EXPECT_EQ(t["bytes"], want.bytes.size());
    EXPECT_TRUE(t.contains("torch_properties") && t["torch_properties"].is_null());
    EXPECT_EQ(t["bytes_encoding"], want.is_bytes ? json("raw") : json(nullptr));
    const std::vector<int> ranks = t["ranks"];
    if (want.is_bytes) {
      EXPECT_EQ(t["shards"], 1);
      EXPECT_EQ(ranks.size(), 1u);
      continue;
    }
    EXPECT_EQ(t["dtype"], DTypeName(want.dtype));
    EXPECT_EQ(t["shape"], want.shape);
    switch (want.split) {
      case testing::FixtureTensor::kRows:
      case testing::FixtureTensor::kColumns:
        EXPECT_EQ(t["shards"], 3);
        EXPECT_EQ(ranks, AllRanks(3));
        break;
      case testing::FixtureTensor::kBlocks:
        EXPECT_EQ(t["shards"], 4);  // a 2x2 grid of blocks dealt to 3 ranks
        EXPECT_EQ(ranks, AllRanks(3));
        break;
      case testing::FixtureTensor::kReplicated:
        EXPECT_EQ(t["shards"], 1);  // saved once
        EXPECT_EQ(ranks.size(), 1u);
        break;
    }
    // Small shards: one chunk each (an empty tensor too).
    EXPECT_EQ(t["chunks"], t["shards"]);
  }
}

TEST_F(CliStoreTest, ShowLatestAndText) {
  CliResult latest = RunCli({"show", "--json", root(), "latest"});
  ASSERT_EQ(latest.exit_code, 0) << Describe(latest);
  EXPECT_EQ(ParseJson(latest)["checkpoint_id"], kC);

  CliResult r = RunCli({"show", root(), kA});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  std::vector<std::string> lines = Lines(r.out);
  ASSERT_EQ(lines.size(), 2 + state(0).size()) << Describe(r);
  EXPECT_THAT(lines[0], AllOf(HasSubstr("checkpoint step-9"), HasSubstr("world size 2"),
                              HasSubstr(std::to_string(state(0).size()) + " entries")));
  EXPECT_THAT(r.out, ::testing::ContainsRegex(
                         "\nmodel\\.w +float32 +\\[13, 8\\] +2 +2 +416 B +416 B +0,1\n"));
  EXPECT_THAT(r.out, ::testing::ContainsRegex(
                         "\ntrainer\\.state +bytes +- +1 +1 +[0-9]+ B +[0-9]+ B +[01]\n"));
}

// A checkpoint saved through dcpkv.torch (its manifest rewritten here with the fields dcpkv.torch
// writes): show prints the torch.distributed.checkpoint metadata and what differs from torch's
// defaults per entry; the other commands read it as any checkpoint.
TEST(CliShowTest, ShowsTorchDcpMetadata) {
  testing::TempDir tmp;
  const std::string root = tmp.Sub("store");
  testing::FixtureState state = testing::SaveFixture(root, {.id = "dcp", .world = 2});
  {
    std::unique_ptr<ChunkStore> store;
    ASSERT_TRUE(ChunkStore::Open(RankDirectory(root, 0), {}, &store).ok());
    StatusOr<ManifestRecord> record = store->GetManifest("dcp");
    ASSERT_TRUE(record.ok()) << record.status();
    StatusOr<Metadata> md = DecodeMetadata(record->payload);
    ASSERT_TRUE(md.ok()) << md.status();
    TorchTensorProperties grad;
    grad.requires_grad = true;
    grad.has_strides = true;
    grad.strides = {8, 1};
    md->entries.at("model.w").torch_properties = grad;
    TorchTensorProperties pinned;
    pinned.pin_memory = true;
    pinned.memory_format = "channels_last";
    pinned.layout = "sparse_coo";
    md->entries.at("model.bias").torch_properties = pinned;
    md->entries.at("model.col").torch_properties = TorchTensorProperties{};  // defaults
    md->entries.at("trainer.state").bytes_encoding = BytesEncoding::kTorchSave;
    TorchDcpMetadata& t = md->torch_dcp.emplace();
    t.version = "1.0.0";
    t.has_flatten_mapping = true;
    t.flatten_mapping["model.w"] = {{"model", -1}, {"w", -1}};
    t.flatten_mapping["opt.step_count"] = {{"opt", -1}, {"step_count", -1}};
    t.flatten_mapping["lists.0"] = {{"lists", -1}, {"", 0}};
    t.has_storage_meta = true;
    t.save_id = "save-42";
    t.modules = {"model", "opt"};
    record->payload = EncodeMetadata(*md);
    ASSERT_TRUE(store->PutManifest(*record).ok());
    ASSERT_TRUE(store->Close().ok());
  }

  CliResult r = RunCli({"show", root, "dcp"});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  std::vector<std::string> lines = Lines(r.out);
  ASSERT_EQ(lines.size(), 3 + state.size()) << Describe(r);
  EXPECT_THAT(lines[0], HasSubstr("checkpoint dcp: committed"));
  EXPECT_EQ(lines[1],
            "torch.distributed.checkpoint: version 1.0.0, 3 flattened names, storage meta: "
            "save_id save-42, modules model,opt");
  EXPECT_THAT(lines[2], ::testing::ContainsRegex("^FQN +DTYPE .* RANKS +TORCH$"));
  EXPECT_THAT(r.out, ::testing::ContainsRegex("\nmodel\\.w +float32 .* 0,1 +requires_grad=true\n"));
  EXPECT_THAT(r.out, ::testing::ContainsRegex(
                         "\nmodel\\.bias +float32 .* pin_memory=true layout=sparse_coo "
                         "memory_format=channels_last\n"));
  EXPECT_THAT(r.out, ::testing::ContainsRegex("\nmodel\\.col +bfloat16 .* 0,1 +-\n"));
  EXPECT_THAT(r.out, ::testing::ContainsRegex("\nopt\\.empty +float32 .* [01] +-\n"));
  EXPECT_THAT(r.out, ::testing::ContainsRegex("\ntrainer\\.state +bytes .* [01] +torch\\.save\n"));

  r = RunCli({"show", "--json", root, "dcp"});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  json j = ParseJson(r);
  const json& dcp = j["torch_dcp"];
  EXPECT_EQ(dcp["version"], "1.0.0") << Describe(r);
  EXPECT_EQ(dcp["flattened_names"], 3);
  EXPECT_EQ(dcp["flatten_mapping"]["lists.0"], json::array({"lists", 0}));
  EXPECT_EQ(dcp["flatten_mapping"]["model.w"], json::array({"model", "w"}));
  EXPECT_EQ(dcp["storage_meta"]["save_id"], "save-42");
  EXPECT_EQ(dcp["storage_meta"]["load_id"], "");
  EXPECT_EQ(dcp["storage_meta"]["modules"], json::array({"model", "opt"}));
  std::map<std::string, json> tensors;
  for (const json& e : j["tensors"]) tensors[e["fqn"].get<std::string>()] = e;
  ASSERT_EQ(tensors.size(), state.size()) << Describe(r);
  const json& w = tensors["model.w"]["torch_properties"];
  EXPECT_EQ(w["requires_grad"], true) << Describe(r);
  EXPECT_EQ(w["pin_memory"], false);
  EXPECT_EQ(w["layout"], "strided");
  EXPECT_EQ(w["memory_format"], "contiguous_format");
  EXPECT_EQ(w["strides"], json::array({8, 1}));
  const json& bias = tensors["model.bias"]["torch_properties"];
  EXPECT_EQ(bias["pin_memory"], true);
  EXPECT_EQ(bias["layout"], "sparse_coo");
  EXPECT_EQ(bias["memory_format"], "channels_last");
  EXPECT_TRUE(bias["strides"].is_null());
  EXPECT_TRUE(tensors["opt.empty"]["torch_properties"].is_null());
  EXPECT_TRUE(tensors["model.w"]["bytes_encoding"].is_null());
  EXPECT_EQ(tensors["trainer.state"]["bytes_encoding"], "torch.save");

  // The rest of the tools read it as any checkpoint.
  r = RunCli({"verify", root});
  EXPECT_EQ(r.exit_code, 0) << Describe(r);
  r = RunCli({"stats", "--json", root, "dcp", "model.w"});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  EXPECT_EQ(ParseJson(r)["tensors"][0]["count"], 13 * 8);
}

TEST_F(CliStoreTest, StatsOfSpecialValues) {
  CliResult r = RunCli({"stats", "--json", root(), kB, "stats.special", "--head", "3"});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  json j = ParseJson(r);
  EXPECT_EQ(j["checkpoint_id"], kB);
  ASSERT_EQ(j["tensors"].size(), 1u) << Describe(r);
  const json& t = j["tensors"][0];
  EXPECT_EQ(t["fqn"], "stats.special");
  EXPECT_EQ(t["dtype"], "float32");
  EXPECT_EQ(t["shape"], Shape{8});
  EXPECT_EQ(t["count"], 8);
  EXPECT_EQ(t["nan"], 1);
  EXPECT_EQ(t["inf"], 2);
  EXPECT_EQ(t["zeros"], 2);
  EXPECT_EQ(t["min"], 0.0);
  EXPECT_EQ(t["max"], 3.0);
  EXPECT_NEAR(t["mean"].get<double>(), 1.2, 1e-12);
  EXPECT_NEAR(t["std"].get<double>(), std::sqrt(1.7), 1e-12);  // of 0, -0, 1, 2, 3
  EXPECT_EQ(t["head"], json::array({0.0, -0.0, 1.0}));

  // NaN and infinities in the head are null (JSON has neither); the head crosses the shards of
  // three ranks (3, 3 and 2 rows).
  r = RunCli({"stats", "--json", root(), kB, "stats.special", "--head", "100"});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  EXPECT_EQ(ParseJson(r)["tensors"][0]["head"],
            json::parse("[0.0, -0.0, 1.0, 2.0, null, null, null, 3.0]"));

  // Text: nan, inf and -inf spelled out.
  r = RunCli({"stats", root(), kB, "stats.special", "--head", "8"});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  EXPECT_THAT(r.out, HasSubstr("stats.special: 0 -0 1 2 nan inf -inf 3\n"));
}

TEST_F(CliStoreTest, HeadIsADecimalCount) {
  CliResult r = RunCli({"stats", "--json", root(), kA, "model.w", "--head", "010"});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  EXPECT_EQ(ParseJson(r)["tensors"][0]["head"].size(), 10u);  // not octal
  r = RunCli({"stats", "--json", root(), kA, "model.w", "--head", "0"});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  EXPECT_EQ(ParseJson(r)["tensors"][0]["head"], json::array());
}

TEST_F(CliStoreTest, OutputThatCannotBeWrittenIsAFailure) {
  if (!std::filesystem::exists("/dev/full")) GTEST_SKIP() << "no /dev/full";
  testing::TempDir tmp;
  BackgroundProcess p(DCPKV_CLI_PATH, {"ls", "--json", root()}, "/dev/full", tmp.Sub("err"));
  EXPECT_EQ(p.Wait(), 3);
  EXPECT_THAT(p.Stderr(), HasSubstr("writing the output failed"));
}

TEST_F(CliStoreTest, StatsOfEveryTensorMatchTheSavedValues) {
  CliResult r = RunCli({"stats", "--json", root(), "latest"});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  json j = ParseJson(r);
  EXPECT_EQ(j["checkpoint_id"], kC);
  const testing::FixtureState& s = state(2);
  ASSERT_EQ(j["tensors"].size(), s.size()) << Describe(r);
  for (const json& t : j["tensors"]) {
    const std::string fqn = t["fqn"];
    SCOPED_TRACE(fqn);
    ASSERT_TRUE(s.count(fqn));
    EXPECT_EQ(t["head"], json::array());
    if (fqn == "trainer.state") {
      EXPECT_EQ(t["dtype"], "bytes");
      EXPECT_EQ(t["count"], s.at(fqn).bytes.size());
      EXPECT_FALSE(t.contains("mean"));
    }
    if (fqn != "model.w") continue;
    std::vector<float> v = Floats(s.at(fqn));
    double sum = 0;
    for (float f : v) sum += f;
    EXPECT_EQ(t["count"], v.size());
    EXPECT_EQ(t["min"], *std::min_element(v.begin(), v.end()));
    EXPECT_EQ(t["max"], *std::max_element(v.begin(), v.end()));
    EXPECT_NEAR(t["mean"].get<double>(), sum / v.size(), 1e-9);
    EXPECT_EQ(t["nan"], 0);
  }
}

TEST_F(CliStoreTest, VerifyIntactStore) {
  CliResult r = RunCli({"verify", "--json", root()});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  json j = ParseJson(r);
  EXPECT_EQ(j["ok"], true);
  EXPECT_EQ(j["checkpoints"], 3);
  EXPECT_EQ(j["tensors"], state(0).size() + state(1).size() + state(2).size());
  EXPECT_EQ(j["bytes"], FixtureBytes(state(0)) + FixtureBytes(state(1)) + FixtureBytes(state(2)));
  EXPECT_EQ(j["problems"], json::array());

  r = RunCli({"verify", root(), kB, "latest"});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  EXPECT_THAT(
      r.out, ::testing::StartsWith("OK: 2 checkpoints, " +
                                   std::to_string(state(1).size() + state(2).size()) + " tensors"));
  EXPECT_THAT(r.out, HasSubstr("; 0 problems\n"));

  r = RunCli({"verify", "--threads", "1", "--json", root()});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  EXPECT_EQ(ParseJson(r)["bytes"], j["bytes"]);
  r = RunCli({"verify", "--threads", "0", root()});
  EXPECT_EQ(r.exit_code, 2) << Describe(r);
  EXPECT_THAT(r.err, HasSubstr("--threads"));
}

TEST_F(CliStoreTest, DiffJson) {
  CliResult r = RunCli({"diff", "--json", root(), kA, kB});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  json j = ParseJson(r);
  EXPECT_EQ(j["a"], kA);
  EXPECT_EQ(j["b"], kB);
  // model.extra added, model.mask removed, the two reseeded tensors changed.
  EXPECT_EQ(j["added"], 1);
  EXPECT_EQ(j["removed"], 1);
  EXPECT_EQ(j["changed"], 2);
  EXPECT_EQ(j["unchanged"], state(0).size() - 3);
  std::set<std::string> fqns;
  for (const auto& [fqn, t] : state(0)) fqns.insert(fqn);
  for (const auto& [fqn, t] : state(1)) fqns.insert(fqn);
  ASSERT_EQ(j["tensors"].size(), fqns.size()) << Describe(r);
  for (const json& t : j["tensors"]) {
    const std::string fqn = t["fqn"];
    SCOPED_TRACE(fqn);
    const std::string want = fqn == "model.extra"                               ? "added"
                             : fqn == "model.mask"                              ? "removed"
                             : fqn == "model.w" || fqn == "model.grid"          ? "changed"
                             : state(0).at(fqn).bytes == state(1).at(fqn).bytes ? "unchanged"
                                                                                : "?";
    EXPECT_EQ(t["status"], want);
    if (want != "changed") continue;
    EXPECT_EQ(t["detail"], "values");
    EXPECT_GT(t["elements_changed"].get<uint64_t>(), 0u);
    if (fqn == "model.w") {
      std::vector<float> a = Floats(state(0).at(fqn)), b = Floats(state(1).at(fqn));
      uint64_t changed = 0;
      double max_diff = 0;
      for (size_t i = 0; i < a.size(); ++i) {
        changed += a[i] != b[i];
        max_diff = std::max(max_diff, std::fabs(static_cast<double>(b[i]) - a[i]));
      }
      EXPECT_EQ(t["elements_changed"], changed);
      EXPECT_EQ(t["max_abs_diff"], max_diff);
    }
  }

  // Text, and the same checkpoint on both sides.
  r = RunCli({"diff", root(), kB, kB});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  EXPECT_THAT(r.out, ::testing::StartsWith("diff step-10 -> step-10: 0 added, 0 removed, 0 "
                                           "changed, " +
                                           std::to_string(state(1).size()) + " unchanged\n"));
}

TEST_F(CliStoreTest, ExportImportExportIsByteIdentical) {
  testing::TempDir out;
  const std::string first = out.Sub("b.safetensors"), second = out.Sub("again.safetensors");
  const std::string root2 = out.Sub("store2");
  CliResult r = RunCli({"export", root(), kB, "-o", first});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  const std::string bytes = ReadFileBytes(first);
  ASSERT_FALSE(bytes.empty());
  EXPECT_EQ(r.out, "exported checkpoint step-10 (" + std::to_string(state(1).size()) +
                       " tensors) to " + first + " (" + HumanBytes(bytes.size()) + ")\n");

  r = RunCli({"import", "--json", first, root2, "imported"});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  json j = ParseJson(r);
  EXPECT_EQ(j["checkpoint_id"], "imported");
  EXPECT_EQ(j["tensors"], state(1).size());
  EXPECT_EQ(j["logical_bytes"], FixtureBytes(state(1)));

  r = RunCli({"export", "--json", root2, "latest", "--output", second});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  j = ParseJson(r);
  EXPECT_EQ(j["checkpoint_id"], "imported");
  EXPECT_EQ(j["path"], second);
  EXPECT_EQ(j["file_bytes"], bytes.size());
  EXPECT_TRUE(ReadFileBytes(second) == bytes) << "re-exported file differs";

  // The imported checkpoint is a single-rank copy with the same values.
  r = RunCli({"ls", "--json", root2});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  j = ParseJson(r);
  ASSERT_EQ(j["checkpoints"].size(), 1u);
  EXPECT_EQ(j["checkpoints"][0]["world_size"], 1);
  r = RunCli({"verify", root2});
  EXPECT_EQ(r.exit_code, 0) << Describe(r);

  // Importing again under the same id fails, naming it; the text summary on success.
  r = RunCli({"import", first, root2, "imported"});
  EXPECT_EQ(r.exit_code, 3) << Describe(r);
  EXPECT_THAT(r.err, AllOf(HasSubstr("\"imported\""), HasSubstr("already")));
  r = RunCli({"import", first, root2, "second"});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  EXPECT_EQ(r.out, "imported " + std::to_string(state(1).size()) + " tensors (" +
                       HumanBytes(FixtureBytes(state(1))) + ") as checkpoint second\n");
}

// Another program's RocksDB database where the rank database should be: import refuses it,
// writing nothing into it (it used to add dcpkv's column families and exit 0).
TEST_F(CliStoreTest, ImportRefusesAnotherProgramsDatabase) {
  testing::TempDir out;
  const std::string file = out.Sub("b.safetensors");
  CliResult r = RunCli({"export", root(), kB, "-o", file});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  const std::string foreign_root = out.Sub("foreign");
  const std::string rank0 = foreign_root + "/rank-00000";
  std::filesystem::create_directories(foreign_root);
  ASSERT_NO_FATAL_FAILURE(testing::MakeForeignRocksDB(rank0));
  const auto before = Snapshot(foreign_root);
  r = RunCli({"import", file, foreign_root, "imported"});
  EXPECT_EQ(r.exit_code, 3) << Describe(r);
  EXPECT_THAT(r.err, AllOf(HasSubstr(rank0), HasSubstr("not a dcpkv store")));
  EXPECT_EQ(Snapshot(foreign_root), before);
  std::vector<std::string> families;
  ASSERT_TRUE(rocksdb::DB::ListColumnFamilies(rocksdb::DBOptions(), rank0, &families).ok());
  EXPECT_THAT(families, ::testing::ElementsAre("default"));
}

TEST_F(CliStoreTest, UnknownCheckpointFailsNamingIt) {
  for (std::vector<std::string> args : std::vector<std::vector<std::string>>{
           {"show", root(), "step-404"},
           {"stats", root(), "step-404"},
           {"verify", root(), kA, "step-404"},
           {"diff", root(), kA, "step-404"},
           {"export", root(), "step-404", "-o", root() + "/never.safetensors"}}) {
    CliResult r = RunCli(args);
    EXPECT_EQ(r.exit_code, 3) << Describe(r);
    EXPECT_THAT(r.err, AllOf(HasSubstr("\"step-404\""), HasSubstr(root())));
    EXPECT_EQ(r.out, "");
  }
  EXPECT_FALSE(std::filesystem::exists(root() + "/never.safetensors"));
  CliResult r = RunCli({"stats", root(), kA, "model.nope"});
  EXPECT_EQ(r.exit_code, 3) << Describe(r);
  EXPECT_THAT(r.err, HasSubstr("\"model.nope\""));
}

// ---------------------------------------------------------------------------------------------
// Damaged stores: a checkpoint "good" (world 2) and a checkpoint "bad" (world 3) whose data is
// then damaged underneath the store.

class CliDamageTest : public ::testing::Test {
 protected:
  void SetUp() override {
    testing::SaveFixture(root_, {.id = "good", .world = 2});
    bad_ = testing::SaveFixture(root_, {.id = "bad", .world = 3, .seed = 5});
  }

  // Saves "big" from this process (rank 0) with 64 KiB chunks: "model.big" is 1 MiB in 16
  // chunks.
  void SaveBig() {
    std::vector<float> values(256 * 1024);
    for (size_t i = 0; i < values.size(); ++i) values[i] = static_cast<float>(i % 977);
    StateDict sd;
    sd.Set("model.big", Tensor::Wrap(DType::kFloat32, {256, 1024}, values.data()));
    SaveOptions o;
    o.checkpoint_id = "big";
    o.storage_writer = std::make_shared<KvStorageWriter>(
        KvStorageOptions{.root = root_, .store_options = {.chunk_size = 64 << 10}});
    StatusOr<Metadata> md = Save(sd, o);
    ASSERT_TRUE(md.ok()) << md.status();
  }

  // The key of the first chunk of `fqn`'s shard saved by `rank` in "bad".
  std::string ChunkKeyOf(const std::string& fqn, int rank, Shape* offsets) {
    *offsets = testing::FixtureBoxes(bad_.at(fqn), 3, rank).at(0).offsets;
    return *EncodeChunkKey({"bad", fqn, *offsets, 0});
  }

  testing::TempDir tmp_;
  std::string root_ = tmp_.Sub("store");
  testing::FixtureState bad_;
};

TEST_F(CliDamageTest, VerifyReportsAFlippedByte) {
  // Rank 1's rows of model.w: flip one payload byte of the stored value.
  Shape offsets;
  const std::string key = ChunkKeyOf("model.w", 1, &offsets);
  const testing::FixtureTensor& w = bad_.at("model.w");
  const Box box = testing::FixtureBoxes(w, 3, 1).at(0);
  const std::string payload = w.bytes.substr(box.offsets[0] * 8 * 4, box.sizes[0] * 8 * 4);
  {
    RawDB raw(RankDirectory(root_, 1));
    ASSERT_TRUE(raw.ok());
    std::string value = raw.Get(key);
    const size_t pos = value.find(payload);
    ASSERT_NE(pos, std::string::npos) << "payload not found in the stored value";
    value[pos + 17] ^= 0x10;
    raw.Put(key, value);
  }

  CliResult r = RunCli({"verify", root_});
  ASSERT_EQ(r.exit_code, 1) << Describe(r);
  std::vector<std::string> lines = Lines(r.out);
  ASSERT_EQ(lines.size(), 2u) << Describe(r);
  EXPECT_THAT(lines[0], AllOf(::testing::StartsWith("PROBLEM checkpoint \"bad\" fqn \"model.w\" "
                                                    "shard " +
                                                    ShapeToString(offsets) + " rank 1 byte 0.."),
                              HasSubstr("checksum mismatch")));
  EXPECT_THAT(lines[1], AllOf(::testing::StartsWith("FAILED: 2 checkpoints"),
                              ::testing::EndsWith("; 1 problem")));

  r = RunCli({"verify", "--json", root_, "bad"});
  ASSERT_EQ(r.exit_code, 1) << Describe(r);
  json j = ParseJson(r);
  EXPECT_EQ(j["ok"], false);
  ASSERT_EQ(j["problems"].size(), 1u) << Describe(r);
  const json& p = j["problems"][0];
  EXPECT_EQ(p["checkpoint_id"], "bad");
  EXPECT_EQ(p["fqn"], "model.w");
  EXPECT_EQ(p["rank"], 1);
  EXPECT_EQ(p["shard_offsets"], offsets);
  EXPECT_EQ(p["byte_offset"], 0);
  EXPECT_THAT(p["what"].get<std::string>(), HasSubstr("checksum mismatch"));

  // The intact checkpoint alone verifies; reading the damaged tensor fails, leaving no file.
  r = RunCli({"verify", root_, "good"});
  EXPECT_EQ(r.exit_code, 0) << Describe(r);
  r = RunCli({"stats", root_, "bad", "model.w"});
  EXPECT_EQ(r.exit_code, 3) << Describe(r);
  EXPECT_THAT(
      r.err, AllOf(HasSubstr("\"bad\""), HasSubstr("\"model.w\""), HasSubstr("checksum mismatch")));
  r = RunCli({"export", root_, "bad", "-o", tmp_.Sub("bad.safetensors")});
  EXPECT_EQ(r.exit_code, 3) << Describe(r);
  EXPECT_THAT(r.err, HasSubstr("checksum mismatch"));
  EXPECT_FALSE(std::filesystem::exists(tmp_.Sub("bad.safetensors")));
  for (const auto& entry : std::filesystem::directory_iterator(tmp_.path())) {
    EXPECT_THAT(entry.path().filename().string(), Not(HasSubstr("safetensors")));
  }
}

TEST_F(CliDamageTest, VerifyReportsAMissingChunk) {
  ASSERT_NO_FATAL_FAILURE(SaveBig());
  const uint64_t byte = 5 * (64 << 10);
  {
    RawDB raw(RankDirectory(root_, 0));
    ASSERT_TRUE(raw.ok());
    raw.Delete(*EncodeChunkKey({"big", "model.big", {0, 0}, byte}));
  }
  CliResult r = RunCli({"verify", root_});
  ASSERT_EQ(r.exit_code, 1) << Describe(r);
  std::vector<std::string> lines = Lines(r.out);
  ASSERT_EQ(lines.size(), 2u) << Describe(r);
  EXPECT_THAT(lines[0], AllOf(::testing::StartsWith("PROBLEM checkpoint \"big\" fqn \"model.big\" "
                                                    "shard [0, 0] rank 0 byte " +
                                                    std::to_string(byte) + ".." +
                                                    std::to_string(byte + 65536) + ": "),
                              HasSubstr("missing chunk")));
  EXPECT_THAT(lines[1], AllOf(::testing::StartsWith("FAILED: 3 checkpoints"),
                              ::testing::EndsWith("; 1 problem")));

  r = RunCli({"verify", "--json", root_, "big"});
  ASSERT_EQ(r.exit_code, 1) << Describe(r);
  json j = ParseJson(r);
  EXPECT_EQ(j["ok"], false);
  EXPECT_EQ(j["chunks"], 15);
  ASSERT_EQ(j["problems"].size(), 1u) << Describe(r);
  const json& p = j["problems"][0];
  EXPECT_EQ(p["checkpoint_id"], "big");
  EXPECT_EQ(p["fqn"], "model.big");
  EXPECT_EQ(p["rank"], 0);
  EXPECT_EQ(p["byte_offset"], byte);
  EXPECT_EQ(p["byte_end"], byte + 65536);
  EXPECT_THAT(p["what"].get<std::string>(), HasSubstr("missing chunk"));
}

TEST_F(CliDamageTest, VerifyReportsAShardWithoutChunks) {
  Shape offsets;
  const std::string key = ChunkKeyOf("model.grid", 2, &offsets);  // block 2 of 4: one chunk
  {
    RawDB raw(RankDirectory(root_, 2));
    ASSERT_TRUE(raw.ok());
    raw.Delete(key);
  }
  CliResult r = RunCli({"verify", root_});
  ASSERT_EQ(r.exit_code, 1) << Describe(r);
  EXPECT_THAT(r.out, HasSubstr("PROBLEM checkpoint \"bad\" fqn \"model.grid\" shard " +
                               ShapeToString(offsets) + " rank 2 byte 0..72: "));
  EXPECT_THAT(r.out, HasSubstr("no chunks stored for this shard"));
  EXPECT_THAT(r.out, HasSubstr("FAILED: "));

  r = RunCli({"verify", "--json", root_});
  ASSERT_EQ(r.exit_code, 1) << Describe(r);
  json j = ParseJson(r);
  EXPECT_EQ(j["ok"], false);
  ASSERT_EQ(j["problems"].size(), 1u) << Describe(r);
  EXPECT_EQ(j["problems"][0]["checkpoint_id"], "bad");
  EXPECT_EQ(j["problems"][0]["fqn"], "model.grid");
}

// ---------------------------------------------------------------------------------------------
// Usage and errors without a store.

TEST(CliTest, MissingRootFailsNamingThePath) {
  testing::TempDir tmp;
  const std::string missing = tmp.Sub("no-such-store");
  for (const char* cmd : {"ls", "verify"}) {
    CliResult r = RunCli({cmd, missing});
    EXPECT_EQ(r.exit_code, 3) << Describe(r);
    EXPECT_THAT(r.err, AllOf(HasSubstr(missing), HasSubstr("does not exist")));
    EXPECT_EQ(r.out, "");
  }
  CliResult r = RunCli({"show", missing, "latest"});
  EXPECT_EQ(r.exit_code, 3) << Describe(r);
  EXPECT_THAT(r.err, HasSubstr(missing));

  // A directory that is not a store.
  r = RunCli({"ls", tmp.path()});
  EXPECT_EQ(r.exit_code, 3) << Describe(r);
  EXPECT_THAT(r.err, AllOf(HasSubstr(tmp.path()), HasSubstr("no rank-NNNNN database")));
}

TEST(CliTest, BadUsageExitsTwo) {
  testing::TempDir tmp;
  for (std::vector<std::string> args : std::vector<std::vector<std::string>>{
           {},
           {"frobnicate", tmp.path()},
           {"ls"},
           {"ls", "--bogus", tmp.path()},
           {"ls", tmp.path(), "extra"},
           {"show", tmp.path()},
           {"diff", tmp.path(), "a"},
           {"export", tmp.path(), "latest"},
           {"export", tmp.path(), "latest", "--format", "npz", "-o", tmp.Sub("x")},
           {"stats", tmp.path(), "latest", "--head", "-1"},
           {"stats", tmp.path(), "latest", "--head", "many"},
           {"import", tmp.Sub("missing.safetensors"), tmp.path(), "x"},
           {"--json"}}) {
    CliResult r = RunCli(args);
    EXPECT_EQ(r.exit_code, 2) << Describe(r);
    EXPECT_EQ(r.out, "") << Describe(r);
    EXPECT_THAT(r.err, ::testing::StartsWith("dcpkv: error: ")) << Describe(r);
    EXPECT_THAT(r.err, HasSubstr("--help` for more information")) << Describe(r);
    EXPECT_LT(r.err.size(), 400u) << Describe(r);  // a message, not a wall of text
  }
  CliResult r = RunCli({"frobnicate", tmp.path()});
  EXPECT_THAT(r.err, AllOf(HasSubstr("unknown command \"frobnicate\""), HasSubstr("verify")));
  r = RunCli({"stats", tmp.path(), "latest", "--head", "-1"});
  EXPECT_THAT(r.err,
              AllOf(HasSubstr("--head"), HasSubstr("\"-1\""), HasSubstr("`dcpkv stats --help`")));
  r = RunCli({"show", tmp.path()});
  EXPECT_THAT(r.err, AllOf(HasSubstr("CKPT is required"), HasSubstr("`dcpkv show --help`")));
}

TEST(CliTest, HelpListsEveryCommand) {
  CliResult r = RunCli({"--help"});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  for (const char* cmd : {"ls", "show", "stats", "verify", "diff", "export", "import", "rm", "gc",
                          "serve", "recover"}) {
    EXPECT_THAT(r.out, ::testing::ContainsRegex(std::string("\n +") + cmd + " ")) << cmd;
  }
  EXPECT_THAT(r.out, HasSubstr("Exit codes"));

  r = RunCli({"verify", "--help"});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  EXPECT_THAT(r.out, AllOf(HasSubstr("--json"), HasSubstr("ROOT"), HasSubstr("CKPT")));

  r = RunCli({"export", "-h"});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  EXPECT_THAT(r.out, AllOf(HasSubstr("--output"), HasSubstr("--format")));
}

// ---------------------------------------------------------------------------------------------
// rm and gc.

// Three incremental checkpoints (each on the one before), plus chunk data of a save that never
// committed.
class CliRmGcTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (int i = 0; i < 3; ++i) {
      testing::FixtureSpec spec{.id = "c" + std::to_string(i), .world = 2};
      spec.seed = 1;
      if (i == 1) spec.reseeded = {"model.w"};
      if (i == 2) spec.reseeded = {"model.grid"};
      spec.incremental = true;
      states_.push_back(testing::SaveFixture(root_, spec));
    }
    std::unique_ptr<ChunkStore> db;
    ASSERT_TRUE(ChunkStore::Open(RankDirectory(root_, 1), {}, &db).ok());
    std::vector<uint8_t> data(1024, 7);
    ASSERT_TRUE(db->PutShard("crashed", "w", {DType::kUInt8, {0}, {1024}}, data.data(), 1024).ok());
    ASSERT_TRUE(db->Close().ok());
  }

  std::set<std::string> Listed(const std::string& state) {
    CliResult r = RunCli({"ls", "--json", root_});
    EXPECT_EQ(r.exit_code, 0) << Describe(r);
    std::set<std::string> ids;
    const json j = ParseJson(r);
    for (const json& c : j["checkpoints"]) {
      if (c["state"] == state) ids.insert(c["id"].get<std::string>());
    }
    return ids;
  }

  testing::TempDir tmp_;
  std::string root_ = tmp_.path() + "/store";
  std::vector<testing::FixtureState> states_;
};

TEST_F(CliRmGcTest, RmKeepsWhatNewerCheckpointsReferTo) {
  ASSERT_EQ(Listed("committed"), (std::set<std::string>{"c0", "c1", "c2"}));
  CliResult r = RunCli({"rm", "--json", root_, "c0", "c1"});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  json j = ParseJson(r);
  EXPECT_EQ(j["removed"], json::array({"c0", "c1"}));
  EXPECT_EQ(j["gc"]["orphans"], json::array({"crashed"}));
  EXPECT_GT(j["gc"]["chunks_kept"].get<uint64_t>(), 0u) << "c2 refers to c0's and c1's chunks";
  EXPECT_EQ(Listed("committed"), (std::set<std::string>{"c2"}));
  EXPECT_EQ(Listed("uncommitted"), std::set<std::string>{});
  // c0's chunks that c2 uses stay, under c0's id: listed as deleted, not loadable. (c2 stores
  // its own model.w, which differs from c1's, and refers to nothing of c1.)
  EXPECT_EQ(Listed("deleted"), (std::set<std::string>{"c0"}));
  r = RunCli({"show", root_, "c0"});
  EXPECT_EQ(r.exit_code, 3) << Describe(r);
  EXPECT_THAT(r.err, HasSubstr("was deleted"));
  r = RunCli({"verify", root_});
  EXPECT_EQ(r.exit_code, 0) << Describe(r);
  // What c2 holds is what was saved.
  r = RunCli({"stats", "--json", root_, "c2", "model.w"});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  EXPECT_EQ(ParseJson(r)["tensors"][0]["count"], 13 * 8);

  r = RunCli({"rm", root_, "latest"});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  EXPECT_THAT(r.out, HasSubstr("removed: c2"));
  EXPECT_EQ(Listed("committed"), std::set<std::string>{});
  EXPECT_EQ(Listed("deleted"), std::set<std::string>{}) << "nothing refers to them any more";
}

TEST_F(CliRmGcTest, GcRemovesUncommittedDataAndErrorsAreClear) {
  EXPECT_EQ(Listed("uncommitted"), std::set<std::string>{"crashed"});
  CliResult r = RunCli({"gc", root_});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  EXPECT_THAT(r.out, HasSubstr("uncommitted data removed: crashed"));
  EXPECT_EQ(Listed("uncommitted"), std::set<std::string>{});
  EXPECT_EQ(Listed("committed"), (std::set<std::string>{"c0", "c1", "c2"}));

  r = RunCli({"rm", root_, "nope"});
  EXPECT_EQ(r.exit_code, 3) << Describe(r);
  EXPECT_THAT(r.err, HasSubstr("nope"));
  r = RunCli({"rm", root_});
  EXPECT_EQ(r.exit_code, 2) << Describe(r);
  r = RunCli({"gc", tmp_.path() + "/missing"});
  EXPECT_EQ(r.exit_code, 3) << Describe(r);

  // A job holding a rank database read-write: rm refuses and changes nothing; gc, with nothing
  // left to collect, finds that out read-only.
  std::unique_ptr<ChunkStore> held;
  ASSERT_TRUE(ChunkStore::Open(RankDirectory(root_, 0), {}, &held).ok());
  r = RunCli({"rm", root_, "c0"});
  EXPECT_EQ(r.exit_code, 3) << Describe(r);
  EXPECT_THAT(r.err, HasSubstr("in use by a running job"));
  r = RunCli({"gc", root_});
  EXPECT_EQ(r.exit_code, 0) << Describe(r);
  EXPECT_THAT(r.out, HasSubstr("reclaimed: none"));
  held.reset();
  EXPECT_EQ(Listed("committed"), (std::set<std::string>{"c0", "c1", "c2"}));
}

// A job holding the root's writer lease (between two saves, its databases closed): the writing
// commands refuse at once, naming the job, and change nothing; once it lets go they work.
TEST_F(CliRmGcTest, WritingCommandsRefuseWhileAJobHoldsTheLease) {
  auto lease = WriterLease::Acquire(root_, {.job_id = "torchelastic:training-run-3"});
  ASSERT_TRUE(lease.ok()) << lease.status();
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"gc", root_}, {"rm", root_, "c0"}}) {
    CliResult r = RunCli(args);
    EXPECT_EQ(r.exit_code, 3) << Describe(r);
    EXPECT_THAT(r.err, HasSubstr("leased to job \"torchelastic:training-run-3\""));
    EXPECT_THAT(r.err, HasSubstr("pid " + std::to_string(::getpid())));
    EXPECT_THAT(r.err, HasSubstr("stop the job first"));
  }
  EXPECT_EQ(Listed("uncommitted"), std::set<std::string>{"crashed"});
  EXPECT_EQ(Listed("committed"), (std::set<std::string>{"c0", "c1", "c2"}));
  lease->reset();
  CliResult r = RunCli({"gc", root_});
  EXPECT_EQ(r.exit_code, 0) << Describe(r);
  EXPECT_EQ(Listed("uncommitted"), std::set<std::string>{});
  EXPECT_FALSE(std::filesystem::exists(root_ + "/" + kWriterLeaseFileName)) << "let go";
}

// ---------------------------------------------------------------------------------------------
// serve, recover, and replication as ls shows it.

// Waits for `dcpkv serve` to print "listening on HOST:PORT"; returns HOST:PORT or "".
std::string WaitForListening(BackgroundProcess& serve) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (std::chrono::steady_clock::now() < deadline && serve.Running()) {
    const std::string out = serve.Stdout();
    const size_t at = out.find("listening on ");
    const size_t end = out.find('\n', at);
    if (at != std::string::npos && end != std::string::npos)
      return out.substr(at + 13, end - at - 13);
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return "";
}

StatusOr<Metadata> SaveSmall(const std::string& root, const std::string& id, int seed,
                             std::shared_ptr<ManifestReplication> replication) {
  std::vector<uint8_t> data = testing::RandomBytes(32 << 10, seed);
  StateDict sd;
  sd.Set("w", Tensor::Wrap(DType::kUInt8, {data.size()}, data.data()));
  SaveOptions o;
  o.checkpoint_id = id;
  o.store_root = root;
  o.replication = std::move(replication);
  return Save(sd, o);
}

TEST(CliServeTest, ServeRecoverRmAndLsShowReplication) {
  testing::TempDir tmp;
  const std::string root = tmp.Sub("store"), replica_root = tmp.Sub("replica");
  auto serve = std::make_unique<BackgroundProcess>(
      DCPKV_CLI_PATH, std::vector<std::string>{"serve", "--root", replica_root},
      tmp.Sub("serve.out"), tmp.Sub("serve.err"));
  const std::string address = WaitForListening(*serve);
  ASSERT_FALSE(address.empty()) << serve->Stderr();
  EXPECT_THAT(address, ::testing::StartsWith("127.0.0.1:")) << "binds loopback by default";

  replication::ReplicatorOptions ro;
  ro.ns = "job-7";
  ro.targets = {address};
  auto replicas = replication::GrpcManifestReplication::Create(ro);
  ASSERT_TRUE(replicas.ok()) << replicas.status();
  ASSERT_TRUE(SaveSmall(root, "c1", 1, *replicas).ok());
  ASSERT_TRUE(SaveSmall(root, "c2", 2, *replicas).ok());
  CliResult r = RunCli({"ls", "--json", root});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  json j = ParseJson(r);
  EXPECT_EQ(j["checkpoints"][0]["replication"], "1/1 replicas");
  r = RunCli({"ls", root});
  EXPECT_THAT(r.out, AllOf(HasSubstr("REPLICATION"), HasSubstr("1/1 replicas")));

  // The coordinator's manifests are lost; recover restores them from the replica.
  {
    RawDB raw(RankDirectory(root, 0));
    for (const char* id : {"c1", "c2"}) {
      raw.Delete(testing::kRawManifestsCf, *EncodeManifestKey(id));
    }
  }
  r = RunCli({"recover", "--json", root, "--from", address, "--namespace", "job-7"});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  j = ParseJson(r);
  EXPECT_EQ(j["restored"], json::array({"c1", "c2"}));
  r = RunCli({"verify", root});
  EXPECT_EQ(r.exit_code, 0) << Describe(r);
  r = RunCli({"recover", root, "--from", address, "--namespace", "job-7"});
  EXPECT_THAT(r.out, HasSubstr("restored 0 manifests"));

  // rm with --replica deletes there too.
  r = RunCli({"rm", root, "c1", "--replica", address, "--namespace", "job-7"});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  auto client = replication::ReplicaClient::Connect(address, {});
  ASSERT_TRUE(client.ok());
  EXPECT_EQ(*(*client)->List("job-7"), std::vector<std::string>{"c2"});

  // SIGTERM stops it cleanly; a restart on the same root serves the same manifests.
  serve->Signal(SIGTERM);
  EXPECT_EQ(serve->Wait(), 0) << serve->Stderr();
  serve = std::make_unique<BackgroundProcess>(
      DCPKV_CLI_PATH,
      std::vector<std::string>{"serve", "--root", replica_root, "--listen", address},
      tmp.Sub("serve2.out"), tmp.Sub("serve2.err"));
  ASSERT_EQ(WaitForListening(*serve), address) << serve->Stderr();
  client = replication::ReplicaClient::Connect(address, {});
  ASSERT_TRUE(client.ok());
  EXPECT_EQ(*(*client)->List("job-7"), std::vector<std::string>{"c2"});
  serve->Signal(SIGINT);
  EXPECT_EQ(serve->Wait(), 0) << serve->Stderr();

  // Errors: a replica that is not there, missing flags.
  r = RunCli({"recover", root, "--from", address, "--namespace", "job-7"});
  EXPECT_EQ(r.exit_code, 3) << Describe(r);
  EXPECT_THAT(r.err, HasSubstr("UNAVAILABLE"));
  r = RunCli({"serve"});
  EXPECT_EQ(r.exit_code, 2) << Describe(r);
  r = RunCli({"recover", root, "--from", address});
  EXPECT_EQ(r.exit_code, 2) << Describe(r);
}

// ---------------------------------------------------------------------------------------------
// A writer saving while the CLI reads.

TEST(CliLiveTest, ReadsWhileAWriterSaves) {
  constexpr int kCount = 40;
  testing::TempDir tmp;
  const std::string root = tmp.Sub("store");
  BackgroundProcess writer(DCPKV_SAVE_LOOP_PATH,
                           {"--root", root, "--count", std::to_string(kCount), "--prefix", "ck"},
                           tmp.Sub("writer.out"), tmp.Sub("writer.err"));
  ASSERT_TRUE(writer.started());

  std::vector<std::string> seen;  // committed ids of the last listing, in commit order
  bool store_seen = false;
  int rounds_while_writing = 0, partial_listings = 0;
  while (writer.Running()) {
    CliResult ls = RunCli({"ls", "--json", root});
    const bool writing = writer.Running();
    if (ls.exit_code == 3 && !store_seen) {  // the writer has not created the store yet
      EXPECT_THAT(ls.err, HasSubstr("no store")) << Describe(ls);
      continue;
    }
    store_seen = true;
    ASSERT_EQ(ls.exit_code, 0) << Describe(ls);
    json j = ParseJson(ls);
    std::vector<std::string> committed;
    for (const json& c : j["checkpoints"]) {
      if (c["state"] == "committed") {
        committed.push_back(c["id"]);
        EXPECT_EQ(c["num_tensors"], 4) << Describe(ls);
      } else {
        EXPECT_EQ(c["state"], "uncommitted") << Describe(ls);
      }
    }
    // Committed ids only grow, in commit order.
    ASSERT_GE(committed.size(), seen.size()) << Describe(ls);
    ASSERT_TRUE(std::equal(seen.begin(), seen.end(), committed.begin())) << Describe(ls);
    seen = committed;
    if (writing) ++rounds_while_writing;
    if (!committed.empty() && committed.size() < kCount) ++partial_listings;
    if (committed.empty()) continue;

    // Everything listed as committed verifies, and "latest" is at least as new.
    std::vector<std::string> args = {"verify", "--json", root};
    args.insert(args.end(), committed.begin(), committed.end());
    CliResult verify = RunCli(args);
    ASSERT_EQ(verify.exit_code, 0) << Describe(verify);
    json v = ParseJson(verify);
    EXPECT_EQ(v["ok"], true);
    EXPECT_EQ(v["checkpoints"], committed.size());
    EXPECT_EQ(v["tensors"], 4 * committed.size());

    CliResult show = RunCli({"show", "--json", root, "latest"});
    ASSERT_EQ(show.exit_code, 0) << Describe(show);
    EXPECT_GE(ParseJson(show)["checkpoint_id"].get<std::string>(), committed.back());
  }
  GTEST_LOG_(INFO) << rounds_while_writing << " listings while the writer ran, " << partial_listings
                   << " of a partly saved store";

  // The writer was neither blocked nor disturbed: every save succeeded.
  ASSERT_EQ(writer.Wait(), 0) << writer.Stderr();
  std::vector<std::string> want;
  for (int i = 0; i < kCount; ++i) {
    char id[32];
    std::snprintf(id, sizeof(id), "ck-%05d", i);
    want.push_back(id);
  }
  EXPECT_EQ(Lines(writer.Stdout()), want);
  EXPECT_GT(rounds_while_writing, 0);

  CliResult ls = RunCli({"ls", "--json", root});
  ASSERT_EQ(ls.exit_code, 0) << Describe(ls);
  json j = ParseJson(ls);
  std::vector<std::string> ids;
  for (const json& c : j["checkpoints"]) {
    EXPECT_EQ(c["state"], "committed");
    ids.push_back(c["id"]);
  }
  EXPECT_EQ(ids, want);

  // Three float32 tensors (256x256, 96x512, 64x1024) and "step=0".
  const uint64_t logical = (256 * 256 + 96 * 512 + 64 * 1024) * 4 + 6;
  EXPECT_EQ(j["checkpoints"][0]["logical_bytes"], logical);
  CliResult text = RunCli({"ls", root});
  ASSERT_EQ(text.exit_code, 0) << Describe(text);
  EXPECT_THAT(text.out, HasSubstr(" 704.0 KiB "));
  EXPECT_EQ(HumanBytes(logical), "704.0 KiB");

  CliResult verify = RunCli({"verify", root});
  EXPECT_EQ(verify.exit_code, 0) << Describe(verify);
  EXPECT_THAT(verify.out, ::testing::StartsWith("OK: 40 checkpoints, 160 tensors"));
}

}  // namespace
}  // namespace dcpkv

// dcpkv_bench: dcpkv's save, load and planning against baselines measured in the same run.
// main() only parses flags; the benchmarks are in tools/bench/ (registry.cc lists them).
//
//   dcpkv_bench --benchmarks=save,load --size=1GiB --world=2 --repetitions=3 [--json]
//   dcpkv_bench --benchmarks=save,load --size=1GiB --world=2 --processes    # ranks as processes
#include <cstdio>

#include "flags.h"
#include "launcher.h"
#include "ranks.h"
#include "report.h"
#include "runner.h"
#include "workspace.h"

int main(int argc, char** argv) {
  using namespace dcpkv::bench;
  dcpkv::StatusOr<Config> config = ParseFlags(argc, argv);
  if (!config.ok() || config->help) {
    if (!config.ok()) std::fprintf(stderr, "dcpkv_bench: %s\n", config.status().message().c_str());
    std::fputs(Usage(argv[0]).c_str(), config.ok() ? stdout : stderr);
    return config.ok() ? 0 : 2;
  }
  const bool rank_process = config->processes && !config->workspace_dir.empty();
  if (config->processes && !rank_process) return LaunchProcessWorld(argc, argv, *config);
  if (rank_process) {
    if (dcpkv::Status s = JoinProcessWorld(); !s.ok()) {
      std::fprintf(stderr, "dcpkv_bench: joining the ranks: %s\n", s.ToString().c_str());
      return 1;
    }
  }
  dcpkv::StatusOr<std::unique_ptr<Workspace>> workspace =
      rank_process ? Workspace::Attach(*config) : Workspace::Create(*config);
  if (!workspace.ok()) {
    std::fprintf(stderr, "dcpkv_bench: %s\n", workspace.status().ToString().c_str());
    return 1;
  }
  Reporter reporter(*config, stdout);
  dcpkv::Status s = RunBenchmarks(*config, **workspace, reporter);
  if (!s.ok()) {
    std::fprintf(stderr, "dcpkv_bench: %s%s\n",
                 rank_process ? ("rank " + std::to_string(ProcessRank()) + ": ").c_str() : "",
                 s.ToString().c_str());
    return 1;
  }
  return 0;
}

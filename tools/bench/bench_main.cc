// dcpkv_bench: dcpkv's save, load and planning against baselines measured in the same run.
// main() only parses flags; the benchmarks are in tools/bench/ (registry.cc lists them).
//
//   dcpkv_bench --benchmarks=save,load --size=1GiB --world=2 --repetitions=3 [--json]
#include <cstdio>

#include "flags.h"
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
  dcpkv::StatusOr<std::unique_ptr<Workspace>> workspace = Workspace::Create(*config);
  if (!workspace.ok()) {
    std::fprintf(stderr, "dcpkv_bench: %s\n", workspace.status().ToString().c_str());
    return 1;
  }
  Reporter reporter(*config, stdout);
  dcpkv::Status s = RunBenchmarks(*config, **workspace, reporter);
  if (!s.ok()) {
    std::fprintf(stderr, "dcpkv_bench: %s\n", s.ToString().c_str());
    return 1;
  }
  return 0;
}

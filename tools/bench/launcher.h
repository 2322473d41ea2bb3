// --processes: the launcher that runs the benchmarks' ranks as processes, as torchrun would.
#ifndef DCPKV_TOOLS_BENCH_LAUNCHER_H_
#define DCPKV_TOOLS_BENCH_LAUNCHER_H_

#include "bench.h"

namespace dcpkv::bench {

// Makes the run's working directory, serves the rendezvous store on 127.0.0.1 (as torchrun's
// agent does) and starts config.world + 1 processes of this binary with the same flags plus
// --workspace-dir, each with RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT and
// TORCHELASTIC_USE_AGENT_STORE and DCPKV_RENDEZVOUS_PROTOCOL=dcpkv set. Rank 0 reports. Waits for all; if one fails, stops the
// others. Returns the exit status for main(): 0 if every rank succeeded.
int LaunchProcessWorld(int argc, char** argv, const Config& config);

}  // namespace dcpkv::bench

#endif  // DCPKV_TOOLS_BENCH_LAUNCHER_H_

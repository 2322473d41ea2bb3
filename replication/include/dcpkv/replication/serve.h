// Running a replica server as a process's main job (the `dcpkv replica serve` command).
#ifndef DCPKV_REPLICATION_SERVE_H_
#define DCPKV_REPLICATION_SERVE_H_

#include <ostream>

#include "dcpkv/export.h"
#include "dcpkv/replication/replica.h"
#include "dcpkv/status.h"

namespace dcpkv::replication {

// Starts a replica server, writes exactly one line "listening on <host>:<port>" to `out` (the
// host as given in options.listen, the port the one bound) and flushes it, then serves until the
// process receives SIGTERM or SIGINT, shuts down gracefully and returns OK. If the server cannot
// start, returns why (ReplicaServer::Start's error) and writes nothing.
//
// SIGTERM and SIGINT are blocked in the calling thread while it serves (and so in the server's
// threads, which it creates) and waited for with sigwait(); the previous signal mask is restored
// before returning. Threads created earlier must block both signals too, or they may receive
// them instead: call this from main() before starting other threads.
DCPKV_EXPORT Status ServeUntilSignalled(const ReplicaServerOptions& options, std::ostream& out);

}  // namespace dcpkv::replication

#endif  // DCPKV_REPLICATION_SERVE_H_

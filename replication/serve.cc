#include "dcpkv/replication/serve.h"

#include <pthread.h>
#include <signal.h>

#include <memory>
#include <string>

namespace dcpkv::replication {
namespace {

// The host part of a "host:port" listen address ("[::1]" stays bracketed).
std::string ListenHost(const std::string& listen) {
  const size_t colon = listen.rfind(':');
  return colon == std::string::npos ? listen : listen.substr(0, colon);
}

}  // namespace

Status ServeUntilSignalled(const ReplicaServerOptions& options, std::ostream& out) {
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  sigset_t previous;
  // Blocked before the server starts, so that its threads inherit the mask.
  pthread_sigmask(SIG_BLOCK, &stop_signals, &previous);

  StatusOr<std::unique_ptr<ReplicaServer>> server = ReplicaServer::Start(options);
  if (!server.ok()) {
    pthread_sigmask(SIG_SETMASK, &previous, nullptr);
    return server.status();
  }
  out << "listening on " << ListenHost(options.listen) << ":" << (*server)->port() << std::endl;

  int signal_number = 0;
  sigwait(&stop_signals, &signal_number);  // fails only for an invalid set
  (*server)->Shutdown();
  server->reset();
  pthread_sigmask(SIG_SETMASK, &previous, nullptr);
  return Status::Ok();
}

}  // namespace dcpkv::replication

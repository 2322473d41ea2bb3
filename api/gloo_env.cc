// GlooProcessGroupOptionsFromEnv: the torchrun environment variables.
#include <limits.h>
#include <unistd.h>

#include <charconv>
#include <climits>
#include <cstdlib>
#include <string>

#include "dcpkv/gloo_process_group.h"

namespace dcpkv {
namespace {

// The value of variable `name`, or null if it is unset.
const char* Env(const char* name) { return std::getenv(name); }

// Parses variable `name` as an integer in [min, max].
Status ParseEnvInt(const char* name, int min, int max, int* out) {
  const char* value = Env(name);
  if (value == nullptr) {
    return InvalidArgumentError(std::string("environment variable ") + name + " is not set");
  }
  const std::string_view text(value);
  int parsed = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), parsed);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size() || parsed < min ||
      parsed > max) {
    return InvalidArgumentError(std::string("environment variable ") + name + "='" +
                                std::string(text) + "' is not an integer in [" +
                                std::to_string(min) + ", " + std::to_string(max) + "]");
  }
  *out = parsed;
  return Status::Ok();
}

bool IsLoopback(const std::string& addr) {
  return addr == "localhost" || addr == "::1" || addr.rfind("127.", 0) == 0;
}

}  // namespace

StatusOr<GlooProcessGroupOptions> GlooProcessGroupOptionsFromEnv(
    std::chrono::milliseconds timeout) {
  GlooProcessGroupOptions o;
  o.timeout = timeout;
  DCPKV_RETURN_IF_ERROR(ParseEnvInt("WORLD_SIZE", 1, INT_MAX, &o.world_size));
  DCPKV_RETURN_IF_ERROR(ParseEnvInt("RANK", 0, INT_MAX, &o.rank));
  if (o.rank >= o.world_size) {
    return InvalidArgumentError("environment variable RANK=" + std::to_string(o.rank) +
                                " is not below WORLD_SIZE=" + std::to_string(o.world_size));
  }
  if (Env("LOCAL_RANK") != nullptr) {
    int local_rank = 0;
    DCPKV_RETURN_IF_ERROR(ParseEnvInt("LOCAL_RANK", 0, INT_MAX, &local_rank));
  }
  const char* addr = Env("MASTER_ADDR");
  if (addr == nullptr || *addr == '\0') {
    return InvalidArgumentError(std::string("environment variable MASTER_ADDR is ") +
                                (addr == nullptr ? "not set" : "empty"));
  }
  o.master_addr = addr;
  DCPKV_RETURN_IF_ERROR(ParseEnvInt("MASTER_PORT", 1, 65535, &o.master_port));
  if (const char* agent = Env("TORCHELASTIC_USE_AGENT_STORE"); agent != nullptr) {
    const std::string v(agent);
    if (v == "True" || v == "true" || v == "1") {
      o.start_server = false;
      o.server_protocol = RendezvousProtocol::kTorchTcpStore;
    } else if (!(v.empty() || v == "False" || v == "false" || v == "0")) {
      return InvalidArgumentError("environment variable TORCHELASTIC_USE_AGENT_STORE='" + v +
                                  "' is not True or False");
    }
  }
  if (const char* protocol = Env("DCPKV_RENDEZVOUS_PROTOCOL");
      protocol != nullptr && *protocol != '\0') {
    const std::string v(protocol);
    if (v == "dcpkv") {
      o.server_protocol = RendezvousProtocol::kDcpkv;
    } else if (v == "torch") {
      o.server_protocol = RendezvousProtocol::kTorchTcpStore;
    } else {
      return InvalidArgumentError("environment variable DCPKV_RENDEZVOUS_PROTOCOL='" + v +
                                  "' is not dcpkv or torch");
    }
    if (o.server_protocol == RendezvousProtocol::kTorchTcpStore && o.start_server) {
      return InvalidArgumentError(
          "environment variable DCPKV_RENDEZVOUS_PROTOCOL=torch needs a launcher's store "
          "(TORCHELASTIC_USE_AGENT_STORE=True)");
    }
  }
  // torchrun's elastic agent keeps its store across the restarts of its workers: the keys of
  // each attempt of each run are their own.
  if (const char* run_id = Env("TORCHELASTIC_RUN_ID"); run_id != nullptr && *run_id != '\0') {
    int restart = 0;
    if (Env("TORCHELASTIC_RESTART_COUNT") != nullptr) {
      DCPKV_RETURN_IF_ERROR(ParseEnvInt("TORCHELASTIC_RESTART_COUNT", 0, INT_MAX, &restart));
    }
    o.prefix = std::string(run_id) + "/" + std::to_string(restart);
  }
  if (const char* host = Env("DCPKV_GLOO_HOSTNAME"); host != nullptr && *host != '\0') {
    o.hostname = host;
  } else if (IsLoopback(o.master_addr)) {
    o.hostname = "127.0.0.1";
  } else {
    char name[HOST_NAME_MAX + 1] = {};
    if (gethostname(name, sizeof(name) - 1) != 0 || name[0] == '\0') {
      return InvalidArgumentError(
          "cannot determine this host's name for gloo; set DCPKV_GLOO_HOSTNAME");
    }
    o.hostname = name;
  }
  return o;
}

StatusOr<std::unique_ptr<ProcessGroup>> CreateGlooProcessGroupFromEnv(
    std::chrono::milliseconds timeout) {
  DCPKV_ASSIGN_OR_RETURN(GlooProcessGroupOptions options, GlooProcessGroupOptionsFromEnv(timeout));
  return CreateGlooProcessGroup(options);
}

}  // namespace dcpkv

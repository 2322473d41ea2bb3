// GlooProcessGroupOptionsFromEnv: the torchrun variables.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <map>
#include <optional>

#include "dcpkv/gloo_process_group.h"

namespace dcpkv {
namespace {

// Sets (or, for nullopt, unsets) variables for the life of the object, then restores them.
class ScopedEnv {
 public:
  explicit ScopedEnv(const std::map<std::string, std::optional<std::string>>& vars) {
    for (const auto& [name, value] : vars) {
      const char* old = getenv(name.c_str());
      saved_[name] = old ? std::optional<std::string>(old) : std::nullopt;
      Set(name, value);
    }
  }
  ~ScopedEnv() {
    for (const auto& [name, value] : saved_) Set(name, value);
  }

 private:
  static void Set(const std::string& name, const std::optional<std::string>& value) {
    if (value) {
      setenv(name.c_str(), value->c_str(), 1);
    } else {
      unsetenv(name.c_str());
    }
  }
  std::map<std::string, std::optional<std::string>> saved_;
};

std::map<std::string, std::optional<std::string>> Valid() {
  return {{"RANK", "1"},
          {"WORLD_SIZE", "4"},
          {"LOCAL_RANK", "1"},
          {"MASTER_ADDR", "localhost"},
          {"MASTER_PORT", "29511"},
          {"TORCHELASTIC_USE_AGENT_STORE", std::nullopt},
          {"DCPKV_RENDEZVOUS_PROTOCOL", std::nullopt},
          {"TORCHELASTIC_RUN_ID", std::nullopt},
          {"TORCHELASTIC_RESTART_COUNT", std::nullopt},
          {"DCPKV_GLOO_HOSTNAME", std::nullopt}};
}

TEST(GlooEnvTest, ReadsTheTorchrunVariables) {
  ScopedEnv env(Valid());
  auto o = GlooProcessGroupOptionsFromEnv(std::chrono::milliseconds(1234));
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->rank, 1);
  EXPECT_EQ(o->world_size, 4);
  EXPECT_EQ(o->master_addr, "localhost");
  EXPECT_EQ(o->master_port, 29511);
  EXPECT_EQ(o->timeout, std::chrono::milliseconds(1234));
  EXPECT_EQ(o->hostname, "127.0.0.1");
  EXPECT_TRUE(o->start_server);
  EXPECT_EQ(o->server_protocol, RendezvousProtocol::kDcpkv);
  EXPECT_EQ(o->prefix, "");
  EXPECT_EQ(o->server, nullptr);
}

TEST(GlooEnvTest, AgentStoreAndHostname) {
  auto vars = Valid();
  vars["TORCHELASTIC_USE_AGENT_STORE"] = "True";
  vars["DCPKV_GLOO_HOSTNAME"] = "10.1.2.3";
  vars["LOCAL_RANK"] = std::nullopt;  // optional
  ScopedEnv env(vars);
  auto o = GlooProcessGroupOptionsFromEnv();
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_FALSE(o->start_server);
  EXPECT_EQ(o->server_protocol, RendezvousProtocol::kTorchTcpStore);
  EXPECT_EQ(o->hostname, "10.1.2.3");
}

TEST(GlooEnvTest, ALauncherRunningADcpkvServerSaysSo) {
  auto vars = Valid();
  vars["TORCHELASTIC_USE_AGENT_STORE"] = "True";
  vars["DCPKV_RENDEZVOUS_PROTOCOL"] = "dcpkv";
  ScopedEnv env(vars);
  auto o = GlooProcessGroupOptionsFromEnv();
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_FALSE(o->start_server);
  EXPECT_EQ(o->server_protocol, RendezvousProtocol::kDcpkv);
}

TEST(GlooEnvTest, KeysAreScopedByRunAndRestart) {
  auto vars = Valid();
  vars["TORCHELASTIC_RUN_ID"] = "job-7";
  vars["TORCHELASTIC_RESTART_COUNT"] = "2";
  {
    ScopedEnv env(vars);
    auto o = GlooProcessGroupOptionsFromEnv();
    ASSERT_TRUE(o.ok()) << o.status();
    EXPECT_EQ(o->prefix, "job-7/2");
  }
  vars["TORCHELASTIC_RESTART_COUNT"] = std::nullopt;
  ScopedEnv env(vars);
  auto o = GlooProcessGroupOptionsFromEnv();
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->prefix, "job-7/0");
}

TEST(GlooEnvTest, RemoteMasterUsesThisHostsName) {
  auto vars = Valid();
  vars["MASTER_ADDR"] = "10.9.9.9";
  ScopedEnv env(vars);
  auto o = GlooProcessGroupOptionsFromEnv();
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_NE(o->hostname, "127.0.0.1");
  EXPECT_FALSE(o->hostname.empty());
}

TEST(GlooEnvTest, ErrorsNameTheVariable) {
  const std::vector<std::pair<std::string, std::optional<std::string>>> cases = {
      {"RANK", std::nullopt},
      {"RANK", "one"},
      {"RANK", "-1"},
      {"RANK", "4"},  // not below WORLD_SIZE
      {"RANK", "1x"},
      {"WORLD_SIZE", std::nullopt},
      {"WORLD_SIZE", "0"},
      {"WORLD_SIZE", ""},
      {"MASTER_ADDR", std::nullopt},
      {"MASTER_ADDR", ""},
      {"MASTER_PORT", std::nullopt},
      {"MASTER_PORT", "0"},
      {"MASTER_PORT", "65536"},
      {"MASTER_PORT", "99999999999999999999"},
      {"LOCAL_RANK", "-3"},
      {"TORCHELASTIC_USE_AGENT_STORE", "maybe"},
      {"DCPKV_RENDEZVOUS_PROTOCOL", "tcp"},
      {"DCPKV_RENDEZVOUS_PROTOCOL", "torch"},  // without the agent store: nothing to speak to
      {"TORCHELASTIC_RESTART_COUNT", "x"},
      {"TORCHELASTIC_RESTART_COUNT", "-1"},
  };
  for (const auto& [name, value] : cases) {
    auto vars = Valid();
    vars[name] = value;
    vars["TORCHELASTIC_RUN_ID"] = "run";  // so that the restart count is read
    ScopedEnv env(vars);
    SCOPED_TRACE(name + "=" + value.value_or("<unset>"));
    Status s = GlooProcessGroupOptionsFromEnv().status();
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s;
    EXPECT_NE(s.message().find(name), std::string::npos) << s;
    EXPECT_EQ(CreateGlooProcessGroupFromEnv().status().code(), StatusCode::kInvalidArgument);
  }
}

}  // namespace
}  // namespace dcpkv

#include "dcpkv/core/names.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace dcpkv {
namespace {

using ::testing::HasSubstr;

TEST(NamesTest, AcceptsValidCheckpointIds) {
  for (const char* id : {"step-100", "v1", "ckpt_2026.11.28", "A", "0"}) {
    EXPECT_TRUE(ValidateCheckpointId(id).ok()) << id;
  }
  EXPECT_TRUE(ValidateCheckpointId(std::string(kMaxCheckpointIdLength, 'a')).ok());
}

TEST(NamesTest, RejectsInvalidCheckpointIdsWithClearMessages) {
  struct Case {
    std::string id;
    std::string expect;
  };
  const Case cases[] = {
      {"", "empty"},
      {std::string(kMaxCheckpointIdLength + 1, 'a'), "the limit is 128"},
      {"latest", "reserved"},
      {".hidden", "must not start with '.'"},
      {"-x", "must not start with '-'"},
      {"a/b", "character '/' at position 1"},
      {"a b", "byte 0x20 at position 1"},
      {std::string("a\0b", 3), "byte 0x00 at position 1"},
      {"caf\xc3\xa9", "byte 0xc3 at position 3"},
  };
  for (const Case& c : cases) {
    Status s = ValidateCheckpointId(c.id);
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << c.id;
    EXPECT_THAT(s.message(), HasSubstr(c.expect)) << c.id;
  }
}

TEST(NamesTest, Fqns) {
  EXPECT_TRUE(ValidateFqn("model.layers.3.attn.wq").ok());
  EXPECT_TRUE(ValidateFqn("optim/state:0[exp_avg]").ok());
  EXPECT_TRUE(ValidateFqn(std::string(kMaxFqnLength, 'w')).ok());
  EXPECT_THAT(ValidateFqn("").message(), HasSubstr("empty"));
  EXPECT_THAT(ValidateFqn(std::string(kMaxFqnLength + 1, 'w')).message(), HasSubstr("limit"));
  EXPECT_THAT(ValidateFqn("a b").message(), HasSubstr("byte 0x20"));
  EXPECT_THAT(ValidateFqn(std::string("a\0", 2)).message(), HasSubstr("byte 0x00"));
  EXPECT_THAT(ValidateFqn("a\n").message(), HasSubstr("byte 0x0a"));
}

}  // namespace
}  // namespace dcpkv

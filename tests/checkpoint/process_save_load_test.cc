// Save with 2 ranks as separate processes, load with 3 (and 1), over gloo on 127.0.0.1.
#include <gtest/gtest.h>

#include "tests/util/multiprocess.h"
#include "tests/util/temp_dir.h"

namespace dcpkv {
namespace {

void ExpectAllSucceeded(const testing::MultiProcessResult& r, const std::string& what) {
  ASSERT_TRUE(r.error.empty()) << what << ": " << r.error;
  EXPECT_FALSE(r.timed_out) << what;
  for (size_t rank = 0; rank < r.exit_codes.size(); ++rank) {
    EXPECT_EQ(r.exit_codes[rank], 0) << what << ": rank " << rank;
  }
}

TEST(ProcessSaveLoadTest, SaveOnTwoProcessesLoadOnThreeAndOne) {
  testing::TempDir tmp;
  const std::string worker = DCPKV_SAVE_LOAD_WORKER;
  ExpectAllSucceeded(testing::RunProcesses(worker, {"save", tmp.path(), "ck"}, 2), "save on 2");
  ExpectAllSucceeded(testing::RunProcesses(worker, {"load", tmp.path(), "ck"}, 3), "load on 3");
  ExpectAllSucceeded(testing::RunProcesses(worker, {"load", tmp.path(), "ck"}, 1), "load on 1");
  // A second save under the same id is refused on every rank.
  testing::MultiProcessResult again = testing::RunProcesses(worker, {"save", tmp.path(), "ck"}, 2);
  ASSERT_TRUE(again.error.empty());
  EXPECT_EQ(again.exit_codes, (std::vector<int>{1, 1}));
}

TEST(ProcessSaveLoadTest, AsyncSaveOnTwoProcessesLoadsOnThree) {
  testing::TempDir tmp;
  const std::string worker = DCPKV_SAVE_LOAD_WORKER;
  ExpectAllSucceeded(testing::RunProcesses(worker, {"async-save", tmp.path(), "ck"}, 2),
                     "async save");
  ExpectAllSucceeded(testing::RunProcesses(worker, {"load", tmp.path(), "ck"}, 3), "load on 3");
}

}  // namespace
}  // namespace dcpkv

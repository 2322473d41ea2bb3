// A store on a file system that fills up (a loop-mounted 64 MiB ext4 image, and a 64 MiB tmpfs):
// saves fail with RESOURCE_EXHAUSTED, never an abort; every checkpoint saved before stays intact;
// `dcpkv rm` and `gc` reclaim space on the full disk; saves go on afterwards. Mounting needs
// root: in CI (CI set) the test fails rather than skip without it.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "tests/util/racers.h"
#include "tests/util/temp_dir.h"

namespace dcpkv {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

uint64_t FreeBytes(const std::string& path) {
  struct statvfs fs {};
  if (::statvfs(path.c_str(), &fs) != 0) return 0;
  return static_cast<uint64_t>(fs.f_bavail) * fs.f_frsize;
}

class FullDiskTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) {
      if (std::getenv("CI") != nullptr)
        FAIL() << "mounting a file system needs root, and CI runs as root";
      GTEST_SKIP() << "mounting a file system needs root";
    }
    mount_ = tmp_.Sub("mnt");
    std::filesystem::create_directories(mount_);
    std::string command;
    if (GetParam() == "ext4") {
      const std::string image = tmp_.Sub("ext4.img");
      command = "truncate -s 64M " + image + " && mkfs.ext4 -q -F " + image + " && mount -o loop " +
                image + " " + mount_;
    } else {
      command = "mount -t tmpfs -o size=64m dcpkv-full-disk-test " + mount_;
    }
    ASSERT_EQ(std::system((command + " 2>" + tmp_.Sub("mount.err")).c_str()), 0)
        << "cannot make the " << GetParam() << " file system: " << command << ": "
        << Read(tmp_.Sub("mount.err"));
    mounted_ = true;
    root_ = mount_ + "/store";
  }
  void TearDown() override {
    if (mounted_) {
      EXPECT_EQ(std::system(("umount " + mount_).c_str()), 0);
    }
  }

  static std::string Read(const std::string& path) {
    testing::Racer r;
    r.output_path = path;
    return r.Output();
  }

  // Runs `exe args`; its exit code and output.
  std::pair<int, std::string> Run(const std::string& exe, const std::vector<std::string>& args) {
    const std::string out = tmp_.Sub("run-" + std::to_string(runs_++) + ".out");
    const testing::Racer r = testing::StartRacer(exe, args, {}, out);
    const int code = testing::WaitRacer(r, std::chrono::seconds(240));
    return {code, r.Output()};
  }

  testing::TempDir tmp_;
  std::string mount_;
  std::string root_;
  bool mounted_ = false;
  int runs_ = 0;
};

TEST_P(FullDiskTest, SavesFailCleanlyAndRmAndGcReclaimSpace) {
  // Saves of 0.7 MiB checkpoints until the disk is full.
  auto [code, out] = Run(DCPKV_SAVE_LOOP_PATH, {"--root", root_, "--count", "400"});
  ASSERT_EQ(code, 1) << "the save that found the disk full fails, with no crash: " << out;
  EXPECT_THAT(out, HasSubstr("RESOURCE_EXHAUSTED"));
  EXPECT_THAT(out, Not(HasSubstr("Assertion")));
  int saved = 0;
  for (size_t at = out.find("ck-"); at != std::string::npos; at = out.find("ck-", at + 1)) ++saved;
  EXPECT_GE(saved, 20) << out;

  // Everything committed before is intact.
  auto [verified, report] = Run(DCPKV_CLI_PATH, {"verify", root_});
  EXPECT_EQ(verified, 0) << report;
  EXPECT_THAT(report, HasSubstr("0 problems"));

  // rm (with its garbage collection) reclaims space on the full disk, and gc has nothing left.
  const uint64_t free_before = FreeBytes(mount_);
  std::vector<std::string> rm = {"rm", root_};
  for (int i = 0; i < 20; ++i) {
    char id[16];
    std::snprintf(id, sizeof(id), "ck-%05d", i);
    rm.push_back(id);
  }
  auto [removed, rm_out] = Run(DCPKV_CLI_PATH, rm);
  EXPECT_EQ(removed, 0) << rm_out;
  EXPECT_GT(FreeBytes(mount_), free_before + (uint64_t{10} << 20)) << rm_out;
  auto [collected, gc_out] = Run(DCPKV_CLI_PATH, {"gc", root_});
  EXPECT_EQ(collected, 0) << gc_out;

  // Saves go on, and what is left verifies.
  auto [again, again_out] =
      Run(DCPKV_SAVE_LOOP_PATH, {"--root", root_, "--count", "5", "--prefix", "again"});
  EXPECT_EQ(again, 0) << again_out;
  auto [verified_again, report_again] = Run(DCPKV_CLI_PATH, {"verify", root_});
  EXPECT_EQ(verified_again, 0) << report_again;
}

// The same file system mounted read-only (a store on read-only media): every reading command
// works and writes nothing, and so does a gc with nothing to collect; the writing ones fail in
// plain words, before touching anything.
TEST_P(FullDiskTest, AStoreOnReadOnlyMediaIsReadAndWritesAreRefusedPlainly) {
  auto [saved, saved_out] = Run(DCPKV_SAVE_LOOP_PATH, {"--root", root_, "--count", "3"});
  ASSERT_EQ(saved, 0) << saved_out;
  ASSERT_EQ(std::system(("mount -o remount,ro " + mount_).c_str()), 0);
  const std::vector<std::vector<std::string>> reading = {
      {"ls", root_},
      {"show", root_, "ck-00001"},
      {"verify", root_},
      {"diff", root_, "ck-00000", "ck-00002"},
      {"export", root_, "ck-00002", "--output", tmp_.Sub("out.safetensors")}};
  for (const std::vector<std::string>& args : reading) {
    auto [code, out] = Run(DCPKV_CLI_PATH, args);
    EXPECT_EQ(code, 0) << args[0] << ": " << out;
  }
  // Nothing to collect is found out read-only.
  auto [collected, gc_out] = Run(DCPKV_CLI_PATH, {"gc", root_});
  EXPECT_EQ(collected, 0) << gc_out;
  const std::vector<std::vector<std::string>> writing = {
      {"rm", root_, "ck-00000"}, {"import", tmp_.Sub("out.safetensors"), root_, "imported"}};
  for (const std::vector<std::string>& args : writing) {
    auto [code, out] = Run(DCPKV_CLI_PATH, args);
    EXPECT_EQ(code, 3) << args[0] << ": " << out;
    EXPECT_THAT(out, HasSubstr("read-only file system, where it can be read")) << args[0];
  }
  ASSERT_EQ(std::system(("mount -o remount,rw " + mount_).c_str()), 0);
  auto [listed, listing] = Run(DCPKV_CLI_PATH, {"ls", root_});
  EXPECT_EQ(listed, 0) << listing;
  EXPECT_THAT(listing, Not(HasSubstr("imported")));
}

INSTANTIATE_TEST_SUITE_P(FileSystems, FullDiskTest, ::testing::Values("ext4", "tmpfs"));

}  // namespace
}  // namespace dcpkv

// Read-only opens read cold table files with O_DIRECT and warm ones through the page cache
// (ChunkStoreOptions::table_read_io); what is read is checked the same way either way.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "dcpkv/store/chunk_store.h"
#include "dcpkv/store/store_layout.h"
#include "store/table_read_io.h"
#include "tests/util/store_files.h"
#include "tests/util/temp_dir.h"
#include "tests/util/test_data.h"

namespace dcpkv {
namespace {

// Syncs every file under `dir` and drops it from the page cache.
void DropFromPageCache(const std::string& dir) {
  for (const auto& e : std::filesystem::recursive_directory_iterator(dir)) {
    if (!e.is_regular_file()) continue;
    const int fd = ::open(e.path().c_str(), O_RDONLY | O_CLOEXEC);
    ASSERT_GE(fd, 0) << e.path();
    ASSERT_EQ(::fsync(fd), 0);
    ASSERT_EQ(::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED), 0);
    ::close(fd);
  }
}

// Reads the whole file at `path` (into the page cache).
void ReadWhole(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::vector<char> buffer(1 << 20);
  while (in.read(buffer.data(), static_cast<std::streamsize>(buffer.size())) || in.gcount() > 0) {
  }
}

// How this process holds the file at `path` open: how many descriptors with O_DIRECT and how
// many without (from /proc/self/fdinfo).
struct OpenTables {
  int direct = 0;
  int buffered = 0;
};
OpenTables OpenDescriptors(const std::string& path) {
  OpenTables out;
  const std::filesystem::path canonical = std::filesystem::canonical(path);
  for (const auto& e : std::filesystem::directory_iterator("/proc/self/fd")) {
    std::error_code ec;
    const std::filesystem::path target = std::filesystem::read_symlink(e.path(), ec);
    if (ec || target != canonical) continue;
    std::ifstream info("/proc/self/fdinfo/" + e.path().filename().string());
    std::string key;
    std::string value;
    while (info >> key >> value) {
      if (key != "flags:") continue;
      if (std::strtoul(value.c_str(), nullptr, 8) & O_DIRECT) {
        ++out.direct;
      } else {
        ++out.buffered;
      }
      break;
    }
  }
  return out;
}

// Whether the file system under `dir` takes O_DIRECT opens.
bool TakesODirect(const std::string& dir) {
  const std::string probe = dir + "/odirect-probe";
  std::ofstream(probe) << std::string(4096, 'x');
  const int fd = ::open(probe.c_str(), O_RDONLY | O_DIRECT | O_CLOEXEC);
  if (fd >= 0) ::close(fd);
  std::filesystem::remove(probe);
  return fd >= 0;
}

class TableReadIoTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ChunkStoreOptions o;
    o.chunk_size = 1 << 20;
    o.table_file_bytes = 1 << 30;  // one table file of 4 chunks
    o.small_write_bytes = 0;
    std::unique_ptr<ChunkStore> store;
    ASSERT_TRUE(ChunkStore::Open(dir_, o, &store).ok());
    ASSERT_TRUE(store->PutShard("ck", "w", geometry_, data_.data(), data_.size()).ok());
    ASSERT_TRUE(store->Close().ok());
    table_ = testing::LargestTableFile(dir_);
    ASSERT_GT(std::filesystem::file_size(table_), data_.size());
  }

  // Opens the store read-only with `io`, reads the shard and reports how the table file of its
  // chunks was opened; `out` gets what was read.
  OpenTables ReadWith(TableReadIo io, std::vector<uint8_t>* out, Status* status) {
    std::unique_ptr<ChunkStore> store;
    Status opened =
        ChunkStore::Open(dir_, {.mode = OpenMode::kReadOnly, .table_read_io = io}, &store);
    EXPECT_TRUE(opened.ok()) << opened;
    if (!opened.ok()) return {};
    out->assign(data_.size(), 0);
    *status = store->ReadShard("ck", "w", geometry_, out->data(), out->size());
    return OpenDescriptors(table_);  // the table cache holds the file open
  }

  // Reads the shard with `io`, expecting the data back and its table file open that way.
  void ExpectReadOpensTable(TableReadIo io, int direct, int buffered) {
    std::vector<uint8_t> out;
    Status s;
    const OpenTables tables = ReadWith(io, &out, &s);
    ASSERT_TRUE(s.ok()) << s;
    EXPECT_EQ(out, data_);
    EXPECT_EQ(tables.direct, direct);
    EXPECT_EQ(tables.buffered, buffered);
  }

  testing::TempDir tmp_;
  std::string dir_ = RankDirectory(tmp_.path(), 0);
  ShardGeometry geometry_{DType::kFloat32, {0}, {1 << 20}};  // 4 MiB: 4 chunks
  std::vector<uint8_t> data_ = testing::RandomBytes(4 << 20, 11);
  std::string table_;
};

TEST_F(TableReadIoTest, PageCacheResidencyIsMeasured) {
  ReadWhole(table_);
  const int fd = ::open(table_.c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  const uint64_t size = std::filesystem::file_size(table_);
  EXPECT_GT(PageCacheResidency(fd, size), 0.9);
  ASSERT_EQ(::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED), 0);
  const double after = PageCacheResidency(fd, size);
  EXPECT_GE(after, 0.0);
  EXPECT_LT(after, 0.5);
  ::close(fd);
}

TEST_F(TableReadIoTest, AColdTableFileIsReadWithODirectWhereTheFileSystemTakesIt) {
  DropFromPageCache(dir_);
  // (tmpfs before Linux 6.6 takes no O_DIRECT: read through the page cache instead.)
  const bool direct = TakesODirect(dir_);
  ExpectReadOpensTable(TableReadIo::kAuto, direct ? 1 : 0, direct ? 0 : 1);
}

TEST_F(TableReadIoTest, ATableFileInThePageCacheIsReadThroughIt) {
  ReadWhole(table_);
  ExpectReadOpensTable(TableReadIo::kAuto, /*direct=*/0, /*buffered=*/1);
}

TEST_F(TableReadIoTest, BufferedNeverUsesODirect) {
  DropFromPageCache(dir_);
  ExpectReadOpensTable(TableReadIo::kBuffered, /*direct=*/0, /*buffered=*/1);
}

TEST_F(TableReadIoTest, DamageIsDataLossWhenReadWithODirect) {
  testing::FlipByteInTheMiddle(table_);
  DropFromPageCache(dir_);
  std::vector<uint8_t> out;
  Status s;
  const OpenTables tables = ReadWith(TableReadIo::kDirect, &out, &s);
  EXPECT_EQ(s.code(), StatusCode::kDataLoss) << s;
  if (TakesODirect(dir_)) {
    EXPECT_EQ(tables.direct, 1);
  }
}

// A file system that refuses O_DIRECT, as tmpfs did before Linux 6.6.
class NoDirectFileSystem : public rocksdb::FileSystemWrapper {
 public:
  NoDirectFileSystem() : rocksdb::FileSystemWrapper(rocksdb::FileSystem::Default()) {}
  const char* Name() const override { return "NoDirect"; }
  rocksdb::IOStatus NewRandomAccessFile(const std::string& f, const rocksdb::FileOptions& o,
                                        std::unique_ptr<rocksdb::FSRandomAccessFile>* r,
                                        rocksdb::IODebugContext* dbg) override {
    if (o.use_direct_reads) return rocksdb::IOStatus::InvalidArgument(f, "no O_DIRECT here");
    return target()->NewRandomAccessFile(f, o, r, dbg);
  }
};

TEST_F(TableReadIoTest, AFileSystemWithoutODirectGetsABufferedOpen) {
  TableReadIoFileSystem fs(std::make_shared<NoDirectFileSystem>(), TableReadIo::kDirect);
  EXPECT_TRUE(fs.WantsDirect(table_));
  std::unique_ptr<rocksdb::FSRandomAccessFile> file;
  ASSERT_TRUE(fs.NewRandomAccessFile(table_, rocksdb::FileOptions(), &file, nullptr).ok());
  EXPECT_FALSE(file->use_direct_io());
  std::vector<char> scratch(16);
  rocksdb::Slice read;
  ASSERT_TRUE(
      file->Read(0, scratch.size(), rocksdb::IOOptions(), &read, scratch.data(), nullptr).ok());
  EXPECT_EQ(read.size(), scratch.size());
}

TEST_F(TableReadIoTest, OnlyLargeTableFilesAreCandidates) {
  TableReadIoFileSystem direct(rocksdb::FileSystem::Default(), TableReadIo::kDirect);
  EXPECT_TRUE(direct.WantsDirect(table_));
  const std::string small = dir_ + "/000999.sst";
  std::ofstream(small) << "a small table";
  EXPECT_FALSE(direct.WantsDirect(small));
  const std::string log = dir_ + "/big.log";
  std::filesystem::copy_file(table_, log);
  EXPECT_FALSE(direct.WantsDirect(log));
  TableReadIoFileSystem buffered(rocksdb::FileSystem::Default(), TableReadIo::kBuffered);
  EXPECT_FALSE(buffered.WantsDirect(table_));
}

}  // namespace
}  // namespace dcpkv

// What tests look for among a rank database's files.
#ifndef DCPKV_TESTS_UTIL_STORE_FILES_H_
#define DCPKV_TESTS_UTIL_STORE_FILES_H_

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>

namespace dcpkv::testing {

// True if <rank_dir>/ingest (docs/format.md: table files being built, never ingested) is absent
// or empty.
inline bool IngestDirectoryIsEmpty(const std::string& rank_dir) {
  std::error_code ec;
  const std::string ingest = rank_dir + "/ingest";
  return !std::filesystem::exists(ingest, ec) || std::filesystem::is_empty(ingest, ec);
}

// Number of regular files directly in `dir` whose name ends in `extension` (".sst", ".blob").
inline size_t FilesWithExtension(const std::string& dir, const std::string& extension) {
  size_t n = 0;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
    if (e.is_regular_file() && e.path().extension() == extension) ++n;
  }
  return n;
}

// The path of the largest table file (*.sst) in `dir`; empty if it holds none.
inline std::string LargestTableFile(const std::string& dir) {
  std::string largest;
  uintmax_t largest_size = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    if (e.path().extension() != ".sst") continue;
    const uintmax_t size = e.file_size();
    if (size > largest_size) {
      largest = e.path().string();
      largest_size = size;
    }
  }
  return largest;
}

// Flips one bit of the byte in the middle of the file at `path`.
inline void FlipByteInTheMiddle(const std::string& path) {
  std::fstream file(path, std::ios::in | std::ios::out | std::ios::binary);
  file.seekg(0, std::ios::end);
  const std::streamoff middle = file.tellg() / 2;
  file.seekg(middle);
  char byte = 0;
  file.read(&byte, 1);
  byte = static_cast<char>(byte ^ 0x40);
  file.seekp(middle);
  file.write(&byte, 1);
}

}  // namespace dcpkv::testing

#endif  // DCPKV_TESTS_UTIL_STORE_FILES_H_

// What tests look for among a rank database's files.
#ifndef DCPKV_TESTS_UTIL_STORE_FILES_H_
#define DCPKV_TESTS_UTIL_STORE_FILES_H_

#include <filesystem>
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

}  // namespace dcpkv::testing

#endif  // DCPKV_TESTS_UTIL_STORE_FILES_H_

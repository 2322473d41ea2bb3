// The page cache of a directory tree: dropping it (so the next read comes from the device) and
// measuring how much of it is still cached.
#ifndef DCPKV_TOOLS_BENCH_PAGE_CACHE_H_
#define DCPKV_TOOLS_BENCH_PAGE_CACHE_H_

#include <cstdint>
#include <string>

#include "dcpkv/status.h"

namespace dcpkv::bench {

// For every regular file under `path` (a file or a directory tree): fdatasync (dirty pages
// cannot be dropped), then posix_fadvise(POSIX_FADV_DONTNEED). The kernel may keep pages that
// are mapped or locked; ResidentBytes tells.
Status DropPageCache(const std::string& path);

// Bytes of the regular files under `path` that are in the page cache now (mincore).
uint64_t ResidentBytes(const std::string& path);

// Sum of the sizes of the regular files under `path`.
uint64_t FileBytes(const std::string& path);

}  // namespace dcpkv::bench

#endif  // DCPKV_TOOLS_BENCH_PAGE_CACHE_H_

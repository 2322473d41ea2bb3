// Command-line flags of dcpkv_bench: `--name=value` (or `--name value`) and bare `--json`,
// `--keep`, `--help`.
#ifndef DCPKV_TOOLS_BENCH_FLAGS_H_
#define DCPKV_TOOLS_BENCH_FLAGS_H_

#include <cstdint>
#include <string>
#include <string_view>

#include "bench.h"
#include "dcpkv/status.h"

namespace dcpkv::bench {

// "64MiB", "1GiB", "4096", "1.5G": binary units (K, KiB, M, MiB, G, GiB, T, TiB), decimal ones
// (KB, MB, GB, TB), or plain bytes ("B" or no suffix). INVALID_ARGUMENT unless a positive size.
StatusOr<uint64_t> ParseByteSize(std::string_view text);

// Parses argv into a Config; unknown benchmark names, unknown flags and bad values are
// INVALID_ARGUMENT naming the flag.
StatusOr<Config> ParseFlags(int argc, const char* const* argv);

// The usage text, listing every benchmark.
std::string Usage(std::string_view argv0);

}  // namespace dcpkv::bench

#endif  // DCPKV_TOOLS_BENCH_FLAGS_H_

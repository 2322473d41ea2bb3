// Output of dcpkv_bench: one JSON object per line per figure (--json), or a table.
#ifndef DCPKV_TOOLS_BENCH_REPORT_H_
#define DCPKV_TOOLS_BENCH_REPORT_H_

#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>
#include <vector>

#include "bench.h"

namespace dcpkv::bench {

// A flat JSON object built field by field and written on one line. Non-finite numbers are
// written as null.
class JsonObject {
 public:
  JsonObject& AddString(std::string_view key, std::string_view value);
  JsonObject& AddNumber(std::string_view key, double value);
  JsonObject& AddInt(std::string_view key, int64_t value);
  JsonObject& AddBool(std::string_view key, bool value);
  JsonObject& AddNumbers(std::string_view key, const std::vector<double>& values);
  // "{...}"
  std::string ToString() const { return "{" + body_ + "}"; }

 private:
  JsonObject& AddRaw(std::string_view key, std::string_view json);
  std::string body_;
};

// `text` as a JSON string literal, quotes included.
std::string JsonQuote(std::string_view text);

// How a figure's peak RSS was measured.
enum class PeakScope {
  kBenchmark,  // since the benchmark started (the peak could be reset)
  kProcess,    // since the process started
};

class Reporter {
 public:
  Reporter(const Config& config, std::FILE* out) : config_(config), out_(out) {}
  void Report(const Result& result, uint64_t peak_rss_bytes, PeakScope scope);

 private:
  std::string Json(const Result& r, uint64_t peak_rss_bytes, PeakScope scope) const;
  std::string TableRow(const Result& r, uint64_t peak_rss_bytes) const;
  std::string TableHeader() const;

  const Config& config_;
  std::FILE* out_;
  bool header_done_ = false;
};

}  // namespace dcpkv::bench

#endif  // DCPKV_TOOLS_BENCH_REPORT_H_

#include "report.h"

#include <cmath>

#include "stats.h"

namespace dcpkv::bench {
namespace {

std::string FormatNumber(double value) {
  if (!std::isfinite(value)) return "null";
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.9g", value);
  return buf;
}

double Gbps(uint64_t bytes, double seconds) { return seconds > 0 ? bytes / seconds / 1e9 : 0; }

constexpr std::string_view kRatioMeaning = "baseline_seconds/seconds; >= 1: as fast as baseline";

}  // namespace

std::string JsonQuote(std::string_view text) {
  std::string out = "\"";
  for (const char ch : text) {
    const auto c = static_cast<unsigned char>(ch);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += ch;
    } else if (c < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\u%04x", c);
      out += buf;
    } else {
      out += ch;
    }
  }
  return out + "\"";
}

JsonObject& JsonObject::AddRaw(std::string_view key, std::string_view json) {
  if (!body_.empty()) body_ += ',';
  body_ += JsonQuote(key);
  body_ += ':';
  body_ += json;
  return *this;
}

JsonObject& JsonObject::AddString(std::string_view key, std::string_view value) {
  return AddRaw(key, JsonQuote(value));
}

JsonObject& JsonObject::AddNumber(std::string_view key, double value) {
  return AddRaw(key, FormatNumber(value));
}

JsonObject& JsonObject::AddInt(std::string_view key, int64_t value) {
  return AddRaw(key, std::to_string(value));
}

JsonObject& JsonObject::AddBool(std::string_view key, bool value) {
  return AddRaw(key, value ? "true" : "false");
}

JsonObject& JsonObject::AddNumbers(std::string_view key, const std::vector<double>& values) {
  std::string json = "[";
  for (size_t i = 0; i < values.size(); ++i) json += (i ? "," : "") + FormatNumber(values[i]);
  return AddRaw(key, json + "]");
}

std::string Reporter::Json(const Result& r, uint64_t peak, PeakScope scope) const {
  JsonObject o;
  o.AddString("benchmark", r.benchmark)
      .AddInt("bytes", static_cast<int64_t>(r.bytes))
      .AddNumber("seconds", r.seconds)
      .AddNumber("gbps", Gbps(r.bytes, r.seconds))
      .AddString("baseline", r.baseline)
      .AddNumber("baseline_seconds", r.baseline_seconds)
      .AddNumber("baseline_gbps", Gbps(r.bytes, r.baseline_seconds))
      .AddNumber("ratio", r.ratio())
      .AddString("ratio_meaning", r.baseline == "none" ? "no baseline" : kRatioMeaning)
      .AddInt("peak_rss_bytes", static_cast<int64_t>(peak))
      .AddString("peak_rss_scope", scope == PeakScope::kBenchmark ? "benchmark" : "process")
      .AddInt("world", config_.world)
      .AddInt("tensors", config_.tensors)
      .AddInt("chunk_size", static_cast<int64_t>(config_.chunk_size))
      .AddInt("repetitions", config_.repetitions)
      .AddNumber("p25", Quantile(r.runs, 0.25))
      .AddNumber("p75", Quantile(r.runs, 0.75))
      .AddNumber("baseline_p25", Quantile(r.baseline_runs, 0.25))
      .AddNumber("baseline_p75", Quantile(r.baseline_runs, 0.75))
      .AddBool("processes", config_.processes)
      .AddString("write_path",
                 config_.write_path == ChunkWritePath::kWriteBatch ? "batch" : "ingest")
      .AddInt("write_threads", config_.write_threads)
      .AddInt("read_threads", config_.read_threads)
      .AddNumbers("runs", r.runs)
      .AddNumbers("baseline_runs", r.baseline_runs)
      .AddString("note", r.note);
  for (const auto& [key, value] : r.extra) o.AddNumber(key, value);
  return o.ToString();
}

std::string Reporter::TableHeader() const {
  char buf[512];
  std::snprintf(buf, sizeof(buf),
                "dcpkv_bench: world %d, %d tensors, chunk %.1f MiB, median of %d; ratio = "
                "baseline_seconds / seconds (>= 1: as fast as the baseline)\n"
                "%-20s %10s %10s %8s  %-12s %10s %8s %7s %9s  %s\n",
                config_.world, config_.tensors, config_.chunk_size / 1048576.0, config_.repetitions,
                "benchmark", "MiB", "seconds", "GB/s", "baseline", "base s", "base GB/s", "ratio",
                "peak MiB", "note");
  return buf;
}

std::string Reporter::TableRow(const Result& r, uint64_t peak) const {
  char buf[512];
  const bool has_base = r.baseline != "none";
  std::snprintf(
      buf, sizeof(buf), "%-20s %10.1f %10.4f %8.3f  %-12s %10s %8s %7.3f %9.0f  %s",
      r.benchmark.c_str(), r.bytes / 1048576.0, r.seconds, Gbps(r.bytes, r.seconds),
      r.baseline.c_str(),
      has_base ? FormatNumber(std::round(r.baseline_seconds * 1e4) / 1e4).c_str() : "-",
      has_base ? FormatNumber(std::round(Gbps(r.bytes, r.baseline_seconds) * 1e3) / 1e3).c_str()
               : "-",
      r.ratio(), peak / 1048576.0, r.note.c_str());
  std::string row = buf;
  for (const auto& [key, value] : r.extra) row += "; " + key + "=" + FormatNumber(value);
  return row + "\n";
}

void Reporter::Report(const Result& result, uint64_t peak, PeakScope scope) {
  if (config_.json) {
    std::fprintf(out_, "%s\n", Json(result, peak, scope).c_str());
  } else {
    if (!header_done_) std::fputs(TableHeader().c_str(), out_);
    header_done_ = true;
    std::fputs(TableRow(result, peak).c_str(), out_);
  }
  std::fflush(out_);
}

}  // namespace dcpkv::bench

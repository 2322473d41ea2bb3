// Flag parsing of dcpkv_bench, by hand: a table of flags, each a setter that parses its value.
#include "flags.h"

#include <charconv>
#include <cmath>
#include <functional>
#include <map>
#include <sstream>

namespace dcpkv::bench {
namespace {

StatusOr<int> ParsePositiveInt(std::string_view text) {
  int value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || value <= 0) {
    return InvalidArgumentError("\"" + std::string(text) + "\" is not a positive integer");
  }
  return value;
}

double UnitScale(std::string_view unit) {
  static const std::map<std::string_view, double> kUnits = {
      {"", 1},       {"B", 1},        {"K", 0x1p10},   {"KiB", 0x1p10}, {"KB", 1e3},
      {"M", 0x1p20}, {"MiB", 0x1p20}, {"MB", 1e6},     {"G", 0x1p30},   {"GiB", 0x1p30},
      {"GB", 1e9},   {"T", 0x1p40},   {"TiB", 0x1p40}, {"TB", 1e12}};
  auto it = kUnits.find(unit);
  return it == kUnits.end() ? 0 : it->second;
}

std::vector<std::string> SplitList(std::string_view list) {
  std::vector<std::string> out;
  std::stringstream in{std::string(list)};
  for (std::string name; std::getline(in, name, ',');) {
    if (!name.empty()) out.push_back(name);
  }
  return out;
}

Status SetBenchmarks(std::string_view value, Config* c) {
  c->benchmarks = SplitList(value);
  for (const std::string& name : c->benchmarks) {
    if (FindBenchmark(name) == nullptr) {
      return InvalidArgumentError("unknown benchmark \"" + name + "\"");
    }
  }
  return Status::Ok();
}

using Setter = std::function<Status(std::string_view, Config*)>;

Setter Bytes(uint64_t Config::*field) {
  return [field](std::string_view v, Config* c) {
    DCPKV_ASSIGN_OR_RETURN(c->*field, ParseByteSize(v));
    return Status::Ok();
  };
}

Setter Int(int Config::*field) {
  return [field](std::string_view v, Config* c) {
    DCPKV_ASSIGN_OR_RETURN(c->*field, ParsePositiveInt(v));
    return Status::Ok();
  };
}

// Flags that take a value.
const std::map<std::string, Setter>& ValueFlags() {
  static const auto* const kFlags = new std::map<std::string, Setter>{
      {"benchmarks", SetBenchmarks},
      {"size", Bytes(&Config::size)},
      {"tensors", Int(&Config::tensors)},
      {"world", Int(&Config::world)},
      {"chunk-size", Bytes(&Config::chunk_size)},
      {"dir",
       [](std::string_view v, Config* c) {
         c->dir = std::string(v);
         return Status::Ok();
       }},
      {"repetitions", Int(&Config::repetitions)},
      {"raw-writers", Int(&Config::raw_writers)},
      {"write-threads", Int(&Config::write_threads)},
      {"read-threads", Int(&Config::read_threads)},
      {"write-path",
       [](std::string_view v, Config* c) {
         if (v == "batch") {
           c->write_path = ChunkWritePath::kWriteBatch;
         } else if (v == "ingest") {
           c->write_path = ChunkWritePath::kIngestTableFiles;
         } else {
           return InvalidArgumentError("\"" + std::string(v) + "\" is not batch or ingest");
         }
         return Status::Ok();
       }},
      {"workspace-dir",
       [](std::string_view v, Config* c) {
         c->workspace_dir = std::string(v);
         return Status::Ok();
       }},
      {"sim-ranks", Int(&Config::sim_ranks)},
      {"plan-tensors", Int(&Config::plan_tensors)},
  };
  return *kFlags;
}

// Flags without a value.
const std::map<std::string, bool Config::*>& BoolFlags() {
  static const auto* const kFlags =
      new std::map<std::string, bool Config::*>{{"json", &Config::json},
                                                {"keep", &Config::keep},
                                                {"help", &Config::help},
                                                {"processes", &Config::processes}};
  return *kFlags;
}

}  // namespace

StatusOr<uint64_t> ParseByteSize(std::string_view text) {
  double value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  const double scale = ec == std::errc() ? UnitScale(text.substr(end - text.data())) : 0;
  const double bytes = std::floor(value * scale);
  if (scale == 0 || !(bytes >= 1) || bytes > 0x1p62) {
    return InvalidArgumentError("\"" + std::string(text) + "\" is not a size such as 64MiB");
  }
  return static_cast<uint64_t>(bytes);
}

StatusOr<Config> ParseFlags(int argc, const char* const* argv) {
  Config config;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (!arg.starts_with("--"))
      return InvalidArgumentError("unexpected argument " + std::string(arg));
    const size_t eq = arg.find('=');
    const std::string name(arg.substr(2, eq == std::string_view::npos ? arg.npos : eq - 2));
    if (auto b = BoolFlags().find(name); b != BoolFlags().end() && eq == arg.npos) {
      config.*(b->second) = true;
      continue;
    }
    auto setter = ValueFlags().find(name);
    if (setter == ValueFlags().end()) return InvalidArgumentError("unknown flag --" + name);
    std::string_view value;
    if (eq != arg.npos) {
      value = arg.substr(eq + 1);
    } else if (i + 1 < argc) {
      value = argv[++i];
    } else {
      return InvalidArgumentError("--" + name + " needs a value");
    }
    Status s = setter->second(value, &config);
    if (!s.ok()) return InvalidArgumentError("--" + name + ": " + s.message());
  }
  return config;
}

std::string Usage(std::string_view argv0) {
  std::string text = "usage: " + std::string(argv0) +
                     " [--benchmarks=a,b] [--size=256MiB] [--tensors=16] [--world=1]\n"
                     "         [--processes] [--raw-writers=2] [--write-path=batch|ingest]\n"
                     "         [--write-threads=N] [--read-threads=N]\n"
                     "         [--chunk-size=4MiB] [--dir=DIR] [--keep] [--repetitions=3]\n"
                     "         [--sim-ranks=4096] [--plan-tensors=1000] [--json]\n\n"
                     "--world ranks are threads of this process over gloo; with --processes,\n"
                     "world + 1 processes launched the torchrun way (load_reshard needs the\n"
                     "extra one; other steps leave it waiting).\n\n"
                     "Figures are medians (p25 and p75 in --json); baselines run interleaved\n"
                     "with the measured runs;\n"
                     "ratio = baseline_seconds / seconds (>= 1: as fast as the baseline);\n"
                     "gbps = 1e9 bytes per second.\n\nbenchmarks (default: all, in this order):\n";
  for (const BenchmarkSpec& spec : Registry()) {
    text += "  " + spec.name + std::string(spec.name.size() < 18 ? 18 - spec.name.size() : 1, ' ') +
            spec.description + "\n";
  }
  return text;
}

}  // namespace dcpkv::bench

// dcpkv_bench: measures dcpkv against baselines taken in the same run (raw write + fdatasync,
// cold raw read, memcpy). Only parses flags; the benchmarks live in benchmarks.cc.
//
//   dcpkv_bench [--benchmarks=save,load,...] [--size=256MiB] [--tensors=16] [--world=1]
//               [--chunk-size=4MiB] [--dir=DIR] [--repetitions=3] [--json]
#include <stdlib.h>

#include <cstdio>
#include <filesystem>
#include <sstream>
#include <string>

#include "bench.h"

namespace {

bool ParseBytes(const std::string& text, uint64_t* out) {
  size_t pos = 0;
  double value = 0;
  try {
    value = std::stod(text, &pos);
  } catch (...) {
    return false;
  }
  const std::string unit = text.substr(pos);
  double scale = 1;
  if (unit == "KiB" || unit == "K")
    scale = 1024.0;
  else if (unit == "MiB" || unit == "M")
    scale = 1024.0 * 1024;
  else if (unit == "GiB" || unit == "G")
    scale = 1024.0 * 1024 * 1024;
  else if (!unit.empty() && unit != "B")
    return false;
  if (value <= 0) return false;
  *out = static_cast<uint64_t>(value * scale);
  return true;
}

int Usage(const char* argv0) {
  std::fprintf(stderr,
               "usage: %s [--benchmarks=a,b] [--size=BYTES] [--tensors=N] [--world=N]\n"
               "          [--chunk-size=BYTES] [--dir=DIR] [--repetitions=N] [--json]\n"
               "benchmarks:",
               argv0);
  for (const auto& [name, fn] : dcpkv::bench::Benchmarks())
    std::fprintf(stderr, " %s", name.c_str());
  std::fprintf(stderr, "\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  dcpkv::bench::Config config;
  std::string list;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    const size_t eq = arg.find('=');
    const std::string key = arg.substr(0, eq),
                      value = eq == std::string::npos ? "" : arg.substr(eq + 1);
    bool ok = true;
    if (key == "--benchmarks")
      list = value;
    else if (key == "--size")
      ok = ParseBytes(value, &config.size);
    else if (key == "--chunk-size")
      ok = ParseBytes(value, &config.chunk_size);
    else if (key == "--tensors")
      ok = (config.tensors = std::atoi(value.c_str())) > 0;
    else if (key == "--world")
      ok = (config.world = std::atoi(value.c_str())) > 0;
    else if (key == "--repetitions")
      ok = (config.repetitions = std::atoi(value.c_str())) > 0;
    else if (key == "--dir")
      config.dir = value;
    else if (key == "--json")
      config.json = true;
    else
      ok = false;
    if (!ok) {
      std::fprintf(stderr, "dcpkv_bench: bad flag %s\n", arg.c_str());
      return Usage(argv[0]);
    }
  }
  bool own_dir = false;
  if (!config.dir.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(config.dir, ec);
    if (ec) {
      std::fprintf(stderr, "dcpkv_bench: cannot create %s: %s\n", config.dir.c_str(),
                   ec.message().c_str());
      return 1;
    }
  } else {
    std::string templ = (std::filesystem::temp_directory_path() / "dcpkv-bench-XXXXXX").string();
    if (mkdtemp(templ.data()) == nullptr) return 1;
    config.dir = templ;
    own_dir = true;
  }
  std::vector<std::string> names;
  if (list.empty()) {
    for (const auto& [name, fn] : dcpkv::bench::Benchmarks()) names.push_back(name);
  } else {
    std::stringstream in(list);
    for (std::string name; std::getline(in, name, ',');) names.push_back(name);
  }
  for (const std::string& name : names) {
    auto it = dcpkv::bench::Benchmarks().find(name);
    if (it == dcpkv::bench::Benchmarks().end()) {
      std::fprintf(stderr, "dcpkv_bench: unknown benchmark \"%s\"\n", name.c_str());
      return Usage(argv[0]);
    }
    it->second(config);
  }
  if (own_dir) std::filesystem::remove_all(config.dir);
  return 0;
}

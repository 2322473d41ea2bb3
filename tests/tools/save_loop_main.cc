// A writer process for the dcpkv CLI's live test: saves checkpoints PREFIX-00000 ..
// PREFIX-<COUNT-1> into a store root with dcpkv::Save (a single process), one after the other,
// and prints each id on stdout (flushed) once it is committed.
//
// Every checkpoint holds three tensors of a few hundred KiB whose values are a function of the
// checkpoint's index (see SaveLoopValue) and a bytes entry "trainer.state" = "step=<index>".
//
// Usage: dcpkv_test_save_loop --root DIR --count N [--prefix P]   (P defaults to "ck")
// Exit codes: 0 every checkpoint saved; 1 a save failed (the error on stderr); 2 bad usage.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "dcpkv/checkpoint.h"

namespace {

int Usage(const char* argv0) {
  std::fprintf(stderr, "usage: %s --root DIR --count N [--prefix P]\n", argv0);
  return 2;
}

// Element i of tensor `t` in checkpoint `step`: small exact floats.
float SaveLoopValue(uint64_t i, int t, int step) {
  return static_cast<float>(static_cast<int64_t>((i * 31 + t * 17 + step * 7) % 199) - 99) / 16.0f;
}

}  // namespace

int main(int argc, char** argv) {
  std::string root, prefix = "ck";
  long count = -1;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (i + 1 >= argc) return Usage(argv[0]);
    const char* value = argv[++i];
    if (arg == "--root") {
      root = value;
    } else if (arg == "--prefix") {
      prefix = value;
    } else if (arg == "--count") {
      char* end = nullptr;
      count = std::strtol(value, &end, 10);
      if (end == value || *end != '\0' || count < 0) return Usage(argv[0]);
    } else {
      return Usage(argv[0]);
    }
  }
  if (root.empty() || count < 0) return Usage(argv[0]);

  const std::vector<dcpkv::Shape> shapes = {{256, 256}, {96, 512}, {64, 1024}};
  for (int step = 0; step < count; ++step) {
    char id[256];
    std::snprintf(id, sizeof(id), "%s-%05d", prefix.c_str(), step);
    std::vector<std::vector<float>> values(shapes.size());
    dcpkv::StateDict sd;
    for (size_t t = 0; t < shapes.size(); ++t) {
      values[t].resize(shapes[t][0] * shapes[t][1]);
      for (uint64_t i = 0; i < values[t].size(); ++i) {
        values[t][i] = SaveLoopValue(i, static_cast<int>(t), step);
      }
      sd.Set("model.layer" + std::to_string(t) + ".weight",
             dcpkv::Tensor::Wrap(dcpkv::DType::kFloat32, shapes[t], values[t].data()));
    }
    sd.Set("trainer.state", dcpkv::Bytes{"step=" + std::to_string(step)});
    dcpkv::SaveOptions options;
    options.checkpoint_id = id;
    options.store_root = root;
    dcpkv::StatusOr<dcpkv::Metadata> md = dcpkv::Save(sd, options);
    if (!md.ok()) {
      std::fprintf(stderr, "save loop: saving %s failed: %s\n", id, md.status().ToString().c_str());
      return 1;
    }
    std::printf("%s\n", id);
    std::fflush(stdout);
  }
  return 0;
}

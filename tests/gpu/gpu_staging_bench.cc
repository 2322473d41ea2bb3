// dcpkv_gpu_bench: throughput of DefaultStager staging CUDA tensors into its page-locked
// buffers, against raw cudaMemcpyAsync device-to-host copies of the same bytes into page-locked
// memory on one stream, in the same run (median of --reps repetitions of each, interleaved).
//
//   dcpkv_gpu_bench [--bytes=N] [--tensors=K] [--reps=R] [--min_ratio=X]
//
// Prints both rates and their ratio (stager / raw); exits 1 if the ratio is below --min_ratio
// (default 0: report only), 0 with a "skipped: no GPU" line where there is no CUDA device.
// Also reports (no target) staging strided views, the left half of the columns of each tensor
// seen as rows of 1024 float32 (pitched copies of 2 KiB runs), against raw contiguous copies of
// the same number of bytes.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "dcpkv/api/cuda_copy.h"
#include "dcpkv/api/cuda_device.h"
#include "dcpkv/api/cuda_staging.h"
#include "dcpkv/async_save.h"

namespace dcpkv {
namespace {

struct Flags {
  uint64_t bytes = uint64_t{2} << 30;
  int tensors = 16;
  int reps = 7;
  double min_ratio = 0;
};

bool ParseFlag(const char* arg, const char* name, std::string* value) {
  const size_t n = std::strlen(name);
  if (std::strncmp(arg, name, n) != 0 || arg[n] != '=') return false;
  *value = arg + n + 1;
  return true;
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

double Seconds(std::chrono::steady_clock::duration d) {
  return std::chrono::duration<double>(d).count();
}

int Fail(const std::string& what, const Status& s) {
  std::fprintf(stderr, "dcpkv_gpu_bench: %s: %s\n", what.c_str(), s.ToString().c_str());
  return 2;
}

int Run(const Flags& f) {
  StatusOr<int> devices = cuda::DeviceCount();
  if (!devices.ok()) {
    std::printf("dcpkv_gpu_bench: skipped: no GPU (%s)\n", devices.status().message().c_str());
    return 0;
  }
  const uint64_t per_tensor = f.bytes / f.tensors / 4 * 4;
  const uint64_t total = per_tensor * f.tensors;
  std::printf(
      "dcpkv_gpu_bench: %d device tensors of %.1f MiB on cuda:0 (%.2f GiB in all), "
      "%d repetitions\n",
      f.tensors, per_tensor / 1048576.0, total / 1073741824.0, f.reps);

  // Device tensors with a pattern, and raw page-locked destinations.
  std::vector<void*> device(f.tensors, nullptr);
  std::vector<cuda::HostBuffer> raw(f.tensors);
  std::vector<uint8_t> pattern(per_tensor);
  FlatStateDict flat;
  for (int i = 0; i < f.tensors; ++i) {
    StatusOr<void*> p = cuda::DeviceMalloc(0, per_tensor);
    if (!p.ok()) return Fail("cudaMalloc", p.status());
    device[i] = *p;
    for (uint64_t k = 0; k < per_tensor; ++k) pattern[k] = static_cast<uint8_t>(k * 7 + i);
    Status s = cuda::CopyToDeviceSync(0, device[i], pattern.data(), per_tensor);
    if (!s.ok()) return Fail("filling a device tensor", s);
    StatusOr<cuda::HostBuffer> h = cuda::AcquireHostBuffer(per_tensor);
    if (!h.ok()) return Fail("page-locked memory", h.status());
    raw[i] = std::move(h).value();
    if (!raw[i].pinned()) std::printf("dcpkv_gpu_bench: warning: raw buffer %d is pageable\n", i);
    flat.emplace("t" + std::to_string(i),
                 Tensor::WrapCuda(DType::kFloat32, {per_tensor / 4}, device[i], 0));
  }
  StatusOr<std::unique_ptr<cuda::CopyStream>> stream = cuda::CopyStream::Create(0);
  if (!stream.ok()) return Fail("stream", stream.status());

  StagingOptions options;
  options.use_pinned_memory = true;
  options.use_async_staging = false;
  options.use_non_blocking_copy = false;  // Stage returns when the copies are done
  DefaultStager stager(options);
  StatusOr<FlatStateDict> warm = stager.Stage(flat);  // allocates the staging buffers
  if (!warm.ok()) return Fail("first Stage", warm.status());

  // The same tensors as rows of 1024 float32, their left halves as strided views.
  constexpr uint64_t kColumns = 1024;
  const uint64_t rows = per_tensor / 4 / kColumns;
  const uint64_t half_bytes = rows * kColumns / 2 * 4;
  FlatStateDict halves;
  for (int i = 0; i < f.tensors && rows > 0; ++i) {
    halves.emplace("h" + std::to_string(i),
                   Tensor::WrapStrided(DType::kFloat32, {rows, kColumns / 2}, {kColumns, 1},
                                       device[i], Device::Cuda(0)));
  }
  DefaultStager strided_stager(options);
  if (!halves.empty()) {
    StatusOr<FlatStateDict> warm_halves = strided_stager.Stage(halves);
    if (!warm_halves.ok()) return Fail("first Stage of strided views", warm_halves.status());
  }

  std::vector<double> raw_rate, stager_rate, raw_half_rate, strided_rate;
  for (int rep = 0; rep < f.reps; ++rep) {
    auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < f.tensors; ++i) {
      Status s = (*stream)->CopyToHost(raw[i].data(), device[i], per_tensor);
      if (!s.ok()) return Fail("cudaMemcpyAsync", s);
    }
    Status s = (*stream)->Synchronize();
    if (!s.ok()) return Fail("synchronize", s);
    raw_rate.push_back(total / Seconds(std::chrono::steady_clock::now() - t0) / 1e9);

    t0 = std::chrono::steady_clock::now();
    StatusOr<FlatStateDict> staged = stager.Stage(flat);
    if (!staged.ok()) return Fail("Stage", staged.status());
    stager_rate.push_back(total / Seconds(std::chrono::steady_clock::now() - t0) / 1e9);
    if (!halves.empty()) {
      t0 = std::chrono::steady_clock::now();
      for (int i = 0; i < f.tensors; ++i) {
        s = (*stream)->CopyToHost(raw[i].data(), device[i], half_bytes);
        if (!s.ok()) return Fail("cudaMemcpyAsync", s);
      }
      s = (*stream)->Synchronize();
      if (!s.ok()) return Fail("synchronize", s);
      raw_half_rate.push_back(half_bytes * f.tensors /
                              Seconds(std::chrono::steady_clock::now() - t0) / 1e9);
      t0 = std::chrono::steady_clock::now();
      StatusOr<FlatStateDict> packed = strided_stager.Stage(halves);
      if (!packed.ok()) return Fail("Stage of strided views", packed.status());
      strided_rate.push_back(half_bytes * f.tensors /
                             Seconds(std::chrono::steady_clock::now() - t0) / 1e9);
      if (rep == 0) {  // row r of a staged half is the first 2 KiB of row r of the tensor
        for (uint64_t k = 0; k < per_tensor; ++k) pattern[k] = static_cast<uint8_t>(k * 7);
        const auto* h = static_cast<const uint8_t*>(std::get<Tensor>(packed->at("h0")).data());
        for (uint64_t r = 0; r < rows; ++r) {
          if (std::memcmp(h + r * kColumns * 2, pattern.data() + r * kColumns * 4, kColumns * 2) !=
              0) {
            return Fail("verification", DataLossError("row " + std::to_string(r) +
                                                      " of a staged strided view differs"));
          }
        }
      }
    }
    if (rep == 0) {  // the staged bytes are the device bytes
      for (int i = 0; i < f.tensors; ++i) {
        const Tensor& t = std::get<Tensor>(staged->at("t" + std::to_string(i)));
        if (std::memcmp(t.data(), raw[i].data(), per_tensor) != 0) {
          return Fail("verification", DataLossError("staged tensor " + std::to_string(i) +
                                                    " differs from the device bytes"));
        }
      }
    }
  }
  const double raw_gbps = Median(raw_rate), stager_gbps = Median(stager_rate);
  const double ratio = stager_gbps / raw_gbps;
  std::printf("raw cudaMemcpyAsync D2H into pinned memory: %.2f GB/s (median)\n", raw_gbps);
  std::printf("DefaultStager::Stage of device tensors:     %.2f GB/s (median)\n", stager_gbps);
  std::printf("staging ratio vs cudaMemcpyAsync: %.3f (target >= 0.8)\n", ratio);
  if (!strided_rate.empty()) {
    const double strided_gbps = Median(strided_rate), raw_half_gbps = Median(raw_half_rate);
    std::printf(
        "strided views (left column halves, 2 KiB runs): %.2f GB/s staged, %.2f GB/s raw "
        "contiguous of the same bytes: ratio %.3f (report only)\n",
        strided_gbps, raw_half_gbps, strided_gbps / raw_half_gbps);
  }
  strided_stager.Close();

  stager.Close();
  for (int i = 0; i < f.tensors; ++i) cuda::DeviceFree(0, device[i]);
  if (ratio < f.min_ratio) {
    std::printf("dcpkv_gpu_bench: FAILED: ratio %.3f is below --min_ratio=%.3f\n", ratio,
                f.min_ratio);
    return 1;
  }
  return 0;
}

}  // namespace
}  // namespace dcpkv

int main(int argc, char** argv) {
  dcpkv::Flags f;
  for (int i = 1; i < argc; ++i) {
    std::string v;
    if (dcpkv::ParseFlag(argv[i], "--bytes", &v)) {
      f.bytes = std::strtoull(v.c_str(), nullptr, 10);
    } else if (dcpkv::ParseFlag(argv[i], "--tensors", &v)) {
      f.tensors = std::atoi(v.c_str());
    } else if (dcpkv::ParseFlag(argv[i], "--reps", &v)) {
      f.reps = std::atoi(v.c_str());
    } else if (dcpkv::ParseFlag(argv[i], "--min_ratio", &v)) {
      f.min_ratio = std::atof(v.c_str());
    } else {
      std::fprintf(stderr, "usage: %s [--bytes=N] [--tensors=K] [--reps=R] [--min_ratio=X]\n",
                   argv[0]);
      return 2;
    }
  }
  if (f.tensors < 1 || f.reps < 1 || f.bytes < static_cast<uint64_t>(f.tensors) * 4) {
    std::fprintf(stderr, "dcpkv_gpu_bench: --tensors, --reps and --bytes must be positive\n");
    return 2;
  }
  return dcpkv::Run(f);
}

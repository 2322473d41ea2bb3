#include "dcpkv/store/crash_points.h"

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <string>

namespace dcpkv {
namespace {

// What DCPKV_CRASH_AT armed: a point name and which hit of it kills (1 = the first).
struct ArmedPoint {
  std::string name;  // empty: nothing armed
  long hit = 1;
};

ArmedPoint ReadArmedPoint() {
  ArmedPoint armed;
  const char* value = std::getenv(kCrashAtEnv);
  if (value == nullptr) return armed;
  std::string spec = value;
  const size_t colon = spec.rfind(':');
  if (colon != std::string::npos) {
    char* end = nullptr;
    const long n = std::strtol(spec.c_str() + colon + 1, &end, 10);
    if (end != spec.c_str() + colon + 1 && *end == '\0' && n >= 1) {
      armed.hit = n;
      spec.resize(colon);
    }
  }
  armed.name = std::move(spec);
  return armed;
}

const ArmedPoint& Armed() {
  static const ArmedPoint armed = ReadArmedPoint();  // thread-safe initialization
  return armed;
}

std::atomic<long> hits{0};
std::atomic<CrashPointObserver> observer{nullptr};

}  // namespace

void MaybeCrashAt(std::string_view name) {
  if (CrashPointObserver o = observer.load(std::memory_order_acquire); o != nullptr) o(name);
  const ArmedPoint& armed = Armed();
  if (armed.name.empty() || name != armed.name) return;
  if (hits.fetch_add(1) + 1 != armed.hit) return;
  // Say where (unbuffered, async-signal-safe), then die as a kill would.
  const std::string line = "dcpkv: crash point " + armed.name + " reached: SIGKILL\n";
  ssize_t ignored = ::write(STDERR_FILENO, line.data(), line.size());
  (void)ignored;
  ::raise(SIGKILL);
}

void SetCrashPointObserver(CrashPointObserver o) { observer.store(o, std::memory_order_release); }

}  // namespace dcpkv

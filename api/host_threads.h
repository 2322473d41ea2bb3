// Default thread counts of a rank's saves and loads: the host's cores shared among its ranks.
// Internal to api/.
#ifndef DCPKV_API_HOST_THREADS_H_
#define DCPKV_API_HOST_THREADS_H_

#include <algorithm>
#include <cstddef>
#include <cstdlib>
#include <thread>

namespace dcpkv {

// The cores of this host divided among the ranks on it (LOCAL_WORLD_SIZE, as torchrun sets it;
// else `ranks_here`), between 1 and 2.
inline size_t CoresPerLocalRank(int ranks_here) {
  int local = ranks_here;
  if (const char* env = std::getenv("LOCAL_WORLD_SIZE"); env != nullptr && std::atoi(env) > 0) {
    local = std::atoi(env);
  }
  const unsigned cores = std::max(1u, std::thread::hardware_concurrency());
  return std::clamp<size_t>(cores / static_cast<unsigned>(std::max(1, local)), 1, 2);
}

}  // namespace dcpkv

#endif  // DCPKV_API_HOST_THREADS_H_

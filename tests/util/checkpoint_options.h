// Test helpers: the Save and Load options of a plain checkpoint under a store root.
#ifndef DCPKV_TESTS_UTIL_CHECKPOINT_OPTIONS_H_
#define DCPKV_TESTS_UTIL_CHECKPOINT_OPTIONS_H_

#include <string>

#include "dcpkv/checkpoint.h"

namespace dcpkv::testing {

// Save of checkpoint `id` into `root` (default storage writer and planner).
inline SaveOptions SaveTo(const std::string& root, const std::string& id,
                          ProcessGroup* pg = nullptr) {
  SaveOptions o;
  o.checkpoint_id = id;
  o.store_root = root;
  o.process_group = pg;
  return o;
}

// Load of checkpoint `id` from `root` (default storage reader and planner).
inline LoadOptions LoadFrom(const std::string& root, const std::string& id,
                            ProcessGroup* pg = nullptr) {
  LoadOptions o;
  o.checkpoint_id = id;
  o.store_root = root;
  o.process_group = pg;
  return o;
}

}  // namespace dcpkv::testing

#endif  // DCPKV_TESTS_UTIL_CHECKPOINT_OPTIONS_H_

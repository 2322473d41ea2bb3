// ManifestRecord: what a committed checkpoint's manifest key holds, and what a replica keeps of
// it (dcpkv/replication/replica.h). Its encoding is format-internal (docs/format.md).
#ifndef DCPKV_MANIFEST_RECORD_H_
#define DCPKV_MANIFEST_RECORD_H_

#include <cstdint>
#include <string>

#include "dcpkv/export.h"

namespace dcpkv {

struct DCPKV_EXPORT ManifestRecord {
  std::string checkpoint_id;
  int64_t committed_unix_micros = 0;
  std::string payload;  // the manifest (the checkpoint's encoded Metadata)
};

}  // namespace dcpkv

#endif  // DCPKV_MANIFEST_RECORD_H_

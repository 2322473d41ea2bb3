// Conversion of RocksDB statuses into dcpkv's error model. Internal to store/.
#ifndef DCPKV_STORE_ROCKSDB_STATUS_H_
#define DCPKV_STORE_ROCKSDB_STATUS_H_

#include <string_view>

#include <rocksdb/status.h>

#include "dcpkv/status.h"

namespace dcpkv {

// Maps by what the caller can do: Corruption -> DATA_LOSS, NoSpace -> RESOURCE_EXHAUSTED,
// other I/O errors -> IO_ERROR, Busy/TimedOut/TryAgain -> UNAVAILABLE, and so on.
// The message is "<context>: <rocksdb message>".
Status FromRocksDB(const rocksdb::Status& s, std::string_view context);

}  // namespace dcpkv

#endif  // DCPKV_STORE_ROCKSDB_STATUS_H_

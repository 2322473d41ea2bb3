// Whether a database's LOCK file is locked, read from the kernel's table of file locks rather than
// from RocksDB's error text. Internal to store/.
#ifndef DCPKV_STORE_LOCK_STATE_H_
#define DCPKV_STORE_LOCK_STATE_H_

#include <string>

namespace dcpkv {

// True if a process (this one included) holds a POSIX or OFD lock on the file at `path`, as
// /proc/locks lists it. False if the file does not exist or the table cannot be read. The file is
// never opened: closing a descriptor of a file would release this process's own POSIX locks on it.
bool FileIsLocked(const std::string& path);

}  // namespace dcpkv

#endif  // DCPKV_STORE_LOCK_STATE_H_

#include "rocksdb_status.h"

#include <string>

namespace dcpkv {

Status FromRocksDB(const rocksdb::Status& s, std::string_view context) {
  if (s.ok()) return Status::Ok();
  std::string msg(context);
  msg += ": ";
  msg += s.ToString();
  using C = rocksdb::Status::Code;
  switch (s.code()) {
    case C::kOk: return Status::Ok();
    case C::kNotFound: return NotFoundError(msg);
    case C::kCorruption: return DataLossError(msg);
    case C::kNotSupported: return FailedPreconditionError(msg);
    case C::kInvalidArgument: return InvalidArgumentError(msg);
    case C::kIOError:
      if (s.IsNoSpace()) return ResourceExhaustedError(msg);
      return IOError(msg);
    case C::kMergeInProgress: return AbortedError(msg);
    case C::kIncomplete: return UnavailableError(msg);
    case C::kShutdownInProgress: return CancelledError(msg);
    case C::kTimedOut: return DeadlineExceededError(msg);
    case C::kAborted: return AbortedError(msg);
    case C::kBusy: return UnavailableError(msg);
    case C::kExpired: return DeadlineExceededError(msg);
    case C::kTryAgain: return UnavailableError(msg);
    case C::kCompactionTooLarge: return ResourceExhaustedError(msg);
    case C::kColumnFamilyDropped: return FailedPreconditionError(msg);
    case C::kMaxCode: break;
  }
  return InternalError(msg);
}

}  // namespace dcpkv

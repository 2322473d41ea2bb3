// Status and StatusOr: the one error model of dcpkv.
//
// Every fallible operation returns a Status (or a StatusOr<T> carrying a value). Codes are chosen
// by what the caller can do about the failure:
//   kInvalidArgument    the request itself is wrong (bad id, bad shape); retrying will not help.
//   kNotFound           the named checkpoint, fqn or chunk does not exist.
//   kAlreadyExists      a create of something that exists (e.g. a committed checkpoint id).
//   kFailedPrecondition the system is not in a state for this call (store opened read-only).
//   kDataLoss           stored bytes are damaged: bad checksum, bad FlatBuffer, truncated value.
//   kIOError            the file system failed the operation; may succeed later.
//   kResourceExhausted  out of space or over a configured limit.
//   kUnavailable        a peer (rank, replica) cannot be reached; may succeed later.
//   kDeadlineExceeded   a timeout expired (e.g. a collective where a rank never arrived).
//   kAborted            the operation was abandoned because another participant failed.
//   kCancelled          the caller cancelled it.
//   kUnauthenticated    missing or wrong credentials.
//   kInternal           an invariant of dcpkv itself was broken: a bug.
//
// Some errors also carry an ErrorReason, a finer classification made where the error is made,
// for callers that must tell two errors of one code apart (e.g. a database locked by another
// process from other I/O errors) without reading the message. Messages are for people only.
//
// Thread safety: Status and StatusOr are values; const methods may be called concurrently.
// An ignored Status is a bug: the class is [[nodiscard]].
#ifndef DCPKV_STATUS_H_
#define DCPKV_STATUS_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

#include "dcpkv/export.h"

namespace dcpkv {

// Numeric values are part of the replication wire format: DO NOT CHANGE, only append.
enum class StatusCode : uint8_t {
  kOk = 0,
  kInvalidArgument = 1,
  kNotFound = 2,
  kAlreadyExists = 3,
  kFailedPrecondition = 4,
  kDataLoss = 5,
  kIOError = 6,
  kResourceExhausted = 7,
  kUnavailable = 8,
  kDeadlineExceeded = 9,
  kAborted = 10,
  kCancelled = 11,
  kUnauthenticated = 12,
  kInternal = 13,
};

// A finer classification of some errors. Set where the error is made (the store's open, format
// check, ...) and kept by WithContext; not sent between ranks or to replicas (a remote rank's
// failure arrives with kNone). Values may be appended.
enum class ErrorReason : uint8_t {
  kNone = 0,
  // IO_ERROR: a read-write open found the database's lock held by another process or by another
  // open handle in this one (a running job, an offline gc).
  kLockHeld = 1,
  // FAILED_PRECONDITION: the directory holds no dcpkv store (no format marker), e.g. a rank
  // database whose creation has not finished, or some other RocksDB database.
  kNotADcpkvStore = 2,
  // FAILED_PRECONDITION: another job (or a dcpkv maintenance command) holds the store root's
  // writer lease (writer_lease.h).
  kLeaseHeld = 3,
};

// Returns the code's name, e.g. "DATA_LOSS".
DCPKV_EXPORT std::string_view StatusCodeName(StatusCode code);

class [[nodiscard]] DCPKV_EXPORT Status {
 public:
  // An OK status. Cheap: no allocation.
  Status() = default;
  Status(StatusCode code, std::string_view message);

  static Status Ok() { return Status(); }

  bool ok() const { return rep_ == nullptr; }
  StatusCode code() const { return rep_ ? rep_->code : StatusCode::kOk; }
  // kNone unless the error was classified further (see ErrorReason).
  ErrorReason reason() const { return rep_ ? rep_->reason : ErrorReason::kNone; }
  // The message without the code; empty for OK.
  const std::string& message() const;
  // "OK" or "<CODE>: <message>".
  std::string ToString() const;

  // Returns a copy whose message is "<context>: <message>". OK stays OK.
  Status WithContext(std::string_view context) const;
  // Returns a copy carrying `reason`. OK stays OK.
  Status WithReason(ErrorReason reason) const;

  // Marks a status as deliberately ignored.
  void IgnoreError() const {}

  friend bool operator==(const Status& a, const Status& b) {
    return a.code() == b.code() && a.reason() == b.reason() && a.message() == b.message();
  }
  friend bool operator!=(const Status& a, const Status& b) { return !(a == b); }

 private:
  struct Rep {
    StatusCode code;
    std::string message;
    ErrorReason reason = ErrorReason::kNone;
  };
  std::shared_ptr<const Rep> rep_;  // null means OK; immutable, so sharing is safe.
};

DCPKV_EXPORT std::ostream& operator<<(std::ostream& os, const Status& status);

// Constructors named after the codes, e.g. DataLossError("checksum mismatch").
DCPKV_EXPORT Status InvalidArgumentError(std::string_view message);
DCPKV_EXPORT Status NotFoundError(std::string_view message);
DCPKV_EXPORT Status AlreadyExistsError(std::string_view message);
DCPKV_EXPORT Status FailedPreconditionError(std::string_view message);
DCPKV_EXPORT Status DataLossError(std::string_view message);
DCPKV_EXPORT Status IOError(std::string_view message);
DCPKV_EXPORT Status ResourceExhaustedError(std::string_view message);
DCPKV_EXPORT Status UnavailableError(std::string_view message);
DCPKV_EXPORT Status DeadlineExceededError(std::string_view message);
DCPKV_EXPORT Status AbortedError(std::string_view message);
DCPKV_EXPORT Status CancelledError(std::string_view message);
DCPKV_EXPORT Status UnauthenticatedError(std::string_view message);
DCPKV_EXPORT Status InternalError(std::string_view message);

// Either a value of type T or a non-OK Status.
template <typename T>
class [[nodiscard]] DCPKV_EXPORT StatusOr {
 public:
  // REQUIRES: !status.ok(). An OK status without a value becomes an INTERNAL error.
  StatusOr(Status status)  // NOLINT(google-explicit-constructor)
      : rep_(status.ok() ? InternalError("StatusOr constructed from OK status without a value")
                         : std::move(status)) {}
  StatusOr(T value) : rep_(std::move(value)) {}  // NOLINT(google-explicit-constructor)

  bool ok() const { return std::holds_alternative<T>(rep_); }
  Status status() const { return ok() ? Status() : std::get<Status>(rep_); }

  // REQUIRES: ok().
  const T& value() const& { return std::get<T>(rep_); }
  T& value() & { return std::get<T>(rep_); }
  T&& value() && { return std::get<T>(std::move(rep_)); }
  const T& operator*() const& { return value(); }
  T& operator*() & { return value(); }
  T&& operator*() && { return std::move(*this).value(); }
  const T* operator->() const { return &value(); }
  T* operator->() { return &value(); }

 private:
  std::variant<Status, T> rep_;
};

}  // namespace dcpkv

#define DCPKV_STATUS_CONCAT_INNER_(a, b) a##b
#define DCPKV_STATUS_CONCAT_(a, b) DCPKV_STATUS_CONCAT_INNER_(a, b)

// Returns from the enclosing function if `expr` (a Status) is not OK.
#define DCPKV_RETURN_IF_ERROR(expr)                \
  do {                                             \
    ::dcpkv::Status dcpkv_status_ = (expr);        \
    if (!dcpkv_status_.ok()) return dcpkv_status_; \
  } while (false)

// `lhs = value of expr` if expr (a StatusOr) is OK, else returns its status.
#define DCPKV_ASSIGN_OR_RETURN(lhs, expr) \
  DCPKV_ASSIGN_OR_RETURN_IMPL_(DCPKV_STATUS_CONCAT_(dcpkv_statusor_, __LINE__), lhs, expr)
#define DCPKV_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                                 \
  if (!tmp.ok()) return tmp.status();                \
  lhs = std::move(tmp).value()

#endif  // DCPKV_STATUS_H_

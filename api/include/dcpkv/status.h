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

// Returns the code's name, e.g. "DATA_LOSS".
std::string_view StatusCodeName(StatusCode code);

class [[nodiscard]] Status {
 public:
  // An OK status. Cheap: no allocation.
  Status() = default;
  Status(StatusCode code, std::string_view message);

  static Status Ok() { return Status(); }

  bool ok() const { return rep_ == nullptr; }
  StatusCode code() const { return rep_ ? rep_->code : StatusCode::kOk; }
  // The message without the code; empty for OK.
  const std::string& message() const;
  // "OK" or "<CODE>: <message>".
  std::string ToString() const;

  // Returns a copy whose message is "<context>: <message>". OK stays OK.
  Status WithContext(std::string_view context) const;

  // Marks a status as deliberately ignored.
  void IgnoreError() const {}

  friend bool operator==(const Status& a, const Status& b) {
    return a.code() == b.code() && a.message() == b.message();
  }
  friend bool operator!=(const Status& a, const Status& b) { return !(a == b); }

 private:
  struct Rep {
    StatusCode code;
    std::string message;
  };
  std::shared_ptr<const Rep> rep_;  // null means OK; immutable, so sharing is safe.
};

std::ostream& operator<<(std::ostream& os, const Status& status);

// Constructors named after the codes, e.g. DataLossError("checksum mismatch").
Status InvalidArgumentError(std::string_view message);
Status NotFoundError(std::string_view message);
Status AlreadyExistsError(std::string_view message);
Status FailedPreconditionError(std::string_view message);
Status DataLossError(std::string_view message);
Status IOError(std::string_view message);
Status ResourceExhaustedError(std::string_view message);
Status UnavailableError(std::string_view message);
Status DeadlineExceededError(std::string_view message);
Status AbortedError(std::string_view message);
Status CancelledError(std::string_view message);
Status UnauthenticatedError(std::string_view message);
Status InternalError(std::string_view message);

// Either a value of type T or a non-OK Status.
template <typename T>
class [[nodiscard]] StatusOr {
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

#include "dcpkv/status.h"

namespace dcpkv {

std::string_view StatusCodeName(StatusCode code) {
  switch (code) {
    case StatusCode::kOk: return "OK";
    case StatusCode::kInvalidArgument: return "INVALID_ARGUMENT";
    case StatusCode::kNotFound: return "NOT_FOUND";
    case StatusCode::kAlreadyExists: return "ALREADY_EXISTS";
    case StatusCode::kFailedPrecondition: return "FAILED_PRECONDITION";
    case StatusCode::kDataLoss: return "DATA_LOSS";
    case StatusCode::kIOError: return "IO_ERROR";
    case StatusCode::kResourceExhausted: return "RESOURCE_EXHAUSTED";
    case StatusCode::kUnavailable: return "UNAVAILABLE";
    case StatusCode::kDeadlineExceeded: return "DEADLINE_EXCEEDED";
    case StatusCode::kAborted: return "ABORTED";
    case StatusCode::kCancelled: return "CANCELLED";
    case StatusCode::kUnauthenticated: return "UNAUTHENTICATED";
    case StatusCode::kInternal: return "INTERNAL";
  }
  return "UNKNOWN";
}

Status::Status(StatusCode code, std::string_view message) {
  if (code != StatusCode::kOk) {
    rep_ = std::make_shared<Rep>(Rep{code, std::string(message), ErrorReason::kNone});
  }
}

const std::string& Status::message() const {
  static const std::string* const kEmpty = new std::string();
  return rep_ ? rep_->message : *kEmpty;
}

std::string Status::ToString() const {
  if (ok()) return "OK";
  std::string out(StatusCodeName(code()));
  out += ": ";
  out += message();
  return out;
}

Status Status::WithContext(std::string_view context) const {
  if (ok()) return *this;
  std::string msg(context);
  msg += ": ";
  msg += message();
  Status out;
  out.rep_ = std::make_shared<Rep>(Rep{code(), std::move(msg), reason()});
  return out;
}

Status Status::WithReason(ErrorReason reason) const {
  if (ok() || reason == this->reason()) return *this;
  Status out;
  out.rep_ = std::make_shared<Rep>(Rep{code(), message(), reason});
  return out;
}

std::ostream& operator<<(std::ostream& os, const Status& status) { return os << status.ToString(); }

Status InvalidArgumentError(std::string_view m) { return {StatusCode::kInvalidArgument, m}; }
Status NotFoundError(std::string_view m) { return {StatusCode::kNotFound, m}; }
Status AlreadyExistsError(std::string_view m) { return {StatusCode::kAlreadyExists, m}; }
Status FailedPreconditionError(std::string_view m) { return {StatusCode::kFailedPrecondition, m}; }
Status DataLossError(std::string_view m) { return {StatusCode::kDataLoss, m}; }
Status IOError(std::string_view m) { return {StatusCode::kIOError, m}; }
Status ResourceExhaustedError(std::string_view m) { return {StatusCode::kResourceExhausted, m}; }
Status UnavailableError(std::string_view m) { return {StatusCode::kUnavailable, m}; }
Status DeadlineExceededError(std::string_view m) { return {StatusCode::kDeadlineExceeded, m}; }
Status AbortedError(std::string_view m) { return {StatusCode::kAborted, m}; }
Status CancelledError(std::string_view m) { return {StatusCode::kCancelled, m}; }
Status UnauthenticatedError(std::string_view m) { return {StatusCode::kUnauthenticated, m}; }
Status InternalError(std::string_view m) { return {StatusCode::kInternal, m}; }

}  // namespace dcpkv

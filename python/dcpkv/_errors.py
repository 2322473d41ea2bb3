"""dcpkv's exceptions: one class per status code, all subclasses of :class:`Error`."""

from __future__ import annotations


class Error(Exception):
    """A dcpkv operation failed. ``code`` is the status code's name (``"DATA_LOSS"``)."""

    code = "UNKNOWN"

    def __init__(self, message: str, code: str | None = None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class InvalidArgumentError(Error, ValueError):
    """Bad input: options, names, dtypes, shapes, a value that cannot be read in place."""

    code = "INVALID_ARGUMENT"


class NotFoundError(Error, LookupError):
    """No such checkpoint, store root or entry."""

    code = "NOT_FOUND"


class AlreadyExistsError(Error):
    """A checkpoint with that id is committed already."""

    code = "ALREADY_EXISTS"


class FailedPreconditionError(Error):
    """The operation cannot run in this state (no GPU for a CUDA tensor, a store in use)."""

    code = "FAILED_PRECONDITION"


class DataLossError(Error):
    """Stored bytes failed their checksum or a record is damaged: nothing wrong was returned."""

    code = "DATA_LOSS"


class IOError(Error, OSError):  # noqa: A001 - the status code's name
    """The file system or the database failed."""

    code = "IO_ERROR"


class ResourceExhaustedError(Error):
    """Out of memory or disk."""

    code = "RESOURCE_EXHAUSTED"


class UnavailableError(Error):
    """A peer or a server could not be reached."""

    code = "UNAVAILABLE"


class DeadlineExceededError(Error, TimeoutError):
    """A rank, a peer or a server did not answer in time."""

    code = "DEADLINE_EXCEEDED"


class AbortedError(Error):
    """Another rank failed, so this rank's part was abandoned."""

    code = "ABORTED"


class CancelledError(Error):
    """The operation was cancelled."""

    code = "CANCELLED"


class UnauthenticatedError(Error):
    """A replica refused the credentials."""

    code = "UNAUTHENTICATED"


class InternalError(Error):
    """A bug in dcpkv: please report it with the message."""

    code = "INTERNAL"


# dcpkv::StatusCode values, as in core/include/dcpkv/status.h.
BY_STATUS_CODE = {
    1: InvalidArgumentError,
    2: NotFoundError,
    3: AlreadyExistsError,
    4: FailedPreconditionError,
    5: DataLossError,
    6: IOError,
    7: ResourceExhaustedError,
    8: UnavailableError,
    9: DeadlineExceededError,
    10: AbortedError,
    11: CancelledError,
    12: UnauthenticatedError,
    13: InternalError,
}

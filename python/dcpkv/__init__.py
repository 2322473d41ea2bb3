"""dcpkv: checkpoints of distributed training in an embedded key-value store.

The direct API::

    import dcpkv
    dcpkv.save({"model": model, "step": 100}, "/ckpt", "step-100")
    dcpkv.load({"model": model, "step": 0}, "/ckpt", "latest")

Every error is a subclass of :class:`dcpkv.Error` named for its status code
(:class:`dcpkv.NotFoundError`, :class:`dcpkv.DataLossError`, ...).
"""

from . import _errors
from ._errors import (
    AbortedError,
    AlreadyExistsError,
    CancelledError,
    DataLossError,
    DeadlineExceededError,
    Error,
    FailedPreconditionError,
    InternalError,
    InvalidArgumentError,
    IOError,
    NotFoundError,
    ResourceExhaustedError,
    UnauthenticatedError,
    UnavailableError,
)
from . import _native

_native._register_errors(_errors.BY_STATUS_CODE)

from ._api import (  # noqa: E402 - after the errors are registered
    AsyncSaveResult,
    CheckpointInfo,
    Checkpointer,
    CheckpointSummary,
    EntryInfo,
    ProcessGroup,
    async_save,
    EntryDiff,
    Replication,
    Verification,
    checkpoint_info,
    diff,
    export_safetensors,
    gc,
    init_process_group,
    job_id,
    list_checkpoints,
    load,
    load_keys,
    new_process_group,
    recover,
    rm,
    save,
    show,
    verify,
)
from ._state import Sharded  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "AbortedError",
    "AlreadyExistsError",
    "AsyncSaveResult",
    "CancelledError",
    "CheckpointInfo",
    "CheckpointSummary",
    "Checkpointer",
    "DataLossError",
    "DeadlineExceededError",
    "EntryDiff",
    "EntryInfo",
    "Error",
    "FailedPreconditionError",
    "IOError",
    "InternalError",
    "InvalidArgumentError",
    "NotFoundError",
    "ProcessGroup",
    "Replication",
    "ResourceExhaustedError",
    "Sharded",
    "UnauthenticatedError",
    "UnavailableError",
    "Verification",
    "async_save",
    "checkpoint_info",
    "diff",
    "export_safetensors",
    "gc",
    "init_process_group",
    "job_id",
    "list_checkpoints",
    "load",
    "load_keys",
    "new_process_group",
    "recover",
    "rm",
    "save",
    "show",
    "verify",
]

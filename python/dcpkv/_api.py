"""The direct API: save, load, async_save, the Checkpointer, the catalog and process groups."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

import numpy as np

from . import _native
from ._errors import InvalidArgumentError, NotFoundError
from ._state import Builder

PathLike = str | os.PathLike


# ---- results ----


@dataclass(frozen=True)
class EntryInfo:
    """What was saved under one fully-qualified name."""

    dtype: str  # "float32", "bfloat16", ..., "bytes"
    shape: tuple[int, ...]
    shards: list[dict] = field(repr=False)

    @property
    def is_bytes(self) -> bool:
        return self.dtype == "bytes"


@dataclass(frozen=True)
class CheckpointInfo:
    """A committed checkpoint: its id, entries and sizes."""

    checkpoint_id: str
    world_size: int
    committed_unix_micros: int
    entries: dict[str, EntryInfo] = field(repr=False)
    base_checkpoint_id: str
    stored_bytes: int
    logical_bytes: int
    tags: dict[str, str]

    @classmethod
    def _from_native(cls, md: dict) -> "CheckpointInfo":
        entries = {
            fqn: EntryInfo(e["dtype"], tuple(e["shape"]), e["shards"])
            for fqn, e in md["entries"].items()
        }
        return cls(
            md["checkpoint_id"],
            md["world_size"],
            md["committed_unix_micros"],
            entries,
            md["base_checkpoint_id"],
            md["stored_bytes"],
            md["logical_bytes"],
            dict(md["tags"]),
        )


@dataclass(frozen=True)
class CheckpointSummary:
    """One line of :func:`list_checkpoints`."""

    checkpoint_id: str
    committed_unix_micros: int
    world_size: int
    coordinator_rank: int
    num_entries: int
    logical_bytes: int
    stored_bytes: int
    base_checkpoint_id: str
    tags: dict[str, str]


# Callbacks that close what this process keeps open under a store root (dcpkv.torch's
# writers), run before a save, rm, gc or recover opens the root's databases read-write.
_store_users: list = []


def _release_store(root: str) -> None:
    for release in _store_users:
        release(root)


# ---- process groups ----

ProcessGroup = _native.ProcessGroup

_default_group: ProcessGroup | None = None
_default_group_lock = threading.Lock()


def job_id() -> str:
    """The job this process's writers hold store roots' writer leases for (one job writes to a
    root at a time): ``DCPKV_JOB_ID``, else torchrun's ``TORCHELASTIC_RUN_ID``, else the
    rendezvous (``MASTER_ADDR:MASTER_PORT``), else one made for this process. Fixed at the first
    call and exported as ``DCPKV_JOB_ID`` for the processes started afterwards (an async upload
    daemon)."""
    jid = _native.job_id()
    if os.environ.get("DCPKV_JOB_ID") != jid:
        os.environ["DCPKV_JOB_ID"] = jid
    return jid


def init_process_group(timeout: float = 60.0) -> ProcessGroup:
    """The process group of this job's ranks, made from the torchrun environment (RANK,
    WORLD_SIZE, MASTER_ADDR, MASTER_PORT, and torchrun's agent store). Made once per process;
    every rank calls it (it is a rendezvous). Saves and loads use it by default when
    WORLD_SIZE is more than 1."""
    global _default_group
    with _default_group_lock:
        if _default_group is None:
            _default_group = _native.gloo_group_from_env(float(timeout))
        return _default_group


def new_process_group(
    rank: int,
    world_size: int,
    master_addr: str = "127.0.0.1",
    master_port: int = 29500,
    *,
    timeout: float = 60.0,
    prefix: str = "",
) -> ProcessGroup:
    """A gloo process group whose rendezvous server runs on rank 0 at master_addr:master_port
    (for launchers other than torchrun)."""
    return _native.gloo_group(
        int(rank), int(world_size), master_addr, int(master_port), float(timeout), prefix
    )


def _group(process_group: ProcessGroup | None, no_dist: bool) -> ProcessGroup | None:
    if process_group is not None or no_dist:
        return process_group
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        return init_process_group()
    return None


# ---- replication ----


class Replication:
    """Copies each committed manifest (and each deletion) to gRPC replicas (`dcpkv serve`),
    under ``namespace``. Synchronous (default): a save returns once ``write_quorum`` replicas
    (0: all) acknowledged, else raises UnavailableError although the checkpoint is committed.
    Asynchronous: replicas are updated in the background, retrying until they acknowledge.
    Pass it as ``replication=`` to saves and the Checkpointer."""

    def __init__(
        self,
        namespace: str,
        targets: Iterable[str],
        *,
        synchronous: bool = True,
        write_quorum: int = 0,
        deadline: float = 10.0,
        token: str | None = None,
        tls_ca_file: str | None = None,
        tls_cert_file: str | None = None,
        tls_key_file: str | None = None,
        tls_server_name: str | None = None,
    ):
        self._args = (namespace, list(targets))
        self._kwargs = dict(
            synchronous=synchronous,
            write_quorum=write_quorum,
            deadline=deadline,
            token=token,
            tls_ca_file=tls_ca_file,
            tls_cert_file=tls_cert_file,
            tls_key_file=tls_key_file,
            tls_server_name=tls_server_name,
        )
        self._native = _native.Replication(
            namespace,
            self._args[1],
            bool(synchronous),
            int(write_quorum),
            float(deadline),
            token or "",
            tls_ca_file or "",
            tls_cert_file or "",
            tls_key_file or "",
            tls_server_name or "",
        )

    def __reduce__(self) -> tuple:
        # Pickled as its arguments (a writer sent to another process connects anew there).
        return (_replication_from_args, (self._args, self._kwargs))

    def state(self, checkpoint_id: str) -> str:
        """ "2/2 replicas", "1/2 replicas, retrying ...": where a checkpoint's record is."""
        return self._native.state(checkpoint_id)

    def wait_idle(self, timeout: float = 60.0) -> None:
        """Waits until nothing is queued (asynchronous mode); DeadlineExceededError otherwise."""
        self._native.wait_idle(float(timeout))


def _replication_from_args(args: tuple, kwargs: dict) -> Replication:
    return Replication(*args, **kwargs)


def recover(
    root: PathLike, target: str, namespace: str, *, token: str | None = None, deadline: float = 10.0
) -> dict:
    """Restores the manifests the store lacks (its coordinator's database lost) from a replica;
    returns the ids ``restored`` and those already ``present``."""
    _release_store(os.fspath(root))
    return _native.recover(os.fspath(root), target, namespace, token or "", float(deadline))


# ---- save and load ----


def check_save_options(
    replication: Any, tags: Mapping[str, str] | None, keep_last: int, chunk_size: int | None
) -> None:
    """The checks of the save options dcpkv's save and dcpkv.torch's writer share."""
    if replication is not None and not isinstance(replication, Replication):
        raise InvalidArgumentError("replication must be a dcpkv.Replication")
    for k, v in (tags or {}).items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise InvalidArgumentError(f"tag {k!r}: tags map strings to strings")
    if keep_last < 0:
        raise InvalidArgumentError(f"keep_last must be 0 (keep all) or more, not {keep_last}")
    if chunk_size is not None and chunk_size <= 0:
        raise InvalidArgumentError(f"chunk_size must be positive bytes, not {chunk_size}")


def _prepare_save(
    state_dict: Mapping[str, Any],
    root: PathLike,
    *,
    process_group: ProcessGroup | None = None,
    incremental: bool = True,
    incremental_base: str | None = None,
    tags: Mapping[str, str] | None = None,
    keep_last: int = 0,
    chunk_size: int | None = None,
    coordinator_rank: int = 0,
    no_dist: bool = False,
    replication: Replication | None = None,
) -> tuple[Any, str, Any, ProcessGroup | None]:
    """The native state dict, root, options and group of a save: the options of save() and
    async_save(), checked before anything is written."""
    check_save_options(replication, tags, keep_last, chunk_size)
    o = _native.SaveOptions()
    if replication is not None:
        o.replication = replication._native
    o.incremental = bool(incremental)
    o.incremental_base = incremental_base or ""
    if tags:
        o.tags = dict(tags)
    o.keep_last = int(keep_last)
    if chunk_size is not None:
        o.chunk_size = int(chunk_size)
    o.coordinator_rank = int(coordinator_rank)
    o.no_dist = bool(no_dist)
    native = Builder(writable=False).add(state_dict).native
    _release_store(os.fspath(root))
    return native, os.fspath(root), o, _group(process_group, no_dist)


def save(
    state_dict: Mapping[str, Any], root: PathLike, checkpoint_id: str, **options: Any
) -> CheckpointInfo:
    """Saves ``state_dict`` as checkpoint ``checkpoint_id`` under the store ``root``, on every
    rank of the process group (by default the torchrun job's when WORLD_SIZE > 1). Returns the
    committed checkpoint once the coordinator has committed it.

    Options (keywords): ``process_group``; ``incremental`` (default True): chunks equal to those
    of the base (``incremental_base``, default the newest committed checkpoint) are not stored
    again; ``tags``: strings stored with the manifest ("keep" protects from retention);
    ``keep_last``: after the commit, keep the newest N checkpoints (and those tagged "keep"),
    delete the others; ``chunk_size``: payload bytes per stored chunk (default 4 MiB);
    ``coordinator_rank``; ``no_dist``; ``replication``: a :class:`Replication` to copy the
    manifest to. The longest wait for another rank is the process group's timeout."""
    native, root, o, group = _prepare_save(state_dict, root, **options)
    return CheckpointInfo._from_native(_native.save(native, root, checkpoint_id, o, group))


def load(
    state_dict: Mapping[str, Any],
    root: PathLike,
    checkpoint_id: str = "latest",
    *,
    process_group: ProcessGroup | None = None,
    strict: bool = True,
    coordinator_rank: int = 0,
    no_dist: bool = False,
) -> None:
    """Fills ``state_dict`` in place from checkpoint ``checkpoint_id`` ("latest": the newest
    committed one), resharding as needed: arrays and tensors are written where they lie; bytes
    and Python values are replaced in their dicts; objects with ``load_state_dict`` get their
    filled state. ``strict=False`` leaves entries the checkpoint lacks alone."""
    root = os.fspath(root)
    checkpoint_id = _native.resolve_checkpoint_id(root, checkpoint_id)
    builder = Builder(writable=True).add(state_dict)
    _native.load(
        builder.native,
        root,
        checkpoint_id,
        not strict,
        int(coordinator_rank),
        bool(no_dist),
        _group(process_group, no_dist),
    )
    builder.finish_load()


_NUMPY_DTYPES = {
    "float64": np.float64,
    "float32": np.float32,
    "float16": np.float16,
    "int8": np.int8,
    "int16": np.int16,
    "int32": np.int32,
    "int64": np.int64,
    "uint8": np.uint8,
    "uint16": np.uint16,
    "uint32": np.uint32,
    "uint64": np.uint64,
    "bool": np.bool_,
    "complex64": np.complex64,
    "complex128": np.complex128,
}
# dcpkv dtypes numpy lacks (torch has them all, under the same names).
_TORCH_DTYPES = {"bfloat16", "float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz",
                 "float8_e5m2fnuz", "float8_e8m0fnu", "complex32"}
# Every dtype dcpkv stores, by its (numpy's and torch's) name.
STORED_DTYPES = frozenset(_NUMPY_DTYPES) | _TORCH_DTYPES


def _allocate(dtype: str, shape: tuple[int, ...], fqn: str, framework: str) -> Any:
    if framework == "torch" or dtype in _TORCH_DTYPES:
        try:
            import torch
        except ImportError as e:
            raise InvalidArgumentError(
                f"entry {fqn!r} is {dtype}, which numpy lacks: install torch to load it"
            ) from e
        return torch.empty(shape, dtype=getattr(torch, dtype))
    return np.empty(shape, dtype=_NUMPY_DTYPES[dtype])


def load_keys(
    root: PathLike,
    checkpoint_id: str,
    keys: Iterable[str],
    *,
    framework: str = "numpy",
) -> dict[str, Any]:
    """Reads only ``keys`` (fully-qualified names) of a checkpoint into new arrays, in this
    process alone: numpy arrays (``framework="torch"``: torch tensors; bfloat16 and float8
    entries are always torch tensors), bytes, or the Python values that were saved."""
    if framework not in ("numpy", "torch"):
        raise InvalidArgumentError(f"framework must be 'numpy' or 'torch', not {framework!r}")
    root = os.fspath(root)
    info = CheckpointInfo._from_native(_native.read_metadata(root, checkpoint_id))
    keys = list(keys)
    state: dict[str, Any] = {}
    for fqn in keys:
        entry = info.entries.get(fqn)
        if entry is None:
            raise NotFoundError(f"no entry {fqn!r} in checkpoint {info.checkpoint_id!r}")
        state[fqn] = b"" if entry.is_bytes else _allocate(entry.dtype, entry.shape, fqn, framework)
    # Flat fqns as top-level keys: the names need no nesting to match.
    builder = Builder(writable=True).add(state)
    _native.load(builder.native, root, info.checkpoint_id, True, 0, True, None)
    builder.finish_load()
    return state


def list_checkpoints(root: PathLike) -> list[CheckpointSummary]:
    """Every committed checkpoint under ``root``, oldest commit first."""
    return [CheckpointSummary(**s) for s in _native.list_checkpoints(os.fspath(root))]


def checkpoint_info(root: PathLike, checkpoint_id: str = "latest") -> CheckpointInfo:
    """The committed manifest of one checkpoint: entries, dtypes, shapes, shards, tags."""
    return CheckpointInfo._from_native(_native.read_metadata(os.fspath(root), checkpoint_id))


def show(root: PathLike, checkpoint_id: str = "latest") -> CheckpointInfo:
    """What ``dcpkv show`` prints: the committed manifest of one checkpoint."""
    return checkpoint_info(root, checkpoint_id)


@dataclass(frozen=True)
class Verification:
    """What :func:`verify` read and the problems it found (``ok`` when there are none)."""

    checkpoints: int
    entries: int
    shards: int
    chunks: int
    bytes: int
    problems: list[dict]
    # Committed when verify began, deleted (rm, a job's retention) before their data was read:
    # not verified, and not problems.
    deleted_meanwhile: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify(root: PathLike, checkpoint_ids: Iterable[str] = ()) -> Verification:
    """Reads every chunk of the given checkpoints (default: all committed ones) and checks its
    checksum and structure. Damage is reported in ``problems`` (each with checkpoint_id, fqn,
    shard_offsets, rank, byte range and a description), not raised; an unknown id or root
    raises NotFoundError."""
    return Verification(**_native.verify(os.fspath(root), list(checkpoint_ids)))


@dataclass(frozen=True)
class EntryDiff:
    fqn: str
    kind: str  # "added", "removed", "changed", "unchanged"
    detail: str  # changed: "dtype ... -> ...", "shape ... -> ..." or "values"
    dtype: str
    shape: tuple[int, ...]
    elements_changed: int
    max_abs_diff: float


def diff(root: PathLike, a: str, b: str = "latest") -> list[EntryDiff]:
    """Compares checkpoints ``a`` and ``b`` entry by entry, by value (any sharding)."""
    d = _native.diff(os.fspath(root), a, b)
    return [EntryDiff(**e) for e in d["entries"]]


def export_safetensors(root: PathLike, checkpoint_id: str, path: PathLike) -> dict:
    """Writes one consolidated safetensors file of a checkpoint (every rank's shards assembled);
    returns the resolved checkpoint_id, the number of entries and the file's size."""
    return _native.export_safetensors(os.fspath(root), checkpoint_id, os.fspath(path))


def rm(root: PathLike, checkpoint_ids: str | Iterable[str]) -> dict:
    """Deletes checkpoints and reclaims what nothing else refers to; no job may be writing to
    the root. Returns the ids removed and reclaimed and the bytes freed."""
    ids = [checkpoint_ids] if isinstance(checkpoint_ids, str) else list(checkpoint_ids)
    _release_store(os.fspath(root))
    return _native.rm(os.fspath(root), ids)


def gc(root: PathLike) -> dict:
    """Reclaims deleted checkpoints' data and that of saves that never committed; no job may
    be writing to the root."""
    _release_store(os.fspath(root))
    return _native.gc(os.fspath(root))


# ---- async save ----


class AsyncSaveResult:
    """An async save in flight: ``staging`` is done once the sources may change again,
    ``upload`` once the checkpoint is committed."""

    def __init__(self, native: Any):
        self._native = native
        self.staging = _Waitable(native.wait_staging, native.staging_result)
        self.upload = _Waitable(native.wait_upload, self._upload_result)
        self._info: CheckpointInfo | None = None

    def _upload_result(self) -> CheckpointInfo:
        if self._info is None:
            self._info = CheckpointInfo._from_native(self._native.upload_result())
        return self._info


class _Waitable:
    def __init__(self, wait: Any, result: Any):
        self._wait = wait
        self._result = result

    def done(self) -> bool:
        return bool(self._wait(0.0))

    def wait(self, timeout: float | None = None) -> bool:
        """Blocks until done or ``timeout`` seconds; True if done."""
        return bool(self._wait(-1.0 if timeout is None else float(timeout)))

    def result(self, timeout: float | None = None) -> Any:
        """Waits, then returns the outcome (the committed checkpoint for an upload) or raises
        its error; a timeout raises TimeoutError."""
        if not self.wait(timeout):
            raise TimeoutError(f"not done within {timeout} s")
        return self._result()


def async_save(
    state_dict: Mapping[str, Any],
    root: PathLike,
    checkpoint_id: str,
    *,
    refuse_overlap: bool = False,
    **options: Any,
) -> AsyncSaveResult:
    """Stages ``state_dict`` into host memory and uploads it in the background (options as
    :func:`save`). Change the sources only after ``result.staging`` is done; the checkpoint is
    committed when ``result.upload`` is. A new async save to the same store waits for the
    previous upload (``refuse_overlap=True``: fails with FailedPreconditionError instead)."""
    native, root, o, group = _prepare_save(state_dict, root, **options)
    return AsyncSaveResult(
        _native.async_save(native, root, checkpoint_id, o, group, bool(refuse_overlap))
    )


# ---- Checkpointer ----


class Checkpointer:
    """Saves and loads one store again and again with the same options, as a training loop
    does: incremental saves against the previous checkpoint by default, retention, tags."""

    def __init__(
        self,
        root: PathLike,
        *,
        process_group: ProcessGroup | None = None,
        incremental: bool = True,
        keep_last: int = 0,
        chunk_size: int | None = None,
        coordinator_rank: int = 0,
        replication: Replication | None = None,
    ):
        self.root = os.fspath(root)
        self.replication = replication
        self.process_group = _group(process_group, False)
        self.incremental = incremental
        self.keep_last = keep_last
        self.chunk_size = chunk_size
        self.coordinator_rank = coordinator_rank
        self._pending: AsyncSaveResult | None = None

    def _kwargs(self) -> dict[str, Any]:
        return dict(
            process_group=self.process_group,
            incremental=self.incremental,
            keep_last=self.keep_last,
            chunk_size=self.chunk_size,
            coordinator_rank=self.coordinator_rank,
            replication=self.replication,
        )

    def save(
        self, state_dict: Mapping[str, Any], checkpoint_id: str, tags: Mapping[str, str] | None = None
    ) -> CheckpointInfo:
        self.wait()
        return save(state_dict, self.root, checkpoint_id, tags=tags, **self._kwargs())

    def async_save(
        self, state_dict: Mapping[str, Any], checkpoint_id: str, tags: Mapping[str, str] | None = None
    ) -> AsyncSaveResult:
        self._pending = async_save(state_dict, self.root, checkpoint_id, tags=tags, **self._kwargs())
        return self._pending

    def wait(self) -> CheckpointInfo | None:
        """Waits for the last async save's upload; its committed checkpoint (or its error)."""
        pending, self._pending = self._pending, None
        return pending.upload.result() if pending is not None else None

    def load(self, state_dict: Mapping[str, Any], checkpoint_id: str = "latest", *, strict: bool = True) -> None:
        self.wait()
        load(
            state_dict,
            self.root,
            checkpoint_id,
            process_group=self.process_group,
            strict=strict,
            coordinator_rank=self.coordinator_rank,
        )

    def list(self) -> list[CheckpointSummary]:
        return list_checkpoints(self.root)


__all__ = [
    "AsyncSaveResult",
    "CheckpointInfo",
    "CheckpointSummary",
    "Checkpointer",
    "EntryInfo",
    "ProcessGroup",
    "async_save",
    "checkpoint_info",
    "Verification",
    "EntryDiff",
    "Replication",
    "recover",
    "diff",
    "export_safetensors",
    "gc",
    "rm",
    "show",
    "verify",
    "init_process_group",
    "list_checkpoints",
    "load",
    "load_keys",
    "new_process_group",
    "save",
]

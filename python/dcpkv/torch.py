"""dcpkv inside torch.distributed.checkpoint: a StorageWriter and a StorageReader.

::

    import torch.distributed.checkpoint as dcp
    from dcpkv.torch import KVStorageWriter, KVStorageReader

    dcp.save(sd, checkpoint_id="step-100", storage_writer=KVStorageWriter("/ckpt"))
    dcp.async_save(sd, checkpoint_id="step-200", storage_writer=KVStorageWriter("/ckpt"))
    dcp.load(sd, checkpoint_id="step-100", storage_reader=KVStorageReader("/ckpt"))

DCP plans, deduplicates and reshards as it always does (DTensor, FSDP2, any world size); the
checkpoint is one of the store's, with its checksums, incremental saves, tags, retention,
replication and the ``dcpkv`` tool. The writer is its own :class:`AsyncStager`: it stages into
shared memory kept per store root and process, reused by every save, which the PROCESS executor
sends to its daemon without a copy.
"""

from __future__ import annotations

import atexit
import dataclasses
import io
import os
import sys
import threading
import time
import uuid
from concurrent.futures import Future
from typing import Any, Mapping

import torch
import torch.distributed as dist
from torch.distributed.checkpoint.metadata import (
    BytesStorageMetadata,
    ChunkStorageMetadata,
    Metadata,
    StorageMeta,
    TensorProperties,
    TensorStorageMetadata,
)
from torch.distributed.checkpoint.planner import (
    LoadItemType,
    LoadPlan,
    LoadPlanner,
    SavePlan,
    SavePlanner,
    WriteItemType,
)
from torch.distributed.checkpoint.staging import AsyncStager
from torch.distributed.checkpoint.storage import StorageReader, StorageWriter, WriteResult
from torch.distributed.tensor import DTensor
from torch.futures import Future as TorchFuture

from . import _api, _native
from ._api import Replication
from ._errors import (
    DeadlineExceededError,
    FailedPreconditionError,
    InvalidArgumentError,
    ResourceExhaustedError,
)
from ._state import capsule, decode_value

__all__ = [
    "KVStorageReader",
    "KVStorageWriter",
    "close_writers",
    "release_staging_memory",
    "staging_memory_bytes",
]

_ITEM_TYPES = {WriteItemType.TENSOR: 0, WriteItemType.SHARD: 1, WriteItemType.BYTE_IO: 2}


def _root_key(root: str) -> str:
    return os.path.realpath(root)


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


# ---- uploads in flight ----
#
# An async save's upload runs in a thread of this process (THREAD executor) or in DCP's daemon,
# which a thread of this process waits on (PROCESS executor). Either way the thread that takes
# the staged state dict from the staging future lives exactly as long as the upload: while it
# is alive, the staging memory of its root is being read and its databases are open.


class _Upload:
    def __init__(self, checkpoint_id: str | None):
        self.checkpoint_id = checkpoint_id  # learnt at reset() where the upload runs here
        self.created = time.monotonic()
        self.thread: threading.Thread | None = None
        self.taken = False

    def describe(self) -> str:
        return "the upload" + (f" of checkpoint {self.checkpoint_id!r}" if self.checkpoint_id else "")


# An upload whose staged state no executor has taken after this long is taken to have failed
# before it started (async_save raised on its way to the executor).
_PICKUP_SECONDS = 60.0

_uploads: dict[str, _Upload] = {}
_uploads_lock = threading.Condition()


def _running(upload: _Upload) -> bool:
    if upload.thread is not None:
        return upload.thread.is_alive()
    return not upload.taken and time.monotonic() - upload.created < _PICKUP_SECONDS


def _wait_for_upload(root: str, *, refuse: bool, timeout: float | None, what: str) -> None:
    """Waits until no async save uploads into ``root`` from this process (or refuses)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    with _uploads_lock:
        while True:
            upload = _uploads.get(root)
            if upload is not None and upload.thread is threading.current_thread():
                return  # the upload itself (THREAD executor)
            if upload is None or not _running(upload):
                _uploads.pop(root, None)
                return
            if refuse:
                raise FailedPreconditionError(
                    f"{what}: {upload.describe()} into {root} is still running "
                    "(refuse_overlap=True)"
                )
            if deadline is not None and time.monotonic() >= deadline:
                raise DeadlineExceededError(
                    f"{what}: {upload.describe()} into {root} was still running after "
                    f"{timeout} s"
                )
            _uploads_lock.wait(0.05)


class _StagingFuture(Future):
    """The staged state dict; the executor thread that takes it is the upload's."""

    def __init__(self, upload: _Upload):
        super().__init__()
        self._upload = upload

    def result(self, timeout: float | None = None) -> Any:
        with _uploads_lock:
            if not self._upload.taken:
                self._upload.taken = True
                self._upload.thread = threading.current_thread()
        return super().result(timeout)


# ---- staging memory ----


class _StagingPool:
    """Shared memory that async saves into one store root stage into, reused by every save: one
    buffer for plain tensors, as large as the largest state staged, and a tensor of its own for
    each DTensor's local part (torch 2.15 cannot pickle a DTensor whose local tensor starts
    inside a larger storage: the PROCESS executor would crash sending it), kept while the
    next state has one of the same shape at the same place. At most ``limit`` bytes in all."""

    _ALIGN = 64

    def __init__(self) -> None:
        self.buffer: torch.Tensor | None = None
        self.own: dict[tuple, torch.Tensor] = {}

    @property
    def nbytes(self) -> int:
        own = sum(t.numel() * t.element_size() for t in self.own.values())
        return own + (0 if self.buffer is None else self.buffer.numel())

    def stage(self, state: Any, limit: int | None, root: str) -> Any:
        plain: list[torch.Tensor] = []
        locals_: dict[tuple, torch.Tensor] = {}
        _collect(state, (), plain, locals_)
        total = sum(self._aligned(t) for t in plain)
        needed = total + sum(t.numel() * t.element_size() for t in locals_.values())
        if limit is not None and needed > limit:
            raise ResourceExhaustedError(
                f"async save into {root}: staging needs {needed} bytes, over the limit of "
                f"{limit} (staging_limit_bytes)"
            )
        # Memory the new state does not use goes before new memory is taken.
        self.own = {
            path: t
            for path, t in self.own.items()
            if path in locals_ and t.shape == locals_[path].shape and t.dtype == locals_[path].dtype
        }
        if self.buffer is not None and self.buffer.numel() < total:
            self.buffer = None
        if self.buffer is None and total > 0:
            self.buffer = torch.empty(total, dtype=torch.uint8).share_memory_()
        for path, t in locals_.items():
            if path not in self.own:
                self.own[path] = torch.empty(t.shape, dtype=t.dtype).share_memory_()
        offset = [0]
        buffer = self.buffer

        def place(t: torch.Tensor, path: tuple | None) -> torch.Tensor:
            if path is not None:
                view = self.own[path]
            else:
                n = t.numel() * t.element_size()
                start = offset[0]
                offset[0] += self._aligned(t)
                view = buffer[start : start + n].view(t.dtype).view(t.shape)
            view.copy_(t.detach())
            return view

        return _copy(state, (), place)

    @classmethod
    def _aligned(cls, t: torch.Tensor) -> int:
        return (t.numel() * t.element_size() + cls._ALIGN - 1) // cls._ALIGN * cls._ALIGN


def _collect(value: Any, path: tuple, plain: list, locals_: dict) -> None:
    if isinstance(value, DTensor):
        locals_[path] = value.to_local()
    elif isinstance(value, torch.Tensor):
        plain.append(value)
    elif isinstance(value, Mapping):
        for k, v in value.items():
            _collect(v, path + (k,), plain, locals_)
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _collect(v, path + (i,), plain, locals_)


def _copy(value: Any, path: tuple, place: Any) -> Any:
    if isinstance(value, DTensor):
        local = place(value.to_local(), path)
        return DTensor.from_local(
            local,
            value.device_mesh,
            value.placements,
            run_check=False,
            shape=value.size(),
            stride=value.stride(),
        )
    if isinstance(value, torch.Tensor):
        return place(value, None)
    if isinstance(value, Mapping):
        return {k: _copy(v, path + (k,), place) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v, path + (i,), place) for i, v in enumerate(value)]
    if isinstance(value, tuple):
        return tuple(_copy(v, path + (i,), place) for i, v in enumerate(value))
    return value


_pools: dict[str, _StagingPool] = {}


def staging_memory_bytes() -> int:
    """Bytes of shared memory this process holds for async saves' staging, all roots."""
    return sum(p.nbytes for p in _pools.values())


def release_staging_memory(root: str | os.PathLike | None = None) -> None:
    """Frees the staging memory of ``root`` (default: every root) once its upload is done;
    the next async save into it allocates again. Done at exit on its own."""
    roots = list(_pools) if root is None else [_root_key(os.fspath(root))]
    for key in roots:
        _wait_for_upload(key, refuse=False, timeout=None, what="release_staging_memory")
        _pools.pop(key, None)


atexit.register(lambda: _pools.clear())


# ---- the writer's databases ----
#
# One native writer per (root, rank) in a process, shared by the KVStorageWriter objects that
# save there (DCP users build one per call), its database kept open between saves as dcpkv's
# Checkpointer keeps it: RocksDB's compactions of the table files that saves add then run in
# the background, where closing after each save would wait for them (seconds, here), and a save
# that failed half-way leaves the database to the next one, which recovers it.

_native_writers: dict[tuple[str, int], tuple[tuple, Any]] = {}
_native_writers_lock = threading.Lock()


def _rank_dir_identity(root: str, rank: int) -> tuple | None:
    try:
        st = os.stat(os.path.join(root, f"rank-{rank:05d}"))
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def _native_writer(root: str, rank: int, config: tuple) -> Any:
    with _native_writers_lock:
        held = _native_writers.get((root, rank))
        # Kept only while it is this configuration's and its database is still where it was
        # opened (a root deleted and made anew holds another database).
        if held is not None and held[0] == config and held[2] == _rank_dir_identity(root, rank):
            return held[1]
        _native_writers.pop((root, rank), None)  # closes the one held
        writer = _native.DcpWriter(root, *config)
        _native_writers[(root, rank)] = (config, writer, None)
        return writer


def _opened(root: str, rank: int) -> None:
    """Notes where the database of (root, rank) is, once the writer has opened it."""
    with _native_writers_lock:
        held = _native_writers.get((root, rank))
        if held is not None:
            _native_writers[(root, rank)] = (held[0], held[1], _rank_dir_identity(root, rank))


def _drop_native_writer(root: str, rank: int) -> None:
    with _native_writers_lock:
        writer = _native_writers.pop((root, rank), None)
    del writer  # closed here, outside the lock


def _caller_uses_process_executor() -> bool:
    """True if dcp.async_save called this with AsyncCheckpointerType.PROCESS (its argument)."""
    frame = sys._getframe(1)
    while frame is not None:
        code = frame.f_code
        if code.co_name == "async_save" and frame.f_globals.get("__name__", "").startswith(
            "torch.distributed.checkpoint"
        ):
            kind = frame.f_locals.get("async_checkpointer_type")
            return getattr(kind, "name", "") == "PROCESS"
        frame = frame.f_back
    return False


def close_writers(root: str | os.PathLike | None = None) -> None:
    """Closes the databases this process's KVStorageWriters keep open under ``root`` (default:
    every root), once an upload in flight there is done. dcpkv's own save, rm, gc and recover
    call it for their root; a later save opens them again. Done at exit on its own."""
    keys = None if root is None else {_root_key(os.fspath(root))}
    for key in keys if keys is not None else {k for k, _ in list(_native_writers)}:
        _wait_for_upload(key, refuse=False, timeout=None, what="close_writers")
    with _native_writers_lock:
        closing = [k for k in _native_writers if keys is None or k[0] in keys]
        writers = [_native_writers.pop(k) for k in closing]
    del writers  # closed here, outside the lock


_api._store_users.append(close_writers)
atexit.register(close_writers)


def _ready(value: Any) -> TorchFuture:
    f: TorchFuture = TorchFuture()
    f.set_result(value)
    return f


class KVStorageWriter(StorageWriter, AsyncStager):
    """Writes torch.distributed.checkpoint checkpoints into the dcpkv store at ``root``.

    Options: ``checkpoint_id`` (used when DCP is not given one); ``incremental`` (default
    True): chunks equal to the base's are referred to, not stored again; ``incremental_base``
    (default: the newest committed checkpoint); ``tags``; ``keep_last`` (retention after each
    commit); ``replication`` (a :class:`dcpkv.Replication`); ``chunk_size``; ``write_threads``;
    for async saves ``refuse_overlap`` (fail instead of waiting for the previous upload into the
    same store), ``overlap_timeout`` (seconds to wait for it; default no limit) and
    ``staging_limit_bytes`` (the most staging memory the root may take).

    The writer pickles as these arguments (the PROCESS executor sends it to its daemon, which
    opens the database there).
    """

    _synchronize_after_execute = False  # staging is complete when stage() returns

    def __init__(
        self,
        root: str | os.PathLike,
        checkpoint_id: str | None = None,
        *,
        incremental: bool = True,
        incremental_base: str | None = None,
        tags: Mapping[str, str] | None = None,
        keep_last: int = 0,
        replication: Replication | None = None,
        chunk_size: int | None = None,
        write_threads: int = 0,
        refuse_overlap: bool = False,
        overlap_timeout: float | None = None,
        staging_limit_bytes: int | None = None,
    ):
        super().__init__()
        _api.check_save_options(replication, tags, keep_last, chunk_size)
        # The job's id is fixed here, in the trainer, before a PROCESS executor starts its daemon
        # (with a rendezvous of its own): the daemon's uploads hold the root's writer lease as
        # this job.
        _api.job_id()
        self._args = dict(
            root=os.fspath(root),
            checkpoint_id=checkpoint_id,
            incremental=bool(incremental),
            incremental_base=incremental_base,
            tags=dict(tags or {}),
            keep_last=int(keep_last),
            replication=replication,
            chunk_size=chunk_size,
            write_threads=int(write_threads),
            refuse_overlap=bool(refuse_overlap),
            overlap_timeout=overlap_timeout,
            staging_limit_bytes=staging_limit_bytes,
        )
        self.root = self._args["root"]
        self._key = _root_key(self.root)
        self.checkpoint_id = checkpoint_id
        self._save_id: str | None = None
        self._rank = 0
        self._is_coordinator = False
        self._native: Any = None
        self._close_after_save = False

    def __getstate__(self) -> dict:
        return dict(self._args, checkpoint_id=self.checkpoint_id)

    def __setstate__(self, state: dict) -> None:
        self.__init__(**state)
        # Unpickled: in the PROCESS executor's daemon, whose database must be free again for
        # the trainer's own saves once this one is done.
        self._close_after_save = True

    # -- AsyncStager --

    def stage(self, state_dict: dict[str, Any]) -> Future:
        what = f"async save into {self.root}"
        _wait_for_upload(
            self._key,
            refuse=self._args["refuse_overlap"],
            timeout=self._args["overlap_timeout"],
            what=what,
        )
        if _caller_uses_process_executor():
            # The daemon opens this root's databases: this process lets go of them first.
            close_writers(self.root)
        pool = _pools.setdefault(self._key, _StagingPool())
        staged = pool.stage(state_dict, self._args["staging_limit_bytes"], self.root)
        upload = _Upload(self.checkpoint_id)
        with _uploads_lock:
            _uploads[self._key] = upload
        future = _StagingFuture(upload)
        future.set_result(staged)
        return future

    def synchronize_staging(self) -> None:
        """Staging is done when stage() returns."""

    def close(self) -> None:
        """The staging memory outlives the writer (see release_staging_memory)."""

    # -- StorageWriter --

    def reset(self, checkpoint_id: str | os.PathLike | None = None) -> None:
        if checkpoint_id is not None:
            self.checkpoint_id = os.fspath(checkpoint_id)
        self._save_id = uuid.uuid4().hex
        with _uploads_lock:  # an async save's upload, here: name it for those who wait
            upload = _uploads.get(self._key)
            if upload is not None and upload.thread is threading.current_thread():
                upload.checkpoint_id = self.checkpoint_id

    def set_up_storage_writer(self, is_coordinator: bool, *args: Any, **kwargs: Any) -> None:
        if not kwargs.get("use_collectives", True):
            raise InvalidArgumentError(
                "KVStorageWriter saves with collectives (use_collectives=True): one manifest "
                "committed by the coordinator once every rank's chunks are durable"
            )
        if self.checkpoint_id is None:
            raise InvalidArgumentError(
                "no checkpoint id: pass checkpoint_id= to dcp.save or to KVStorageWriter"
            )
        if self._save_id is None:
            self._save_id = uuid.uuid4().hex
        if "rank" in kwargs:
            rank = int(kwargs["rank"])
        else:
            rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
        world = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
        world = max(world, rank + 1)
        _wait_for_upload(
            self._key,
            refuse=False,
            timeout=self._args["overlap_timeout"],
            what=f"save of checkpoint {self.checkpoint_id!r}",
        )
        self._rank = rank
        self._is_coordinator = bool(is_coordinator)
        config = (self._args["chunk_size"] or 0, self._args["write_threads"])
        self._native = _native_writer(self._key, rank, config)
        replication = self._args["replication"]
        self._native.configure(
            self._args["incremental"],
            self._args["incremental_base"] or "",
            self._args["keep_last"],
            replication._native if replication is not None else None,
        )
        self._native.set_up(str(self.checkpoint_id), self._is_coordinator, rank, world)
        _opened(self._key, rank)
        if self._args["keep_last"] > 0 and not self._is_coordinator:
            self._native.reclaim_garbage()

    def storage_meta(self) -> StorageMeta | None:
        return StorageMeta(checkpoint_id=self.checkpoint_id, save_id=self._save_id)

    def prepare_local_plan(self, plan: SavePlan) -> SavePlan:
        return plan

    def prepare_global_plan(self, plans: list[SavePlan]) -> list[SavePlan]:
        base = self._native.prepare_global_plan()
        # The base travels with the checkpoint id it was chosen for: a plan that DCP's plan
        # cache hands back from an earlier save carries that save's id (see write_data).
        return [dataclasses.replace(p, storage_data=(str(self.checkpoint_id), base)) for p in plans]

    def _base_of(self, plan: SavePlan) -> str:
        data = plan.storage_data
        if isinstance(data, tuple) and len(data) == 2 and data[0] == str(self.checkpoint_id):
            return data[1]
        # A cached final plan (DefaultSavePlanner(enable_plan_caching=True)) carries the base
        # of the save it was made for, which may since have been deleted: never write against
        # it. Use the base this save was configured with, or the newest committed checkpoint.
        if not self._args["incremental"]:
            return ""
        if self._args["incremental_base"]:
            return self._args["incremental_base"]
        try:
            return _native.resolve_checkpoint_id(self.root, "latest")
        except Exception as e:  # noqa: BLE001 - no committed checkpoint: a full save
            if type(e).__name__ == "NotFoundError":
                return ""
            raise

    def write_data(self, plan: SavePlan, planner: SavePlanner) -> TorchFuture:
        items = []
        for item in plan.items:
            data = planner.resolve_data(item)
            kind = _ITEM_TYPES[item.type]
            if item.type == WriteItemType.BYTE_IO:
                payload = data.getvalue() if isinstance(data, io.BytesIO) else bytes(data)
                items.append((item.index.fqn, kind, (), (), payload))
                continue
            tensor = data.detach()
            if _dtype_name(tensor.dtype) not in _api.STORED_DTYPES:
                raise InvalidArgumentError(
                    f"entry {item.index.fqn!r} is {tensor.dtype}, which dcpkv does not store "
                    f"(it stores {', '.join(sorted(_api.STORED_DTYPES))})"
                )
            if tensor.device.type not in ("cpu", "cuda"):
                tensor = tensor.cpu()
            td = item.tensor_data
            what = f"tensor {item.index.fqn!r}"
            items.append(
                (
                    item.index.fqn,
                    kind,
                    tuple(td.size),
                    tuple(td.chunk.offsets),
                    capsule(tensor, what, False),
                )
            )
        written = self._native.write(self._base_of(plan), items)
        results = [
            WriteResult(index=item.index, size_in_bytes=nbytes, storage_data=(rank, nbytes, chunks))
            for item, (rank, nbytes, chunks) in zip(plan.items, written)
        ]
        if not self._is_coordinator:  # DCP calls nothing more on this rank
            self._done()
        return _ready(results)

    def finish(self, metadata: Metadata, results: list[list[WriteResult]]) -> None:
        written: dict[tuple[str, tuple | None], tuple] = {}
        for rank_results in results:
            for r in rank_results:
                offset = None if r.index.offset is None else tuple(r.index.offset)
                written[(r.index.fqn, offset)] = r.storage_data
        entries = []
        for fqn, md in metadata.state_dict_metadata.items():
            if isinstance(md, BytesStorageMetadata):
                rank, nbytes, chunks = written[(fqn, None)]
                shards = [((0,), (nbytes,), rank, nbytes, chunks)]
                entries.append((fqn, "bytes", (nbytes,), shards, None, "torch.save"))
                continue
            p = md.properties
            shards = []
            for chunk in md.chunks:
                offsets = tuple(chunk.offsets)
                rank, nbytes, chunk_list = written[(fqn, offsets)]
                shards.append((offsets, tuple(chunk.sizes), rank, nbytes, chunk_list))
            props = dict(
                layout=str(p.layout).removeprefix("torch."),
                memory_format=str(p.memory_format).removeprefix("torch."),
                requires_grad=bool(p.requires_grad),
                pin_memory=bool(p.pin_memory),
                strides=None if getattr(p, "strides", None) is None else tuple(p.strides),
            )
            entries.append((fqn, _dtype_name(p.dtype), tuple(md.size), shards, props, "raw"))
        torch_dcp = dict(
            version=metadata.version or "",
            flatten_mapping=_flatten_mapping(metadata.planner_data),
            # This save's, not the cached Metadata's (plan caching reuses an earlier one).
            storage_meta=dict(
                checkpoint_id=str(self.checkpoint_id),
                save_id=self._save_id or "",
                load_id="",
                modules=list(metadata.storage_meta.modules) if metadata.storage_meta else [],
            ),
        )
        try:
            self._native.commit(
                str(self.checkpoint_id),
                len(results),
                self._rank,
                entries,
                self._args["tags"],
                torch_dcp,
            )
        finally:
            self._done()

    def _done(self) -> None:
        self._native = None
        if self._close_after_save:
            _drop_native_writer(self._key, self._rank)

    @classmethod
    def validate_checkpoint_id(cls, checkpoint_id: str | os.PathLike) -> bool:
        return False  # a store root and a checkpoint id are two things: never auto-selected


def _flatten_mapping(planner_data: Any) -> dict | None:
    """DefaultSavePlanner's planner_data ({fqn: path of str and int}), checked."""
    if planner_data is None:
        return None
    if isinstance(planner_data, Mapping):
        ok = all(
            isinstance(k, str)
            and isinstance(v, (tuple, list))
            and all(isinstance(e, (str, int)) and not isinstance(e, bool) for e in v)
            for k, v in planner_data.items()
        )
        if ok:
            return {k: tuple(v) for k, v in planner_data.items()}
    raise InvalidArgumentError(
        f"the planner's planner_data ({type(planner_data).__name__}) is not DefaultSavePlanner's "
        "flatten mapping ({fqn: tuple of str and int}); dcpkv stores no pickles, so it cannot "
        "keep it"
    )


# ---- the reader ----


class KVStorageReader(StorageReader):
    """Reads checkpoints of the dcpkv store at ``root`` for ``dcp.load``: those saved through
    KVStorageWriter and those written by dcpkv's own save (C++ or Python) or ``dcpkv import``.
    ``checkpoint_id`` (when DCP is not given one) may be "latest". Every chunk read is checked
    against its checksum: damage raises dcpkv.DataLossError naming the entry.

    ``read_threads``: threads each rank reads with (0: the host's cores divided among its ranks,
    between 1 and 2). ``read_io``: how table files are
    read: "auto" (the default) with O_DIRECT for a file less than half of which is in the page
    cache, through the page cache otherwise; "buffered" always through the page cache (fastest
    for a checkpoint loaded again and again, which then stays in memory); "direct" always with
    O_DIRECT where the file system takes it."""

    def __init__(
        self,
        root: str | os.PathLike,
        checkpoint_id: str = "latest",
        *,
        read_threads: int = 0,
        read_io: str = "auto",
    ):
        super().__init__()
        if read_io not in ("auto", "buffered", "direct"):
            raise InvalidArgumentError(
                f'read_io must be "auto", "buffered" or "direct", not {read_io!r}'
            )
        self.root = os.fspath(root)
        self.checkpoint_id: str = checkpoint_id
        self._read_threads = int(read_threads)
        self._read_io = read_io
        self._native: Any = None
        self._md: dict | None = None
        self._load_id: str | None = None

    def reset(self, checkpoint_id: str | os.PathLike | None = None) -> None:
        if checkpoint_id is not None:
            self.checkpoint_id = os.fspath(checkpoint_id)
        self._load_id = uuid.uuid4().hex

    def read_metadata(self, *args: Any, **kwargs: Any) -> Metadata:
        resolved = _native.resolve_checkpoint_id(self.root, str(self.checkpoint_id))
        self._native = _native.DcpReader(self.root, self._read_threads, self._read_io)
        self._md = self._native.read_metadata(resolved)
        return _to_dcp_metadata(self._md, self._load_id)

    def set_up_storage_reader(self, metadata: Metadata, is_coordinator: bool, *args: Any, **kwargs: Any) -> None:
        if self._native is None:  # DCP read the metadata through another reader object
            self.read_metadata()

    def prepare_local_plan(self, plan: LoadPlan) -> LoadPlan:
        return plan

    def prepare_global_plan(self, plans: list[LoadPlan]) -> list[LoadPlan]:
        return plans

    def read_data(self, plan: LoadPlan, planner: LoadPlanner) -> TorchFuture:
        entries = self._md["entries"]
        rank_of: dict[tuple[str, tuple], int] = {}
        for fqn, e in entries.items():
            for s in e["shards"]:
                rank_of[(fqn, tuple(s["offsets"]))] = s["rank"]

        def shard_of(ri: Any) -> tuple:
            if ri.type == LoadItemType.BYTE_IO:
                return (0,)
            return tuple(ri.storage_index.offset)

        # Each database read in key order: by the rank holding the shard, then fqn and offsets.
        items = sorted(
            plan.items,
            key=lambda ri: (
                rank_of.get((ri.storage_index.fqn, shard_of(ri)), 0),
                ri.storage_index.fqn,
                shard_of(ri),
                tuple(ri.storage_offsets),
            ),
        )
        native_items = []
        tensors = []
        byte_items = []
        for ri in items:
            fqn = ri.storage_index.fqn
            entry = entries.get(fqn)
            if entry is None:
                raise InvalidArgumentError(f"checkpoint {self._md['checkpoint_id']!r} has no entry {fqn!r}")
            if ri.type == LoadItemType.BYTE_IO:
                native_items.append((fqn, (0,), (), (), None))
                byte_items.append(ri)
                continue
            shard = shard_of(ri)
            box = tuple(s + o for s, o in zip(shard, ri.storage_offsets))
            target = planner.resolve_tensor(ri).detach()
            dtype = getattr(torch, entry["dtype"])
            direct = target.device.type == "cpu" and target.dtype == dtype
            dest = target if direct else torch.empty(tuple(ri.lengths), dtype=dtype)
            what = f"the tensor to load {fqn!r} into"
            native_items.append((fqn, shard, box, tuple(ri.lengths), capsule(dest, what, True)))
            tensors.append((ri, target, None if direct else dest))
        payloads = self._native.read(native_items)
        for ri, target, staged in tensors:
            if staged is not None:
                target.copy_(staged)
            planner.commit_tensor(ri, target)
        for ri in byte_items:
            fqn = ri.storage_index.fqn
            data = payloads[fqn]
            if entries[fqn]["bytes_encoding"] != "torch.save":
                # dcpkv's own bytes (raw, or a Python value): what torch.load gives back.
                buffer = io.BytesIO()
                torch.save(decode_value(data), buffer)
                data = buffer.getvalue()
            planner.load_bytes(ri, io.BytesIO(data))
        return _ready(None)

    @classmethod
    def validate_checkpoint_id(cls, checkpoint_id: str | os.PathLike) -> bool:
        return False


def _to_dcp_metadata(md: dict, load_id: str | None) -> Metadata:
    state: dict[str, Any] = {}
    for fqn, e in md["entries"].items():
        if e["dtype"] == "bytes":
            state[fqn] = BytesStorageMetadata()
            continue
        dtype = getattr(torch, e["dtype"], None)
        if not isinstance(dtype, torch.dtype):
            raise InvalidArgumentError(f"entry {fqn!r} is {e['dtype']}, which this torch lacks")
        p = e["torch_properties"]
        if p is None:
            props = TensorProperties(dtype=dtype)
        else:
            props = TensorProperties(
                dtype=dtype,
                layout=getattr(torch, p["layout"]),
                requires_grad=p["requires_grad"],
                memory_format=getattr(torch, p["memory_format"]),
                pin_memory=p["pin_memory"],
                strides=p["strides"],
            )
        chunks = [
            ChunkStorageMetadata(offsets=torch.Size(s["offsets"]), sizes=torch.Size(s["sizes"]))
            for s in e["shards"]
        ]
        state[fqn] = TensorStorageMetadata(properties=props, size=torch.Size(e["shape"]), chunks=chunks)
    dcp_md = md["torch_dcp"]
    if dcp_md is not None and dcp_md["flatten_mapping"] is not None:
        planner_data = dict(dcp_md["flatten_mapping"])
    else:  # saved by dcpkv itself: its names nest at "."
        planner_data = {fqn: tuple(fqn.split(".")) for fqn in state}
    storage_meta = None
    if dcp_md is not None and dcp_md["storage_meta"] is not None:
        m = dcp_md["storage_meta"]
        storage_meta = StorageMeta(
            checkpoint_id=m["checkpoint_id"] or None,
            save_id=m["save_id"] or None,
            load_id=load_id,
            modules=list(m["modules"]),
        )
    return Metadata(
        state_dict_metadata=state,
        planner_data=planner_data,
        storage_data=None,
        storage_meta=storage_meta,
        version=(dcp_md["version"] or None) if dcp_md is not None else None,
    )

"""Python state dicts to dcpkv's native ones, and the loaded values back.

A state dict is a nested mapping of names to values:

- arrays and tensors: numpy arrays, torch tensors and anything with ``__dlpack__`` (every
  dtype dcpkv stores, bfloat16 and float8 included), contiguous or strided views; read where
  they lie when saved and filled in place when loaded;
- :class:`Sharded` for one rank's part of a larger tensor;
- ``bytes`` (stored as they are) and small Python values (``int``, ``float``, ``str``,
  ``bool``, ``None`` and lists or tuples of them, stored as JSON);
- nested mappings and lists of values, whose keys join with "." into fully-qualified names
  (``{"model": {"w": t}}`` saves ``t`` as ``model.w``; a list's items are ``name.0``,
  ``name.1``, ...);
- objects with ``state_dict()`` and ``load_state_dict()`` (torch modules and optimizers).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, MutableMapping
from typing import Any, Callable, Sequence

import numpy as np

from . import _native
from ._errors import InvalidArgumentError

# Bytes entries that hold a Python value start with this (bytes a caller saves are stored as
# they are; a bytes value that happens to start with it is wrapped so it reads back unchanged).
_VALUE_MAGIC = b"\x00dcpkv-pyvalue\x00"
_BYTES_MAGIC = b"\x00dcpkv-pybytes\x00"

# DLPack device types of CUDA memory (kDLCUDA, kDLCUDAManaged).
_CUDA_DEVICES = (2, 13)


class Sharded:
    """One rank's shards of a tensor of ``global_shape``.

    ``Sharded(local, global_shape, offsets)`` for a single shard at ``offsets``, or
    ``Sharded(shards=[(offsets, local), ...], global_shape=...)`` for several. The dtype is the
    local tensors'.
    """

    def __init__(
        self,
        local: Any = None,
        global_shape: Sequence[int] = (),
        offsets: Sequence[int] | None = None,
        *,
        shards: Sequence[tuple[Sequence[int], Any]] | None = None,
    ):
        if shards is None:
            if local is None or offsets is None:
                raise InvalidArgumentError("Sharded needs a local tensor and its offsets, or shards=")
            shards = [(offsets, local)]
        elif local is not None:
            raise InvalidArgumentError("Sharded takes a local tensor or shards=, not both")
        self.global_shape = tuple(int(d) for d in global_shape)
        self.shards = [(tuple(int(o) for o in off), t) for off, t in shards]

    def __repr__(self) -> str:
        return f"Sharded(global_shape={self.global_shape}, offsets={[o for o, _ in self.shards]})"


def is_tensor(value: Any) -> bool:
    return hasattr(value, "__dlpack__") and not isinstance(value, np.generic)


def _is_torch_tensor(value: Any) -> bool:
    return type(value).__module__.startswith("torch") and hasattr(value, "detach")


def capsule(value: Any, what: str, writable: bool) -> Any:
    """A DLPack capsule viewing ``value``'s memory (no copy)."""
    if _is_torch_tensor(value):
        value = value.detach()  # parameters: the same memory, without autograd
    device = value.__dlpack_device__() if hasattr(value, "__dlpack_device__") else (1, 0)
    kwargs = {}
    if int(device[0]) in _CUDA_DEVICES:
        kwargs["stream"] = 1  # dcpkv's copies wait for the legacy default stream
    try:
        try:
            return value.__dlpack__(max_version=(1, 0), **kwargs)
        except TypeError:  # a producer older than DLPack 1.0
            return value.__dlpack__(**kwargs)
    except (BufferError, RuntimeError, ValueError) as e:
        action = "loaded into in place" if writable else "read in place"
        raise InvalidArgumentError(f"{what} cannot be {action}: {e}") from e


def encode_value(value: Any, fqn: str) -> bytes:
    if isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value)
        return _BYTES_MAGIC + data if data.startswith((_VALUE_MAGIC, _BYTES_MAGIC)) else data
    try:
        return _VALUE_MAGIC + json.dumps(value, allow_nan=True).encode()
    except (TypeError, ValueError) as e:
        raise InvalidArgumentError(
            f"entry {fqn!r}: a value of type {type(value).__name__} cannot be saved ({e}); use "
            "an array, bytes, a number, a string, a list of them, a dict or an object with "
            "state_dict()"
        ) from e


def decode_value(data: bytes) -> Any:
    if data.startswith(_VALUE_MAGIC):
        return json.loads(data[len(_VALUE_MAGIC) :].decode())
    if data.startswith(_BYTES_MAGIC):
        return data[len(_BYTES_MAGIC) :]
    return data


def _is_plain_value(value: Any) -> bool:
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    if isinstance(value, (list, tuple)):
        return all(_is_plain_value(v) for v in value)
    return False


class Builder:
    """Builds a native state dict; for a load, remembers how to put loaded values back."""

    def __init__(self, writable: bool):
        self.writable = writable
        self.native = _native.StateDict()
        # Run after a load, in order: inner values first, then load_state_dict of their owners.
        self.fixups: list[Callable[[], None]] = []

    def add(self, state: Any, prefix: str = "") -> "Builder":
        self._container(self.native, state, prefix)
        return self

    def finish_load(self) -> None:
        for fixup in self.fixups:
            fixup()

    def _container(self, native: Any, state: Any, prefix: str) -> None:
        if isinstance(state, Mapping):
            items = list(state.items())
        elif isinstance(state, list):
            items = [(str(i), v) for i, v in enumerate(state)]
        else:
            raise InvalidArgumentError(
                f"{prefix.rstrip('.') or 'the state dict'} must be a mapping, not "
                f"{type(state).__name__}"
            )
        for key, value in items:
            if not isinstance(key, str) or not key:
                raise InvalidArgumentError(
                    f"key {key!r} under {prefix.rstrip('.') or 'the state dict'!r}: keys are "
                    "non-empty strings"
                )
            index = int(key) if isinstance(state, list) else key
            self._value(native, state, index, key, value, prefix + key)

    def _value(self, native: Any, container: Any, index: Any, key: str, value: Any, fqn: str):
        if isinstance(value, Sharded):
            shards = [
                (list(off), capsule(t, f"tensor {fqn!r} (shard at {list(off)})", self.writable))
                for off, t in value.shards
            ]
            native.set_sharded(key, list(value.global_shape), shards, self.writable)
        elif is_tensor(value):
            native.set_tensor(key, capsule(value, f"tensor {fqn!r}", self.writable), self.writable)
        elif isinstance(value, np.generic):  # a numpy scalar: a 0-d array, put back as a scalar
            array = np.array(value)
            native.set_tensor(key, capsule(array, f"tensor {fqn!r}", True), self.writable)
            if self.writable:
                self._require_mutable(container, fqn)
                self.fixups.append(lambda: container.__setitem__(index, array[()]))
        elif isinstance(value, (bytes, bytearray, memoryview)) or _is_plain_value(value):
            native.set_bytes(key, encode_value(value, fqn))
            if self.writable:
                self._require_mutable(container, fqn)
                self.fixups.append(
                    lambda: container.__setitem__(index, decode_value(native.get_bytes(key)))
                )
        elif isinstance(value, (Mapping, list)):
            self._container(native.child(key), value, fqn + ".")
        elif callable(getattr(value, "state_dict", None)):
            inner = value.state_dict()
            self._container(native.child(key), inner, fqn + ".")
            if self.writable:
                if not callable(getattr(value, "load_state_dict", None)):
                    raise InvalidArgumentError(
                        f"entry {fqn!r}: {type(value).__name__} has state_dict() but no "
                        "load_state_dict(), so it cannot be loaded"
                    )
                self.fixups.append(lambda: value.load_state_dict(inner))
        else:
            raise InvalidArgumentError(
                f"entry {fqn!r}: a value of type {type(value).__name__} cannot be saved; use an "
                "array or tensor, dcpkv.Sharded, bytes, a number, a string, a list, a dict or an "
                "object with state_dict()"
            )

    @staticmethod
    def _require_mutable(container: Any, fqn: str) -> None:
        if not isinstance(container, (MutableMapping, list)):
            raise InvalidArgumentError(
                f"entry {fqn!r} is in a {type(container).__name__}, which cannot take the loaded "
                "value: use a dict"
            )

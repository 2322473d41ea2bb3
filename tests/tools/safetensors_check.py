#!/usr/bin/env python3
"""Independent check of a safetensors file against expected tensors (stdlib + numpy only).

Usage: safetensors_check.py FILE.safetensors EXPECTED.json

It parses FILE itself (no dcpkv, no safetensors package) and checks the layout: an 8-byte
little-endian header length N, N bytes of JSON with no duplicate keys, the data buffer starting
at a multiple of 8, every tensor's byte size matching its data_offsets, and the ranges contiguous
from 0 to the end of the file. Then it compares every tensor with the expected one.

EXPECTED.json:
  {
    "tensors": [
      {"name": "w", "dtype": "F32", "shape": [2, 3], "file": "expected/0.bin",
       "bytes_entry": false},
      ...
    ],
    "metadata": {"key": "value", ...}
  }
- "dtype" is the safetensors dtype string (F64 F32 F16 BF16 F8_E4M3 F8_E5M2 F8_E8M0 BOOL I8 I16
  I32 I64 U8 U16 U32 U64 C64); "shape" is [] for a scalar.
- "file" holds the tensor's expected raw bytes (row-major, little-endian); a relative path is
  relative to the directory of EXPECTED.json.
- "bytes_entry" (optional, default false): the tensor is a dcpkv bytes entry, so it must be a 1-d
  U8 tensor named in the "__metadata__" key "dcpkv.bytes_entries" (a JSON array, as a string).
  The set of names there must equal the set of expected tensors marked bytes_entry.
- "metadata" (optional): when present, must equal the file's "__metadata__" without the key
  "dcpkv.bytes_entries" (an absent "__metadata__" counts as {}).
Every tensor in the file must be expected and every expected tensor must be in the file.

Exit status: 0 if everything matches; 1 with one line per problem on stdout otherwise;
77 if numpy cannot be imported (a test should skip); 2 for bad usage.
"""

import json
import os
import struct
import sys

try:
    import numpy as np
except ImportError:
    print("numpy missing")
    sys.exit(77)

BYTES_ENTRIES_KEY = "dcpkv.bytes_entries"

# Raw-compared types are read as same-size unsigned integers: numpy has no bfloat16 or float8.
NUMPY_DTYPES = {
    "F64": np.dtype("<f8"),
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "BF16": np.dtype("<u2"),
    "F8_E4M3": np.dtype("u1"),
    "F8_E5M2": np.dtype("u1"),
    "BOOL": np.dtype("?"),
    "I8": np.dtype("i1"),
    "I16": np.dtype("<i2"),
    "I32": np.dtype("<i4"),
    "I64": np.dtype("<i8"),
    "U8": np.dtype("u1"),
    "U16": np.dtype("<u2"),
    "U32": np.dtype("<u4"),
    "U64": np.dtype("<u8"),
    "F8_E8M0": np.dtype("u1"),
    "C64": np.dtype("<c8"),
}


def no_duplicates(pairs):
    keys = [k for k, _ in pairs]
    if len(keys) != len(set(keys)):
        raise ValueError("duplicate keys in JSON object")
    return dict(pairs)


def parse_file(path, problems):
    """Returns (header dict, data buffer bytes) or (None, None) after recording problems."""
    with open(path, "rb") as f:
        content = f.read()
    if len(content) < 8:
        problems.append(f"file is {len(content)} bytes, shorter than the header length")
        return None, None
    (n,) = struct.unpack("<Q", content[:8])
    if 8 + n > len(content):
        problems.append(f"header length {n} goes beyond the {len(content)}-byte file")
        return None, None
    if (8 + n) % 8 != 0:
        problems.append(f"data buffer starts at {8 + n}, not a multiple of 8")
    try:
        header = json.loads(content[8 : 8 + n].decode("utf-8"), object_pairs_hook=no_duplicates)
    except ValueError as e:
        problems.append(f"header is not valid JSON: {e}")
        return None, None
    if not isinstance(header, dict):
        problems.append("header is not a JSON object")
        return None, None
    return header, content[8 + n :]


def check_layout(entries, data_size, problems):
    """Checks byte sizes and that the ranges tile [0, data_size)."""
    ranges = []
    for name, entry in entries.items():
        dtype = NUMPY_DTYPES.get(entry.get("dtype"))
        begin, end = entry["data_offsets"]
        if dtype is None:
            problems.append(f"{name}: unknown dtype {entry.get('dtype')}")
        elif int(np.prod(entry["shape"], dtype=object)) * dtype.itemsize != end - begin:
            problems.append(f"{name}: shape {entry['shape']} does not fill [{begin}, {end})")
        ranges.append((begin, end, name))
    position = 0
    for begin, end, name in sorted(ranges):
        if begin != position:
            problems.append(f"{name}: begins at {begin}, expected {position}")
        position = max(position, end)
    if position != data_size:
        problems.append(f"tensor data ends at {position} but the buffer holds {data_size} bytes")


def compare_tensor(name, entry, data, want, base_dir, problems):
    if entry["dtype"] != want["dtype"]:
        problems.append(f"{name}: dtype {entry['dtype']}, expected {want['dtype']}")
        return
    if list(entry["shape"]) != list(want["shape"]):
        problems.append(f"{name}: shape {entry['shape']}, expected {want['shape']}")
        return
    dtype = NUMPY_DTYPES.get(entry["dtype"])
    if dtype is None:
        return  # reported by check_layout
    begin, end = entry["data_offsets"]
    shape = tuple(want["shape"])
    actual = np.frombuffer(data[begin:end], dtype=dtype).reshape(shape)
    with open(os.path.join(base_dir, want["file"]), "rb") as f:
        expected_bytes = f.read()
    if len(expected_bytes) != actual.nbytes:
        problems.append(f"{name}: {actual.nbytes} bytes, expected {len(expected_bytes)}")
        return
    expected = np.frombuffer(expected_bytes, dtype=dtype).reshape(shape)
    if actual.shape != expected.shape or actual.tobytes() != expected.tobytes():
        problems.append(f"{name}: data differs from {want['file']}")
    elif dtype.kind == "f" and not np.array_equal(actual, expected, equal_nan=True):
        problems.append(f"{name}: values differ from {want['file']}")


def check(path, expected_path):
    problems = []
    header, data = parse_file(path, problems)
    if header is None:
        return problems
    with open(expected_path, "r", encoding="utf-8") as f:
        expected = json.load(f)
    base_dir = os.path.dirname(os.path.abspath(expected_path))

    metadata = dict(header.get("__metadata__", {}))
    if any(not isinstance(v, str) for v in metadata.values()):
        problems.append("__metadata__ has a non-string value")
    bytes_entries = set(json.loads(metadata.pop(BYTES_ENTRIES_KEY, "[]")))
    if "metadata" in expected and metadata != expected["metadata"]:
        problems.append(f"__metadata__ {metadata}, expected {expected['metadata']}")

    entries = {k: v for k, v in header.items() if k != "__metadata__"}
    check_layout(entries, len(data), problems)

    wanted = {t["name"]: t for t in expected["tensors"]}
    for name in sorted(set(entries) - set(wanted)):
        problems.append(f"{name}: in the file but not expected")
    for name in sorted(set(wanted) - set(entries)):
        problems.append(f"{name}: expected but not in the file")
    for name in sorted(set(entries) & set(wanted)):
        compare_tensor(name, entries[name], data, wanted[name], base_dir, problems)

    want_bytes = {n for n, t in wanted.items() if t.get("bytes_entry", False)}
    if bytes_entries != want_bytes:
        problems.append(
            f"{BYTES_ENTRIES_KEY} {sorted(bytes_entries)}, expected {sorted(want_bytes)}"
        )
    for name in sorted(bytes_entries & set(entries)):
        if entries[name]["dtype"] != "U8" or len(entries[name]["shape"]) != 1:
            problems.append(f"{name}: bytes entry is not a 1-d U8 tensor")
    return problems


def main(argv):
    if len(argv) != 3:
        print(f"usage: {argv[0]} FILE.safetensors EXPECTED.json")
        return 2
    try:
        problems = check(argv[1], argv[2])
    except (KeyError, TypeError, ValueError, OSError) as e:
        problems = [f"cannot check: {type(e).__name__}: {e}"]
    for problem in problems:
        print(problem)
    if not problems:
        print(f"{argv[1]}: all tensors match")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

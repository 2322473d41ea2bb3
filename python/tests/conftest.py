"""Shared helpers of dcpkv's Python tests: stores in a temporary directory, damage to a store's
files, and the programs under test (the dcpkv CLI, named by DCPKV_CLI where ctest runs them)."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess

import pytest


@pytest.fixture
def root(tmp_path):
    """A store root that does not exist yet."""
    return str(tmp_path / "store")


def cli() -> str:
    """The dcpkv CLI: $DCPKV_CLI, else build/release/tools/dcpkv of this checkout."""
    path = os.environ.get("DCPKV_CLI")
    if not path:
        here = os.path.dirname(os.path.abspath(__file__))
        path = os.path.join(here, "..", "..", "build", "release", "tools", "dcpkv")
    path = shutil.which(path) or path
    assert os.path.exists(path), f"the dcpkv CLI is needed at {path} (set DCPKV_CLI)"
    return path


def demo() -> str:
    """The C++ demo job: $DCPKV_DEMO, else build/release/tools/dcpkv_demo of this checkout."""
    path = os.environ.get("DCPKV_DEMO")
    if not path:
        here = os.path.dirname(os.path.abspath(__file__))
        path = os.path.join(here, "..", "..", "build", "release", "tools", "dcpkv_demo")
    assert os.path.exists(path), f"the dcpkv_demo program is needed at {path} (set DCPKV_DEMO)"
    return path


def free_port() -> int:
    """A TCP port of 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([cli(), *args], capture_output=True, text=True, timeout=120)


def flip_stored_byte(root: str, pattern: bytes) -> str:
    """Flips one bit in the middle of `pattern` where a rank's table file stores it; returns
    the file. The payload of a chunk is stored as it is, so a distinctive pattern is found."""
    for path in sorted(glob.glob(os.path.join(root, "rank-*", "*.sst"))):
        with open(path, "rb") as f:
            data = bytearray(f.read())
        at = data.find(pattern)
        if at >= 0:
            data[at + len(pattern) // 2] ^= 0x10
            with open(path, "wb") as f:
                f.write(data)
            return path
    raise AssertionError("the pattern is in no table file of " + root)

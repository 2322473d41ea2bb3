"""show, verify, diff, export_safetensors, rm and gc from Python, on stores Python wrote."""

import json
import struct

import numpy as np
import pytest

import dcpkv
from conftest import flip_stored_byte


def test_show_and_verify_find_damage(root):
    payload = np.random.default_rng(9).integers(0, 256, size=1 << 16, dtype=np.uint8)
    dcpkv.save({"w": payload, "v": np.arange(50, dtype=np.float32)}, root, "a")
    info = dcpkv.show(root, "a")
    assert info.entries["w"].dtype == "uint8" and info.entries["v"].shape == (50,)
    clean = dcpkv.verify(root)
    assert clean.ok and clean.checkpoints == 1 and clean.entries == 2
    assert clean.bytes == payload.nbytes + 200
    flip_stored_byte(root, payload[7000:7064].tobytes())
    damaged = dcpkv.verify(root, ["a"])
    assert not damaged.ok
    assert damaged.problems[0]["checkpoint_id"] == "a"
    with pytest.raises(dcpkv.NotFoundError):
        dcpkv.verify(root, ["absent"])


def test_diff_by_value(root):
    v = np.arange(100, dtype=np.float32)
    dcpkv.save({"v": v, "gone": np.ones(3)}, root, "a")
    v[10] += 4.0
    dcpkv.save({"v": v, "new": np.zeros(2)}, root, "b")
    by_fqn = {d.fqn: d for d in dcpkv.diff(root, "a", "b")}
    assert by_fqn["v"].kind == "changed" and by_fqn["v"].elements_changed == 1
    assert by_fqn["v"].max_abs_diff == 4.0
    assert by_fqn["gone"].kind == "removed" and by_fqn["new"].kind == "added"


def test_export_safetensors_reads_back_with_an_independent_reader(root, tmp_path):
    w = np.random.default_rng(2).standard_normal((8, 5)).astype(np.float32)
    # Saved as two shards: the export assembles the global tensor.
    dcpkv.save({"w": dcpkv.Sharded(shards=[((0, 0), w[:3]), ((3, 0), w[3:])], global_shape=(8, 5)),
                "ids": np.arange(6, dtype=np.int64)}, root, "a")
    path = tmp_path / "a.safetensors"
    out = dcpkv.export_safetensors(root, "latest", path)
    assert out["checkpoint_id"] == "a" and out["entries"] == 2
    data = path.read_bytes()
    assert out["file_bytes"] == len(data)
    (header_len,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + header_len])
    body = data[8 + header_len:]
    start, end = header["w"]["data_offsets"]
    assert header["w"]["dtype"] == "F32" and header["w"]["shape"] == [8, 5]
    assert np.frombuffer(body[start:end], np.float32).reshape(8, 5).tobytes() == w.tobytes()


def test_rm_and_gc(root):
    for i in range(3):
        dcpkv.save({"w": np.full(1000, i, np.float32)}, root, f"s{i}", incremental=False)
    out = dcpkv.rm(root, "s0")
    assert out["removed_ids"] == ["s0"] and out["reclaimed_ids"] == ["s0"]
    assert out["payload_bytes_deleted"] == 4000
    assert [c.checkpoint_id for c in dcpkv.list_checkpoints(root)] == ["s1", "s2"]
    with pytest.raises(dcpkv.NotFoundError):
        dcpkv.rm(root, ["s0"])
    assert dcpkv.gc(root)["reclaimed_ids"] == []

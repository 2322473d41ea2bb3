"""Errors as exception classes, each from a real failure; async saves and incremental saves."""

import subprocess
import sys
import threading
import types

import numpy as np
import pytest
import torch

import dcpkv
from conftest import free_port, flip_stored_byte


def test_every_error_is_a_dcpkv_error_named_for_its_code():
    assert issubclass(dcpkv.DataLossError, dcpkv.Error)
    assert issubclass(dcpkv.NotFoundError, LookupError)
    assert issubclass(dcpkv.InvalidArgumentError, ValueError)
    assert issubclass(dcpkv.DeadlineExceededError, TimeoutError)
    e = dcpkv.DataLossError("checksum mismatch", "DATA_LOSS")
    assert e.code == "DATA_LOSS" and str(e) == "DATA_LOSS: checksum mismatch"


def test_unknown_checkpoint_is_not_found(root):
    dcpkv.save({"w": np.ones(3)}, root, "a")
    with pytest.raises(dcpkv.NotFoundError, match='checkpoint "b" is not committed'):
        dcpkv.load({"w": np.zeros(3)}, root, "b")
    with pytest.raises(dcpkv.NotFoundError):
        dcpkv.list_checkpoints(root + "-absent")


def test_existing_checkpoint_is_already_exists(root):
    dcpkv.save({"w": np.ones(3)}, root, "a")
    with pytest.raises(dcpkv.AlreadyExistsError, match='"a" is already committed'):
        dcpkv.save({"w": np.ones(3)}, root, "a")


def test_a_damaged_byte_in_the_store_is_data_loss_and_nothing_wrong_is_returned(root):
    payload = np.random.default_rng(3).integers(0, 256, size=1 << 16, dtype=np.uint8)
    dcpkv.save({"w": payload, "other": np.arange(10.0)}, root, "a")
    flip_stored_byte(root, payload[5000:5064].tobytes())
    into = np.zeros_like(payload)
    with pytest.raises(dcpkv.DataLossError) as e:
        dcpkv.load({"w": into}, root, "a")
    assert 'fqn "w"' in str(e.value)
    with pytest.raises(dcpkv.DataLossError):
        dcpkv.load_keys(root, "a", ["w"])


def test_bad_input_is_invalid_argument_before_anything_is_written(root):
    with pytest.raises(dcpkv.InvalidArgumentError, match="has a dtype dcpkv does not store"):
        dcpkv.save({"c": torch.zeros(3, dtype=torch.float4_e2m1fn_x2)}, root, "a")
    with pytest.raises(dcpkv.InvalidArgumentError, match="object"):
        dcpkv.save({"o": object()}, root, "a")
    with pytest.raises(dcpkv.InvalidArgumentError, match="keys are non-empty strings"):
        dcpkv.save({1: np.ones(2)}, root, "a")
    with pytest.raises(dcpkv.InvalidArgumentError, match="negative stride"):
        dcpkv.save({"flipped": np.arange(6.0)[::-1]}, root, "a")
    with pytest.raises(dcpkv.InvalidArgumentError, match="chunk_size"):
        dcpkv.save({"w": np.ones(2)}, root, "a", chunk_size=0)
    with pytest.raises(dcpkv.NotFoundError):
        dcpkv.list_checkpoints(root)  # nothing was written by the failed saves
    dcpkv.save({"w": np.ones((3, 4), np.float32)}, root, "ok")
    with pytest.raises(dcpkv.InvalidArgumentError, match=r"global shape \[3, 4\].*\[4, 4\]"):
        dcpkv.load({"w": np.zeros((4, 4), np.float32)}, root, "ok")
    read_only = np.zeros((3, 4), np.float32)
    read_only.flags.writeable = False
    with pytest.raises(dcpkv.InvalidArgumentError, match="read-only"):
        dcpkv.load({"w": read_only}, root, "ok")
    shared = np.lib.stride_tricks.as_strided(np.zeros(4, np.float32), (3, 4), (0, 4),
                                             writeable=True)
    with pytest.raises(dcpkv.InvalidArgumentError, match="share memory"):
        dcpkv.load({"w": shared}, root, "ok")
    frozen = {"w": np.zeros((3, 4), np.float32), "cfg": types.MappingProxyType({"lr": 0.1})}
    with pytest.raises(dcpkv.InvalidArgumentError, match="'cfg.lr' is in a mappingproxy"):
        dcpkv.load(frozen, root, "ok", strict=False)


def test_a_rank_that_never_joins_is_deadline_exceeded():
    with pytest.raises(dcpkv.DeadlineExceededError, match="did not join"):
        dcpkv.new_process_group(0, 2, "127.0.0.1", free_port(), timeout=1.0)


def test_async_save_stages_then_uploads_and_sources_may_change_after_staging(root):
    w = np.random.default_rng(4).standard_normal((256, 256)).astype(np.float32)
    t = torch.randn(128, 64)
    original_w, original_t = w.copy(), t.clone()
    result = dcpkv.async_save({"w": w, "t": t, "step": 5}, root, "a")
    result.staging.result(timeout=60)
    w += 1.0  # training goes on once staging is done
    t.mul_(0)
    info = result.upload.result(timeout=60)
    assert info.checkpoint_id == "a" and result.upload.done()
    got_w, got_t = np.zeros_like(w), torch.zeros_like(t)
    step = {"w": got_w, "t": got_t, "step": 0}
    dcpkv.load(step, root, "a")
    assert np.array_equal(got_w, original_w) and torch.equal(got_t, original_t)
    assert step["step"] == 5


def test_async_save_of_host_tensors_says_nothing_on_stderr(root):
    # In a process of its own: dcpkv notes some things once per process.
    code = ("import dcpkv, numpy as np, sys; "
            "dcpkv.async_save({'w': np.ones(1000)}, sys.argv[1], 'q').upload.result(timeout=60)")
    run = subprocess.run([sys.executable, "-c", code, root], capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0 and run.stderr == "", run.stderr


def test_async_save_errors_arrive_through_the_upload(root):
    dcpkv.save({"w": np.ones(3)}, root, "a")
    result = dcpkv.async_save({"w": np.ones(3)}, root, "a")
    with pytest.raises(dcpkv.AlreadyExistsError):
        result.upload.result(timeout=60)


def test_incremental_saves_store_only_what_changed(root):
    rng = np.random.default_rng(5)
    layers = {f"layer{i}": rng.standard_normal((256, 1024)).astype(np.float32) for i in range(10)}
    ckpt = dcpkv.Checkpointer(root, chunk_size=256 << 10)
    full = ckpt.save(layers, "step-1")
    assert full.stored_bytes == full.logical_bytes
    layers["layer3"] += 1.0  # one tenth changes
    second = ckpt.save(layers, "step-2")
    assert second.base_checkpoint_id == "step-1"
    assert second.stored_bytes == full.logical_bytes // 10
    ckpt.async_save(layers, "step-3")
    assert ckpt.wait().stored_bytes == 0
    back = {k: np.zeros_like(v) for k, v in layers.items()}
    ckpt.load(back)
    assert all(np.array_equal(back[k], layers[k]) for k in layers)
    assert [c.checkpoint_id for c in ckpt.list()] == ["step-1", "step-2", "step-3"]


def test_keep_last_retention_and_tags(root):
    for step in range(5):
        dcpkv.save({"w": np.full(8, step)}, root, f"s{step}", keep_last=2,
                   tags={"keep": ""} if step == 0 else None)
    assert [c.checkpoint_id for c in dcpkv.list_checkpoints(root)] == ["s0", "s3", "s4"]


def test_io_and_collectives_release_the_gil(root):
    # A Python thread keeps running while a save of 64 MiB is in C++.
    ticks = []
    stop = threading.Event()

    def ticker():
        while not stop.is_set():
            ticks.append(1)
            stop.wait(0.001)

    thread = threading.Thread(target=ticker)
    thread.start()
    before = len(ticks)
    dcpkv.save({"w": np.ones(16 << 20, np.float32)}, root, "big")
    during = len(ticks) - before
    stop.set()
    thread.join()
    assert during > 5

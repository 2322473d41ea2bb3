"""Manifest replication from Python to a real replica (`dcpkv serve` on 127.0.0.1), recovery
after the coordinator's database is lost, and an unreachable replica."""

import os
import shutil
import subprocess
import threading

import numpy as np
import pytest

import dcpkv
from conftest import free_port, cli


@pytest.fixture
def replica(tmp_path):
    """A running `dcpkv serve` on 127.0.0.1; yields its host:port."""
    proc = subprocess.Popen([cli(), "serve", "--root", str(tmp_path / "replica"),
                             "--listen", "127.0.0.1:0"], stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert "listening on" in line, line
        yield line.split("listening on", 1)[1].strip()
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def two_ranks(fn):
    """Runs fn(rank, group) on two threads, each a rank of a gloo group over 127.0.0.1 (the
    collectives release the GIL, so the threads make progress together)."""
    port, errors = free_port(), []

    def rank_main(rank):
        try:
            fn(rank, dcpkv.new_process_group(rank, 2, "127.0.0.1", port, timeout=60))
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=rank_main, args=(r,)) for r in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


def test_replicated_manifests_recover_a_lost_coordinator_database(root, replica):
    w = np.arange(4096, dtype=np.float32)

    # Rank 0 (the coordinator) holds no data, so its database holds only the manifests.
    def save(rank, group):
        repl = dcpkv.Replication("job-1", [replica])
        state = {"w": w} if rank == 1 else {}
        dcpkv.save(state, root, "a", process_group=group, replication=repl)
        if rank == 0:
            assert repl.state("a") == "1/1 replicas"

    two_ranks(save)
    assert [c.checkpoint_id for c in dcpkv.list_checkpoints(root)] == ["a"]
    shutil.rmtree(os.path.join(root, "rank-00000"))
    assert dcpkv.list_checkpoints(root) == []
    out = dcpkv.recover(root, replica, "job-1")
    assert out["restored"] == ["a"]
    back = np.zeros_like(w)
    dcpkv.load({"w": back}, root, "a")
    assert np.array_equal(back, w)
    assert dcpkv.verify(root).ok


def test_an_unreachable_synchronous_replica_is_unavailable_but_the_save_is_committed(root):
    repl = dcpkv.Replication("job-2", [f"127.0.0.1:{free_port()}"], deadline=2.0)
    with pytest.raises(dcpkv.UnavailableError):
        dcpkv.save({"w": np.ones(10)}, root, "a", replication=repl)
    assert [c.checkpoint_id for c in dcpkv.list_checkpoints(root)] == ["a"]

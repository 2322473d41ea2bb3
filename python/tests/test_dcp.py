"""dcpkv as torch.distributed.checkpoint's storage (dcpkv.torch): dcp.save / dcp.load in one
process, the same state through FileSystemWriter, checkpoints of dcpkv's own save, damage, plan
caching with incremental saves, and the CLI on what DCP wrote."""

import os
import subprocess
import sys
import warnings

import pytest
import torch
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint import FileSystemReader, FileSystemWriter
from torch.distributed.checkpoint.default_planner import DefaultSavePlanner

import dcpkv
from conftest import demo, flip_stored_byte, run_cli
from dcpkv.torch import KVStorageReader, KVStorageWriter, close_writers

warnings.filterwarnings("ignore", message=".*torch.distributed is disabled.*")
warnings.filterwarnings("ignore", category=UserWarning, module="torch.distributed.checkpoint")


def sample_state():
    g = torch.Generator().manual_seed(3)
    return {
        "model": {
            "w": torch.randn(64, 48, generator=g),
            "b16": torch.randn(33, 7, generator=g).to(torch.bfloat16),
            "ids": torch.arange(17, dtype=torch.int64),
            "mask": torch.arange(10) % 3 == 0,
            "c": torch.randn(5, 3, generator=g, dtype=torch.complex64),
            "f8": torch.randn(16, generator=g).to(torch.float8_e4m3fn),
            "scalar": torch.tensor(2.5),
            "t_view": torch.randn(12, 20, generator=g)[:, 3:11],  # a non-contiguous view
        },
        "layers": [torch.full((4,), float(i)) for i in range(3)],
        "step": 1234,
        "name": "run-7",
        "extra": {"lr": 0.25, "betas": (0.9, 0.99)},
    }


def zeros_like_state(state):
    """The state's structure to load into: zeroed tensors, None for other values."""
    if isinstance(state, torch.Tensor):
        return torch.zeros(state.shape, dtype=state.dtype)
    if isinstance(state, dict):
        return {k: zeros_like_state(v) for k, v in state.items()}
    if isinstance(state, list):
        return [zeros_like_state(v) for v in state]
    return None


def as_bits(t):
    return t.contiguous().view(torch.uint8) if t.dtype.itemsize == 1 else t


def assert_same(a, b, where="state"):
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor), where
        assert a.dtype == b.dtype and a.shape == b.shape, (where, a.dtype, b.dtype)
        assert torch.equal(as_bits(a), as_bits(b)), where
    elif isinstance(a, dict):
        assert set(a) == set(b), where
        for k in a:
            assert_same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}.{i}")
    else:
        assert a == b, (where, a, b)


def raises_from_rank(fn):
    """What DCP raised and every rank's original error (a CheckpointException wraps them)."""
    with pytest.raises(BaseException) as e:  # CheckpointException is a BaseException
        fn()
    failures = getattr(e.value, "failures", {}) or {}
    causes = [f[0] if isinstance(f, tuple) else f for f in failures.values()]
    return e.value, causes, " | ".join([str(e.value)] + [f"{type(c).__name__}: {c}" for c in causes])


def test_save_and_load_round_trip_every_kind_of_value(root):
    state = sample_state()
    md = dcp.save(state, checkpoint_id="step-1", storage_writer=KVStorageWriter(root))
    assert "model.w" in md.state_dict_metadata
    out = zeros_like_state(state)
    dcp.load(out, checkpoint_id="step-1", storage_reader=KVStorageReader(root))
    assert_same(state, out)
    # "latest" without an id given to DCP.
    out2 = zeros_like_state(state)
    dcp.load(out2, storage_reader=KVStorageReader(root))
    assert_same(state, out2)

    info = dcpkv.checkpoint_info(root, "step-1")
    assert info.entries["model.b16"].dtype == "bfloat16"
    assert info.entries["step"].dtype == "bytes"
    verify = run_cli("verify", root)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    show = run_cli("show", root, "step-1")
    assert show.returncode == 0, show.stderr
    assert "torch.save" in show.stdout, show.stdout


def test_metadata_round_trips_through_the_manifest(root):
    state = {"w": torch.randn(8, 4, requires_grad=True), "step": 3}
    saved = dcp.save(state, checkpoint_id="a", storage_writer=KVStorageWriter(root))
    reader = KVStorageReader(root, "a")
    reader.reset("a")
    loaded = reader.read_metadata()
    w = loaded.state_dict_metadata["w"]
    assert w.properties == saved.state_dict_metadata["w"].properties
    assert w.properties.requires_grad
    assert w.size == torch.Size([8, 4]) and len(w.chunks) == 1
    assert loaded.planner_data == saved.planner_data
    assert loaded.version == saved.version
    assert loaded.storage_meta.checkpoint_id == "a"
    assert loaded.storage_meta.save_id


def test_same_state_through_filesystem_writer_loads_identically(root, tmp_path):
    state = sample_state()
    fs_dir = str(tmp_path / "fs")
    dcp.save(state, storage_writer=FileSystemWriter(fs_dir))
    dcp.save(state, checkpoint_id="same", storage_writer=KVStorageWriter(root))
    from_fs = zeros_like_state(state)
    from_kv = zeros_like_state(state)
    dcp.load(from_fs, storage_reader=FileSystemReader(fs_dir))
    dcp.load(from_kv, checkpoint_id="same", storage_reader=KVStorageReader(root))
    assert_same(from_fs, from_kv)
    assert_same(state, from_kv)


def test_checkpoints_of_dcpkvs_own_save_load_through_dcp(root):
    state = {"model": {"w": torch.randn(6, 5), "e": torch.randn(3, 2).to(torch.bfloat16)},
             "step": 42, "blob": b"\x00\x01raw bytes", "note": "hello"}
    dcpkv.save(state, root, "native")
    out = {"model": {"w": torch.zeros(6, 5), "e": torch.zeros(3, 2, dtype=torch.bfloat16)},
           "step": 0, "blob": b"", "note": ""}
    dcp.load(out, checkpoint_id="native", storage_reader=KVStorageReader(root))
    assert_same(state, out)


def test_the_cpp_demo_checkpoint_loads_through_dcp(tmp_path):
    root = str(tmp_path / "demo")
    run = subprocess.run([demo(), "--root", root, "--steps", "10", "--save-every", "5"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    info = dcpkv.checkpoint_info(root, "latest")
    fqns = [f for f, e in info.entries.items() if not e.is_bytes]
    assert fqns
    expected = dcpkv.load_keys(root, info.checkpoint_id, list(info.entries), framework="torch")
    out = {}
    for fqn, e in info.entries.items():
        out[fqn] = b"" if e.is_bytes else torch.zeros(e.shape, dtype=getattr(torch, e.dtype))
    dcp.load(out, checkpoint_id=info.checkpoint_id, storage_reader=KVStorageReader(root))
    for fqn in info.entries:
        assert_same(expected[fqn], out[fqn], fqn)


def test_damage_makes_load_raise_data_loss_naming_the_entry(root):
    pattern = torch.arange(0, 2 ** 16, dtype=torch.int32) * 7919  # distinctive stored bytes
    # Each entry large enough for table blocks of its own: the damage is in "hurt"'s.
    state = {"clean": torch.ones(1 << 18), "hurt": pattern.clone()}
    dcp.save(state, checkpoint_id="c", storage_writer=KVStorageWriter(root))
    flip_stored_byte(root, pattern[1000:1100].numpy().tobytes())
    out = {"clean": torch.zeros(1 << 18), "hurt": torch.zeros_like(pattern)}
    _, causes, text = raises_from_rank(
        lambda: dcp.load(out, checkpoint_id="c", storage_reader=KVStorageReader(root)))
    assert any(isinstance(c, dcpkv.DataLossError) for c in causes), text
    assert 'fqn "hurt"' in text, text
    verify = run_cli("verify", root)
    assert verify.returncode != 0 and "hurt" in verify.stdout + verify.stderr


def drop_page_cache(root):
    for dirpath, _, files in os.walk(root):
        for name in files:
            fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
            try:
                os.fsync(fd)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def test_cold_loads_are_the_same_and_checked_with_every_read_io(root):
    # Large enough for table files that O_DIRECT reads ("auto" on a cold file, "direct").
    pattern = torch.arange(0, 1 << 20, dtype=torch.int32) * 7919
    state = {"big": torch.randn(1 << 20), "pattern": pattern.clone()}
    dcp.save(state, checkpoint_id="c", storage_writer=KVStorageWriter(root))
    for read_io in ("auto", "buffered", "direct"):
        drop_page_cache(root)
        out = {k: torch.zeros_like(v) for k, v in state.items()}
        dcp.load(out, checkpoint_id="c", storage_reader=KVStorageReader(root, read_io=read_io))
        assert_same(state, out, read_io)
    flip_stored_byte(root, pattern[100000:100100].numpy().tobytes())
    drop_page_cache(root)
    out = {k: torch.zeros_like(v) for k, v in state.items()}
    _, causes, text = raises_from_rank(lambda: dcp.load(
        out, checkpoint_id="c", storage_reader=KVStorageReader(root, read_io="direct")))
    assert any(isinstance(c, dcpkv.DataLossError) for c in causes), text
    assert 'fqn "pattern"' in text, text
    with pytest.raises(dcpkv.InvalidArgumentError, match="read_io"):
        KVStorageReader(root, read_io="mmap")


def test_incremental_save_stores_only_changed_chunks(root):
    g = torch.Generator().manual_seed(5)
    state = {f"layer{i}": torch.randn(256, 1024, generator=g) for i in range(10)}  # 1 MiB each
    dcp.save(state, checkpoint_id="full", storage_writer=KVStorageWriter(root))
    state["layer3"].add_(1.0)
    dcp.save(state, checkpoint_id="inc", storage_writer=KVStorageWriter(root))
    info = dcpkv.checkpoint_info(root, "inc")
    assert info.base_checkpoint_id == "full"
    assert info.stored_bytes <= 2 * 1024 * 1024, info.stored_bytes
    assert info.logical_bytes == 10 * 1024 * 1024
    out = {k: torch.zeros_like(v) for k, v in state.items()}
    dcp.load(out, checkpoint_id="inc", storage_reader=KVStorageReader(root))
    assert_same(state, out)
    # Options: a full save, tags and retention.
    dcp.save(state, checkpoint_id="again",
             storage_writer=KVStorageWriter(root, incremental=False, tags={"step": "3"},
                                            keep_last=2))
    info = dcpkv.checkpoint_info(root, "again")
    assert info.base_checkpoint_id == "" and info.tags == {"step": "3"}
    assert [c.checkpoint_id for c in dcpkv.list_checkpoints(root)] == ["inc", "again"]


def test_plan_caching_never_writes_against_a_stale_base(root):
    state = {f"p{i}": torch.full((128, 256), float(i)) for i in range(4)}

    def save(cid):
        planner = DefaultSavePlanner(enable_plan_caching=True)
        dcp.save(state, checkpoint_id=cid, storage_writer=KVStorageWriter(root), planner=planner)

    save("s1")
    state["p1"].add_(1)
    save("s2")  # hydrates DCP's cache: its final plan carries s2's base, s1
    dcpkv.rm(root, ["s1"])
    dcpkv.gc(root)
    state["p2"].add_(1)
    save("s3")  # the cached final plan of s2 names s1, which is gone: s3 must not use it
    info = dcpkv.checkpoint_info(root, "s3")
    assert info.base_checkpoint_id == "s2"
    assert info.stored_bytes < info.logical_bytes
    out = {k: torch.zeros_like(v) for k, v in state.items()}
    dcp.load(out, checkpoint_id="s3", storage_reader=KVStorageReader(root))
    assert_same(state, out)
    verify = run_cli("verify", root)
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_errors_are_clear(root):
    state = {"w": torch.ones(3)}
    dcp.save(state, checkpoint_id="x", storage_writer=KVStorageWriter(root))
    _, causes, text = raises_from_rank(
        lambda: dcp.save(state, checkpoint_id="x", storage_writer=KVStorageWriter(root)))
    assert any(isinstance(c, dcpkv.AlreadyExistsError) for c in causes), text
    _, _, text = raises_from_rank(lambda: dcp.save(state, storage_writer=KVStorageWriter(root)))
    assert "no checkpoint id" in text, text
    _, causes, text = raises_from_rank(
        lambda: dcp.load(state, checkpoint_id="nope", storage_reader=KVStorageReader(root)))
    assert "nope" in text, text
    _, _, text = raises_from_rank(
        lambda: dcp.save({"bad": torch.ones(2, dtype=torch.uint8).view(torch.float4_e2m1fn_x2)},
                         checkpoint_id="y", storage_writer=KVStorageWriter(root)))
    assert "bad" in text and "float4" in text, text
    assert [c.checkpoint_id for c in dcpkv.list_checkpoints(root)] == ["x"]


def test_writer_pickles_as_its_arguments(root):
    import pickle

    w = KVStorageWriter(root, "id-1", keep_last=3, tags={"a": "b"},
                        replication=dcpkv.Replication("ns", ["127.0.0.1:1"], synchronous=False))
    w2 = pickle.loads(pickle.dumps(w))
    assert w2.root == root and w2.checkpoint_id == "id-1"
    assert w2._args["keep_last"] == 3 and w2._args["tags"] == {"a": "b"}
    assert isinstance(w2._args["replication"], dcpkv.Replication)


class HeldPlanner(DefaultSavePlanner):
    """Holds the upload in write_data until released (an upload in flight, deterministically)."""

    def __init__(self, release):
        super().__init__()
        self.release = release
        import threading

        self.entered = threading.Event()

    def resolve_data(self, write_item):
        self.entered.set()
        assert self.release.wait(60), "never released"
        return super().resolve_data(write_item)


def test_async_save_stages_waits_for_or_refuses_an_upload_in_flight(root):
    import threading

    from dcpkv.torch import staging_memory_bytes

    state = {"w": torch.arange(1 << 16, dtype=torch.float32), "step": 1}
    release = threading.Event()
    held = HeldPlanner(release)
    first = dcp.async_save(state, checkpoint_id="a1", storage_writer=KVStorageWriter(root),
                           planner=held)
    first.staging_completion.result(timeout=60)
    assert held.entered.wait(60)  # the upload is writing
    state["w"].fill_(-1)  # the sources change once staged
    assert staging_memory_bytes() >= state["w"].numel() * 4
    # The upload of a1 is in flight: a second async save into the same store refuses, or
    # waits (here at most 0.2 s), or a plain save waits.
    with pytest.raises(dcpkv.FailedPreconditionError, match="a1.* still running"):
        dcp.async_save(state, checkpoint_id="a2",
                       storage_writer=KVStorageWriter(root, refuse_overlap=True))
    with pytest.raises(dcpkv.DeadlineExceededError, match="a1"):
        dcp.async_save(state, checkpoint_id="a2",
                       storage_writer=KVStorageWriter(root, overlap_timeout=0.2))
    assert not first.upload_completion.done()
    release.set()
    second = dcp.async_save(state, checkpoint_id="a2", storage_writer=KVStorageWriter(root))
    first.upload_completion.result(timeout=60)
    second.upload_completion.result(timeout=60)
    out = {"w": torch.zeros(1 << 16), "step": 0}
    dcp.load(out, checkpoint_id="a1", storage_reader=KVStorageReader(root))
    assert torch.equal(out["w"], torch.arange(1 << 16, dtype=torch.float32)) and out["step"] == 1
    dcp.load(out, checkpoint_id="a2", storage_reader=KVStorageReader(root))
    assert torch.equal(out["w"], torch.full((1 << 16,), -1.0))
    assert dcpkv.checkpoint_info(root, "a2").base_checkpoint_id == "a1"


def test_a_store_deleted_and_made_anew_is_opened_anew(root):
    import shutil

    state = {"w": torch.ones(1000)}
    dcp.save(state, checkpoint_id="one", storage_writer=KVStorageWriter(root))
    shutil.rmtree(root)  # while this process keeps its database open
    dcp.save(state, checkpoint_id="one", storage_writer=KVStorageWriter(root))
    assert [c.checkpoint_id for c in dcpkv.list_checkpoints(root)] == ["one"]
    verify = run_cli("verify", root)
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_a_second_job_is_refused_naming_the_job_that_holds_the_root(root):
    """This process's job keeps the root's writer lease while its writers are open (between
    saves): a save by another job (another DCPKV_JOB_ID) fails at once naming it, and writes
    nothing; once this job lets go (close_writers), the other job saves."""
    state = sample_state()
    dcp.save(state, checkpoint_id="step-1", storage_writer=KVStorageWriter(root))
    me = dcpkv.job_id()
    other = (
        "import sys, torch, torch.distributed.checkpoint as dcp\n"
        "from dcpkv.torch import KVStorageWriter\n"
        "try:\n"
        "    dcp.save({'w': torch.ones(4)}, checkpoint_id='step-2',\n"
        "             storage_writer=KVStorageWriter(sys.argv[1]))\n"
        "except BaseException as e:\n"
        "    print('refused:', e)\n"
        "    sys.exit(10)\n"
    )
    env = dict(os.environ, DCPKV_JOB_ID="another-job")
    run = subprocess.run([sys.executable, "-c", other, root], env=env, capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 10, run.stdout + run.stderr
    assert f'leased to job "{me}"' in run.stdout, run.stdout
    assert f"pid {os.getpid()}" in run.stdout, run.stdout
    assert [c.checkpoint_id for c in dcpkv.list_checkpoints(root)] == ["step-1"]

    close_writers(root)
    run = subprocess.run([sys.executable, "-c", other, root], env=env, capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    assert [c.checkpoint_id for c in dcpkv.list_checkpoints(root)] == ["step-1", "step-2"]

"""Save and load through the direct API: every dtype, numpy and torch, in place and strided,
bytes and Python values, nested dicts and objects with state_dict(), a subset of keys."""

import numpy as np
import pytest
import torch

import dcpkv

NUMPY_DTYPES = [np.float64, np.float32, np.float16, np.int8, np.int16, np.int32, np.int64,
                np.uint8, np.uint16, np.uint32, np.uint64, np.bool_, np.complex64, np.complex128]
TORCH_DTYPES = [torch.float64, torch.float32, torch.float16, torch.bfloat16, torch.int8,
                torch.int16, torch.int32, torch.int64, torch.uint8, torch.uint16, torch.uint32,
                torch.uint64, torch.bool, torch.float8_e4m3fn, torch.float8_e5m2,
                torch.float8_e4m3fnuz, torch.float8_e5m2fnuz, torch.float8_e8m0fnu,
                torch.complex32, torch.complex64, torch.complex128]


def random_bits_numpy(dtype, shape, seed):
    """Random bit patterns (NaN payloads included: the round trip must be bit-exact)."""
    rng = np.random.default_rng(seed)
    raw = rng.integers(0, 256, size=int(np.prod(shape)) * np.dtype(dtype).itemsize, dtype=np.uint8)
    if dtype == np.bool_:
        raw = raw & 1
    return raw.view(dtype).reshape(shape)


def random_bits_torch(dtype, shape, seed):
    gen = torch.Generator().manual_seed(seed)
    nbytes = int(np.prod(shape)) * torch.empty((), dtype=dtype).element_size()
    raw = torch.randint(0, 256, (nbytes,), dtype=torch.uint8, generator=gen)
    if dtype == torch.bool:
        raw = raw & 1
    return raw.view(dtype).reshape(shape)


def same_bits(a, b):
    """Bit-exact equality of numpy arrays (NaN patterns included)."""
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def same_bits_torch(a, b):
    return a.dtype == b.dtype and a.shape == b.shape and torch.equal(
        a.contiguous().view(torch.uint8), b.contiguous().view(torch.uint8))


def test_every_numpy_dtype_round_trips_bit_exact_in_place(root):
    state = {f"a{i}": random_bits_numpy(dt, (7, 5), i) for i, dt in enumerate(NUMPY_DTYPES)}
    state["scalar"] = random_bits_numpy(np.float32, (), 99)
    dcpkv.save(state, root, "np")
    targets = {k: np.zeros_like(v) for k, v in state.items()}
    before = {k: v.__array_interface__["data"][0] for k, v in targets.items()}
    dcpkv.load(targets, root, "np")
    for k, v in state.items():
        assert targets[k].__array_interface__["data"][0] == before[k], "not loaded in place"
        assert targets[k].tobytes() == v.tobytes(), k


def test_every_torch_dtype_round_trips_bit_exact_in_place(root):
    state = {str(dt).split(".")[1]: random_bits_torch(dt, (6, 11), i)
             for i, dt in enumerate(TORCH_DTYPES)}
    info = dcpkv.save(state, root, "t")
    assert info.entries["bfloat16"].dtype == "bfloat16"
    assert info.entries["float8_e4m3fn"].dtype == "float8_e4m3fn"
    assert info.entries["complex128"].dtype == "complex128"
    assert info.entries["float8_e8m0fnu"].dtype == "float8_e8m0fnu"
    targets = {k: torch.zeros_like(v) for k, v in state.items()}
    pointers = {k: v.data_ptr() for k, v in targets.items()}
    dcpkv.load(targets, root, "t")
    for k, v in state.items():
        assert targets[k].data_ptr() == pointers[k]
        assert same_bits_torch(targets[k], v), k


def test_parameters_that_require_grad_are_saved_and_filled(root):
    model = torch.nn.Linear(8, 4)
    dcpkv.save({"model": model}, root, "m")
    other = torch.nn.Linear(8, 4)
    dcpkv.load({"model": other}, root, "m")
    assert torch.equal(other.weight, model.weight) and torch.equal(other.bias, model.bias)
    assert other.weight.requires_grad


def test_strided_views_are_saved_and_loaded_where_they_lie(root):
    base = random_bits_numpy(np.float32, (16, 24), 1)
    t_base = random_bits_torch(torch.bfloat16, (12, 10), 2)
    state = {"cols": base[:, 8:16], "every_other": base[::2, ::3], "transposed": base.T,
             "t_cols": t_base[:, 2:7], "t_transposed": t_base.t()}
    dcpkv.save(state, root, "views")
    # Into views of other buffers with other layouts: only the viewed elements change.
    np_buf = np.full((16, 40), -1.0, np.float32)
    t_buf = torch.full((20, 12), 7.0, dtype=torch.bfloat16)
    targets = {"cols": np_buf[:, 30:38], "every_other": np.zeros((8, 8), np.float32),
               "transposed": np.zeros((24, 16), np.float32).T.copy().T,
               "t_cols": t_buf[3:15, 4:9], "t_transposed": torch.zeros(12, 10,
                                                                        dtype=torch.bfloat16).t()}
    dcpkv.load(targets, root, "views")
    assert same_bits(np_buf[:, 30:38], base[:, 8:16])
    assert (np_buf[:, :30] == -1).all() and (np_buf[:, 38:] == -1).all()
    assert same_bits(targets["every_other"], base[::2, ::3])
    assert same_bits(targets["transposed"], base.T)
    assert same_bits_torch(t_buf[3:15, 4:9], t_base[:, 2:7])
    assert (t_buf[:3] == 7).all() and (t_buf[15:] == 7).all()
    assert same_bits_torch(targets["t_transposed"], t_base.t())


def test_bytes_python_values_nested_dicts_and_stateful_objects(root):
    class Counter:
        def __init__(self):
            self.weights = np.zeros(4, np.float32)
            self.step = 0

        def state_dict(self):
            return {"weights": self.weights, "step": self.step}

        def load_state_dict(self, state):
            self.step = state["step"]

    counter = Counter()
    counter.weights[:] = 3.5
    counter.step = 41
    state = {
        "raw": b"\x00\x01binary",
        "tricky": b"\x00dcpkv-pyvalue\x00not json",  # bytes that look like a Python value
        "config": {"lr": 0.5, "name": "run", "flags": [True, None, 3], "nan": float("nan")},
        "counter": counter,
        "groups": [{"w": np.arange(3.0)}, {"w": np.arange(3.0) + 10}],
        "np_scalar": np.float32(2.5),
    }
    info = dcpkv.save(state, root, "values")
    assert set(info.entries) >= {"raw", "config.lr", "config.flags", "counter.weights",
                                 "counter.step", "groups.0.w", "groups.1.w", "np_scalar"}
    fresh = Counter()
    into = {"raw": b"", "tricky": b"", "config": {"lr": 0.0, "name": "", "flags": [],
                                                 "nan": 0.0},
            "counter": fresh, "groups": [{"w": np.zeros(3)}, {"w": np.zeros(3)}],
            "np_scalar": np.float32(0)}
    dcpkv.load(into, root, "values")
    assert into["raw"] == b"\x00\x01binary"
    assert into["tricky"] == b"\x00dcpkv-pyvalue\x00not json"
    assert into["config"]["lr"] == 0.5 and into["config"]["name"] == "run"
    assert into["config"]["flags"] == [True, None, 3] and np.isnan(into["config"]["nan"])
    assert fresh.step == 41 and (fresh.weights == 3.5).all()
    assert np.array_equal(into["groups"][1]["w"], np.arange(3.0) + 10)
    assert into["np_scalar"] == np.float32(2.5) and isinstance(into["np_scalar"], np.float32)


def test_load_keys_reads_a_subset_into_new_arrays(root):
    w = random_bits_numpy(np.int32, (9, 4), 5)
    bf = random_bits_torch(torch.bfloat16, (3, 3), 6)
    dcpkv.save({"model": {"w": w, "bf": bf, "skip": np.ones(1000)}, "step": 12}, root, "k")
    got = dcpkv.load_keys(root, "k", ["model.w", "model.bf", "step"])
    assert set(got) == {"model.w", "model.bf", "step"}
    assert isinstance(got["model.w"], np.ndarray) and np.array_equal(got["model.w"], w)
    assert isinstance(got["model.bf"], torch.Tensor) and same_bits_torch(got["model.bf"], bf)
    assert got["step"] == 12
    as_torch = dcpkv.load_keys(root, "latest", ["model.w"], framework="torch")
    assert torch.equal(as_torch["model.w"], torch.from_numpy(w))
    with pytest.raises(dcpkv.NotFoundError, match="model.absent"):
        dcpkv.load_keys(root, "k", ["model.absent"])


def test_latest_listing_and_info(root):
    for step in (1, 2, 3):
        dcpkv.save({"w": np.full(4, step, np.float32)}, root, f"step-{step}",
                   tags={"step": str(step)})
    listed = dcpkv.list_checkpoints(root)
    assert [c.checkpoint_id for c in listed] == ["step-1", "step-2", "step-3"]
    assert listed[-1].tags == {"step": "3"} and listed[-1].num_entries == 1
    w = np.zeros(4, np.float32)
    dcpkv.load({"w": w}, root)  # "latest"
    assert (w == 3).all()
    info = dcpkv.checkpoint_info(root, "latest")
    assert info.checkpoint_id == "step-3" and info.entries["w"].shape == (4,)


def test_sharded_entries_reshard_on_load(root):
    full = random_bits_numpy(np.float32, (10, 6), 8)
    # Saved as two row shards by one process, loaded as three column shards.
    dcpkv.save({"m": dcpkv.Sharded(shards=[((0, 0), full[:4]), ((4, 0), full[4:])],
                                   global_shape=(10, 6))}, root, "sh")
    cols = [np.zeros((10, 2), np.float32) for _ in range(3)]
    dcpkv.load({"m": dcpkv.Sharded(shards=[((0, 2 * i), c) for i, c in enumerate(cols)],
                                   global_shape=(10, 6))}, root, "sh")
    assert same_bits(np.concatenate(cols, axis=1), full)
    part = np.zeros((3, 6), np.float32)
    dcpkv.load({"m": dcpkv.Sharded(part, (10, 6), (5, 0))}, root, "sh")
    assert same_bits(part, full[5:8])


def test_the_cli_lists_and_verifies_what_python_wrote(root):
    from conftest import run_cli
    dcpkv.save({"w": np.arange(100.0), "note": "x"}, root, "py-1")
    dcpkv.save({"w": np.arange(100.0) + 1, "note": "y"}, root, "py-2")
    ls = run_cli("ls", root)
    assert ls.returncode == 0, ls.stderr
    assert "py-1" in ls.stdout and "py-2" in ls.stdout
    verify = run_cli("verify", root)
    assert verify.returncode == 0, verify.stdout + verify.stderr

"""CUDA tensors through the direct API (marker `cuda`: deselected by the CPU suite, run by
tests/gpu/run.sh where torch sees a GPU)."""

import numpy as np
import pytest
import torch

import dcpkv

pytestmark = pytest.mark.cuda


@pytest.fixture(autouse=True)
def need_cuda():
    assert torch.cuda.is_available(), "the cuda tests need torch to see a CUDA device"


def test_device_tensors_and_strided_device_views_round_trip(root):
    gen = torch.Generator(device="cuda").manual_seed(3)
    w = torch.randn(256, 384, device="cuda", generator=gen)
    bf = torch.randn(64, 48, device="cuda", generator=gen).to(torch.bfloat16)
    state = {"w": w, "cols": w[:, 100:164], "bf_t": bf.t(), "host": np.arange(10.0)}
    dcpkv.save(state, root, "gpu")
    torch.cuda.synchronize()
    back = {"w": torch.zeros_like(w), "cols": torch.zeros(256, 200, device="cuda")[:, 50:114],
            "bf_t": torch.zeros(64, 48, device="cuda", dtype=torch.bfloat16).t(),
            "host": np.zeros(10)}
    dcpkv.load(back, root, "gpu")
    torch.cuda.synchronize()
    assert torch.equal(back["w"], w)
    assert torch.equal(back["cols"], w[:, 100:164])
    assert torch.equal(back["bf_t"], bf.t())
    # Into host tensors too: the checkpoint does not record devices.
    host = {"w": torch.zeros(256, 384)}
    dcpkv.load(host, root, "gpu", strict=False)
    assert torch.equal(host["w"], w.cpu())


def test_async_save_of_device_tensors_with_sources_changed_after_staging(root):
    w = torch.randn(512, 512, device="cuda")
    original = w.clone()
    result = dcpkv.async_save({"w": w}, root, "a")
    result.staging.result(timeout=120)
    w.zero_()
    result.upload.result(timeout=120)
    back = torch.zeros_like(w)
    dcpkv.load({"w": back}, root, "a")
    torch.cuda.synchronize()
    assert torch.equal(back, original)

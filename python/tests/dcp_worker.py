"""A rank of a torchrun job that saves or loads through torch.distributed.checkpoint with
dcpkv.torch (run by test_dcp_torchrun.py), over gloo:

  dcp_worker.py save ROOT FS_DIR   DTensor state (Shard(0), Shard(1), Replicate) and an FSDP2
                                   model and optimizer: dcp.save through KVStorageWriter and
                                   FileSystemWriter, dcp.async_save with the THREAD and PROCESS
                                   executors whose sources change once staged
  dcp_worker.py load ROOT FS_DIR   the DTensor state in this world's sharding, from each of them,
                                   checked against the values saved; the FSDP2 model and
                                   optimizer (same world) through set_state_dict
"""

import os
import sys
import warnings

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint import FileSystemReader, FileSystemWriter
from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict
from torch.distributed.checkpoint.state_dict_saver import AsyncCheckpointerType
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import fully_shard
from torch.distributed.tensor import Replicate, Shard, distribute_tensor

from dcpkv.torch import KVStorageReader, KVStorageWriter

warnings.filterwarnings("ignore")

SHAPES = {"rows": (13, 6), "cols": (5, 11), "rep": (7,), "bf": (9, 4)}


def full_values(version=0):
    g = torch.Generator().manual_seed(11 + version)
    return {
        "rows": torch.randn(SHAPES["rows"], generator=g),
        "cols": torch.randn(SHAPES["cols"], generator=g),
        "rep": torch.arange(7.0) + version,
        "bf": torch.randn(SHAPES["bf"], generator=g).to(torch.bfloat16),
    }


def dtensor_state(mesh, values):
    return {
        "dt": {
            "rows": distribute_tensor(values["rows"], mesh, [Shard(0)]),
            "cols": distribute_tensor(values["cols"], mesh, [Shard(1)]),
            "rep": distribute_tensor(values["rep"], mesh, [Replicate()]),
            "bf": distribute_tensor(values["bf"], mesh, [Shard(1)]),
        },
        "step": 100,
    }


def model(seed):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 8))


def fsdp(mesh, seed):
    m = model(seed)
    for layer in (m[0], m[2]):
        fully_shard(layer, mesh=mesh)
    fully_shard(m, mesh=mesh)
    opt = torch.optim.Adam(m.parameters(), lr=0.1)
    return m, opt


def train_step(m, opt):
    x = torch.randn(4, 16, generator=torch.Generator().manual_seed(1))
    m(x).sum().backward()
    opt.step()
    opt.zero_grad()


def full(t):
    return t.full_tensor() if hasattr(t, "full_tensor") else t


def check(loaded, values, what):
    for k, v in values.items():
        got = full(loaded["dt"][k])
        assert got.dtype == v.dtype and torch.equal(got, v), f"{what}: {k} differs"


def main():
    mode, root, fs_dir = sys.argv[1:4]
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    mesh = init_device_mesh("cpu", (world,))
    values = full_values()
    if mode == "save":
        state = dtensor_state(mesh, values)
        dcp.save(state, checkpoint_id="dt", storage_writer=KVStorageWriter(root))
        dcp.save(state, storage_writer=FileSystemWriter(fs_dir))
        for name, kind in (("thread", AsyncCheckpointerType.THREAD),
                           ("process", AsyncCheckpointerType.PROCESS)):
            v = full_values(1 if name == "thread" else 2)
            live = dtensor_state(mesh, v)
            response = dcp.async_save(live, checkpoint_id=f"async-{name}",
                                      storage_writer=KVStorageWriter(root),
                                      async_checkpointer_type=kind)
            response.staging_completion.result(timeout=300)
            for t in live["dt"].values():  # training goes on: the sources change
                t.to_local().fill_(-5)
            response.upload_completion.result(timeout=300)
        m, opt = fsdp(mesh, seed=1)
        train_step(m, opt)
        msd, osd = get_state_dict(m, opt)
        dcp.save({"model": msd, "optim": osd}, checkpoint_id="fsdp",
                 storage_writer=KVStorageWriter(root))
        reference = {k: full(v).clone() for k, v in msd.items()}
        if rank == 0:
            torch.save(reference, os.path.join(fs_dir, "fsdp_reference.pt"))
        # After the save, one more step: the loaded model must equal the saved one, not this.
        train_step(m, opt)
    elif mode == "load":
        for source in ("kv", "fs"):
            zeros = {k: torch.zeros_like(v) for k, v in values.items()}
            target = dtensor_state(mesh, zeros)
            target["step"] = 0
            if source == "kv":
                dcp.load(target, checkpoint_id="dt", storage_reader=KVStorageReader(root))
            else:
                dcp.load(target, storage_reader=FileSystemReader(fs_dir))
            check(target, values, f"rank {rank}: {source}")
            assert target["step"] == 100, target["step"]
        for name, version in (("thread", 1), ("process", 2)):
            target = dtensor_state(mesh, {k: torch.zeros_like(v) for k, v in values.items()})
            dcp.load(target, checkpoint_id=f"async-{name}", storage_reader=KVStorageReader(root))
            check(target, full_values(version), f"rank {rank}: async {name}")
        if os.environ.get("DCP_WORKER_FSDP") == "1":
            m, opt = fsdp(mesh, seed=2)
            train_step(m, opt)  # optimizer state exists to load into
            msd, osd = get_state_dict(m, opt)
            state = {"model": msd, "optim": osd}
            dcp.load(state, checkpoint_id="fsdp", storage_reader=KVStorageReader(root))
            set_state_dict(m, opt, model_state_dict=state["model"], optim_state_dict=state["optim"])
            reference = torch.load(os.path.join(fs_dir, "fsdp_reference.pt"))
            msd2, osd2 = get_state_dict(m, opt)
            for k, v in reference.items():
                assert torch.equal(full(msd2[k]), v), f"rank {rank}: fsdp {k} differs"
            steps = {int(s["step"]) for s in osd2["state"].values()}
            assert steps == {1}, f"rank {rank}: optimizer steps {steps}"
    else:
        raise SystemExit(f"unknown mode {mode}")
    dist.barrier()
    print(f"rank {rank} of {world}: {mode} ok", flush=True)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()

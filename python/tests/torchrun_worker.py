"""A rank of a torchrun job that saves or loads with dcpkv's direct API (run by
test_torchrun.py): `torchrun_worker.py save|load ROOT CHECKPOINT_ID`.

The state: a float32 matrix row-sharded over the ranks, a bfloat16 torch matrix column-sharded,
a replicated array and a step. `load` fills this world's own sharding and checks every byte."""

import os
import sys

import numpy as np
import torch

import dcpkv

GLOBAL_W = (13, 6)
GLOBAL_E = (5, 11)


def split(n, world, rank):
    base, extra = divmod(n, world)
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


def expected():
    w = np.random.default_rng(7).standard_normal(GLOBAL_W).astype(np.float32)
    e = torch.randn(GLOBAL_E, generator=torch.Generator().manual_seed(8)).to(torch.bfloat16)
    return w, e, np.arange(9.0)


def state(rank, world, w, e, replicated, step):
    r0, r1 = split(GLOBAL_W[0], world, rank)
    c0, c1 = split(GLOBAL_E[1], world, rank)
    return {
        "model": {
            "w": dcpkv.Sharded(w[r0:r1], GLOBAL_W, (r0, 0)),
            "emb": dcpkv.Sharded(e[:, c0:c1], GLOBAL_E, (0, c0)),
            "replicated": replicated,
        },
        "step": step,
    }


def main():
    mode, root, checkpoint_id = sys.argv[1:4]
    rank = int(os.environ.get("RANK", "0"))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    w, e, replicated = expected()
    if mode == "save":
        dcpkv.save(state(rank, world, w, e, replicated, 100), root, checkpoint_id)
        # And an async save whose sources change once staged.
        w_copy, e_copy, r_copy = w.copy(), e.clone(), replicated.copy()
        result = dcpkv.async_save(state(rank, world, w_copy, e_copy, r_copy, 200), root,
                                  checkpoint_id + "-async")
        result.staging.result(timeout=120)
        w_copy += 1
        e_copy.zero_()
        r_copy[:] = -1
        result.upload.result(timeout=120)
    elif mode == "load":
        for cid, step in ((checkpoint_id, 100), (checkpoint_id + "-async", 200)):
            zw, ze, zr = np.zeros_like(w), torch.zeros_like(e), np.zeros_like(replicated)
            sd = state(rank, world, zw, ze, zr, 0)
            dcpkv.load(sd, root, cid)
            r0, r1 = split(GLOBAL_W[0], world, rank)
            c0, c1 = split(GLOBAL_E[1], world, rank)
            assert zw[r0:r1].tobytes() == w[r0:r1].tobytes(), f"rank {rank}: w of {cid}"
            assert torch.equal(ze[:, c0:c1].view(torch.int16), e[:, c0:c1].view(torch.int16)), \
                f"rank {rank}: emb of {cid}"
            assert zr.tobytes() == replicated.tobytes(), f"rank {rank}: replicated of {cid}"
            assert sd["step"] == step, f"rank {rank}: step {sd['step']} of {cid}"
    else:
        raise SystemExit(f"unknown mode {mode}")
    print(f"rank {rank} of {world}: {mode} ok", flush=True)


if __name__ == "__main__":
    main()

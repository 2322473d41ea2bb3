"""The direct API under a real torchrun: a world of 2 saves (sharded, replicated, async), worlds
of 3 and 1 load what it saved, bit-exact; the CLI verifies it."""

import os
import subprocess
import sys

from conftest import run_cli

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "torchrun_worker.py")


def clean_env():
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("TORCHELASTIC_", "DCPKV_RENDEZVOUS", "DCPKV_JOB_ID", "MASTER_",
                                "RANK", "WORLD_", "LOCAL_"))}
    env["OMP_NUM_THREADS"] = "1"
    return env


def torchrun(nproc, *args, timeout=300):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           f"--nproc-per-node={nproc}", WORKER, *args]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=clean_env())
    print(run.stdout)
    print(run.stderr, file=sys.stderr)
    return run


def test_world_2_saves_and_worlds_3_and_1_load_bit_exact(tmp_path):
    root = str(tmp_path / "store")
    run = torchrun(2, "save", root, "w2")
    assert run.returncode == 0, run.stderr[-4000:]
    assert run.stdout.count("save ok") == 2
    run = torchrun(3, "load", root, "w2")
    assert run.returncode == 0, run.stderr[-4000:]
    assert run.stdout.count("load ok") == 3
    # One process without torchrun: no group at all.
    single = subprocess.run([sys.executable, WORKER, "load", root, "w2"], capture_output=True,
                            text=True, timeout=300, env=clean_env())
    assert single.returncode == 0, single.stderr[-4000:]
    ls = run_cli("ls", root)
    assert ls.returncode == 0 and "w2-async" in ls.stdout, ls.stdout + ls.stderr
    verify = run_cli("verify", root)
    assert verify.returncode == 0, verify.stdout + verify.stderr

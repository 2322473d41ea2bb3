"""dcpkv.torch under a real torchrun over gloo: DTensor state (Shard(0), Shard(1), Replicate)
and an FSDP2 model and optimizer saved at world 2 (also through FileSystemWriter, and by
async_save with the THREAD and PROCESS executors), loaded at worlds 3, 2 and 1; the CLI
verifies what DCP wrote."""

import os
import subprocess
import sys

from conftest import run_cli
from test_torchrun import clean_env

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "dcp_worker.py")


def torchrun(nproc, *args, env=None, timeout=600):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           f"--nproc-per-node={nproc}", WORKER, *args]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                         env=dict(clean_env(), **(env or {})))
    print(run.stdout)
    print(run.stderr[-6000:], file=sys.stderr)
    return run


def test_dtensor_and_fsdp2_saved_at_world_2_load_at_worlds_3_2_and_1(tmp_path):
    root = str(tmp_path / "store")
    fs_dir = str(tmp_path / "fs")
    os.makedirs(fs_dir)
    run = torchrun(2, "save", root, fs_dir)
    assert run.returncode == 0, run.stderr[-4000:]
    assert run.stdout.count("save ok") == 2
    for world, fsdp in ((3, "0"), (2, "1"), (1, "0")):
        run = torchrun(world, "load", root, fs_dir, env={"DCP_WORKER_FSDP": fsdp})
        assert run.returncode == 0, f"world {world}: " + run.stderr[-4000:]
        assert run.stdout.count("load ok") == world
    assert_cli_sees_what_dcp_wrote(root)


def assert_cli_sees_what_dcp_wrote(root):
    """`dcpkv ls` lists dcp_worker.py's checkpoints and `dcpkv verify` finds them whole."""
    ls = run_cli("ls", root)
    assert ls.returncode == 0, ls.stderr
    for cid in ("dt", "async-thread", "async-process", "fsdp"):
        assert cid in ls.stdout, ls.stdout
    verify = run_cli("verify", root)
    assert verify.returncode == 0, verify.stdout + verify.stderr

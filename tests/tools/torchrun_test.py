"""dcpkv programs under a real torchrun (torch from PyPI, the project's venv), with torchrun's
defaults: its elastic agent serves torch's TCPStore on MASTER_PORT and sets
TORCHELASTIC_USE_AGENT_STORE=True, so dcpkv's gloo groups rendezvous there.

Run by ctest with the venv's python: DCPKV_DEMO, DCPKV_CLI and DCPKV_GLOO_WORKER name the
programs under test.
"""
import os
import subprocess
import sys

DEMO = os.environ["DCPKV_DEMO"]
CLI = os.environ["DCPKV_CLI"]
WORKER = os.environ["DCPKV_GLOO_WORKER"]


def torchrun(*args, timeout=300):
    """torchrun --standalone (rendezvous on this host) with `args`; returns the finished run."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("TORCHELASTIC_", "DCPKV_RENDEZVOUS", "MASTER_", "RANK", "WORLD_"))}
    env["OMP_NUM_THREADS"] = "1"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", *args]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    print(run.stdout)
    print(run.stderr, file=sys.stderr)
    return run


def checkpoints(root):
    """Ids of the committed checkpoints under `root`, from `dcpkv ls`."""
    out = subprocess.run([CLI, "ls", root], capture_output=True, text=True, check=True).stdout
    return {line.split()[0] for line in out.splitlines()[1:] if line.strip()}


def test_a_program_using_the_gloo_environment_joins_under_torchrun():
    run = torchrun("--nproc-per-node=3", "--no-python", WORKER, "collectives")
    assert run.returncode == 0, run.stderr[-4000:]


def test_the_demo_trains_and_saves_under_torchrun(tmp_path):
    root = str(tmp_path / "store")
    run = torchrun("--nproc-per-node=2", "--no-python", DEMO, "--worker", "train", "--root", root,
                   "--steps", "10", "--save-every", "5")
    assert run.returncode == 0, run.stderr[-4000:]
    assert "saved step-10" in run.stdout
    assert {"step-5", "step-10"} <= checkpoints(root)
    verify = subprocess.run([CLI, "verify", root], capture_output=True, text=True)
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_an_elastic_restart_resumes_from_the_last_checkpoint(tmp_path):
    # The last rank of the first attempt kills itself after step 7; torchrun restarts both
    # workers (the agent's store still holds the first attempt's keys), which resume from
    # step-5 and save step-10.
    root = str(tmp_path / "store")
    run = torchrun("--nproc-per-node=2", "--max-restarts=1", "--no-python", DEMO, "--worker",
                   "train", "--root", root, "--steps", "10", "--save-every", "5",
                   "--crash-at-step", "7")
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-4000:]
    assert "killing itself after step 7" in output
    assert "resumed step-5 at step 5" in run.stdout
    assert "saved step-10" in run.stdout
    assert {"step-5", "step-10"} <= checkpoints(root)

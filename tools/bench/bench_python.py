"""The Python direct API against its baselines, interleaved in the same run, one process.

Each round, on the same disk and the same state (--tensors float32 torch tensors, --size bytes
in all), one after another:
  1. raw: each tensor's bytes written to a file of its own, then fdatasync (the disk's speed
     for these bytes), and read back cold;
  2. dcpkv.save (a full save under a fresh id) and a cold dcpkv.load in place;
  3. torch DCP: dcp.save with FileSystemWriter(thread_count=1) and (=2), a cold dcp.load;
  4. with --bench: dcpkv_bench --benchmarks=save,load for one repetition, the same library
     driven from C++ (what the binding costs).
Every load starts with the files dropped from the page cache and is checked against the saved
values. Prints one JSON line per round, then medians (p25-p75) and the ratios of medians:
dcpkv's time over each baseline's (> 1: dcpkv is faster).

    build/venv/bin/python tools/bench/bench_python.py --size=1GiB --rounds=7 --dir=/path \\
        --bench=build/release/tools/bench/dcpkv_bench
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

import torch
import torch.distributed.checkpoint as dcp

import dcpkv

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from compare_dcp import drop_page_cache, parse_size  # noqa: E402 - the same helpers


def timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def raw_write(state, directory):
    os.makedirs(directory)
    for name, t in state.items():
        with open(os.path.join(directory, name), "wb") as f:
            f.write(memoryview(t.numpy()).cast("B"))
            f.flush()
            os.fdatasync(f.fileno())
    fd = os.open(directory, os.O_RDONLY)
    os.fsync(fd)
    os.close(fd)


def raw_read(targets, directory):
    for name, t in targets.items():
        with open(os.path.join(directory, name), "rb") as f:
            f.readinto(memoryview(t.numpy()).cast("B"))


def check(targets, state, what):
    for name, t in state.items():
        if not torch.equal(targets[name], t):
            raise SystemExit(f"{what}: tensor {name} differs from what was saved")
        targets[name].zero_()


def cpp_round(bench, size, tensors, directory):
    out = subprocess.run(
        [bench, "--benchmarks=save,load", f"--size={size}", f"--tensors={tensors}",
         "--repetitions=1", f"--dir={directory}", "--json"],
        capture_output=True, text=True, check=True).stdout
    rows = {r["benchmark"]: r for r in (json.loads(line) for line in out.splitlines()
                                        if line.startswith("{"))}
    return rows["save"]["seconds"], rows["load"]["seconds"]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--size", default="1GiB")
    p.add_argument("--tensors", type=int, default=16)
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--dir", required=True)
    p.add_argument("--bench", help="dcpkv_bench, to time the same save and load from C++")
    args = p.parse_args()
    size = parse_size(args.size)
    rows = max(size // args.tensors // 4096, 1)
    gen = torch.Generator().manual_seed(1)
    state = {f"t{i}": torch.randn(rows, 1024, generator=gen) for i in range(args.tensors)}
    total = sum(t.numel() * 4 for t in state.values())
    targets = {k: torch.zeros_like(v) for k, v in state.items()}
    shutil.rmtree(args.dir, ignore_errors=True)
    os.makedirs(args.dir)
    times = {}
    for r in range(args.rounds):
        rnd = {}
        base = os.path.join(args.dir, f"round{r}")
        rnd["raw_write"] = timed(lambda: raw_write(state, base + "-raw"))
        drop_page_cache(base + "-raw")
        rnd["raw_read"] = timed(lambda: raw_read(targets, base + "-raw"))
        check(targets, state, "raw read")

        root = base + "-dcpkv"
        rnd["dcpkv_save"] = timed(lambda: dcpkv.save(state, root, "c", incremental=False))
        drop_page_cache(root)
        rnd["dcpkv_load"] = timed(lambda: dcpkv.load(targets, root, "c"))
        check(targets, state, "dcpkv.load")

        for threads in (1, 2):
            path = f"{base}-dcp{threads}"
            writer = dcp.FileSystemWriter(path, thread_count=threads)
            rnd[f"dcp{threads}_save"] = timed(
                lambda: dcp.save(state, storage_writer=writer, no_dist=True))
            drop_page_cache(path)
            rnd[f"dcp{threads}_load"] = timed(
                lambda: dcp.load(targets, storage_reader=dcp.FileSystemReader(path),
                                 no_dist=True))
            check(targets, state, f"dcp.load (thread_count={threads})")

        if args.bench:
            rnd["cpp_save"], rnd["cpp_load"] = cpp_round(args.bench, size, args.tensors,
                                                         base + "-cpp")
        for k, v in rnd.items():
            times.setdefault(k, []).append(v)
        print(json.dumps({"round": r, "bytes": total, **rnd}), flush=True)
        for d in os.listdir(args.dir):
            shutil.rmtree(os.path.join(args.dir, d), ignore_errors=True)

    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"\n{total / 2**30:.2f} GiB in {args.tensors} tensors, {args.rounds} rounds "
          "(median seconds, p25-p75):")
    for k, v in times.items():
        q = statistics.quantiles(v, n=4) if len(v) > 1 else [v[0], v[0], v[0]]
        print(f"  {k:12s} {med[k]:7.3f} s ({q[0]:.3f}-{q[2]:.3f})  "
              f"{total / med[k] / 1e9:6.2f} GB/s")
    best_dcp_save = min(med["dcp1_save"], med["dcp2_save"])
    best_dcp_load = min(med["dcp1_load"], med["dcp2_load"])
    ratios = {
        "save: raw write / dcpkv.save": med["raw_write"] / med["dcpkv_save"],
        "save: DCP's best / dcpkv.save": best_dcp_save / med["dcpkv_save"],
        "load: raw read / dcpkv.load": med["raw_read"] / med["dcpkv_load"],
        "load: DCP's best / dcpkv.load": best_dcp_load / med["dcpkv_load"],
    }
    if "cpp_save" in med:
        ratios["save: C++ / Python (binding cost)"] = med["cpp_save"] / med["dcpkv_save"]
        ratios["load: C++ / Python (binding cost)"] = med["cpp_load"] / med["dcpkv_load"]
    print("ratios of medians (> 1: dcpkv from Python is faster):")
    for k, v in ratios.items():
        print(f"  {k:38s} {v:5.2f}")
    shutil.rmtree(args.dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

"""torch.distributed.checkpoint through dcpkv.torch against FileSystemWriter, interleaved.

Each round, on the same disk and state (--tensors float32 tensors, --size bytes in all; at
--world 2, DTensors sharded by rows over two processes on gloo), one after another:
  1. dcp.save of a fresh checkpoint: KVStorageWriter (full, not incremental) and
     FileSystemWriter(thread_count=1) and (=2);
  2. 10% of the tensors change (frozen layers, a fine-tune), then a second dcp.save: an
     incremental KVStorageWriter save against step 1's, and FileSystemWriter's (1, 2 threads);
  3. (after 4 and 5's saves) a cold dcp.load (files dropped from the page cache) through
     KVStorageReader and FileSystemReader, checked against the saved values, dcpkv's own cold
     load, and the raw disk (FileSystemWriter's files read whole with O_DIRECT), in an order
     that turns from round to round;
  4. dcp.async_save (THREAD executor): how long the caller is blocked (until staging is done)
     and how long until the upload is done, KVStorageWriter (a full save) and
     FileSystemWriter(thread_count=2); the writer's staging memory is kept between rounds (the
     first round allocates it), DCP's default stager allocates its copy every time;
  5. dcpkv's own save of the same state (the C++ library through the direct API).
Every step starts after os.sync(), so that none competes with the write-back of the one before.
Prints one JSON line per round, then medians (p25-p75) and ratios of medians (> 1: dcpkv.torch
is faster).

    build/venv/bin/python tools/bench/bench_dcp.py --size=1GiB --rounds=9 --world=1 --dir=/path
"""

import argparse
import json
import math
import mmap
import os
import shutil
import socket
import statistics
import sys
import time
import warnings

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
import torch.multiprocessing as mp

import dcpkv
from dcpkv.torch import KVStorageReader, KVStorageWriter, close_writers

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from compare_dcp import drop_page_cache, parse_size  # noqa: E402 - the same helpers

warnings.filterwarnings("ignore")


def make_state(size, tensors, world, rank):
    rows = max(size // tensors // 4096, world)
    gen = torch.Generator().manual_seed(1)
    full = {f"t{i}": torch.randn(rows, 1024, generator=gen) for i in range(tensors)}
    if world == 1:
        return full
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import Shard, distribute_tensor

    mesh = init_device_mesh("cpu", (world,))
    return {k: distribute_tensor(v, mesh, [Shard(0)]) for k, v in full.items()}


def read_disk(path):
    """Reads every file under path straight from the disk (O_DIRECT, 16 MiB reads; through the
    page cache where the file system refuses O_DIRECT): the raw disk's time for those bytes."""
    buf = mmap.mmap(-1, 16 << 20)
    for dirpath, _, files in os.walk(path):
        for name in files:
            file = os.path.join(dirpath, name)
            try:
                fd = os.open(file, os.O_RDONLY | os.O_DIRECT)
            except OSError:
                fd = os.open(file, os.O_RDONLY)
            try:
                offset = 0
                while (n := os.preadv(fd, [buf], offset)) > 0:
                    offset += n
            finally:
                os.close(fd)


def local(t):
    return t.to_local() if hasattr(t, "to_local") else t


def zeros_like(state):
    out = {}
    for k, v in state.items():
        if hasattr(v, "to_local"):
            from torch.distributed.tensor import DTensor

            out[k] = DTensor.from_local(torch.zeros_like(v.to_local()), v.device_mesh,
                                        v.placements, run_check=False, shape=v.size(),
                                        stride=v.stride())
        else:
            out[k] = torch.zeros_like(v)
    return out


def check(targets, state, what):
    for k, v in state.items():
        if not torch.equal(local(targets[k]), local(v)):
            raise SystemExit(f"{what}: tensor {k} differs from what was saved")
        local(targets[k]).zero_()


class Timer:
    """Times a step (seconds of wall time); keeps this process's CPU seconds of the last step
    (user, system) in .cpu."""

    def __init__(self, world):
        self.world = world
        self.cpu = (0.0, 0.0)

    def __call__(self, fn, sync=True):
        # Nothing written before is still on its way to the disk: each step has it alone.
        if sync:
            os.sync()
        if self.world > 1:
            dist.barrier()
        before = os.times()
        start = time.perf_counter()
        fn()
        if self.world > 1:
            dist.barrier()
        elapsed = time.perf_counter() - start
        after = os.times()
        self.cpu = (after.user - before.user, after.system - before.system)
        return elapsed


def drop(path, world):
    if world > 1:
        dist.barrier()
    if not world > 1 or dist.get_rank() == 0:
        drop_page_cache(path)
    if world > 1:
        dist.barrier()


def one_round(r, args, state, targets, timed, group, async_group):
    world = args.world
    rank = dist.get_rank() if world > 1 else 0
    no_dist = world == 1
    # The same paths every round (emptied after each): a job saves into one store again and
    # again, and the writer's staging memory is kept per store root.
    base = os.path.join(args.dir, "run")
    rnd = {}
    kv_root = base + "-kv"
    # 1. full saves.
    rnd["kv_save"] = timed(lambda: dcp.save(
        state, checkpoint_id="full", no_dist=no_dist,
        storage_writer=KVStorageWriter(kv_root, incremental=False,
                                       write_threads=args.write_threads)))
    for threads in (1, 2):
        rnd[f"fs{threads}_save"] = timed(lambda: dcp.save(
            state, no_dist=no_dist,
            storage_writer=dcp.FileSystemWriter(f"{base}-fs{threads}", thread_count=threads)))
    # 2. 10% of the tensors change, a second save.
    changed = list(state)[: max(1, math.ceil(len(state) / 10))]
    for k in changed:
        local(state[k]).add_(1.0)
    rnd["kv_inc_save"] = timed(lambda: dcp.save(
        state, checkpoint_id="inc", no_dist=no_dist,
        storage_writer=KVStorageWriter(kv_root, write_threads=args.write_threads)))
    for threads in (1, 2):
        rnd[f"fs{threads}_inc_save"] = timed(lambda: dcp.save(
            state, no_dist=no_dist,
            storage_writer=dcp.FileSystemWriter(f"{base}-fs{threads}-inc",
                                                thread_count=threads)))
    # 4. async_save (THREAD): blocked until staged, then until uploaded.
    for name, make in (("kv", lambda: KVStorageWriter(kv_root, incremental=False,
                                                      write_threads=args.write_threads)),
                       ("fs2", lambda: dcp.FileSystemWriter(f"{base}-fs-async", thread_count=2))):
        box = {}

        def start():
            # The upload's collectives run on a group of their own, beside the barriers.
            # (A checkpoint_id would be FileSystemWriter's path: only the store gets one.)
            box["r"] = dcp.async_save(state, checkpoint_id="async" if name == "kv" else None,
                                      storage_writer=make(), no_dist=no_dist,
                                      process_group=async_group)
            staging = getattr(box["r"], "staging_completion", None)
            if staging is not None:
                staging.result()

        def finish():
            upload = getattr(box["r"], "upload_completion", box["r"])
            upload.result()

        rnd[f"{name}_async_blocked"] = timed(start)
        # (No sync here: it would compete with the upload in flight.)
        rnd[f"{name}_async_total"] = rnd[f"{name}_async_blocked"] + timed(finish, sync=False)
    # 5. dcpkv's own save of the same state.
    own_root = base + "-own"
    if world == 1:
        own_state = state
    else:
        own_state = {k: dcpkv.Sharded(local(v), tuple(v.shape), (_row_offset(v), 0))
                     for k, v in state.items()}
    rnd["own_save"] = timed(lambda: dcpkv.save(own_state, own_root, "c", incremental=False,
                                               process_group=group, no_dist=no_dist))
    # 3. cold loads (of the second checkpoints: the incremental one reads two checkpoints'
    # chunks), and dcpkv's own, in an order that turns each round: the first read after a
    # burst of writes is slower here (the disk still busy with them), whoever makes it.
    own_targets = ({k: torch.zeros_like(v) for k, v in state.items()} if world == 1 else
                   {k: dcpkv.Sharded(torch.zeros_like(local(v)), tuple(v.shape),
                                     (_row_offset(v), 0)) for k, v in state.items()})
    loads = {
        "kv_load": (kv_root, lambda: dcp.load(targets, checkpoint_id="inc", no_dist=no_dist,
                                              storage_reader=KVStorageReader(
                                                  kv_root, read_threads=args.read_threads))),
        "fs1_load": (f"{base}-fs1-inc", lambda: dcp.load(
            targets, no_dist=no_dist, storage_reader=dcp.FileSystemReader(f"{base}-fs1-inc"))),
        "fs2_load": (f"{base}-fs2-inc", lambda: dcp.load(
            targets, no_dist=no_dist, storage_reader=dcp.FileSystemReader(f"{base}-fs2-inc"))),
        "own_load": (own_root, lambda: dcpkv.load(own_targets, own_root, "c",
                                                  process_group=group, no_dist=no_dist)),
        # The raw disk: FileSystemWriter's files of the same state read whole, by rank 0.
        "disk_read": (f"{base}-fs2-inc", lambda: rank == 0 and read_disk(f"{base}-fs2-inc")),
    }
    names = list(loads)
    for name in names[r % len(names):] + names[: r % len(names)]:
        path, load = loads[name]
        drop(path, world)
        rnd[name] = timed(load)
        rnd[name + "_cpu"] = [round(c, 3) for c in timed.cpu]
        if name not in ("own_load", "disk_read"):
            check(targets, state, name)
    close_writers()  # the store is deleted below: its databases close first
    if world > 1:
        dist.barrier()
    if rank == 0:
        for d in os.listdir(args.dir):
            shutil.rmtree(os.path.join(args.dir, d), ignore_errors=True)
    if world > 1:
        dist.barrier()
    return rnd


def _row_offset(t):
    """The first global row of a Shard(0) DTensor's local part."""
    rows = t.shape[0]
    world = t.device_mesh.size()
    rank = t.device_mesh.get_local_rank()
    per = (rows + world - 1) // world
    return min(rank * per, rows)


def run(rank, args, port):
    world = args.world
    group = async_group = None
    if world > 1:
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                          WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                          LOCAL_WORLD_SIZE=str(world))
        dist.init_process_group("gloo")
        group = dcpkv.new_process_group(rank, world, "127.0.0.1", port + 1)
        async_group = dist.new_group(backend="gloo")
    size = parse_size(args.size)
    state = make_state(size, args.tensors, world, rank)
    targets = zeros_like(state)
    total = sum(v.numel() * 4 for v in state.values())
    timed = Timer(world)
    if rank == 0:
        shutil.rmtree(args.dir, ignore_errors=True)
        os.makedirs(args.dir)
    if world > 1:
        dist.barrier()
    times = {}
    cpu = {}  # the loads' CPU seconds of rank 0's process, (user, system) per round
    for r in range(args.rounds):
        rnd = one_round(r, args, state, targets, timed, group, async_group)
        for k, v in rnd.items():
            if k.endswith("_cpu"):
                cpu.setdefault(k[: -len("_cpu")], []).append(v)
            else:
                times.setdefault(k, []).append(v)
        if rank == 0:
            print(json.dumps({"round": r, "world": world, "bytes": total, **rnd}), flush=True)
    if rank == 0:
        report(times, cpu, total, args)
    if world > 1:
        dist.destroy_process_group()


def report(times, cpu, total, args):
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"\nworld {args.world}: {total / 2**30:.2f} GiB in {args.tensors} tensors, "
          f"{args.rounds} rounds (median seconds, p25-p75):")
    for k, v in times.items():
        q = statistics.quantiles(v, n=4) if len(v) > 1 else [v[0], v[0], v[0]]
        line = (f"  {k:18s} {med[k]:7.3f} s ({q[0]:.3f}-{q[2]:.3f})  "
                f"{total / med[k] / 1e9:6.2f} GB/s")
        if k in cpu:
            user = statistics.median(c[0] for c in cpu[k])
            system = statistics.median(c[1] for c in cpu[k])
            line += f"  CPU (rank 0): user {user:.2f} s, system {system:.2f} s"
        print(line)
    fs_save = min(med["fs1_save"], med["fs2_save"])
    fs_inc = min(med["fs1_inc_save"], med["fs2_inc_save"])
    fs_load = min(med["fs1_load"], med["fs2_load"])
    ratios = {
        "full save: FS best / KV": fs_save / med["kv_save"],
        "10% changed: FS best / KV incremental": fs_inc / med["kv_inc_save"],
        "cold load: FS best / KV": fs_load / med["kv_load"],
        "cold load: raw disk / KV": med["disk_read"] / med["kv_load"],
        "async blocked: FS / KV": med["fs2_async_blocked"] / med["kv_async_blocked"],
        "async total: FS / KV": med["fs2_async_total"] / med["kv_async_total"],
        "save: dcpkv's own / KV plug-in": med["own_save"] / med["kv_save"],
        "load: dcpkv's own / KV plug-in": med["own_load"] / med["kv_load"],
    }
    print("ratios of medians (> 1: the dcpkv.torch plug-in is faster):")
    for k, v in ratios.items():
        print(f"  {k:40s} {v:5.2f}")
    print(json.dumps({"world": args.world, "medians": med, "ratios": ratios}))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--size", default="1GiB")
    p.add_argument("--tensors", type=int, default=16)
    p.add_argument("--rounds", type=int, default=9)
    p.add_argument("--world", type=int, default=1, choices=(1, 2))
    p.add_argument("--dir", required=True)
    p.add_argument("--write-threads", type=int, default=0,
                   help="KVStorageWriter's write_threads (0: its default)")
    p.add_argument("--read-threads", type=int, default=0,
                   help="KVStorageReader's read_threads (0: its default)")
    args = p.parse_args()
    if args.world == 1:
        run(0, args, 0)
    else:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        mp.start_processes(run, args=(args, port), nprocs=args.world, start_method="spawn")
    shutil.rmtree(args.dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

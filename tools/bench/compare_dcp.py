"""dcpkv against torch.distributed.checkpoint on the same state, interleaved.

Each round runs, one after another on the same disk:
  1. dcpkv_bench --benchmarks=save,load (one repetition; world 2 as two processes), which also
     times its raw baselines (write + fdatasync with one file per rank and with --raw-writers
     files per rank, and a cold raw read);
  2. torch DCP dcp.save with FileSystemWriter(thread_count=1), then a cold dcp.load;
  3. the same with thread_count=2.
The state is the benchmark's: --tensors float32 tensors of 4 KiB rows, --size bytes in all; at
world 2 each rank holds a Shard(0) DTensor of each (gloo process group, two processes). Every
save is a full save of the state (a fresh checkpoint directory or id); every load starts with
the checkpoint's files dropped from the page cache and is checked against the saved values.

Prints one JSON object per line (one per round and configuration), then a summary table of
medians with p25-p75 in GB/s. Run through scripts/compare_dcp.sh, which builds dcpkv_bench and
installs torch into the project's venv.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
import torch.multiprocessing as mp

ROW_FLOATS = 1024


def parse_size(text):
    units = {"": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}
    for unit in sorted(units, key=len, reverse=True):
        if unit and text.endswith(unit):
            return int(float(text[: -len(unit)]) * units[unit])
    return int(text)


def drop_page_cache(root):
    """Drops every file under root from the page cache (they are synced already)."""
    for dirpath, _, files in os.walk(root):
        for name in files:
            fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
            try:
                os.fsync(fd)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def rows_of(size, tensors):
    return max(size // tensors // (ROW_FLOATS * 4), 4)


def local_rows(rows, rank, world):
    # torch.chunk, as Shard(0) places rows: ceil(rows / world) each, the last ones fewer.
    per = -(-rows // world)
    begin = min(rank * per, rows)
    return begin, min(begin + per, rows)


def make_state(rows, tensors, rank, world, mesh, seed):
    gen = torch.Generator().manual_seed(seed * 1000 + rank)
    state = {}
    for t in range(tensors):
        begin, end = local_rows(rows, rank, world)
        local = torch.rand((end - begin, ROW_FLOATS), generator=gen, dtype=torch.float32)
        if mesh is None:
            state[f"model.layers.{t}.weight"] = local
        else:
            from torch.distributed.tensor import DTensor, Shard

            state[f"model.layers.{t}.weight"] = DTensor.from_local(
                local, mesh, [Shard(0)], shape=torch.Size((rows, ROW_FLOATS)),
                stride=(ROW_FLOATS, 1))
    return state


def empty_like_state(state):
    out = {}
    for key, value in state.items():
        if hasattr(value, "to_local"):
            from torch.distributed.tensor import DTensor

            out[key] = DTensor.from_local(
                torch.full_like(value.to_local(), -1.0), value.device_mesh, value.placements,
                shape=value.shape, stride=value.stride())
        else:
            out[key] = torch.full_like(value, -1.0)
    return out


def same_values(a, b):
    for key in a:
        x, y = a[key], b[key]
        if hasattr(x, "to_local"):
            x, y = x.to_local(), y.to_local()
        if not torch.equal(x, y):
            return False
    return True


def barrier():
    if dist.is_initialized():
        dist.barrier()


def dcp_round(state, directory, thread_count):
    """One DCP save and cold load on this rank; returns (save_s, load_s) as the slowest rank's."""
    barrier()
    start = time.perf_counter()
    dcp.save(state, storage_writer=dcp.FileSystemWriter(directory, thread_count=thread_count,
                                                        sync_files=True))
    barrier()
    save_s = time.perf_counter() - start
    target = empty_like_state(state)
    if not dist.is_initialized() or dist.get_rank() == 0:
        drop_page_cache(directory)
    barrier()
    start = time.perf_counter()
    dcp.load(target, storage_reader=dcp.FileSystemReader(directory))
    barrier()
    load_s = time.perf_counter() - start
    if not same_values(state, target):
        raise RuntimeError(f"DCP load of {directory} does not hold the saved values")
    times = torch.tensor([save_s, load_s], dtype=torch.float64)
    if dist.is_initialized():
        dist.all_reduce(times, op=dist.ReduceOp.MAX)
    return float(times[0]), float(times[1])


def dcp_worker(rank, world, port, args, requests, replies):
    """A DCP rank of world 2: runs the rounds the parent asks for, in lockstep with its peer."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    from torch.distributed.device_mesh import init_device_mesh

    mesh = init_device_mesh("cpu", (world,))
    rows = rows_of(args.size, args.tensors)
    state = make_state(rows, args.tensors, rank, world, mesh, seed=1)
    while True:
        request = requests.get()
        if request is None:
            break
        directory, thread_count = request
        try:
            replies.put(("ok",) + dcp_round(state, directory, thread_count))
        except Exception as e:  # reported to the parent, which stops the run
            replies.put(("error", repr(e)))
            break
    dist.destroy_process_group()


class DcpRanks:
    """world 1: DCP in this process (no process group); world 2: two worker processes."""

    def __init__(self, args):
        self.args = args
        self.world = args.world
        if self.world == 1:
            self.state = make_state(rows_of(args.size, args.tensors), args.tensors, 0, 1, None, 1)
            return
        ctx = mp.get_context("spawn")
        self.requests = [ctx.Queue() for _ in range(self.world)]
        self.replies = ctx.Queue()
        port = free_port()
        self.procs = [ctx.Process(target=dcp_worker,
                                  args=(r, self.world, port, args, self.requests[r], self.replies))
                      for r in range(self.world)]
        for p in self.procs:
            p.start()

    def run(self, directory, thread_count):
        if self.world == 1:
            return dcp_round(self.state, directory, thread_count)
        for q in self.requests:
            q.put((directory, thread_count))
        results = [self.replies.get(timeout=1800) for _ in range(self.world)]
        for r in results:
            if r[0] != "ok":
                raise RuntimeError(f"DCP rank failed: {r[1]}")
        return results[0][1], results[0][2]

    def close(self):
        if self.world == 1:
            return
        for q in self.requests:
            q.put(None)
        for p in self.procs:
            p.join(timeout=60)


def free_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def dcpkv_round(args, directory, write_path):
    cmd = [args.bench, "--benchmarks=save,load", f"--size={args.size}", f"--write-path={write_path}",
           f"--tensors={args.tensors}", f"--world={args.world}", "--repetitions=1", "--json",
           f"--dir={directory}", f"--raw-writers={args.raw_writers}"]
    if args.world > 1:
        cmd.append("--processes")
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return {r["benchmark"]: r for r in map(json.loads, out.splitlines())}


def quantiles(values):
    values = sorted(values)
    pick = lambda q: values[min(len(values) - 1, int(q * (len(values) - 1) + 0.5))]
    return pick(0.25), statistics.median_high(values), pick(0.75)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bench", required=True, help="path of dcpkv_bench")
    parser.add_argument("--size", default="1GiB")
    parser.add_argument("--tensors", type=int, default=16)
    parser.add_argument("--world", type=int, choices=(1, 2), default=1)
    parser.add_argument("--repetitions", type=int, default=9)
    parser.add_argument("--raw-writers", type=int, default=2)
    parser.add_argument("--dir", default=None, help="where to work (default: the temp dir)")
    parser.add_argument("--write-paths", default="batch,ingest",
                        help="dcpkv_bench --write-path values to run each round")
    args = parser.parse_args()
    args.size = parse_size(args.size)
    torch.set_num_threads(1)

    work = tempfile.mkdtemp(prefix="dcpkv-vs-dcp-", dir=args.dir)
    series = {}  # name -> seconds per round
    rss_growth = {}  # write path -> a save's peak RSS above the RSS before it, per round

    def add(name, seconds):
        series.setdefault(name, []).append(seconds)

    ranks = DcpRanks(args)
    try:
        for rep in range(args.repetitions):
            for write_path in args.write_paths.split(","):
                d = dcpkv_round(args, work, write_path)
                add(f"dcpkv save ({write_path})", d["save"]["seconds"])
                add("raw_write (1 file/rank)", d["save"]["raw_write_seconds"])
                add(f"raw_write_parallel ({args.raw_writers} files/rank)",
                    d["save"]["raw_write_parallel_seconds"])
                add(f"dcpkv load (cold, {write_path})", d["load"]["seconds"])
                add("raw_read (cold)", d["load"]["baseline_seconds"])
                print(json.dumps({"round": rep, "tool": "dcpkv", "write_path": write_path,
                                  "world": args.world, "save_s": d["save"]["seconds"],
                                  "load_s": d["load"]["seconds"],
                                  "raw_write_s": d["save"]["raw_write_seconds"],
                                  "raw_write_parallel_s": d["save"]["raw_write_parallel_seconds"],
                                  "raw_read_s": d["load"]["baseline_seconds"],
                                  "peak_rss_bytes": d["save"]["peak_rss_bytes"],
                                  "save_rss_growth_bytes":
                                      d["save"].get("save_rss_growth_max_bytes")}), flush=True)
                growth = d["save"].get("save_rss_growth_max_bytes")
                if growth is not None:
                    rss_growth.setdefault(write_path, []).append(growth)
            for threads in (1, 2):
                directory = os.path.join(work, f"dcp-{rep}-{threads}")
                save_s, load_s = ranks.run(directory, threads)
                shutil.rmtree(directory)
                add(f"DCP save thread_count={threads}", save_s)
                add(f"DCP load (cold) after thread_count={threads}", load_s)
                print(json.dumps({"round": rep, "tool": "dcp", "world": args.world,
                                  "thread_count": threads, "save_s": save_s, "load_s": load_s}),
                      flush=True)
    finally:
        ranks.close()
        shutil.rmtree(work, ignore_errors=True)

    gb = args.size / 1e9
    print(f"\nworld {args.world}, {args.size / 2**30:.2f} GiB in {args.tensors} float32 tensors, "
          f"{args.repetitions} interleaved rounds; GB/s: median (p25-p75)")
    rate = {}
    for name, seconds in series.items():
        p25, med, p75 = quantiles(seconds)
        rate[name] = gb / med
        print(f"  {name:44s} {gb / med:6.2f}  ({gb / p75:.2f}-{gb / p25:.2f})")
    best_dcp_save = max(v for k, v in rate.items() if k.startswith("DCP save"))
    best_dcp_load = max(v for k, v in rate.items() if k.startswith("DCP load"))
    best_raw_write = max(v for k, v in rate.items() if k.startswith("raw_write"))
    for write_path in args.write_paths.split(","):
        save, load = rate[f"dcpkv save ({write_path})"], rate[f"dcpkv load (cold, {write_path})"]
        print(f"  {write_path}: dcpkv save / best DCP save {save / best_dcp_save:.2f}x, "
              f"/ faster raw write {save / best_raw_write:.2f}x; dcpkv load / best DCP load "
              f"{load / best_dcp_load:.2f}x, / raw read {load / rate['raw_read (cold)']:.2f}x")
        if rss_growth.get(write_path):
            print(f"  {write_path}: a save's peak RSS above the RSS before it, per rank: median "
                  f"{statistics.median_high(rss_growth[write_path]) / 2**20:.0f} MiB, largest "
                  f"{max(rss_growth[write_path]) / 2**20:.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())

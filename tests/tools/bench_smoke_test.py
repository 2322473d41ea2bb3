#!/usr/bin/env python3
"""Smoke test of dcpkv_bench (tools/bench/): runs every registered benchmark at a tiny size and
checks that it exits 0, that every output line is a JSON object with the documented keys and
sane values, that every benchmark reported, and that the working directory is removed.
Timings are not asserted. Usage: bench_smoke_test.py PATH_TO_DCPKV_BENCH"""
import json
import os
import subprocess
import sys
import tempfile

ARGS = ["--size=4MiB", "--tensors=4", "--world=2", "--repetitions=1", "--sim-ranks=64",
        "--plan-tensors=10", "--json"]
NUMBER = (int, float)
REQUIRED = {"benchmark": str, "bytes": int, "seconds": NUMBER, "gbps": NUMBER, "baseline": str,
            "baseline_seconds": NUMBER, "ratio": NUMBER, "peak_rss_bytes": int}


def fail(message):
    sys.exit("FAIL: " + message)


def registered(bench):
    """Benchmark names from --help: the indented lines after 'benchmarks'."""
    out = subprocess.run([bench, "--help"], capture_output=True, text=True, check=True).stdout
    names, listing = [], False
    for line in out.splitlines():
        if line.startswith("benchmarks"):
            listing = True
        elif listing and line.startswith("  "):
            names.append(line.split()[0])
    return names


def check_record(line):
    try:
        record = json.loads(line)
    except ValueError as e:
        fail(f"not JSON ({e}): {line}")
    if not isinstance(record, dict):
        fail(f"not a JSON object: {line}")
    for key, kind in REQUIRED.items():
        if key not in record:
            fail(f"missing key {key!r}: {line}")
        if not isinstance(record[key], kind) or isinstance(record[key], bool):
            fail(f"key {key!r} has the wrong type: {line}")
    if record["bytes"] <= 0 or record["seconds"] <= 0 or record["peak_rss_bytes"] <= 0:
        fail(f"bytes, seconds and peak_rss_bytes must be positive: {line}")
    if record["gbps"] < 0 or record["ratio"] <= 0:
        fail(f"gbps must be >= 0 and ratio > 0: {line}")
    if record["baseline"] != "none" and record["baseline_seconds"] <= 0:
        fail(f"a baseline was named but not measured: {line}")
    return record["benchmark"]


def main():
    bench = sys.argv[1]
    names = registered(bench)
    if not names:
        fail("--help lists no benchmarks")
    with tempfile.TemporaryDirectory(prefix="dcpkv-bench-smoke-") as parent:
        run = subprocess.run([bench, f"--dir={parent}"] + ARGS, capture_output=True, text=True,
                             timeout=240)
        if run.returncode != 0:
            fail(f"dcpkv_bench exited {run.returncode}:\n{run.stderr}")
        if os.listdir(parent):
            fail(f"working directory left behind: {os.listdir(parent)}")
    lines = [line for line in run.stdout.splitlines() if line.strip()]
    seen = {check_record(line) for line in lines}
    for name in names:
        if not any(b == name or b.startswith(name + "_") for b in seen):
            fail(f"benchmark {name!r} reported nothing; got {sorted(seen)}")
    # Ranks as processes: the same benchmarks, one process per rank (and one more for
    # load_reshard), the working directory removed by the launcher, figures from rank 0 only;
    # chunks written as ingested table files (every load checks what it read).
    with tempfile.TemporaryDirectory(prefix="dcpkv-bench-smoke-") as parent:
        run = subprocess.run([bench, f"--dir={parent}", "--processes", "--write-path=ingest",
                              "--benchmarks=save,load,load_reshard,verify,incremental,async_block"] + ARGS,
                             capture_output=True, text=True, timeout=240)
        if run.returncode != 0:
            fail(f"dcpkv_bench --processes exited {run.returncode}:\n{run.stderr}")
        if os.listdir(parent):
            fail(f"--processes left its working directory behind: {os.listdir(parent)}")
    records = [json.loads(line) for line in run.stdout.splitlines() if line.strip()]
    for line in run.stdout.splitlines():
        if line.strip():
            check_record(line)
    got = [r["benchmark"] for r in records]
    if got != ["save", "load", "load_reshard", "verify", "incremental", "async_block"]:
        fail(f"--processes: expected one record per benchmark from rank 0, got {got}")
    for r in records:
        if r["processes"] is not True or r["write_path"] != "ingest" or \
                not r["p25"] <= r["seconds"] <= r["p75"]:
            fail(f"--processes: bad processes/p25/p75 fields: {r}")
    save = records[0]
    if save["baseline"] not in ("raw_write", "raw_write_parallel") or \
            min(save["raw_write_seconds"], save["raw_write_parallel_seconds"]) != \
            save["baseline_seconds"]:
        fail(f"save's baseline must be the faster raw write: {save}")
    # A save's resident memory above the RSS before it: measured where the peak can be reset.
    growth = (save.get("save_rss_growth_median_bytes"), save.get("save_rss_growth_max_bytes"))
    if growth != (None, None) and not 0 <= growth[0] <= growth[1]:
        fail(f"save's RSS growth figures are inconsistent: {save}")
    if records[3]["baseline"] != "raw_scan":
        fail(f"verify's baseline must be raw_scan: {records[3]}")
    bad = subprocess.run([bench, "--benchmarks=no_such_benchmark"], capture_output=True)
    if bad.returncode != 2:
        fail(f"an unknown benchmark should exit 2, got {bad.returncode}")
    print(f"{len(lines)} records from {len(names)} benchmarks ok: {', '.join(sorted(seen))}")
    if run.stderr.strip():
        print("stderr of the run:\n" + run.stderr)


if __name__ == "__main__":
    main()

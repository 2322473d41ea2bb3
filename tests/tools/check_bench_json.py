#!/usr/bin/env python3
"""Smoke test of dcpkv_bench: runs every benchmark at a tiny size and checks that each output
line is a JSON object with the documented keys and sane values. Timings are not asserted."""
import json
import subprocess
import sys

REQUIRED = {"benchmark": str, "bytes": int, "seconds": float, "gbps": float, "baseline": str,
            "ratio": float, "peak_rss_bytes": int}


def main():
    bench = sys.argv[1]
    run = subprocess.run([bench, "--size=2MiB", "--tensors=2", "--world=2", "--repetitions=1",
                          "--json"], capture_output=True, text=True, timeout=240)
    if run.returncode != 0:
        sys.exit(f"dcpkv_bench exited {run.returncode}:\n{run.stderr}")
    lines = [l for l in run.stdout.splitlines() if l.strip()]
    seen = set()
    for line in lines:
        record = json.loads(line)
        for key, kind in REQUIRED.items():
            if key not in record:
                sys.exit(f"missing key {key!r} in {line}")
            if kind is float and isinstance(record[key], int):
                record[key] = float(record[key])
            if not isinstance(record[key], kind):
                sys.exit(f"key {key!r} has the wrong type in {line}")
        if record["bytes"] <= 0 or record["seconds"] <= 0 or record["peak_rss_bytes"] <= 0:
            sys.exit(f"implausible values in {line}")
        seen.add(record["benchmark"])
    expected = {"memcpy", "save", "load", "load_reshard", "async_block", "async_block_lazy"}
    if not expected <= seen:
        sys.exit(f"benchmarks missing from the output: {sorted(expected - seen)}")
    if run.stderr.strip():
        sys.exit(f"dcpkv_bench reported errors:\n{run.stderr}")
    print(f"{len(lines)} benchmark records ok: {', '.join(sorted(seen))}")


if __name__ == "__main__":
    main()

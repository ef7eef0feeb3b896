#!/usr/bin/env python3
"""Overhead of roard on a small-files workload: write then read N small files.

One invocation runs the same workload untraced (no daemon), with the daemon up but the job
untagged, and tagged with `roarctl tag` (wall time until roarctl returns, i.e. until the
run is finalized with every output hashed), and prints medians and ratios. It also reports
the daemon's idle CPU and RSS. Needs root (it starts a private roard in a temp dir).

    .venv/bin/python bench/small_files.py [--files 2000] [--repeat 7]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import BIN, roarctl_json, start_daemon, timed

WORKLOAD = """
import os, sys
n, size = int(sys.argv[1]), int(sys.argv[2])
payload = os.urandom(size)
for i in range(n):
    with open(f"f{i:05d}.dat", "wb") as f:
        f.write(payload)
total = 0
for i in range(n):
    with open(f"f{i:05d}.dat", "rb") as f:
        total += len(f.read())
assert total == n * size
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--idle-seconds", type=float, default=10.0)
    parser.add_argument(
        "--dir",
        type=Path,
        default=None,
        help="where the workload writes (default: a temp dir; /dev/shm makes disk noise vanish)",
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="roard-bench-", dir=args.dir) as tmp:
        root = Path(tmp)
        script = root / "workload.py"
        script.write_text(WORKLOAD)
        job = ["/usr/bin/python3", str(script), str(args.files), str(args.size)]
        runs = iter(range(10**6))

        def fresh() -> Path:
            d = root / f"w{next(runs)}"
            d.mkdir()
            return d

        base_env = dict(os.environ)
        # Half the untraced runs before the daemon starts and half after it stops, so slow
        # drift of the machine does not favour either side.
        untraced = [timed(job, fresh(), base_env) for _ in range((args.repeat + 1) // 2)]

        daemon, env = start_daemon(root)
        try:
            proc = psutil.Process(daemon.pid)
            cpu0 = proc.cpu_times()
            time.sleep(args.idle_seconds)
            cpu1 = proc.cpu_times()
            idle_cpu = (cpu1.user + cpu1.system - cpu0.user - cpu0.system) / args.idle_seconds
            untagged, tagged = [], []
            for i in range(args.repeat):
                untagged.append(timed(job, fresh(), env))
                work = fresh()
                name = f"bench-{i}"
                tagged.append(
                    timed([str(BIN / "roarctl"), "tag", "--name", name, "--", *job], work, env)
                )
                doc = roarctl_json(["show", name], env)
                outputs = [o for o in doc["outputs"] if o["path"].startswith(str(work))]
                assert len(outputs) == args.files and all(o["hash"] for o in outputs), (
                    f"run {name}: {len(outputs)} outputs, expected {args.files}"
                )
                assert doc["complete"], doc["lost_events"]
            rss = proc.memory_info().rss
        finally:
            daemon.terminate()
            daemon.wait(30)
        untraced += [timed(job, fresh(), base_env) for _ in range(args.repeat // 2)]

    med = statistics.median
    base = med(untraced)
    print(
        f"small-files: {args.files} files x {args.size} B written then read, "
        f"median of {args.repeat}, in {args.dir or tempfile.gettempdir()}"
    )
    print(f"{'mode':<28}{'median s':>10}{'ratio':>8}")
    for label, samples in (
        ("untraced (no daemon)", untraced),
        ("daemon up, job untagged", untagged),
        ("roarctl tag (finalized)", tagged),
    ):
        print(f"{label:<28}{med(samples):>10.3f}{med(samples) / base:>8.2f}x")
    print(
        f"daemon idle CPU: {idle_cpu * 100:.2f}% of one core over {args.idle_seconds:g}s; "
        f"RSS after the runs: {rss / 2**20:.1f} MiB"
    )


if __name__ == "__main__":
    main()

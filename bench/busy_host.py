#!/usr/bin/env python3
"""The daemon's own cost on a busy host with nothing tagged: CPU and RSS while untagged
programs hammer the file system and spawn processes.

One invocation starts a private roard, measures its CPU over a quiet interval, then over
the same interval while an untagged file storm (create, write, read, delete small files)
and an untagged process storm (a shell loop of short commands) run, and prints the
daemon's share of one core and its RSS. Needs root.

    .venv/bin/python bench/busy_host.py [--seconds 10]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import no_other_roard, start_daemon, stop_daemon

FILE_STORM = """
import os, sys, time
end = time.monotonic() + float(sys.argv[1])
n = 0
while time.monotonic() < end:
    name = f"s{n % 100}.tmp"
    with open(name, "wb") as f:
        f.write(b"x" * 512)
    with open(name, "rb") as f:
        f.read()
    os.unlink(name)
    n += 1
print(n)
"""


def daemon_cpu(proc: psutil.Process, seconds: float) -> float:
    """The daemon's CPU over `seconds`, as a share of one core."""
    before = proc.cpu_times()
    time.sleep(seconds)
    after = proc.cpu_times()
    return (after.user + after.system - before.user - before.system) / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    no_other_roard()
    with tempfile.TemporaryDirectory(prefix="roard-busy-") as tmp:
        root = Path(tmp)
        (root / "storm.py").write_text(FILE_STORM)
        daemon, _ = start_daemon(root)
        try:
            proc = psutil.Process(daemon.pid)
            quiet = daemon_cpu(proc, args.seconds)
            files = subprocess.Popen(
                ["/usr/bin/python3", "storm.py", str(args.seconds)],
                cwd=root,
                stdout=subprocess.PIPE,
                text=True,
            )
            spawns = subprocess.Popen(
                ["/bin/sh", "-c", f"end=$(($(date +%s) + {int(args.seconds)})); n=0; "
                 'while [ "$(date +%s)" -lt "$end" ]; do /bin/true; n=$((n+1)); done; echo $n'],
                stdout=subprocess.PIPE,
                text=True,
            )  # fmt: skip
            busy = daemon_cpu(proc, args.seconds)
            file_ops = int(files.communicate()[0])
            processes = int(spawns.communicate()[0])
            memory = proc.memory_full_info()
        finally:
            stop_daemon(daemon, root)
    print(f"busy-host: {args.seconds:g} s each, nothing tagged")
    print(f"  daemon CPU, quiet:  {quiet * 100:.2f}% of one core")
    print(
        f"  daemon CPU, busy:   {busy * 100:.2f}% of one core, while untagged programs did "
        f"{file_ops / args.seconds:,.0f} create+write+read+unlink cycles/s and spawned "
        f"{processes / args.seconds:,.0f} processes/s"
    )
    print(
        f"  daemon RSS:         {memory.rss / 2**20:.1f} MiB (anonymous "
        f"{(memory.rss - memory.shared) / 2**20:.1f} MiB, file-backed or shared "
        f"{memory.shared / 2**20:.1f} MiB; PSS {memory.pss / 2**20:.1f} MiB)"
    )


if __name__ == "__main__":
    main()

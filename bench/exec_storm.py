#!/usr/bin/env python3
"""What every exec on the host pays for the ROARD_RUN scan: an exec storm, untagged.

One invocation spawns /bin/true N times (posix_spawn + wait, from Python) with no daemon
(half before the daemons run, half after), then with roard up and `env_runs = false` (the
exec hook only checks the tracked map), then with roard up and `env_runs = true` (the hook
also scans each new program's environment for ROARD_RUN, which none of them has: the
worst case, every entry is read). Each phase repeats the storm; medians, µs per exec and
ratios to untraced are printed. Wall time on a shared VM is noisy, so the bench also asks
the kernel (BPF_ENABLE_STATS, for the bench's duration only) how long roard's BPF programs
ran, and prints that per exec: the scan's own cost, without the noise. `--extra-env N`
adds N variables to the environment the programs get, to see how the scan's cost grows
with it. Needs root.

    .venv/bin/python bench/exec_storm.py [--execs 5000] [--repeat 5] [--extra-env 0]
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from small_files import start_daemon

TRUE = "/bin/true"
_SYS_BPF = 321  # x86_64
_BPF_ENABLE_STATS = 32
_BPF_STATS_RUN_TIME = 0


@contextlib.contextmanager
def bpf_run_time_stats() -> Iterator[None]:
    """Have the kernel time every BPF program while inside (it stops when the fd closes)."""
    libc = ctypes.CDLL(None, use_errno=True)
    attr = (ctypes.c_uint32 * 32)(_BPF_STATS_RUN_TIME)
    fd = libc.syscall(_SYS_BPF, _BPF_ENABLE_STATS, ctypes.byref(attr), ctypes.sizeof(attr))
    if fd < 0:
        raise OSError(ctypes.get_errno(), "BPF_ENABLE_STATS failed")
    try:
        yield
    finally:
        os.close(fd)


def bpf_ns(pid: int) -> int:
    """Nanoseconds the BPF programs loaded by process `pid` have run (stats enabled)."""
    total = 0
    for info in Path(f"/proc/{pid}/fdinfo").iterdir():
        with contextlib.suppress(OSError):
            fields = dict(
                line.split(":", 1) for line in info.read_text().splitlines() if ":" in line
            )
            if "prog_type" in fields:
                total += int(fields.get("run_time_ns", "0"))
    return total


def storm(execs: int, env: dict[str, str]) -> float:
    """Wall seconds to spawn and reap /bin/true `execs` times."""
    start = time.perf_counter()
    for _ in range(execs):
        pid = os.posix_spawn(TRUE, [TRUE], env)
        os.waitpid(pid, 0)
    return time.perf_counter() - start


def with_daemon(
    root: Path, config: str, measure: Callable[[], float], repeat: int
) -> tuple[list[float], int]:
    """`measure` run `repeat` times while a private roard with `config` is up; the wall
    times, and how long roard's BPF programs ran meanwhile (ns)."""
    root.mkdir()
    daemon, _ = start_daemon(root, config)
    try:
        before = bpf_ns(daemon.pid)
        walls = [measure() for _ in range(repeat)]
        return walls, bpf_ns(daemon.pid) - before
    finally:
        daemon.terminate()
        daemon.wait(60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--execs", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--extra-env", type=int, default=0, metavar="N")
    args = parser.parse_args()
    env = {k: v for k, v in os.environ.items() if k != "ROARD_RUN"}
    env.update({f"BENCH_VAR_{i}": f"value-{i:06d}" for i in range(args.extra_env)})

    def measure() -> float:
        return storm(args.execs, env)

    with tempfile.TemporaryDirectory(prefix="roard-exec-") as tmp:
        root = Path(tmp)
        untraced = [measure() for _ in range((args.repeat + 1) // 2)]
        with bpf_run_time_stats():
            off, off_ns = with_daemon(root / "off", "env_runs = false\n", measure, args.repeat)
            on, on_ns = with_daemon(root / "on", "env_runs = true\n", measure, args.repeat)
        untraced += [measure() for _ in range(args.repeat // 2)]
    med = statistics.median
    base = med(untraced)
    print(
        f"exec-storm: {args.execs} x {TRUE} (posix_spawn + wait), {len(env)} environment "
        f"variables, nothing tagged, median of {args.repeat}"
    )
    print(f"{'mode':<30}{'median s':>10}{'min s':>8}{'µs/exec':>9}{'ratio':>7}{'BPF µs/exec':>13}")
    execs = args.execs * args.repeat
    for label, runs, ns in (
        ("untraced (no daemon)", untraced, None),
        ("roard up, env_runs = false", off, off_ns),
        ("roard up, env_runs = true", on, on_ns),
    ):
        m = med(runs)
        bpf = "" if ns is None else f"{ns / execs / 1000:.2f}"
        print(
            f"{label:<30}{m:>10.3f}{min(runs):>8.3f}{m / args.execs * 1e6:>9.1f}"
            f"{m / base:>7.3f}{bpf:>13}"
        )
    print(f"ROARD_RUN scan, in the kernel: {(on_ns - off_ns) / execs / 1000:+.2f} µs per exec")


if __name__ == "__main__":
    main()

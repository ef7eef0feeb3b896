#!/usr/bin/env python3
"""What every exec on the host pays for the ROARD_RUN scan: an exec storm, untagged.

One invocation spawns /bin/true N times (posix_spawn + wait, from Python) with no daemon
(half before the daemons run, half after), then with roard up and `env_runs = false` (the
exec hook only checks the tracked map), then with roard up and `env_runs = true` (the hook
also scans each new program's environment for ROARD_RUN, which none of them has: the
worst case, every entry is read). Each phase repeats the storm; medians, µs per exec and
ratios to untraced are printed. Wall time on a shared VM is noisy, so the bench also asks
the kernel (BPF_ENABLE_STATS, for the bench's duration only) how long roard's BPF programs
ran, and prints that per exec (all programs, and the exec hook alone): the scan's own
cost, without the noise. `--extra-env N` adds N variables to the environment the programs
get, to see how the scan's cost grows with it. `--tagged` adds a phase where the storm runs
inside a run (`roarctl tag`, with `env_runs = false`): what a tracked exec costs, its
environment copied by the kernel included; the storm is timed inside the run (finalizing
it is not counted), and the bench fails if the run lost an event or a process. Needs root.

    .venv/bin/python bench/exec_storm.py [--execs 5000] [--repeat 5] [--extra-env 0] [--tagged]
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import BIN, no_other_roard, roarctl_json, start_daemon, stop_daemon

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


def bpf_ns(pid: int) -> tuple[int, int]:
    """Nanoseconds the BPF programs loaded by process `pid` have run (stats enabled): all
    of them, and the exec hook alone (the program its sched_process_exec link runs)."""
    run_ns: dict[str, int] = {}  # prog_id -> run time
    exec_prog = ""
    for info in Path(f"/proc/{pid}/fdinfo").iterdir():
        with contextlib.suppress(OSError):
            fields = {
                k: v.strip()
                for k, v in (line.split(":", 1) for line in info.read_text().splitlines())
            }
            if "prog_type" in fields:
                run_ns[fields["prog_id"]] = int(fields.get("run_time_ns", "0"))
            elif fields.get("tp_name") == "sched_process_exec":
                exec_prog = fields["prog_id"]
    return sum(run_ns.values()), run_ns.get(exec_prog, 0)


def storm(execs: int, env: dict[str, str]) -> float:
    """Wall seconds to spawn and reap /bin/true `execs` times."""
    start = time.perf_counter()
    for _ in range(execs):
        pid = os.posix_spawn(TRUE, [TRUE], env)
        os.waitpid(pid, 0)
    return time.perf_counter() - start


def tagged_storm(execs: int, env: dict[str, str], roarctl_env: dict[str, str], name: str) -> float:
    """Wall seconds of a storm run as the tagged run `name` (timed inside the run); exits if
    the run is incomplete or misses a process."""
    roarctl = str(BIN / "roarctl")
    job = [sys.executable, __file__, "--storm-only", "--execs", str(execs)]
    run_env = {**env, "ROARD_SOCKET": roarctl_env["ROARD_SOCKET"]}
    tag = [roarctl, "tag", "--name", name, "--", *job]
    wall = float(
        subprocess.run(tag, env=run_env, capture_output=True, text=True, check=True).stdout
    )
    doc = roarctl_json(["show", name], roarctl_env)
    if not doc["complete"] or len(doc["processes"]) != execs + 1:
        raise SystemExit(
            f"tagged storm {name}: complete={doc['complete']}, lost {doc['lost_events']}, "
            f"{len(doc['processes'])} processes for {execs} execs"
        )
    return wall


def with_daemon(
    root: Path, config: str, measure: Callable[[dict[str, str]], float], repeat: int
) -> tuple[list[float], tuple[int, int]]:
    """`measure` (given the environment that points roarctl at the daemon) run `repeat`
    times while a private roard with `config` is up; the wall times, and how long roard's
    BPF programs, and its exec hook alone, ran meanwhile (ns)."""
    root.mkdir()
    daemon, roarctl_env = start_daemon(root, config)
    try:
        total, exec_hook = bpf_ns(daemon.pid)
        walls = [measure(roarctl_env) for _ in range(repeat)]
        total_after, exec_hook_after = bpf_ns(daemon.pid)
        return walls, (total_after - total, exec_hook_after - exec_hook)
    finally:
        stop_daemon(daemon, root)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--execs", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--extra-env", type=int, default=0, metavar="N")
    parser.add_argument("--tagged", action="store_true", help="add a phase with the storm tagged")
    parser.add_argument("--storm-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    no_other_roard()
    if args.storm_only:  # the tagged phase's job: one storm in this environment, timed
        print(storm(args.execs, dict(os.environ)))
        return
    env = {k: v for k, v in os.environ.items() if k != "ROARD_RUN"}
    env.update({f"BENCH_VAR_{i}": f"value-{i:06d}" for i in range(args.extra_env)})

    def measure(_roarctl_env: dict[str, str] | None = None) -> float:
        return storm(args.execs, env)

    storms = iter(range(args.repeat))

    def measure_tagged(roarctl_env: dict[str, str]) -> float:
        return tagged_storm(args.execs, env, roarctl_env, f"exec-storm-{next(storms)}")

    tagged: list[float] = []
    tagged_ns = (0, 0)
    with tempfile.TemporaryDirectory(prefix="roard-exec-") as tmp:
        root = Path(tmp)
        untraced = [measure() for _ in range((args.repeat + 1) // 2)]
        with bpf_run_time_stats():
            off, off_ns = with_daemon(root / "off", "env_runs = false\n", measure, args.repeat)
            on, on_ns = with_daemon(root / "on", "env_runs = true\n", measure, args.repeat)
            if args.tagged:
                tagged, tagged_ns = with_daemon(
                    root / "tagged", "env_runs = false\n", measure_tagged, args.repeat
                )
        untraced += [measure() for _ in range(args.repeat // 2)]
    med = statistics.median
    base = med(untraced)
    env_bytes = sum(len(f"{k}={v}".encode()) + 1 for k, v in env.items())
    print(
        f"exec-storm: {args.execs} x {TRUE} (posix_spawn + wait), {len(env)} environment "
        f"variables ({env_bytes} bytes), {'' if tagged else 'nothing tagged, '}"
        f"median of {args.repeat}"
    )
    print(
        f"{'mode':<30}{'median s':>10}{'min s':>8}{'µs/exec':>9}{'ratio':>7}"
        f"{'BPF µs/exec':>13}{'exec hook':>11}"
    )
    execs = args.execs * args.repeat

    def per_exec(ns: int) -> str:
        return f"{ns / execs / 1000:.2f}"

    phases = [
        ("roard up, env_runs = false", off, off_ns),
        ("roard up, env_runs = true", on, on_ns),
    ]
    if tagged:
        phases.append(("storm tagged, no loss", tagged, tagged_ns))
    m = med(untraced)
    print(
        f"{'untraced (no daemon)':<30}{m:>10.3f}{min(untraced):>8.3f}{m / args.execs * 1e6:>9.1f}"
    )
    for label, runs, (total_ns, exec_ns) in phases:
        m = med(runs)
        print(
            f"{label:<30}{m:>10.3f}{min(runs):>8.3f}{m / args.execs * 1e6:>9.1f}"
            f"{m / base:>7.3f}{per_exec(total_ns):>13}{per_exec(exec_ns):>11}"
        )
    print(
        f"ROARD_RUN scan, in the kernel: {(on_ns[0] - off_ns[0]) / execs / 1000:+.2f} µs per exec"
    )


if __name__ == "__main__":
    main()

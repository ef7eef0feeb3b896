"""Kernel time per hook: what roard's BPF programs cost per event on issue 7's workloads,
the job untagged (the in-kernel filter alone) and tagged.

    .venv/bin/python bench/hook_costs.py [--workloads syscalls,small-files] [--scale 1]
        [--dir /dev/shm] [--min-runs 1000]

Turns on the kernel's BPF statistics (sysctl kernel.bpf_stats_enabled) while it runs and
restores the old value after. A private daemon; each workload runs once to warm up, then
once untagged and once under `roarctl tag`, and each of the daemon's programs that ran at
least --min-runs times in one of them is listed. The kernel names programs by their first
15 characters (tp__sys_exit_re is read's and readv's exit). The figures include the
statistics' own two clock reads per run, and leave out the tracepoint's dispatch around
the program. Needs root.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

from common import BIN, daemon, no_other_roard
from peers import ALL_WORKLOADS, Bench, Sizes, prepare, run_command

from roard.kernel import bpfsys

STATS_SYSCTL = Path("/proc/sys/kernel/bpf_stats_enabled")
Costs = dict[str, tuple[int, int]]  # program name -> (nanoseconds, runs)


def by_name(before: dict[tuple[int, str], tuple[int, int]], ids: set[int]) -> Costs:
    """Time and runs of the programs `ids` since `before`, summed by name."""
    costs: defaultdict[str, list[int]] = defaultdict(lambda: [0, 0])
    for (prog_id, name), (ns, runs) in bpfsys.program_run_stats().items():
        if prog_id in ids:
            was = before.get((prog_id, name), (0, 0))
            costs[name][0] += ns - was[0]
            costs[name][1] += runs - was[1]
    return {name: (ns, runs) for name, (ns, runs) in costs.items()}


def measure(argv: list[str], bench: Bench, env: dict[str, str], ids: set[int]) -> list[Costs]:
    """Costs of one untagged and one tagged run of `argv` (after a warm-up run)."""
    run_command(argv, bench.fresh("warm"), env)
    results = []
    for mode, cmd in (("untagged", argv), ("tagged", [str(BIN / "roarctl"), "tag", "--", *argv])):
        before = bpfsys.program_run_stats()
        run_command(cmd, bench.fresh(mode), env)
        results.append(by_name(before, ids))
    return results


def table(name: str, untagged: Costs, tagged: Costs, min_runs: int) -> list[str]:
    """A markdown table of one workload's costs per hook."""
    rows = [
        f"**{name}**",
        "",
        "| program | runs untagged | ns/run | runs tagged | ns/run |",
        "| --- | --- | --- | --- | --- |",
    ]
    for prog in sorted(set(untagged) | set(tagged)):
        cells = []
        for costs in (untagged, tagged):
            ns, runs = costs.get(prog, (0, 0))
            cells += [f"{runs:,}", f"{ns / runs:.0f}" if runs else "-"]
        if max(untagged.get(prog, (0, 0))[1], tagged.get(prog, (0, 0))[1]) >= min_runs:
            rows.append(f"| {prog} | " + " | ".join(cells) + " |")
    return [*rows, ""]


def main() -> int:
    """Entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", default="syscalls,small-files")
    parser.add_argument("--scale", type=float, default=1.0, help="workload size times this")
    parser.add_argument("--dir", type=Path, default=Path("/var/tmp"), help="where to work")
    parser.add_argument("--min-runs", type=int, default=1000, help="list programs run this often")
    args = parser.parse_args()
    no_other_roard()
    names = args.workloads.split(",")
    unknown = set(names) - set(ALL_WORKLOADS)
    if unknown:
        parser.error(f"unknown workloads {sorted(unknown)}; known: {', '.join(ALL_WORKLOADS)}")
    was = STATS_SYSCTL.read_text()
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="roard-hooks-") as tmp:
        bench = Bench(root=Path(tmp), env=dict(os.environ), roar=Path(), roar_env={})
        workloads = prepare(bench, Sizes().scaled(args.scale), names)
        before_daemon = {prog_id for prog_id, _ in bpfsys.program_run_stats()}
        STATS_SYSCTL.write_text("1\n")
        try:
            with daemon(bench.root / "daemon") as (_proc, env):
                ids = {pid for pid, _ in bpfsys.program_run_stats()} - before_daemon
                for name in names:
                    workload = workloads[name]
                    untagged, tagged = measure(workload.argv, bench, env, ids)
                    print("\n".join(table(workload.summary, untagged, tagged, args.min_runs)))
        finally:
            STATS_SYSCTL.write_text(was)
    return 0


if __name__ == "__main__":
    sys.exit(main())

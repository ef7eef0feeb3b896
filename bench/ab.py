"""Two checkouts of roard on one workload, their daemons alternated: is a change faster?

    git worktree add /tmp/roard-base HEAD~3
    .venv/bin/python bench/ab.py --base /tmp/roard-base --workload dataloader --rounds 4
    .venv/bin/python bench/ab.py --base /tmp/roard-base --command 'python3 /tmp/job.py'

Each round starts a private daemon from the base checkout, then one from this checkout
(PYTHONPATH picks the tree; both use this venv), and times `roarctl tag -- JOB` under each,
roarctl coming from the same tree as its daemon. The first run under each daemon is
dropped (its caches are cold). Prints the medians and each round's: on a shared VM the
spread between rounds is often larger than the change being measured.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from common import BIN, daemon, no_other_roard
from peers import ALL_WORKLOADS, Bench, Sizes, prepare, run_command

HERE = Path(__file__).resolve().parent.parent


def roarctl(tree: Path) -> list[str]:
    """The command that runs `tree`'s roarctl: its light entry point where it has one."""
    module = "roarctl" if (tree / "roard/cli/roarctl.py").exists() else "roarctl_main"
    entry = f"import sys; from roard.cli.{module} import main; sys.exit(main())"
    return [str(BIN / "python"), "-c", entry]


def rounds(
    bench: Bench, argv: list[str], trees: dict[str, Path], count: int, runs: int
) -> dict[str, list[list[float]]]:
    """Wall seconds of each tagged run, by tree, a list per round."""
    times: dict[str, list[list[float]]] = {label: [] for label in trees}
    for number in range(count):
        for label, tree in trees.items():
            os.environ["PYTHONPATH"] = str(tree)
            with daemon(bench.root / f"daemon-{label}-{number}") as (_proc, env):
                time.sleep(1)  # its programs attached and its first records sent
                tag = [*roarctl(tree), "tag", "--", *argv]
                spent = [run_command(tag, bench.fresh(label), env)[0] for _ in range(runs + 1)]
            times[label].append(spent[1:])
            print(f"round {number + 1} {label}: " + " ".join(f"{t:.3f}" for t in spent[1:]))
    return times


def main() -> int:
    """Entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", type=Path, required=True, help="the other checkout")
    parser.add_argument("--workload", choices=ALL_WORKLOADS, default="dataloader")
    parser.add_argument(
        "--command", help="time this shell command (sh -c, in a fresh directory) instead"
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--runs", type=int, default=5, help="timed runs per daemon and round")
    parser.add_argument("--scale", type=float, default=1.0, help="workload size times this")
    parser.add_argument("--dir", type=Path, default=Path("/var/tmp"), help="where to work")
    args = parser.parse_args()
    trees = {"base": args.base.resolve(), "this": HERE}
    no_other_roard()
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="roard-ab-") as tmp:
        root = Path(tmp)
        bench = Bench(root=root, env=dict(os.environ), roar=Path(), roar_env={})
        if args.command:
            argv = ["sh", "-c", args.command]
        else:
            workload = prepare(bench, Sizes().scaled(args.scale), [args.workload])[args.workload]
            print(f"{workload.name}: {workload.summary}")
            argv = workload.argv
        times = rounds(bench, argv, trees, args.rounds, args.runs)
    for label, per_round in times.items():
        every = [t for spent in per_round for t in spent]
        by_round = " ".join(f"{statistics.median(spent):.3f}" for spent in per_round)
        print(
            f"{label}: median {statistics.median(every):.3f} s of {len(every)}; rounds {by_round}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""A Ray job recorded by roard as ONE run: the driver, and every worker process Ray starts
for this job on any node, exec with ROARD_RUN=ray@RUN_ID in their environment, so each
becomes a part of run RUN_ID on its node (and everything it starts belongs to that part).

    python3 ray-job.py /shared/data/corpus.txt /shared/out      # RUN_ID: ray-<time>-<random>
    ROARD_RUN_ID=ray-exp42 python3 ray-job.py SRC DSTDIR         # RUN_ID of your choosing
                                                                 # (a variable of this script's)
    roarctl show ray-exp42 --json                                # afterwards, on any host

With `ray job submit`, put the variable in the job's runtime environment instead; the
entrypoint then starts with it, and this script keeps it:

    ray job submit --runtime-env-json '{"env_vars": {"ROARD_RUN": "ray@ray-exp42"}}' \
        -- python3 ray-job.py /shared/data/corpus.txt /shared/out

Edit: the work (shard() and main() below), the ray.init() arguments, how RUN_ID is made.
Needs roard on every node of the Ray cluster (env_runs = true, the default), all
streaming to one collector, each with its own host_id. Workers that Ray started before
the job and reuses do not carry the variable: see "Ray" in README.md next to this file;
every task below checks for it and the script says when one did not.
"""

from __future__ import annotations

import os
import socket
import sys
import time
import uuid

import ray


def _roard_run() -> str:
    """ROARD_RUN=NAME@RUN_ID for this job: the one this process was started with, if any,
    else ray@$ROARD_RUN_ID, else ray@ray-<time>-<random> (unique per job: a RUN_ID used
    again adds parts to the old run)."""
    current = os.environ.get("ROARD_RUN", "")
    if "@" in current:
        return current
    if current:
        print(
            f"ray-job: ROARD_RUN={current} (no @RUN_ID): this driver is a run of its own; "
            "the workers join a new shared run",
            file=sys.stderr,
        )
    run_id = os.environ.get("ROARD_RUN_ID") or (
        f"ray-{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:6]}"
    )
    return f"ray@{run_id}"


ROARD_RUN = _roard_run()
RUN_ID = ROARD_RUN.split("@", 1)[1]


def _reexec_driver_in_run() -> None:
    """ROARD_RUN acts when a program execs: set in os.environ now, it would reach only this
    driver's children. Re-exec the driver with it, so the driver is a part of the run too.
    (os.environ at start is the environment the process was exec'd with, so after the
    re-exec this does nothing. A driver already in a run, under `roarctl tag` say,
    ignores the variable and stays where it is.)"""
    if os.environ.get("ROARD_RUN") != ROARD_RUN:
        os.execve(
            sys.executable, [sys.executable, *sys.argv], {**os.environ, "ROARD_RUN": ROARD_RUN}
        )


def _started_in_run() -> bool:
    """Whether this process was exec'd with ROARD_RUN: /proc/self/environ holds the
    environment as of exec, not what Ray or anyone else set in os.environ afterwards."""
    with open("/proc/self/environ", "rb") as f:
        return f"ROARD_RUN={ROARD_RUN}".encode() in f.read().split(b"\0")


# SPREAD: the tasks land on as many nodes as there are, for the example's sake.
@ray.remote(num_cpus=1, scheduling_strategy="SPREAD")
def shard(index: int, count: int, src: str, dst: str) -> dict:
    with open(src, "rb") as f:  # an input of this node's part
        lines = f.read().splitlines(keepends=True)
    out = os.path.join(dst, f"shard-{index:03d}.txt")
    with open(out, "wb") as f:  # an output of this node's part
        f.writelines(lines[index::count])
    return {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "out": out,
        "in_run": _started_in_run(),
    }


def main(src: str, dst: str, count: int = 8) -> int:
    # The job's runtime_env reaches every worker process Ray starts for this job, on every
    # node, in its environment at exec. Ray leases a worker to a task only if the
    # worker's runtime_env matches the task's, so the job's tasks do not land on
    # pre-started workers that lack the variable.
    ray.init(runtime_env={"env_vars": {"ROARD_RUN": ROARD_RUN}})
    # Alternative: name the run after Ray's job id, known only once connected, and give
    # the variable per task or actor: f.options(runtime_env={"env_vars": {"ROARD_RUN":
    # f"ray@ray-{cluster}-{job_id}"}}) with job_id = ray.get_runtime_context().get_job_id().
    # Ray's job ids (01000000, 02000000, ...) start over when the cluster does: prefix
    # them with something unique to the cluster, and the driver itself is then not a part
    # unless started with the variable.
    print(
        f"ray-job: Ray job {ray.get_runtime_context().get_job_id()}, roard run {RUN_ID}",
        file=sys.stderr,
    )

    os.makedirs(dst, exist_ok=True)
    results = ray.get([shard.remote(i, count, src, dst) for i in range(count)])
    for r in results:
        print(
            f"{r['host']:>20} pid {r['pid']:>7}  {r['out']}"
            + ("" if r["in_run"] else "   NOT in the run (worker not started with ROARD_RUN)")
        )
    missing = sum(not r["in_run"] for r in results)
    if missing:
        print(
            f"ray-job: {missing} task(s) ran in workers without ROARD_RUN; their reads and "
            'writes are not in the run (see README.md, "Ray")',
            file=sys.stderr,
        )
    print(f"ray-job: roarctl show {RUN_ID} --json", file=sys.stderr)
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: ray-job.py SRC DSTDIR")
    _reexec_driver_in_run()
    sys.exit(main(sys.argv[1], sys.argv[2]))

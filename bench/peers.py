#!/usr/bin/env python3
"""roard against its peers: the same workloads, untraced, under roard and under the other
tools, in one invocation; and what each tool recorded as the runs' inputs and outputs.

Workloads (sizes scale with --scale; the defaults are issue 7's):
  small-files  write then read 2,000 files of 1 KiB (Python)
  bulk         read a 2 GiB file in 1 MiB chunks, write 512 MiB
  dataloader   8 worker processes read 2,000 shards of 1 MiB; checkpoint via temp + rename
  processes    a shell script that runs 1,000 short commands
  syscalls     1M one-byte reads of one file
  ml           scikit-learn on its bundled digits data: prepare -> train -> eval, three
               processes passing files
Modes: untraced; roard with the job untagged; the job made a run by ROARD_RUN in its
environment (the job's own wall time while traced; the lineage is finalized after it, not
timed); `roarctl tag` (until it returns, i.e. the lineage is recorded); `strace -f -e
trace=file -o LOG`; roar-cli's `roar run` with each of its tracers (ebpf, preload, ptrace;
no fallback). The untraced runs and the peers run with no roard up (half the rounds before
the daemon starts, half after it stops); the roard modes run with a private daemon up.
Medians over --repeat; ratios to untraced.

Each traced run is checked against what the workload really did: its scripts and data are
the inputs, the files it left behind are the outputs (paths under the bench's directory;
a file a run wrote and then read counts as an output, as design §4 says). A roard run
that misses an output, or is incomplete, is a failure, not a fast time.

roar-cli must live in its own venv (its .pth hooks every Python of the venv it is in):
`--setup-peers` creates bench/.peers-venv and installs roar-cli there. Workloads run in a
directory outside /tmp, because roar ignores /tmp paths by default. Needs root.

    .venv/bin/python bench/peers.py --setup-peers
    .venv/bin/python bench/peers.py [--scale 1] [--repeat 5] [--workloads a,b] [--modes x,y]
        [--plot peers.png] [--markdown peers.md] [--components]

`--components` adds component figures: hashing throughput (roard's hasher, the blake3
package with all threads, b3sum) on cold and warm files, the hash cache on a second run
over unchanged data, and the event path's loss-free open/close rate. The collector's
ingest and lineage latency are bench/collector.py's.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import platform
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import BIN, daemon, no_other_roard, roarctl_json
from small_files import WORKLOAD as SMALL_FILES

HERE = Path(__file__).resolve().parent
PEERS_VENV = HERE / ".peers-venv"
ROAR_CLI = "roar-cli==0.4.7"
STRACE = "/usr/bin/strace"
MIB = 1 << 20
CHECKPOINT_BYTES = 16 * MIB

BULK = """
import os, sys
src, write_mib = sys.argv[1], int(sys.argv[2])
total = 0
with open(src, "rb", buffering=0) as f:
    while block := f.read(1 << 20):
        total += len(block)
assert total == os.path.getsize(src)
block = os.urandom(1 << 20)
with open("out.bin", "wb") as f:
    for _ in range(write_mib):
        f.write(block)
"""

DATALOADER = """
import os, sys
from multiprocessing import Pool

def load(path):
    with open(path, "rb") as f:
        return len(f.read())

if __name__ == "__main__":
    shards, workers, ckpt = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    paths = sorted(os.path.join(shards, n) for n in os.listdir(shards))
    with Pool(workers) as pool:
        total = sum(pool.imap_unordered(load, paths, chunksize=4))
    assert total == len(paths) << 20
    with open("ckpt.pt.tmp", "wb") as f:
        f.write(os.urandom(ckpt))
    os.replace("ckpt.pt.tmp", "ckpt.pt")
"""

PROCESSES = """
n=$1; src=$2; i=0
while [ "$i" -lt "$n" ]; do
    cat "$src" > "out$((i % 10)).txt"
    i=$((i + 1))
done
"""

SYSCALLS = """
import os, sys
path, n = sys.argv[1], int(sys.argv[2])
fd = os.open(path, os.O_RDONLY)
read = os.read
for _ in range(n):
    read(fd, 1)
os.close(fd)
with open("count.txt", "w") as f:
    f.write(str(n))
"""

ML_PIPELINE = """
set -e
"$1" "$2/ml_prepare.py"
"$1" "$2/ml_train.py"
"$1" "$2/ml_eval.py"
"""

ML_PREPARE = """
import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
x, y = load_digits(return_X_y=True)
x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.25, random_state=0)
np.savez("split.npz", x_train=x_train, x_test=x_test, y_train=y_train, y_test=y_test)
"""

ML_TRAIN = """
import pickle
import numpy as np
from sklearn.ensemble import RandomForestClassifier
split = np.load("split.npz")
model = RandomForestClassifier(n_estimators=200, random_state=0, n_jobs=1)
model.fit(split["x_train"], split["y_train"])
with open("model.pkl", "wb") as f:
    pickle.dump(model, f)
"""

ML_EVAL = """
import json, pickle
import numpy as np
split = np.load("split.npz")
with open("model.pkl", "rb") as f:
    model = pickle.load(f)
accuracy = float((model.predict(split["x_test"]) == split["y_test"]).mean())
assert accuracy > 0.9, accuracy
with open("metrics.json", "w") as f:
    json.dump({"accuracy": accuracy}, f)
"""

# The component bench's event storm: open and close a file at a paced rate, in 1 ms slices.
EVENT_STORM = """
import os, sys, time
path, rate, seconds = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
per_slice = max(1, int(rate / 1000))
start = time.perf_counter()
end = start + seconds
n = 0
while (now := time.perf_counter()) < end:
    for _ in range(per_slice):
        os.close(os.open(path, os.O_RDONLY))
    n += per_slice
    ahead = start + n / rate - time.perf_counter()
    if ahead > 0:
        time.sleep(ahead)
print(n / (time.perf_counter() - start))
"""

SCRIPTS = {
    "small_files.py": SMALL_FILES,
    "bulk.py": BULK,
    "dataloader.py": DATALOADER,
    "processes.sh": PROCESSES,
    "syscalls.py": SYSCALLS,
    "ml_pipeline.sh": ML_PIPELINE,
    "ml_prepare.py": ML_PREPARE,
    "ml_train.py": ML_TRAIN,
    "ml_eval.py": ML_EVAL,
    "event_storm.py": EVENT_STORM,
}

ALL_WORKLOADS = ("small-files", "bulk", "dataloader", "processes", "syscalls", "ml")
DAEMON_MODES = ("roard-untagged", "roard-env", "roard-tag")
ROAR_TRACERS = ("ebpf", "preload", "ptrace")
ALL_MODES = ("untraced", *DAEMON_MODES, "strace", *(f"roar-{t}" for t in ROAR_TRACERS))
MODE_LABELS = {
    "untraced": "untraced",
    "roard-untagged": "roard up, untagged",
    "roard-env": "ROARD_RUN (the job alone)",
    "roard-tag": "roarctl tag",
    "strace": "strace -f -e trace=file",
    **{f"roar-{t}": f"roar run --tracer {t}" for t in ROAR_TRACERS},
}


@dataclass(frozen=True)
class Sizes:
    """Workload sizes (issue 7's by default)."""

    files: int = 2000
    file_bytes: int = 1024
    bulk_read_mib: int = 2048
    bulk_write_mib: int = 512
    shards: int = 2000
    workers: int = 8
    commands: int = 1000
    reads: int = 1_000_000

    def scaled(self, factor: float) -> Sizes:
        """Every count and size times `factor` (at least 1; workers and file size kept)."""
        return replace(
            self,
            **{
                name: max(1, round(getattr(self, name) * factor))
                for name in (
                    "files",
                    "bulk_read_mib",
                    "bulk_write_mib",
                    "shards",
                    "commands",
                    "reads",
                )
            },
        )


@dataclass(frozen=True)
class Workload:
    """A job and what it really reads (absolute paths) and leaves behind (names in its
    working directory)."""

    name: str
    summary: str
    argv: list[str]
    inputs: frozenset[str]
    outputs: frozenset[str]


@dataclass(frozen=True)
class Recorded:
    """A tool's idea of a run's inputs and outputs (absolute paths under the bench dir)."""

    inputs: frozenset[str]
    outputs: frozenset[str]


@dataclass
class Sample:
    """One run: its wall time, or why it failed; and what the tool recorded."""

    seconds: float | None = None
    error: str | None = None
    recorded: Recorded | None = None


@dataclass
class Bench:
    """Where the bench works, and the environments its modes run in."""

    root: Path
    env: dict[str, str]
    roar: Path
    roar_env: dict[str, str]
    daemon_env: dict[str, str] | None = None
    daemon_log: Path | None = None  # where to keep the daemon's log
    runs: Iterator[int] = field(default_factory=lambda: iter(range(10**9)))

    @property
    def scripts(self) -> Path:
        return self.root / "scripts"

    @property
    def data(self) -> Path:
        return self.root / "data"

    def fresh(self, label: str) -> Path:
        """A new, empty working directory for one run."""
        work = self.root / "runs" / f"{label}-{next(self.runs)}"
        work.mkdir(parents=True)
        return work


def write_file(path: Path, size: int, block: bytes) -> None:
    """A file of `size` bytes made of `block` repeated (incompressible, cheap to make)."""
    with path.open("wb") as f:
        for offset in range(0, size, len(block)):
            f.write(block[: size - offset])


def prepare(bench: Bench, sizes: Sizes, names: list[str]) -> dict[str, Workload]:
    """Write the scripts and the data of the chosen workloads; return them."""
    bench.scripts.mkdir(parents=True)
    bench.data.mkdir()
    for name, text in SCRIPTS.items():
        (bench.scripts / name).write_text(text)
    script = {name: str(bench.scripts / name) for name in SCRIPTS}
    py, sh = sys.executable, "/bin/sh"
    block = os.urandom(MIB)
    made: dict[str, Workload] = {}
    for name in names:
        if name == "small-files":
            made[name] = Workload(
                name,
                f"write then read {sizes.files} files x {sizes.file_bytes} B",
                [py, script["small_files.py"], str(sizes.files), str(sizes.file_bytes)],
                frozenset({script["small_files.py"]}),
                frozenset(f"f{i:05d}.dat" for i in range(sizes.files)),
            )
        elif name == "bulk":
            big = bench.data / "big.bin"
            write_file(big, sizes.bulk_read_mib * MIB, block)
            made[name] = Workload(
                name,
                f"read {sizes.bulk_read_mib} MiB in 1 MiB chunks, write {sizes.bulk_write_mib} MiB",
                [py, script["bulk.py"], str(big), str(sizes.bulk_write_mib)],
                frozenset({script["bulk.py"], str(big)}),
                frozenset({"out.bin"}),
            )
        elif name == "dataloader":
            shards = bench.data / "shards"
            shards.mkdir()
            for i in range(sizes.shards):
                # Each shard differs, so content-addressed tools cannot fold them together.
                write_file(shards / f"shard{i:05d}.bin", MIB, i.to_bytes(8, "little") + block)
            made[name] = Workload(
                name,
                f"{sizes.workers} workers read {sizes.shards} shards x 1 MiB, "
                f"checkpoint ({CHECKPOINT_BYTES // MIB} MiB) via temp + rename",
                [
                    py,
                    script["dataloader.py"],
                    str(shards),
                    str(sizes.workers),
                    str(CHECKPOINT_BYTES),
                ],
                frozenset({script["dataloader.py"], *(str(p) for p in shards.iterdir())}),
                frozenset({"ckpt.pt"}),
            )
        elif name == "processes":
            src = bench.data / "line.txt"
            src.write_text("one short line\n")
            made[name] = Workload(
                name,
                f"sh script running {sizes.commands} x cat",
                [sh, script["processes.sh"], str(sizes.commands), str(src)],
                frozenset({script["processes.sh"], str(src)}),
                frozenset(f"out{i}.txt" for i in range(min(10, sizes.commands))),
            )
        elif name == "syscalls":
            src = bench.data / "bytes.bin"
            write_file(src, sizes.reads, block)
            made[name] = Workload(
                name,
                f"{sizes.reads:,} one-byte reads of one file",
                [py, script["syscalls.py"], str(src), str(sizes.reads)],
                frozenset({script["syscalls.py"], str(src)}),
                frozenset({"count.txt"}),
            )
        elif name == "ml":
            steps = ("ml_pipeline.sh", "ml_prepare.py", "ml_train.py", "ml_eval.py")
            made[name] = Workload(
                name,
                "scikit-learn digits: prepare -> train (random forest) -> eval, 3 processes",
                [sh, script["ml_pipeline.sh"], py, str(bench.scripts)],
                frozenset(script[s] for s in steps),
                frozenset({"split.npz", "model.pkl", "metrics.json"}),
            )
        else:
            raise SystemExit(f"unknown workload {name!r}; known: {', '.join(ALL_WORKLOADS)}")
    return made


def run_command(cmd: list[str], work: Path, env: dict[str, str]) -> tuple[float, str]:
    """Wall seconds of `cmd` and its stderr; raises RuntimeError (with the stderr's tail)
    when it fails."""
    start = time.perf_counter()
    done = subprocess.run(
        cmd, cwd=work, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False
    )
    seconds = time.perf_counter() - start
    stderr = done.stderr.decode(errors="replace")
    if done.returncode != 0:
        tail = " | ".join(stderr.strip().splitlines()[-3:])
        raise RuntimeError(f"exit {done.returncode}: {tail[-300:]}")
    return seconds, stderr


def normalized(paths: list[str], bench: Bench, work: Path) -> frozenset[str]:
    """The paths in the bench's directory, without roar's own project files; those in the
    run's directory by their name there (each run has its own directory)."""
    root, here, own = f"{bench.root}/", f"{work}/", f"{work}/.roar/"
    return frozenset(
        p.removeprefix(here) for p in paths if p.startswith(root) and not p.startswith(own)
    )


def roard_tag(wl: Workload, work: Path, bench: Bench) -> Sample:
    """`roarctl tag` until it returns; then show's record, which must be complete and hold
    every output with a hash."""
    assert bench.daemon_env is not None
    name = f"peers-{work.name}"
    tag = [str(BIN / "roarctl"), "tag", "--name", name, "--", *wl.argv]
    seconds, _ = run_command(tag, work, bench.daemon_env)
    return checked(wl, work, bench, seconds, roarctl_json(["show", name], bench.daemon_env))


def roard_env(wl: Workload, work: Path, bench: Bench) -> Sample:
    """The job alone, made a run by ROARD_RUN in its environment (no roarctl): its wall
    time is what the job itself pays while traced. The run is finalized after the job
    exits; that wait is not timed, and the record is checked as roard_tag's."""
    assert bench.daemon_env is not None
    name = f"peers-{work.name}"
    seconds, _ = run_command(wl.argv, work, {**bench.daemon_env, "ROARD_RUN": name})
    deadline = time.monotonic() + 120
    while True:
        shown = subprocess.run(
            [str(BIN / "roarctl"), "show", name, "--json"],
            env=bench.daemon_env,
            capture_output=True,
            check=False,
        )
        if shown.returncode == 0 and (doc := json.loads(shown.stdout))["status"] == "finished":
            return checked(wl, work, bench, seconds, doc)
        if time.monotonic() > deadline:
            raise RuntimeError(f"run {name} was not finished 120 s after its job")
        time.sleep(0.05)


def checked(wl: Workload, work: Path, bench: Bench, seconds: float, doc: Any) -> Sample:
    """A roard run's sample: `doc` (show's) must be complete and hold every output with a
    hash."""
    recorded = Recorded(
        normalized([i["path"] for i in doc["inputs"]], bench, work),
        normalized([o["path"] for o in doc["outputs"]], bench, work),
    )
    expected = {str(work / o) for o in wl.outputs}
    unhashed = [o["path"] for o in doc["outputs"] if o["path"] in expected and not o["hash"]]
    error = None
    if not doc["complete"]:
        error = f"incomplete: {doc['lost_events']} events lost"
    elif missing := wl.outputs - recorded.outputs:
        error = f"recorded {len(wl.outputs) - len(missing)} of {len(wl.outputs)} outputs"
    elif unhashed:
        error = f"{len(unhashed)} outputs without a hash"
    return Sample(seconds, error, recorded)


def strace_run(wl: Workload, work: Path, bench: Bench) -> Sample:
    """strace's log of file syscalls; it must name every output the job left. strace
    records syscalls, not lineage: it gives no input/output sets (nothing to compare)."""
    log = bench.root / "logs" / f"{work.name}.strace"
    log.parent.mkdir(exist_ok=True)
    seconds, _ = run_command(
        [STRACE, "-f", "-e", "trace=file", "-o", str(log), *wl.argv], work, bench.env
    )
    text = log.read_text(errors="replace")
    log.unlink()
    missing = [o for o in wl.outputs if f'"{o}"' not in text and f'/{o}"' not in text]
    return Sample(seconds, f"log misses {len(missing)} outputs" if missing else None)


def roar_run(tracer: str) -> Callable[[Workload, Path, Bench], Sample]:
    """roar-cli's `roar run` with one tracer, in a fresh roar project; then its record."""

    def run(wl: Workload, work: Path, bench: Bench) -> Sample:
        shutil.copytree(bench.root / "roar-template" / ".roar", work / ".roar")
        cmd = [str(bench.roar), "run", "--tracer", tracer, "--no-tracer-fallback", *wl.argv]
        seconds, _ = run_command(cmd, work, bench.roar_env)
        with contextlib.closing(
            sqlite3.connect(f"file:{work}/.roar/roar.db?mode=ro", uri=True)
        ) as db:
            jobs = db.execute("SELECT id, exit_code, script FROM jobs ORDER BY id").fetchall()
            if len(jobs) != 1:
                return Sample(seconds, f"{len(jobs)} jobs recorded, expected 1")
            job, exit_code, script = jobs[0]
            inputs, outputs = (
                [p for (p,) in db.execute(f"SELECT path FROM {table} WHERE job_id = ?", (job,))]
                for table in ("job_inputs", "job_outputs")
            )
        # roar keeps the command's script (`sh x.sh`) in jobs.script, not among the inputs,
        # and by its base name: count it as an input, at the path the command gave.
        if script:
            given = (a for a in wl.argv if a == script or a.endswith(f"/{script}"))
            inputs.append(next(given, str(work / script)))
        recorded = Recorded(normalized(inputs, bench, work), normalized(outputs, bench, work))
        error = None if exit_code == 0 else f"recorded exit code {exit_code}"
        return Sample(seconds, error, recorded)

    return run


def untraced(wl: Workload, work: Path, bench: Bench) -> Sample:
    """The job alone."""
    return Sample(run_command(wl.argv, work, bench.env)[0])


def roard_untagged(wl: Workload, work: Path, bench: Bench) -> Sample:
    """The job alone while roard is up (the in-kernel filter's cost)."""
    assert bench.daemon_env is not None
    return Sample(run_command(wl.argv, work, bench.daemon_env)[0])


RUNNERS: dict[str, Callable[[Workload, Path, Bench], Sample]] = {
    "untraced": untraced,
    "roard-untagged": roard_untagged,
    "roard-env": roard_env,
    "roard-tag": roard_tag,
    "strace": strace_run,
    **{f"roar-{t}": roar_run(t) for t in ROAR_TRACERS},
}


def sample(wl: Workload, mode: str, bench: Bench) -> Sample:
    """One run of `wl` in `mode`, in a fresh directory removed afterwards (the bulk
    workload's output is large); a failure is a Sample with its reason, never an abort."""
    work = bench.fresh(f"{wl.name}-{mode}")
    try:
        got = RUNNERS[mode](wl, work, bench)
    except (RuntimeError, OSError, sqlite3.Error, subprocess.CalledProcessError) as e:
        got = Sample(error=str(e))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    status = f"{got.seconds:.3f}s" if got.seconds is not None else "-"
    print(f"  {wl.name:<12} {mode:<15} {status:>9} {got.error or ''}", file=sys.stderr, flush=True)
    return got


Results = dict[tuple[str, str], list[Sample]]


def measure(bench: Bench, workloads: dict[str, Workload], modes: list[str], repeat: int) -> Results:
    """Every (workload, mode) `repeat` times: the modes without roard in rounds before the
    daemon starts and after it stops, the roard modes interleaved while it is up."""
    results: Results = {(w, m): [] for w in workloads for m in modes}
    plain = [m for m in modes if m not in DAEMON_MODES]
    with_roard = [m for m in modes if m in DAEMON_MODES]

    def rounds(count: int, chosen: list[str]) -> None:
        for _ in range(count):
            for wl in workloads.values():
                for mode in chosen:
                    results[wl.name, mode].append(sample(wl, mode, bench))

    rounds((repeat + 1) // 2, plain)
    if with_roard:
        with daemon(bench.root / "roard") as (_, env):
            bench.daemon_env = env
            rounds(repeat, with_roard)
        bench.daemon_env = None
        if bench.daemon_log is not None:
            shutil.copyfile(bench.root / "roard" / "roard.log", bench.daemon_log)
    rounds(repeat // 2, plain)
    return results


def median(samples: list[Sample]) -> float | None:
    """The median wall time, or None if any run failed."""
    if not samples or any(s.error or s.seconds is None for s in samples):
        return None
    return statistics.median(s.seconds for s in samples if s.seconds is not None)


def failure(samples: list[Sample]) -> str:
    """Why the runs failed (the first reason)."""
    return next((s.error for s in samples if s.error), "no runs")


def timing_table(workloads: dict[str, Workload], modes: list[str], results: Results) -> list[str]:
    """Markdown: median seconds and ratio to untraced, per workload and mode."""
    lines = [
        "| workload | " + " | ".join(MODE_LABELS[m] for m in modes) + " |",
        "| --- |" + " --- |" * len(modes),
    ]
    notes: list[str] = []
    for wl in workloads.values():
        base = median(results.get((wl.name, "untraced"), []))
        cells = []
        for mode in modes:
            samples = results[wl.name, mode]
            med = median(samples)
            if med is None:
                notes.append(f"- {wl.name}, {MODE_LABELS[mode]}: failed: {failure(samples)}")
                cells.append("failed")
            elif base and mode != "untraced":
                cells.append(f"{med:.3f} s ({med / base:.2f}x)")
            else:
                cells.append(f"{med:.3f} s")
        lines.append(f"| {wl.name} | " + " | ".join(cells) + " |")
    return lines + (["", *notes] if notes else [])


def first_record(samples: list[Sample]) -> Recorded | None:
    """What the tool recorded in its first successful run."""
    return next((s.recorded for s in samples if s.recorded and not s.error), None)


def describe(paths: frozenset[str], root: Path) -> str:
    """A few of `paths`, shortened."""
    shown = sorted(paths)[:3]
    more = f" and {len(paths) - 3} more" if len(paths) > 3 else ""
    return ", ".join(p.replace(f"{root}/", "") for p in shown) + more


def verdict(what: str, paths: frozenset[str], roard: Recorded | None) -> str:
    """Whether roard got right what a tool got wrong (the workload is the judge)."""
    if roard is None:
        return ""
    if what.startswith("missed"):
        held = roard.inputs if "inputs" in what else roard.outputs
        right = paths <= held
    else:
        held = roard.inputs - roard.outputs if "inputs" in what else roard.outputs
        right = not (paths & held)
    return "; roard right" if right else "; roard wrong too"


def record_report(
    bench: Bench, workloads: dict[str, Workload], modes: list[str], results: Results
) -> list[str]:
    """Markdown: each lineage tool's inputs and outputs against the truth, and where the
    tools disagree, who was right."""
    tools = [m for m in modes if m in ("roard-env", "roard-tag") or m.startswith("roar-")]
    lines = [
        "| workload | tool | inputs found / expected (extra) | outputs found / expected (extra) |",
        "| --- | --- | --- | --- |",
    ]
    disagreements: list[str] = []
    for wl in workloads.values():
        roard = first_record(results.get((wl.name, "roard-tag"), []))
        for mode in tools:
            rec = first_record(results[wl.name, mode])
            if rec is None:
                lines.append(f"| {wl.name} | {MODE_LABELS[mode]} | no record | no record |")
                continue
            outputs = rec.outputs
            # A file the run wrote and read is an output (design §4), not an input.
            inputs = rec.inputs - rec.outputs
            found_in = len(inputs & wl.inputs)
            found_out = len(outputs & wl.outputs)
            extra_in, extra_out = inputs - wl.inputs, outputs - wl.outputs
            lines.append(
                f"| {wl.name} | {MODE_LABELS[mode]} | {found_in} / {len(wl.inputs)} "
                f"({len(extra_in)}) | {found_out} / {len(wl.outputs)} ({len(extra_out)}) |"
            )
            label = MODE_LABELS[mode]
            for what, paths in (
                ("missed inputs", wl.inputs - inputs),
                ("missed outputs", wl.outputs - outputs),
                ("reported inputs the job did not read", extra_in),
                ("reported outputs the job did not leave", extra_out),
            ):
                if paths:
                    disagreements.append(
                        f"- {wl.name}, {label}: {what} ({len(paths)}): "
                        f"{describe(frozenset(paths), bench.root)}{verdict(what, paths, roard)}"
                    )
    return [
        *lines,
        "",
        "Against the truth (what the workload read and left):",
        "",
        *(disagreements or ["- none"]),
    ]


def plot(path: Path, workloads: dict[str, Workload], modes: list[str], results: Results) -> None:
    """Grouped bars: overhead (ratio to untraced) per workload and mode; failed = marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [m for m in modes if m != "untraced"]
    fig, ax = plt.subplots(figsize=(max(8.0, 1.6 * len(workloads)), 5))
    width = 0.8 / max(1, len(shown))
    for j, mode in enumerate(shown):
        for i, wl in enumerate(workloads.values()):
            base = median(results.get((wl.name, "untraced"), []))
            med = median(results[wl.name, mode])
            x = i + (j - (len(shown) - 1) / 2) * width
            if base and med is not None:
                ax.bar(
                    x, med / base, width, color=f"C{j}", label=MODE_LABELS[mode] if i == 0 else None
                )
            else:
                ax.plot(
                    x,
                    1,
                    "x",
                    color=f"C{j}",
                    markersize=9,
                    label=MODE_LABELS[mode] if i == 0 else None,
                )
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_yscale("log")
    ax.set_xticks(range(len(workloads)), list(workloads))
    ax.set_ylabel("wall time / untraced (log; x = failed)")
    ax.set_title("roard vs peers: overhead by workload and mode")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


# --- components ------------------------------------------------------------------


def drop_caches() -> bool:
    """Empty the page cache (root only); False when it cannot."""
    os.sync()
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    except OSError:
        return False
    return True


def hash_rates(bench: Bench, size: int) -> list[str]:
    """BLAKE3 throughput on one file of `size` bytes, cold and warm: roard's hasher, the
    blake3 package with all threads (mmap), and b3sum if installed."""
    import blake3

    from roard.artifacts.hasher import hash_file

    path = bench.root / "hash.bin"
    write_file(path, size, os.urandom(MIB))

    def package() -> None:
        blake3.blake3(max_threads=blake3.blake3.AUTO).update_mmap(str(path)).hexdigest()

    hashers: dict[str, Callable[[], object]] = {
        "roard hasher (hash_file)": lambda: hash_file(str(path), max_bytes=1 << 62),
        "blake3 package, max threads, mmap": package,
    }
    if b3sum := shutil.which("b3sum"):
        hashers["b3sum"] = lambda: subprocess.run(
            [b3sum, str(path)], check=True, capture_output=True
        )
    lines = [
        f"Hashing one {size / MIB:.0f} MiB file (MiB/s):",
        "",
        "| hasher | cold | warm |",
        "| --- | --- | --- |",
    ]
    for label, fn in hashers.items():
        rates = []
        for cold in (True, False):
            if cold and not drop_caches():
                rates.append("n/a (needs root)")
                continue
            if not cold:
                fn()  # the page cache now holds the file
            start = time.perf_counter()
            fn()
            rates.append(f"{size / MIB / (time.perf_counter() - start):,.0f}")
        lines.append(f"| {label} | {rates[0]} | {rates[1]} |")
    path.unlink()
    return lines


def daemon_io(pid: int) -> tuple[int, int]:
    """The daemon's read(2) bytes and storage read bytes so far (/proc/PID/io)."""
    fields = dict(line.split(": ") for line in Path(f"/proc/{pid}/io").read_text().splitlines())
    return int(fields["rchar"]), int(fields["read_bytes"])


def hash_cache(bench: Bench, files: int, env: dict[str, str], pid: int) -> list[str]:
    """Bytes the daemon reads while a tagged job reads unchanged data twice."""
    data = bench.root / "cache-data"
    data.mkdir()
    block = os.urandom(MIB)
    for i in range(files):
        write_file(data / f"c{i:04d}.bin", MIB, i.to_bytes(8, "little") + block)
    job = [
        sys.executable,
        "-c",
        f"import glob\nfor p in glob.glob('{data}/*'):\n    open(p, 'rb').read()",
    ]
    lines = [
        f"Hash cache: a tagged job reads {files} unchanged files of 1 MiB, twice:",
        "",
        "| run | daemon read(2) bytes | daemon storage reads | inputs recorded |",
        "| --- | --- | --- | --- |",
    ]
    for run in ("first", "second"):
        before = daemon_io(pid)
        name = f"cache-{run}"
        subprocess.run(
            [str(BIN / "roarctl"), "tag", "--name", name, "--", *job],
            env=env,
            check=True,
            capture_output=True,
        )
        after = daemon_io(pid)
        doc = roarctl_json(["show", name], env)
        inputs = sum(1 for i in doc["inputs"] if i["path"].startswith(str(data)) and i["hash"])
        rchar, storage = ((after[i] - before[i]) / MIB for i in (0, 1))
        lines.append(f"| {run} | {rchar:.1f} MiB | {storage:.1f} MiB | {inputs} of {files} |")
    lines += [
        "",
        f"(data: {files} MiB; on the second run, every byte below that read is a cache miss.)",
    ]
    return lines


def event_path(bench: Bench, env: dict[str, str], pid: int, seconds: float) -> list[str]:
    """Tagged open/close storms at doubling rates: the highest rate with no loss, where
    loss begins, and the daemon's CPU per 100k events."""
    target = bench.root / "event-target"
    target.write_text("x")
    storm = [sys.executable, str(bench.scripts / "event_storm.py"), str(target)]
    proc = psutil.Process(pid)
    lines = [
        f"Event path: a tagged job opens and closes one file at a paced rate for {seconds:g} s:",
        "",
        "| asked /s | reached /s | events | lost | daemon CPU per 100k events |",
        "| --- | --- | --- | --- | --- |",
    ]
    best, first_loss = 0.0, None
    rate = 10_000.0
    while first_loss is None:
        name = f"events-{rate:.0f}"
        status0 = roarctl_json(["status"], env)
        cpu0 = sum(proc.cpu_times()[:2])
        done = subprocess.run(
            [str(BIN / "roarctl"), "tag", "--name", name, "--", *storm, str(rate), str(seconds)],
            env=env, check=True, capture_output=True, text=True,
        )  # fmt: skip
        cpu = sum(proc.cpu_times()[:2]) - cpu0
        status1 = roarctl_json(["status"], env)
        reached = float(done.stdout)
        events = sum(status1["events"].values()) - sum(status0["events"].values())
        lost = roarctl_json(["show", name], env)["lost_events"]
        per_100k = f"{cpu / events * 1e5:.2f} s" if events else "-"
        lines.append(f"| {rate:,.0f} | {reached:,.0f} | {events:,} | {lost} | {per_100k} |")
        if lost:
            first_loss = rate
        else:
            best = max(best, reached)
        if reached < 0.9 * rate:  # the job cannot go faster on this machine
            break
        rate *= 2
    lines += [
        "",
        f"Highest loss-free rate: {best:,.0f} opens+closes/s; "
        + (
            f"loss began at {first_loss:,.0f}/s asked."
            if first_loss
            else "no loss up to the machine's maximum."
        ),
    ]
    return lines


def components(bench: Bench, scale: float, seconds: float) -> list[str]:
    """The component figures, as markdown lines."""
    lines = ["## Components", "", *hash_rates(bench, max(MIB, round(1024 * MIB * scale)))]
    with daemon(bench.root / "roard-components") as (proc, env):
        lines += ["", *hash_cache(bench, max(1, round(256 * scale)), env, proc.pid)]
        lines += ["", *event_path(bench, env, proc.pid, seconds)]
    lines += [
        "",
        "Collector ingest and lineage latency: `.venv/bin/python bench/collector.py` "
        "(bench/RESULTS.md has its figures).",
    ]
    return lines


# --- setup and main ----------------------------------------------------------------


def setup_peers() -> None:
    """bench/.peers-venv with roar-cli in it (kept out of roard's venv: roar-cli's .pth
    hooks every Python process of the venv it is installed in)."""
    subprocess.run([sys.executable, "-m", "venv", str(PEERS_VENV)], check=True)
    subprocess.run([str(PEERS_VENV / "bin" / "pip"), "install", "-q", ROAR_CLI], check=True)
    print(f"roar-cli installed in {PEERS_VENV}")


def roar_template(bench: Bench) -> None:
    """A roar project (outside any git repo: roar records without a commit there) set up
    quiet and offline, copied into each run's directory."""
    where = bench.root / "roar-template"
    where.mkdir()
    subprocess.run(
        [str(bench.roar), "init"], cwd=where, env=bench.roar_env, check=True, capture_output=True
    )
    for key, value in (
        ("output.verbosity", "quiet"),
        ("hints.enabled", "false"),
        ("tracer.banner", "false"),
        ("telemetry.enabled", "false"),
        ("runtime.install", "skip"),  # no network here: never fetch a runtime
        ("ray.enabled", "false"),
        ("analyzers.experiment_tracking", "false"),
    ):
        subprocess.run(
            [str(bench.roar), "config", "set", key, value],
            cwd=where,
            env=bench.roar_env,
            check=True,
            capture_output=True,
        )


def output_of(cmd: list[str]) -> str:
    """A command's stdout (empty if it fails or is missing: machine facts are best effort)."""
    try:
        return subprocess.run(cmd, check=False, capture_output=True, text=True).stdout.strip()
    except OSError:
        return ""


def machine_facts(bench: Bench) -> list[str]:
    """What the figures were taken on."""
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    cpu = next((x.split(":", 1)[1].strip() for x in cpuinfo if x.startswith("model name")), "?")
    fs = output_of(["df", "-T", str(bench.root)]).splitlines()[-1].split()[1]
    strace = (output_of([STRACE, "-V"]).splitlines() or ["no strace"])[0]
    roar = output_of([str(bench.roar), "--version"]) or "no roar-cli"
    memory = psutil.virtual_memory().total / 2**30
    return [
        f"- machine: {os.cpu_count()} CPUs ({cpu}), {memory:.0f} GiB, "
        f"kernel {platform.release()}, Python {platform.python_version()}",
        f"- work dir: {bench.root} ({fs}); peers: {roar}, {strace}",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--setup-peers",
        action="store_true",
        help="create bench/.peers-venv with roar-cli, then exit",
    )
    parser.add_argument(
        "--workloads", default=",".join(ALL_WORKLOADS), help="comma-separated, or 'none'"
    )
    parser.add_argument("--modes", default=",".join(ALL_MODES))
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--scale", type=float, default=1.0, help="every workload size times this")
    parser.add_argument("--workers", type=int, default=8, help="dataloader processes")
    parser.add_argument(
        "--dir",
        type=Path,
        default=Path("/var/tmp"),
        help="where to work (not /tmp: roar ignores it)",
    )
    parser.add_argument("--plot", type=Path, default=Path("peers.png"))
    parser.add_argument("--markdown", type=Path, default=None, help="also write the report here")
    parser.add_argument(
        "--daemon-log",
        type=Path,
        default=None,
        help="keep the roard modes' daemon log here (its lines time each run's end)",
    )
    parser.add_argument("--components", action="store_true", help="add the component figures")
    parser.add_argument("--event-seconds", type=float, default=3.0, help="per rate step")
    args = parser.parse_args()
    if args.setup_peers:
        setup_peers()
        return
    names = [] if args.workloads == "none" else args.workloads.split(",")
    modes = args.modes.split(",")
    if unknown := set(modes) - set(ALL_MODES):
        raise SystemExit(f"unknown modes {sorted(unknown)}; known: {', '.join(ALL_MODES)}")
    if "untraced" not in modes:
        modes.insert(0, "untraced")  # the ratios' base
    roar = PEERS_VENV / "bin" / "roar"
    if any(m.startswith("roar-") for m in modes) and not roar.exists():
        raise SystemExit(f"{roar} is missing: run `{sys.argv[0]} --setup-peers` first")
    wanted = [("matplotlib", "the plot")] if names else []
    wanted += [("sklearn", "the ml workload")] if "ml" in names else []
    if missing := [f"{mod} ({why})" for mod, why in wanted if not importlib.util.find_spec(mod)]:
        raise SystemExit(
            f"missing {', '.join(missing)}: `.venv/bin/pip install -e '.[bench]'`, "
            "or leave them out with --workloads"
        )
    sizes = replace(Sizes(), workers=args.workers).scaled(args.scale)
    no_other_roard()

    with tempfile.TemporaryDirectory(prefix="roard-peers-", dir=args.dir) as tmp:
        env = {k: v for k, v in os.environ.items() if k != "ROARD_RUN"}
        bench = Bench(
            root=Path(tmp),
            env=env,
            roar=roar,
            roar_env={**env, "DO_NOT_TRACK": "1", "ROAR_NO_TELEMETRY": "1"},
            daemon_log=args.daemon_log,
        )
        workloads = prepare(bench, sizes, names)
        report = [
            f"# roard vs peers (scale {args.scale:g}, median of {args.repeat})",
            "",
            *machine_facts(bench),
            "",
        ]
        report += [f"- {wl.name}: {wl.summary}" for wl in workloads.values()]
        if workloads:
            if roar.exists():
                roar_template(bench)
            results = measure(bench, workloads, modes, args.repeat)
            report += [
                "",
                "## Wall time (ratio to untraced)",
                "",
                *timing_table(workloads, modes, results),
            ]
            report += [
                "",
                "## Recorded inputs and outputs",
                "",
                *record_report(bench, workloads, modes, results),
            ]
            plot(args.plot, workloads, modes, results)
            report += ["", f"Plot: {args.plot}"]
        if args.components:
            report += ["", *components(bench, args.scale, args.event_seconds)]
    text = "\n".join(report) + "\n"
    print(text)
    if args.markdown:
        args.markdown.write_text(text)


if __name__ == "__main__":
    main()

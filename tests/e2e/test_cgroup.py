"""End to end: `roarctl tag --cgroup`, in a cgroup v1 and a v2 hierarchy, as a batch
scheduler or container runtime would use it."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Roard, as_nobody, python3
from tests.e2e.test_observe import b3, by_path

NOBODY = 65534
HIERARCHIES = {"v1": Path("/sys/fs/cgroup/pids"), "v2": Path("/sys/fs/cgroup/unified")}

# Waits for a file named "go-<name>" in its cwd, then reads <name>.txt and exits.
READER = textwrap.dedent("""
    import os, sys, time
    name = sys.argv[1]
    while not os.path.exists(f"go-{name}"):
        time.sleep(0.02)
    open(f"{name}.txt").read()
""")


def _remove(cgroup: Path, mount: Path) -> None:
    """Empty a test cgroup tree into the hierarchy's root and remove it, deepest first."""
    for directory, _dirs, _files in sorted(os.walk(cgroup), key=lambda w: -len(w[0])):
        procs = Path(directory) / "cgroup.procs"
        for pid in procs.read_text().split() if procs.exists() else []:
            with contextlib.suppress(OSError):  # it exited meanwhile
                (mount / "cgroup.procs").write_text(pid)
        Path(directory).rmdir()


@pytest.fixture(params=sorted(HIERARCHIES))
def cgroup(request: pytest.FixtureRequest) -> Iterator[Path]:
    """A fresh cgroup in the v1 (pids) or v2 hierarchy, removed afterwards if still there."""
    mount = HIERARCHIES[request.param]
    if not (mount / "cgroup.procs").exists():
        pytest.fail(f"this test needs the {request.param} cgroup hierarchy mounted at {mount}")
    path = mount / f"roard-e2e-{uuid.uuid4().hex[:8]}"
    path.mkdir()
    yield path
    if path.exists():
        _remove(path, mount)


class Readers:
    """Processes running READER in `workdir`, killed at the end."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, user: int | None = None) -> int:
        """A reader of <name>.txt, waiting for go-<name>; its pid."""
        (self.workdir / f"{name}.txt").write_text(f"content of {name}\n")
        proc = subprocess.Popen([python3(), "-c", READER, name], cwd=self.workdir, user=user)
        self.procs[name] = proc
        return proc.pid

    def run(self, name: str) -> None:
        """Let reader `name` read its file, and wait until it has exited."""
        (self.workdir / f"go-{name}").touch()
        assert self.procs[name].wait(30) == 0

    def kill(self) -> None:
        """Stop every reader still running."""
        for proc in self.procs.values():
            proc.kill()
            proc.wait()


@pytest.fixture
def readers(workdir: Path) -> Iterator[Readers]:
    """Reader processes for one test."""
    made = Readers(workdir)
    yield made
    made.kill()


def move(pid: int, cgroup: Path) -> None:
    """Move a process into a cgroup, as a scheduler or runtime does."""
    (cgroup / "cgroup.procs").write_text(str(pid))


def wait_finished(roard: Roard, run: str, as_user: bool = False) -> dict[str, Any]:
    """`show` of the run once it is finished (the reaper notices a removed cgroup)."""
    deadline = time.monotonic() + 60
    while True:
        if as_user:  # shown to the unprivileged user who tagged it
            shown = as_nobody("roarctl", "show", run, "--json", env=roard.env())
            doc: dict[str, Any] = json.loads(shown.stdout)
        else:
            doc = roard.show(run)
        if doc["status"] == "finished" or time.monotonic() > deadline:
            return doc
        time.sleep(0.2)


def test_cgroup_run_takes_present_moved_and_child_cgroup_processes(
    roard: Roard, cgroup: Path, readers: Readers, workdir: Path
) -> None:
    """Processes already in the cgroup (or below it), moved in later (or below it), are
    recorded with hashes; one outside is not; the run outlives an empty cgroup, and ends
    when the cgroup is removed."""
    child = cgroup / "step0"
    child.mkdir()
    move(readers.start("present"), cgroup)
    move(readers.start("below"), child)
    outside = readers.start("outside")
    name = f"cg-{cgroup.name}"
    tagged = json.loads(
        roard.roarctl("tag", "--cgroup", str(cgroup), "--name", name, "--json").stdout
    )
    assert tagged["status"] == "running" and tagged["how"] == "cgroup"
    assert tagged["cgroup"] == str(cgroup)

    readers.run("present")
    readers.run("below")
    readers.run("outside")
    # The cgroup is empty now, and the run still takes what moves in.
    move(readers.start("moved"), cgroup)
    readers.run("moved")
    move(readers.start("moved-below"), child)
    readers.run("moved-below")
    assert roard.show(name)["status"] == "running"

    _remove(cgroup, cgroup.parent)
    doc = wait_finished(roard, name)
    assert doc["status"] == "finished" and doc["complete"], doc
    assert doc["cgroup"] == str(cgroup)
    inputs = by_path(doc["inputs"])
    for reader in ("present", "below", "moved", "moved-below"):
        path = workdir / f"{reader}.txt"
        assert inputs[str(path)]["hash"] == b3(path), reader
    assert str(workdir / "outside.txt") not in inputs
    pids = {p["pid"] for p in doc["processes"]}
    assert {readers.procs[r].pid for r in ("present", "below", "moved", "moved-below")} <= pids
    assert outside not in pids


# Moves itself into the cgroup named by argv[1], reads argv[2] and exits at once: /proc
# describes it only for the millisecond it takes.
STEP = textwrap.dedent("""
    import os, sys
    with open(os.path.join(sys.argv[1], "cgroup.procs"), "w") as procs:
        procs.write(str(os.getpid()))
    open(sys.argv[2]).read()
""")


def test_steps_that_exit_right_after_moving_in_are_recorded(
    roard: Roard, cgroup: Path, workdir: Path
) -> None:
    """Job steps that move themselves into the cgroup and exit before roard can read their
    /proc are each one of the run's processes, with their parent, and what they read is
    an input with its hash."""
    name = f"steps-{cgroup.name}"
    roard.roarctl("tag", "--cgroup", str(cgroup), "--name", name)
    for i in range(12):
        data = workdir / f"step{i}.txt"
        data.write_text(f"step {i}\n")
        subprocess.run([python3(), "-c", STEP, str(cgroup), str(data)], check=True)
    _remove(cgroup, cgroup.parent)
    doc = wait_finished(roard, name)
    assert doc["status"] == "finished" and doc["complete"], doc
    inputs = by_path(doc["inputs"])
    for i in range(12):
        assert inputs[str(workdir / f"step{i}.txt")]["hash"] == b3(workdir / f"step{i}.txt")
    assert len(doc["processes"]) == 12, doc["processes"]
    assert {p["ppid"] for p in doc["processes"]} == {os.getpid()}


def test_untag_ends_a_cgroup_run_as_a_slurm_epilog_would(
    roard: Roard, cgroup: Path, readers: Readers, workdir: Path
) -> None:
    """Prolog tags the empty job cgroup, the job arrives, epilog untags by name; the same
    cgroup cannot be tagged twice at once."""
    name = f"slurm-{cgroup.name}"
    roard.roarctl("tag", "--cgroup", str(cgroup), "--name", name)
    again = roard.roarctl("tag", "--cgroup", str(cgroup), check=False)
    assert again.returncode != 0 and "already tagged" in again.stderr
    move(readers.start("job"), cgroup)
    readers.run("job")
    summary = json.loads(roard.roarctl("untag", name, "--json").stdout)
    assert summary["status"] == "finished"
    doc = roard.show(name)
    assert by_path(doc["inputs"])[str(workdir / "job.txt")]["hash"] == b3(workdir / "job.txt")
    # Untagged: what moves in now is nobody's run.
    move(readers.start("late"), cgroup)
    readers.run("late")
    assert str(workdir / "late.txt") not in by_path(roard.show(name)["inputs"])


def test_unprivileged_user_tags_only_a_cgroup_delegated_to_them(
    roard: Roard, cgroup: Path, readers: Readers, workdir: Path
) -> None:
    """A user may not tag a root-owned cgroup; in one delegated to them (their directory),
    their processes are recorded and other users' are skipped."""
    denied = as_nobody("roarctl", "tag", "--cgroup", str(cgroup), env=roard.env())
    assert denied.returncode != 0 and "only root, or the user" in denied.stderr
    os.chown(cgroup, NOBODY, NOBODY)
    os.chown(cgroup / "cgroup.procs", NOBODY, NOBODY)
    workdir.chmod(0o777)
    mine = readers.start("mine", user=NOBODY)
    theirs = readers.start("theirs")  # root's
    move(mine, cgroup)
    move(theirs, cgroup)
    name = f"deleg-{cgroup.name}"
    tagged = as_nobody("roarctl", "tag", "--cgroup", str(cgroup), "--name", name, env=roard.env())
    assert tagged.returncode == 0, tagged.stderr
    move(readers.start("mine-later", user=NOBODY), cgroup)
    move(readers.start("theirs-later"), cgroup)
    for reader in ("mine", "theirs", "mine-later", "theirs-later"):
        readers.run(reader)
    _remove(cgroup, cgroup.parent)
    doc = wait_finished(roard, name, as_user=True)
    assert doc["status"] == "finished", doc
    inputs = by_path(doc["inputs"])
    assert {str(workdir / "mine.txt"), str(workdir / "mine-later.txt")} <= set(inputs)
    assert not {str(workdir / "theirs.txt"), str(workdir / "theirs-later.txt")} & set(inputs)
    assert theirs not in {p["pid"] for p in doc["processes"]}


# Starts argv[2:] with clone3(CLONE_INTO_CGROUP) in the v2 cgroup argv[1], as systemd and
# container runtimes do (no migration happens), prints its pid and exits with its status.
CLONE_INTO_CGROUP = textwrap.dedent("""
    import ctypes, os, signal, sys
    class CloneArgs(ctypes.Structure):
        _fields_ = [(name, ctypes.c_uint64) for name in (
            "flags", "pidfd", "child_tid", "parent_tid", "exit_signal", "stack",
            "stack_size", "tls", "set_tid", "set_tid_size", "cgroup")]
    cgroup = os.open(sys.argv[1], os.O_RDONLY | os.O_DIRECTORY)
    args = CloneArgs(flags=0x200000000, exit_signal=signal.SIGCHLD, cgroup=cgroup)
    libc = ctypes.CDLL(None, use_errno=True)
    pid = libc.syscall(435, ctypes.byref(args), ctypes.sizeof(args))  # clone3
    if pid == 0:
        os.execv(sys.argv[2], sys.argv[2:])
    if pid < 0:
        raise OSError(ctypes.get_errno(), "clone3")
    print(pid, flush=True)
    sys.exit(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
""")


@pytest.mark.parametrize("cgroup", ["v2"], indirect=True)
def test_process_cloned_straight_into_the_cgroup_joins(
    roard: Roard, cgroup: Path, workdir: Path
) -> None:
    """A child started inside the cgroup by an untagged parent (clone3 CLONE_INTO_CGROUP,
    no migration) joins the run; its parent outside does not."""
    name = f"clone-{cgroup.name}"
    roard.roarctl("tag", "--cgroup", str(cgroup), "--name", name)
    (workdir / "cloned.txt").write_text("read by a cloned child\n")
    spawner = subprocess.Popen(
        [python3(), "-c", CLONE_INTO_CGROUP, str(cgroup), python3(), "-c", READER, "cloned"],
        cwd=workdir,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert spawner.stdout is not None
        child = int(spawner.stdout.readline())
        (workdir / "go-cloned").touch()
        assert spawner.wait(30) == 0
    finally:
        spawner.kill()
    roard.roarctl("untag", name)
    doc = roard.show(name)
    inputs = by_path(doc["inputs"])
    assert inputs[str(workdir / "cloned.txt")]["hash"] == b3(workdir / "cloned.txt")
    assert {p["pid"] for p in doc["processes"]} == {child}


def test_bad_cgroup_paths_get_clear_errors(roard: Roard, tmp_path: Path) -> None:
    """A missing path, a plain directory and a file inside a cgroup are refused, in one
    line that says what to give instead."""
    mount = HIERARCHIES["v2"]
    cases = {
        str(mount / "no-such-cgroup"): "no such cgroup directory",
        str(tmp_path): "is not a cgroup directory",
        str(mount / "cgroup.procs"): "is not a cgroup directory",
    }
    for path, message in cases.items():
        result = roard.roarctl("tag", "--cgroup", path, check=False)
        assert result.returncode != 0 and message in result.stderr, (path, result.stderr)
        assert "Traceback" not in result.stderr
    both = roard.roarctl("tag", "--cgroup", str(mount), "--pid", "1", check=False)
    assert both.returncode == 2 and "one of --pid" in both.stderr

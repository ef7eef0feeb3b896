"""roard restarted in the middle of a tagged run (SIGKILL or SIGTERM): the new daemon
re-adopts the run's processes, and the run finishes with what was observed before and after
the restart, marked incomplete for the gap."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import VENV_BIN, Roard, python3, start_roard, stop_roard
from tests.e2e.test_cgroup import Readers, _remove, cgroup, move, readers
from tests.e2e.test_observe import b3, by_path

__all__ = ["cgroup", "readers"]  # fixtures shared with test_cgroup

# Phase 1 before the restart, phase 2 after: files read and written in each, a descriptor
# read before and closed after (its bytes wait in the pinned kernel map), and a child forked
# before that writes after.
JOB = textwrap.dedent("""
    import os, sys, time

    def wait_for(name):
        while not os.path.exists(name):
            time.sleep(0.05)

    wait_for("go1")
    open("in1.txt").read()
    open("out1.txt", "w").write("first half")
    held = open("in2.txt")
    held.read()
    child = os.fork()
    if child == 0:
        wait_for("go2")
        open("out3.txt", "w").write("from the child")
        os._exit(0)
    open("phase1", "w").close()
    wait_for("go2")
    held.close()
    open("in3.txt").read()
    open("out2.txt", "w").write("second half")
    os.waitpid(child, 0)
    sys.exit(3)
""")


def _prepare(workdir: Path) -> None:
    (workdir / "job.py").write_text(JOB)
    for n in (1, 2, 3):
        (workdir / f"in{n}.txt").write_text(f"input {n}\n" * (n * 100))


def _wait_for(path: Path, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def _wait_shown(daemon: Roard, run: str, seen: Callable[[list[dict[str, Any]]], bool]) -> None:
    """Until `seen` holds for the processes `roarctl show RUN` lists."""
    deadline = time.monotonic() + 30
    while not seen(daemon.show(run)["processes"]):
        assert time.monotonic() < deadline, f"run {run} never showed the awaited processes"
        time.sleep(0.2)


def _forked(processes: list[dict[str, Any]]) -> bool:
    """Whether a process of the run is a child of another of its processes."""
    pids = {p["pid"] for p in processes}
    return any(p["ppid"] in pids for p in processes)


def _wait_checkpointed(daemon: Roard, after: float) -> None:
    """Until the daemon has saved its runs' state as of a moment after `after`."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        status = json.loads(daemon.roarctl("status", "--json").stdout)
        if status["checkpoint"]["saved_at"] > after:
            return
        time.sleep(0.2)
    raise AssertionError("no checkpoint was saved")


def _assert_both_halves(doc: dict[str, Any], workdir: Path) -> None:
    inputs, outputs = by_path(doc["inputs"]), by_path(doc["outputs"])
    for name in ("in1.txt", "in2.txt", "in3.txt"):
        assert inputs[str(workdir / name)]["hash"] == b3(workdir / name), name
    for name in ("out1.txt", "out2.txt", "out3.txt"):
        assert outputs[str(workdir / name)]["hash"] == b3(workdir / name), name
    assert doc["complete"] is False
    assert any("roard stopped" in reason for reason in doc["loss_reasons"])


def _checkpoint_then(daemon: Roard, run: str, workdir: Path, sig: signal.Signals) -> None:
    """Let phase 1 of `run` run, wait until it is checkpointed, then stop the daemon with
    `sig`."""
    (workdir / "go1").touch()
    _wait_for(workdir / "phase1")
    # The ring is read in order and the fork follows phase 1's file uses: once the child is
    # shown they are applied, and a checkpoint taken after that holds them.
    _wait_shown(daemon, run, _forked)
    _wait_checkpointed(daemon, time.time())
    daemon.proc.send_signal(sig)
    assert daemon.proc.wait(30) is not None


def test_sigkill_mid_run_readopts_and_keeps_both_halves(tmp_path: Path, workdir: Path) -> None:
    """SIGKILL: the processes alive at restart are re-adopted, including a child forked
    before the kill, and a file read before and closed after counts as an input."""
    _prepare(workdir)
    first = start_roard(tmp_path / "d")
    job = subprocess.Popen([python3(), "job.py"], cwd=workdir)
    try:
        run_id = first.roarctl("tag", "--pid", str(job.pid), "--name", "kill9").stdout.strip()
        _checkpoint_then(first, run_id, workdir, signal.SIGKILL)
        second = start_roard(tmp_path / "d", socket=first.socket)
        try:
            assert second.show(run_id)["status"] == "running"
            status = json.loads(second.roarctl("status", "--json").stdout)
            assert [r["run_id"] for r in status["runs"]] == [run_id]
            (workdir / "go2").touch()
            assert job.wait(30) == 3
            doc = second.finished(run_id)
            _assert_both_halves(doc, workdir)
            assert job.pid in [p["pid"] for p in doc["processes"]]
            assert len(doc["processes"]) >= 2  # the child forked before the kill
        finally:
            stop_roard(second)
    finally:
        job.kill()


def test_sigterm_mid_run_the_tagged_command_finishes_through_the_new_daemon(
    tmp_path: Path, workdir: Path
) -> None:
    """SIGTERM (a systemctl restart): `roarctl tag -- CMD` keeps waiting, and reports the
    run's end through the restarted daemon with the command's exit status."""
    _prepare(workdir)
    first = start_roard(tmp_path / "d")
    tagged = subprocess.Popen(
        [str(VENV_BIN / "roarctl"), "tag", "--name", "term", "--", python3(), "job.py"],
        cwd=workdir,
        env=first.env(),
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _checkpoint_then(first, "term", workdir, signal.SIGTERM)
        assert first.proc.returncode == 0
        second = start_roard(tmp_path / "d", socket=first.socket)
        try:
            (workdir / "go2").touch()
            _, stderr = tagged.communicate(timeout=60)
            assert tagged.returncode == 3, stderr
            assert "INCOMPLETE" in stderr
            doc = second.finished("term")
            assert doc["exit_code"] == 3
            _assert_both_halves(doc, workdir)
        finally:
            stop_roard(second)
    finally:
        tagged.kill()


def test_a_run_whose_processes_ended_while_roard_was_down_keeps_what_was_seen(
    tmp_path: Path, workdir: Path
) -> None:
    """Nothing left to re-adopt: the run is finished at start, incomplete, with the files
    of its checkpoint and the I/O the kernel aggregated before the kill."""
    _prepare(workdir)
    first = start_roard(tmp_path / "d")
    job = subprocess.Popen([python3(), "job.py"], cwd=workdir)
    try:
        run_id = first.roarctl("tag", "--pid", str(job.pid), "--name", "gone").stdout.strip()
        _checkpoint_then(first, run_id, workdir, signal.SIGKILL)
        (workdir / "go2").touch()
        assert job.wait(30) == 3
        second = start_roard(tmp_path / "d", socket=first.socket)
        try:
            doc = second.finished(run_id)
            inputs, outputs = by_path(doc["inputs"]), by_path(doc["outputs"])
            assert inputs[str(workdir / "in1.txt")]["hash"] == b3(workdir / "in1.txt")
            # read before the kill, closed after it: the pinned aggregate still says so
            assert inputs[str(workdir / "in2.txt")]["hash"] == b3(workdir / "in2.txt")
            assert outputs[str(workdir / "out1.txt")]["hash"] == b3(workdir / "out1.txt")
            assert str(workdir / "in3.txt") not in inputs  # read while nobody watched
            assert doc["complete"] is False
            assert any("roard stopped" in reason for reason in doc["loss_reasons"])
            status = json.loads(second.roarctl("status", "--json").stdout)
            assert status["runs"] == [] and status["kernel_tracked_processes"] == 0
        finally:
            stop_roard(second)
    finally:
        job.kill()


def test_a_clean_stop_with_no_run_open_leaves_no_pinned_maps(tmp_path: Path) -> None:
    """Pins exist only for runs a restart must find."""
    daemon = start_roard(tmp_path / "d")
    status = json.loads(daemon.roarctl("status", "--json").stdout)
    pinned = status["checkpoint"]["pinned_maps"]
    assert pinned and sorted(os.listdir(pinned)) == ["env_run_seq", "fdagg", "tracked"]
    daemon.proc.send_signal(signal.SIGTERM)
    assert daemon.proc.wait(30) == 0
    assert not Path(pinned).exists()


# Resuming does not depend on the hierarchy (test_cgroup.py covers v1 and v2).
@pytest.mark.parametrize("cgroup", ["v2"], indirect=True)
def test_a_cgroup_run_takes_what_joins_before_during_and_after_a_restart(
    tmp_path: Path, cgroup: Path, readers: Readers
) -> None:
    """A tagged cgroup stays tagged across a SIGKILL: a process moved in while roard was
    down and one moved in after the restart are recorded, as is one from before."""
    first = start_roard(tmp_path / "d")
    first.roarctl("tag", "--cgroup", str(cgroup), "--name", "cg-restart")
    move(readers.start("before"), cgroup)
    readers.run("before")
    # Its exit follows its read in the ring: once shown, the read is in the next checkpoint.
    before = readers.procs["before"].pid
    _wait_shown(
        first, "cg-restart", lambda procs: any(p["pid"] == before and p["ended_at"] for p in procs)
    )
    _wait_checkpointed(first, time.time())
    first.proc.send_signal(signal.SIGKILL)
    first.proc.wait(30)
    move(readers.start("down"), cgroup)
    second = start_roard(tmp_path / "d", socket=first.socket)
    try:
        readers.run("down")
        move(readers.start("after"), cgroup)
        readers.run("after")
        _remove(cgroup, cgroup.parent)
        doc = second.finished("cg-restart")
        assert doc["status"] == "finished"
        inputs = by_path(doc["inputs"])
        for name in ("before", "down", "after"):
            path = readers.workdir / f"{name}.txt"
            assert inputs[str(path)]["hash"] == b3(path), name
        assert doc["complete"] is False
    finally:
        stop_roard(second)

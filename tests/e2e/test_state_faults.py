"""A full or read-only state dir: roarctl never hangs, the condition is visible, memory
stays bounded, the spool is never corrupted, and the backlog lands when space returns.

The state dir is a small tmpfs mounted for each test (unmounted even when it fails).
"""

from __future__ import annotations

import errno
import json
import sqlite3
import subprocess
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Roard, failed_start, python3, start_roard, stop_roard
from tests.e2e.test_observe import b3, by_path

JOB = textwrap.dedent("""
    data = open("in.txt").read()
    with open("out.txt", "w") as out:
        out.write(data.upper())
""")


@pytest.fixture
def state_fs(_bpf_available: None, tmp_path: Path) -> Iterator[Path]:
    """A 64 MiB tmpfs where the daemon's state dir goes (tmp_path / "state")."""
    mount = tmp_path / "state"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        # Lazy: a daemon that failed the test may still hold files there.
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(fs: Path) -> Path:
    """Write a filler file until the file system has no space left."""
    filler = fs / "filler"
    chunk = b"\0" * (1 << 20)
    with filler.open("wb") as out:
        try:
            while True:
                out.write(chunk)
                out.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
            out.truncate(out.tell())  # what the failed flush held back is not on disk
    return filler


def status(roard: Roard) -> dict[str, Any]:
    """`roarctl status --json`."""
    doc: dict[str, Any] = json.loads(roard.roarctl("status", "--json").stdout)
    return doc


def spool_intact(state: Path) -> None:
    """The spool file passes SQLite's integrity check."""
    with sqlite3.connect(state / "spool.db") as db:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]


def test_a_full_state_dir_holds_records_until_space_returns(state_fs: Path, tmp_path: Path) -> None:
    """With the state dir full, `roarctl tag -- CMD` returns (saying why on stderr),
    status, the log and /healthz name the condition and the fix; once the filler is
    deleted the run lands complete with its inputs, outputs and hashes."""
    roard = start_roard(tmp_path, '[metrics]\nlisten = "127.0.0.1:0"\n')
    work = tmp_path / "work"
    work.mkdir()
    (work / "in.txt").write_text("state dir faults\n" * 100)
    try:
        filler = fill(state_fs)
        ran = roard.roarctl("tag", "--name", "full-e2e", "--", python3(), "-c", JOB, cwd=work)
        assert "waiting" in ran.stderr and f"free space in {state_fs}" in ran.stderr
        assert (work / "out.txt").read_text() == "STATE DIR FAULTS\n" * 100
        problem = status(roard)["state_dir_error"]
        assert problem["cause"] == "full" and problem["state_dir"] == str(state_fs)
        human = roard.roarctl("status").stdout
        assert "STATE DIR PROBLEM" in human and f"free space in {state_fs}" in human
        assert "free space in" in roard.log.read_text()
        assert roard.roarctl("show", "full-e2e", check=False).returncode != 0  # still waiting

        filler.unlink()
        doc = roard.finished("full-e2e", within=180)
        assert doc["complete"] is True and doc["lost_events"] == 0, doc
        assert by_path(doc["inputs"])[str(work / "in.txt")]["hash"] == b3(work / "in.txt")
        assert by_path(doc["outputs"])[str(work / "out.txt")]["hash"] == b3(work / "out.txt")
        deadline = time.monotonic() + 60
        while status(roard)["state_dir_error"] is not None and time.monotonic() < deadline:
            time.sleep(1)
        assert status(roard)["state_dir_error"] is None
    finally:
        stop_roard(roard)
    spool_intact(state_fs)


def test_the_memory_backlog_is_bounded_and_sheds_with_loss_notices(
    state_fs: Path, tmp_path: Path
) -> None:
    """Past backlog_max_bytes, records waiting for a full state dir are shed (reads first)
    and the run says so: complete false, with the output still recorded."""
    roard = start_roard(tmp_path, "[collector]\nbacklog_max_bytes = 16384\n")
    work = tmp_path / "work"
    (work / "inputs").mkdir(parents=True)
    for i in range(400):
        (work / "inputs" / f"part-{i:04d}.txt").write_text(f"part {i}\n")
    job = textwrap.dedent("""
        import os
        total = sum(len(open(os.path.join("inputs", n)).read()) for n in os.listdir("inputs"))
        open("total.txt", "w").write(str(total))
    """)
    try:
        filler = fill(state_fs)
        ran = roard.roarctl("tag", "--name", "shed-e2e", "--", python3(), "-c", job, cwd=work)
        assert "waiting" in ran.stderr
        assert status(roard)["spool"]["shed_records"] > 0
        filler.unlink()
        doc = roard.finished("shed-e2e", within=180)
        assert doc["complete"] is False and doc["lost_events"] > 0, doc
        assert any("memory backlog was full" in r for r in doc["loss_reasons"]), doc
        assert str(work / "total.txt") in by_path(doc["outputs"])
        assert len(doc["inputs"]) < 400
    finally:
        stop_roard(roard)
    spool_intact(state_fs)


def test_a_read_only_state_dir_is_refused_at_start_and_nothing_spooled_is_lost(
    state_fs: Path, tmp_path: Path
) -> None:
    """`roard run` on a read-only state dir exits at once with the fix; remounted
    read-write, it starts and what was recorded before is still there, intact.

    (A file system cannot be remounted read-only while the daemon holds its spool open for
    writing: the kernel refuses with EBUSY. The full-disk test covers faults at run time.)"""
    roard = start_roard(tmp_path)
    work = tmp_path / "work"
    work.mkdir()
    (work / "in.txt").write_text("before the remount\n")
    try:
        roard.roarctl("tag", "--name", "ro-e2e", "--", python3(), "-c", JOB, cwd=work)
    finally:
        stop_roard(roard)
    subprocess.run(["mount", "-o", "remount,ro", str(state_fs)], check=True)
    try:
        refused = failed_start(state_fs, tmp_path / "ro.sock", "--embedded")
        assert refused.returncode != 0
        assert f"state dir {state_fs}" in refused.stderr and "read-write" in refused.stderr
        assert "Traceback" not in refused.stderr
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(state_fs)], check=True)
    spool_intact(state_fs)
    again = start_roard(tmp_path)
    try:
        doc = again.finished("ro-e2e", within=180)
        assert doc["complete"] is True
        assert by_path(doc["outputs"])[str(work / "out.txt")]["hash"] == b3(work / "out.txt")
    finally:
        stop_roard(again)

"""Which roard a ROARD_RUN job means: real processes, their environments as /proc shows
them, and real Unix sockets."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from roard.context.environment import read_environ
from roard.tracking.addressed import other_daemon


@pytest.fixture
def sockets(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """Two listening Unix sockets: this daemon's and another's."""
    made = []
    for name in ("own.sock", "other.sock"):
        s = socket.socket(socket.AF_UNIX)
        s.bind(str(tmp_path / name))
        made.append(s)
    yield tmp_path / "own.sock", tmp_path / "other.sock"
    for s in made:
        s.close()


def job(cwd: Path, **env: str) -> subprocess.Popen[bytes]:
    """A live process that exec'd with `env` (on top of this one's, less ROARD_SOCKET)."""
    environ = {k: v for k, v in os.environ.items() if k != "ROARD_SOCKET"} | env
    proc = subprocess.Popen(["sleep", "30"], cwd=cwd, env=environ)
    deadline = time.monotonic() + 5
    while Path(f"/proc/{proc.pid}/cmdline").read_bytes() != b"sleep\x0030\x00":
        assert time.monotonic() < deadline, "sleep did not start"
        time.sleep(0.001)
    return proc


@pytest.mark.parametrize(
    ("named", "elsewhere"),
    [
        (None, False),  # no ROARD_SOCKET: any roard's
        ("own.sock", False),
        ("other.sock", True),
        ("missing.sock", False),  # nobody answers there: not positively another roard's
        ("plain-file", False),
    ],
)
def test_only_a_job_naming_another_socket_is_left_to_it(
    tmp_path: Path, sockets: tuple[Path, Path], named: str | None, elsewhere: bool
) -> None:
    own, _ = sockets
    (tmp_path / "plain-file").write_text("not a socket")
    env = {} if named is None else {"ROARD_SOCKET": str(tmp_path / named)}
    proc = job(tmp_path, **env)
    try:
        found = other_daemon(proc.pid, read_environ(proc.pid) or {}, str(own))
    finally:
        proc.kill()
        proc.wait()
    assert found == (str(tmp_path / named) if elsewhere else None)


def test_a_relative_socket_is_the_jobs_not_the_daemons(
    tmp_path: Path, sockets: tuple[Path, Path]
) -> None:
    """ROARD_SOCKET=own.sock in the socket's directory names this roard; the same name from
    a directory where another roard's socket has it names that one."""
    own, _ = sockets
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "own.sock").symlink_to(tmp_path / "other.sock")
    here, there = job(tmp_path, ROARD_SOCKET="own.sock"), job(elsewhere, ROARD_SOCKET="own.sock")
    try:
        assert other_daemon(here.pid, read_environ(here.pid) or {}, str(own)) is None
        assert other_daemon(there.pid, read_environ(there.pid) or {}, str(own)) == "own.sock"
    finally:
        for proc in (here, there):
            proc.kill()
            proc.wait()


def test_a_job_gone_before_it_is_looked_at_is_judged_by_its_environment_at_exec(
    tmp_path: Path, sockets: tuple[Path, Path]
) -> None:
    """Its /proc entry is gone (a short job whose events were read late): the environment
    the kernel copied at its exec still names the socket, an absolute path found as this
    daemon sees it; a relative one cannot be resolved without the job, so the job is kept."""
    own, other = sockets
    proc = job(tmp_path, ROARD_SOCKET=str(other))
    at_exec = read_environ(proc.pid) or {}
    proc.kill()
    proc.wait()
    assert other_daemon(proc.pid, at_exec, str(own)) == str(other)
    assert other_daemon(proc.pid, {"ROARD_SOCKET": str(own)}, str(own)) is None
    assert other_daemon(proc.pid, {"ROARD_SOCKET": "other.sock"}, str(own)) is None

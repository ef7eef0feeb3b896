"""The control socket under abuse: other users' runs stay theirs, and malformed requests
or a flood of clients never crash or stall the daemon."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import textwrap
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from roard.control.client import ControlClient
from tests.e2e.conftest import Roard, python3, start_roard, stop_roard
from tests.e2e.test_observe import as_nobody, b3, by_path

# The HTTP/2 client preface, an empty SETTINGS frame, and the first bytes of a HEADERS
# frame that announces 64 bytes of payload and never sends them.
HALF_REQUEST = (
    b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
    + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
    + b"\x00\x00\x40\x01\x04\x00\x00\x00\x01\x83\x86"
)


@pytest.fixture(scope="module")
def private(_bpf_available: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Roard]:
    """A daemon of its own: its descriptor and thread counts are measured."""
    daemon = start_roard(tmp_path_factory.mktemp("control"))
    yield daemon
    stop_roard(daemon)


def test_a_user_cannot_untag_or_see_another_users_run(private: Roard, tmp_path: Path) -> None:
    """nobody can neither untag, show nor list root's active run, nor tag root's process."""
    sleeper = subprocess.Popen(["sleep", "300"])
    try:
        run_id = private.roarctl("tag", "--pid", str(sleeper.pid), "--name", "roots").stdout
        run_id = run_id.strip()
        denied = as_nobody("roarctl", "tag", "--pid", str(sleeper.pid), env=private.env())
        assert denied.returncode != 0 and "only root may tag" in denied.stderr
        untag = as_nobody("roarctl", "untag", run_id, env=private.env())
        assert untag.returncode != 0 and "another user" in untag.stderr
        by_name = as_nobody("roarctl", "untag", "roots", env=private.env())
        assert by_name.returncode != 0
        shown = as_nobody("roarctl", "show", run_id, env=private.env())
        assert shown.returncode != 0 and "no run" in shown.stderr
        listed = json.loads(as_nobody("roarctl", "runs", "--json", env=private.env()).stdout)
        assert run_id not in {r["run_id"] for r in listed}
        status = json.loads(as_nobody("roarctl", "status", "--json", env=private.env()).stdout)
        assert status["runs"] == []  # root's active run is not nobody's to see
        assert sleeper.poll() is None  # still running, still tracked
        assert json.loads(private.roarctl("untag", run_id, "--json").stdout)["run_id"] == run_id
    finally:
        sleeper.kill()
        sleeper.wait()


# The daemon's bounded pools start their threads lazily (control calls 16, hashing 4,
# finalizing 2): a flood and one run may wake them all. A thread per client would be
# hundreds.
_POOLS = 24


def _counts(pid: int) -> tuple[int, int]:
    """Open descriptors and threads of a process."""
    return len(os.listdir(f"/proc/{pid}/fd")), len(os.listdir(f"/proc/{pid}/task"))


def _settle(pid: int, fds: int, threads: int, within: float) -> tuple[int, int]:
    """Wait until the counts are back near (fds, threads); the counts last seen."""
    deadline = time.monotonic() + within
    now = _counts(pid)
    while time.monotonic() < deadline and (now[0] > fds + 16 or now[1] > threads + _POOLS):
        time.sleep(1)
        now = _counts(pid)
    return now


def test_a_flood_of_clients_neither_crashes_nor_stalls_the_daemon(
    private: Roard, tmp_path: Path
) -> None:
    """1,000 concurrent clients (idle, garbage, half a request, valid calls): root's status
    and a tagged run still work, the run is recorded right, and afterwards the daemon's
    descriptors and threads are back near where they were, its stalled clients dropped."""
    pid = private.proc.pid
    flood: list[socket.socket] = []

    def connect() -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(str(private.socket))
        flood.append(sock)
        return sock

    def valid_status(_: int) -> bool:
        client = ControlClient(private.socket)
        try:
            return "tier" in client.status()
        finally:
            client.close()

    base_fds, base_threads = _counts(pid)
    try:
        for i in range(750):
            sock = connect()
            if i % 3 == 1:
                sock.sendall(os.urandom(512))
            elif i % 3 == 2:
                sock.sendall(HALF_REQUEST)
        with ThreadPoolExecutor(32) as pool:
            calls = pool.map(valid_status, range(250))
            status = private.roarctl("status", "--json", timeout=60)
            assert json.loads(status.stdout)["pid"] == pid
            work = tmp_path / "work"
            work.mkdir()
            (work / "in.txt").write_text("flooded\n")
            job = textwrap.dedent("""
                open("out.txt", "w").write(open("in.txt").read() * 2)
            """)
            private.roarctl("tag", "--name", "flood-e2e", "--", python3(), "-c", job, cwd=work)
            doc = json.loads(private.roarctl("show", "flood-e2e", "--json", timeout=60).stdout)
            assert all(calls)
        assert doc["complete"] is True
        assert by_path(doc["inputs"])[str(work / "in.txt")]["hash"] == b3(work / "in.txt")
        assert by_path(doc["outputs"])[str(work / "out.txt")]["hash"] == b3(work / "out.txt")
        # The stalled clients still hold their ends: the daemon must have dropped them.
        fds, threads = _settle(pid, base_fds, base_threads, within=150)
        assert fds <= base_fds + 16, (fds, base_fds)
        assert threads <= base_threads + _POOLS, (threads, base_threads)
    finally:
        for sock in flood:
            sock.close()
    assert private.proc.poll() is None
    assert json.loads(private.roarctl("status", "--json").stdout)["pid"] == pid

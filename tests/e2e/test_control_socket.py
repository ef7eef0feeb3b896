"""The control socket under abuse: other users' runs stay theirs, and malformed requests
(gRPC or the plain protocol of `roarctl tag -- CMD`) or a flood of clients never crash or
stall the daemon."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from roard.control import plain
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
    """1,000 concurrent clients (idle, garbage, half a gRPC request, half a plain-protocol
    call, valid calls): root's status and a tagged run still work, the run is recorded
    right, and afterwards the daemon's descriptors and threads are back near where they
    were, its stalled clients dropped."""
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
            if i % 4 == 1:
                sock.sendall(os.urandom(512))
            elif i % 4 == 2:
                sock.sendall(HALF_REQUEST)
            elif i % 4 == 3:
                sock.sendall(plain.MAGIC + b'{"method": "Tag", "request": {"pi')
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


def _plain_exchange(roard: Roard, data: bytes) -> bytes:
    """Send raw bytes on the control socket; all the daemon answers before it closes."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(30)
        sock.connect(str(roard.socket))
        # gRPC's server greets each new connection at once: by now the relay holds that
        # greeting, which must not reach a client that turns out to speak plain.
        time.sleep(0.2)
        sock.sendall(data)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
        return answer


@pytest.mark.parametrize(
    ("call", "says"),
    [
        (b"not json\n", "not a plain-protocol call"),
        (b'{"method": "Status"}\n', "known methods: Tag, Finish, Progress"),
        (b'{"method": "Tag", "request": {"pid": "x"}}\n', "not a plain-protocol call"),
        (b'{"method": "Finish", "request": {"run_id": "0000000000000000"}}\n', "no run"),
    ],
    ids=["not-json", "not-a-plain-method", "bad-field", "unknown-run"],
)
def test_a_malformed_plain_call_gets_an_error_line(private: Roard, call: bytes, says: str) -> None:
    """The plain protocol answers a bad call with one error line that says what is wrong
    (a gRPC status name and a message), then closes; the daemon serves on."""
    answer = _plain_exchange(private, plain.MAGIC + call)
    assert answer.endswith(b"\n") and answer.count(b"\n") == 1
    error = json.loads(answer)["error"]
    assert error["code"] in {"INVALID_ARGUMENT", "NOT_FOUND"}
    assert says in error["message"]
    assert json.loads(private.roarctl("status", "--json").stdout)["pid"] == private.proc.pid


def test_a_connection_that_is_neither_grpc_nor_plain_is_closed(private: Roard) -> None:
    """A connection that starts like the plain protocol but with another greeting (a
    version this daemon does not speak) is neither relayed to gRPC nor answered: it is
    closed."""
    assert _plain_exchange(private, b"ROARD-PLAIN/9\n{}\n") == b""


def test_a_plain_call_has_the_callers_rights(private: Roard) -> None:
    """Over the plain protocol as over gRPC, nobody cannot finish root's run nor ask about
    its progress; roarctl tag -- CMD as nobody works (its own run)."""
    sleeper = subprocess.Popen(["sleep", "300"])
    try:
        run_id = private.roarctl("tag", "--pid", str(sleeper.pid)).stdout.strip()
        snippet = textwrap.dedent(f"""
            import os, sys
            from pathlib import Path
            from roard.control.plain import PlainClient
            from roard.errors import RoardError
            client = PlainClient(Path({str(private.socket)!r}))
            os.setgroups([]); os.setgid(65534); os.setuid(65534)
            for call in (lambda: client.finish({run_id!r}, 0), lambda: client.progress({run_id!r})):
                try:
                    print("answered", call())
                except RoardError as exc:
                    print(type(exc).__name__, exc)
        """)
        out = subprocess.run(
            [sys.executable, "-c", snippet], capture_output=True, text=True, check=True
        ).stdout.splitlines()
        assert len(out) == 2, out
        assert all(o.startswith("PermissionDenied") and "another user" in o for o in out), out
        assert sleeper.poll() is None  # still tracked: root's run was not finished
        mine = as_nobody(
            "roarctl", "tag", "--name", "nobodys", "--", "/bin/true", env=private.env()
        )
        assert mine.returncode == 0, mine.stderr
        assert "finished, exit 0" in mine.stderr
    finally:
        sleeper.kill()
        sleeper.wait()
        private.roarctl("untag", run_id)


def test_roarctl_tag_runs_a_command_without_loading_grpc(private: Roard, tmp_path: Path) -> None:
    """`roarctl tag -- CMD` tags, runs and finishes over the plain protocol: gRPC and
    protobuf (most of roarctl's start, which every tagged run waits for) are never loaded;
    the run is recorded as over gRPC."""
    (tmp_path / "in.txt").write_text("plain\n")
    snippet = textwrap.dedent("""
        import sys
        from roard.cli import roarctl_main
        code = roarctl_main.main(["tag", "--name", "plain-e2e", "--", "cp", "in.txt", "out.txt"])
        loaded = sorted({m.split(".")[0] for m in sys.modules} & {"grpc", "google"})
        print(code, loaded)
    """)
    done = subprocess.run(
        [sys.executable, "-c", snippet],
        cwd=tmp_path,
        env=private.env(),
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.strip() == "0 []", done.stdout + done.stderr
    doc = json.loads(private.roarctl("show", "plain-e2e", "--json").stdout)
    assert doc["complete"] is True
    assert by_path(doc["inputs"])[str(tmp_path / "in.txt")]["hash"] == b3(tmp_path / "in.txt")
    assert by_path(doc["outputs"])[str(tmp_path / "out.txt")]["hash"] == b3(tmp_path / "out.txt")


def test_roarctl_entry_point_tags_a_command_without_its_full_parser(
    private: Roard, tmp_path: Path
) -> None:
    """The `roarctl` command runs `tag --name N --label K=V -- CMD` without importing
    argparse, the rest of roarctl, gRPC, protobuf or pathlib (its start is part of every
    tagged run); it exits with the command's status, and the run is recorded."""
    (tmp_path / "in.txt").write_text("light\n")
    argv = [
        "tag",
        "--name",
        "light-e2e",
        "--label",
        "k=v",
        "--",
        "sh",
        "-c",
        "cp in.txt out.txt; exit 3",
    ]
    snippet = f"import sys; sys.argv[1:] = {argv!r}; from roard.cli.roarctl import main; main()"
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", snippet],
        check=False,
        cwd=tmp_path,
        env=private.env(),
        capture_output=True,
        text=True,
    )
    assert done.returncode == 3, done.stderr
    imported = {
        line.split("|")[-1].strip()
        for line in done.stderr.splitlines()
        if line.startswith("import time:")
    }
    assert "roard.cli.tagging" in imported
    heavy = {"argparse", "roard.cli.roarctl_main", "grpc", "google", "dataclasses", "pathlib"}
    assert not {m for m in imported if m.split(".")[0] in heavy or m in heavy}
    assert "run " in done.stderr and "exit 3" in done.stderr
    doc = json.loads(private.roarctl("show", "light-e2e", "--json").stdout)
    assert (doc["labels"], doc["exit_code"], doc["complete"]) == ({"k": "v"}, 3, True)
    assert by_path(doc["outputs"])[str(tmp_path / "out.txt")]["hash"] == b3(tmp_path / "out.txt")

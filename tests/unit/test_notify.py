"""Tests for roard.notify: the sd_notify datagrams systemd would receive, on a real socket."""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from roard.notify import Notifier


@pytest.fixture
def manager() -> Iterator[tuple[socket.socket, str]]:
    """A datagram socket standing in for systemd, on an abstract address ("@name")."""
    name = f"roard-test-{secrets.token_hex(6)}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(5)
    yield sock, "@" + name
    sock.close()


def fields(sock: socket.socket) -> dict[str, str]:
    data = sock.recv(4096).decode()
    return dict(line.split("=", 1) for line in data.splitlines())


def test_ready_and_stopping(manager: tuple[socket.socket, str]) -> None:
    sock, address = manager
    notifier = Notifier({"NOTIFY_SOCKET": address})
    notifier.ready("tier tracepoint")
    assert fields(sock) == {"READY": "1", "STATUS": "tier tracepoint", "MAINPID": str(os.getpid())}
    notifier.stopping()
    assert fields(sock)["STOPPING"] == "1"


def test_watchdog_pings_while_healthy_only(manager: tuple[socket.socket, str]) -> None:
    sock, address = manager
    healthy = threading.Event()
    healthy.set()
    notifier = Notifier({"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "200000"})
    assert notifier.watchdog_seconds == 0.2
    notifier.start_watchdog(healthy.is_set)
    assert fields(sock) == {"WATCHDOG": "1"}
    healthy.clear()
    sock.settimeout(0.5)
    while True:  # a ping already under way may still arrive; then silence
        try:
            fields(sock)
        except TimeoutError:
            break
    notifier.stopping()


def test_nothing_without_a_manager_or_for_another_pid() -> None:
    quiet = Notifier({})
    assert not quiet.enabled
    quiet.ready("x")  # no socket: nothing happens, nothing raises
    other = Notifier({"NOTIFY_SOCKET": "@x", "WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "1"})
    assert other.watchdog_seconds == 0.0


def test_an_unreachable_manager_is_not_fatal() -> None:
    Notifier({"NOTIFY_SOCKET": "/nonexistent/notify.sock"}).ready("x")


def test_collector_process_tells_systemd_ready_and_stopping(
    manager: tuple[socket.socket, str], tmp_path: Path
) -> None:
    """`roard collector` (a Type=notify unit) says READY=1 once it listens, STOPPING=1 on
    SIGTERM."""
    sock, address = manager
    roard = Path(sys.executable).parent / "roard"
    listen = f"unix:{tmp_path / 'c.sock'}"
    proc = subprocess.Popen(
        [str(roard), "collector", "--listen", listen, "--db", f"sqlite:///{tmp_path / 'r.db'}"],
        env={**os.environ, "NOTIFY_SOCKET": address},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        sock.settimeout(90)  # a cold start imports grpc, protobuf, psycopg
        ready = fields(sock)
        assert ready["READY"] == "1" and ready["MAINPID"] == str(proc.pid)
        assert (tmp_path / "c.sock").exists()
        proc.send_signal(signal.SIGTERM)
        assert fields(sock)["STOPPING"] == "1"
        assert proc.wait(30) == 0
    finally:
        proc.kill()

"""roard's log format: JSON lines when stderr is not a terminal (systemd's journal), key=value
lines on a terminal."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys

SCRIPT = (
    "import structlog; from roard import logs; logs.configure('info'); "
    "structlog.get_logger('roard.test').info('hello', run='r1'); "
    "structlog.get_logger('roard.test').debug('hidden')"
)


def test_json_lines_when_stderr_is_not_a_terminal() -> None:
    """Under systemd stderr is a pipe or the journal's socket: one JSON object per line."""
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=True, timeout=60
    )
    lines = result.stderr.splitlines()
    assert len(lines) == 1  # below the configured level: not written
    doc = json.loads(lines[0])
    assert doc["event"] == "hello" and doc["run"] == "r1" and doc["level"] == "info"
    assert doc["timestamp"].endswith("Z")


def test_console_lines_on_a_terminal() -> None:
    """On a terminal: readable key=value text, not JSON."""
    leader, follower = pty.openpty()
    try:
        proc = subprocess.run(
            [sys.executable, "-c", SCRIPT],
            stderr=follower,
            stdout=subprocess.DEVNULL,
            check=True,
            timeout=60,
        )
        assert proc.returncode == 0
        os.close(follower)
        follower = -1
        text = b""
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # EIO once the terminal's other side is closed and drained
                break
            if not chunk:
                break
            text += chunk
    finally:
        if follower >= 0:
            os.close(follower)
        os.close(leader)
    line = text.decode().strip()
    assert "hello" in line and "run=r1" in line and "[info" in line
    assert not line.startswith("{")

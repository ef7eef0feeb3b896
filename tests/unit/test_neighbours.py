"""Tests for roard.neighbours: which processes are other roard daemons."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from roard.neighbours import daemon_command, other_daemons


@pytest.mark.parametrize(
    ("cmdline", "daemon"),
    [
        (["/usr/bin/python3", "/usr/local/bin/roard", "run"], True),
        (["/opt/venv/bin/python", "/opt/venv/bin/roard", "run", "--embedded"], True),
        ([".venv/bin/python", "-m", "roard.cli.roard_main", "run", "--state-dir", "/x"], True),
        (["/usr/bin/python3", "/usr/local/bin/roard", "doctor"], False),
        (["/usr/bin/python3", "/usr/local/bin/roarctl", "tag", "--", "make", "run"], False),
        (["/usr/bin/python3", "/srv/roard/train.py", "run"], False),
        (["make", "run"], False),
        ([], False),
    ],
)
def test_a_roard_run_command_line(cmdline: list[str], daemon: bool) -> None:
    assert daemon_command(cmdline) is daemon


def test_a_process_named_like_roard_without_programs_is_not_one() -> None:
    """What merely looks like `roard run` (a sudo or timeout that started one, or this
    imitation) holds no BPF program: not a daemon whose hooks everyone pays."""
    code = "import time; time.sleep(30)"
    imitation = subprocess.Popen([sys.executable, "-c", code, "/usr/bin/roard", "run"])
    try:
        deadline = time.monotonic() + 5
        cmdline = Path(f"/proc/{imitation.pid}/cmdline")
        while b"roard" not in cmdline.read_bytes():
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert daemon_command(cmdline.read_text().split("\0"))
        assert imitation.pid not in [n.pid for n in other_daemons(os.getpid())]
    finally:
        imitation.kill()
        imitation.wait()

"""While `roarctl tag` waits for the daemon to hash a large output, it says how far it got."""

from __future__ import annotations

import re
import subprocess
import tempfile
from pathlib import Path

from roard.cli.tagging import progress_line
from tests.e2e.conftest import VENV_BIN, Roard, python3

GIB = 1 << 30

# Writes 4 GiB and exits: the run's end waits for the hash of the output that began at
# its close (about a second here; roarctl asks for progress every 0.1 s).
WRITER = """
import sys
with open(sys.argv[1], "wb") as f:
    block = bytes(range(256)) * 4096
    for _ in range(4 * 1024):
        f.write(block)
"""


def test_progress_line_format() -> None:
    doc = {
        "phase": "finalizing",
        "seconds": 10.0,
        "files": 2,
        "files_done": 1,
        "bytes": 50 * GIB,
        "bytes_done": 10 * GIB,
    }
    assert progress_line(doc) == (
        "finalizing: hashed 10.0 GiB of 50.0 GiB (20%, 1/2 files), 1.0 GiB/s, about 40 s left"
    )
    assert progress_line({"phase": "running"}) is None
    assert progress_line({**doc, "bytes": 0}) is None


def test_tag_reports_hashing_progress(roard: Roard, workdir: Path) -> None:
    (workdir / "writer.py").write_text(WRITER)
    with tempfile.TemporaryDirectory(dir="/dev/shm") as shm:
        big = Path(shm) / "checkpoint.bin"
        env = {**roard.env(), "ROARCTL_PROGRESS_AFTER": "0", "ROARCTL_PROGRESS_EVERY": "0.1"}
        tag = [str(VENV_BIN / "roarctl"), "tag", "--name", "ckpt", "--"]
        result = subprocess.run(
            [*tag, python3(), "writer.py", str(big)],
            check=False,
            cwd=workdir,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, result.stderr
        lines = [line for line in result.stderr.splitlines() if "finalizing: hashed" in line]
        assert lines, result.stderr
        assert re.search(r"of 4\.0 GiB \(\d+%, [01]/1 files\), [\d.]+ \w+/s", lines[0])
        doc = roard.show("ckpt")
        assert [o["size"] for o in doc["outputs"]] == [4 * GIB]

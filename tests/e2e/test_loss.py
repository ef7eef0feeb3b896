"""Overload: when the ring buffer overflows, the drops are counted and the run says so."""

from __future__ import annotations

import json
import re
import subprocess
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import VENV_BIN, Roard, python3, start_roard, stop_roard

# One page of ring and a reader woken rarely: a burst of file events must overflow it.
TINY_RING = """
[kernel]
ring_pages = 1
wakeup_every = 100000
"""


@pytest.fixture(scope="module")
def starved(_bpf_available: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Roard]:
    """A private daemon whose ring buffer is far too small."""
    daemon = start_roard(tmp_path_factory.mktemp("starved"), TINY_RING)
    yield daemon
    stop_roard(daemon)


def test_dropped_events_mark_the_run_incomplete(starved: Roard, workdir: Path) -> None:
    """Events lost to a full ring are counted per category and per run: the run reports
    complete: false with the number lost, and roarctl's summary says INCOMPLETE."""
    (workdir / "storm.py").write_text(
        textwrap.dedent("""
        for i in range(3000):
            with open(f"s{i}.out", "w") as f:
                f.write("x")
    """)
    )
    result = starved.roarctl("tag", "--name", "storm", "--", python3(), "storm.py", cwd=workdir)
    assert "INCOMPLETE" in result.stderr
    doc = starved.show("storm")
    assert doc["complete"] is False
    assert doc["lost_events"] > 0
    assert any("ringbuf_file" in reason for reason in doc["loss_reasons"])
    recorded = [o for o in doc["outputs"] if o["path"].startswith(str(workdir))]
    assert len(recorded) + doc["lost_events"] >= 3000  # every file recorded or counted lost
    # The run may also have lost other events (its exit, to the same full ring): compare
    # like with like, the run's file-ring count with the daemon's.
    file_lost = [
        int(found.group(1))
        for reason in doc["loss_reasons"]
        if (found := re.search(r"ringbuf_file \((\d+)\)", reason))
    ]
    status = json.loads(starved.roarctl("status", "--json").stdout)
    assert file_lost and status["lost"]["ringbuf_file"] >= file_lost[0] > 0, doc["loss_reasons"]


# Writes files until told to stop: a storm that outlasts several status queries.
ENDLESS_STORM = """
import os, sys
open("started", "w").close()
i = 0
while not os.path.exists("stop"):
    with open(f"e{i % 500}.out", "w") as f:
        f.write("x")
    i += 1
"""


def rss_bytes(pid: int) -> int:
    """Resident set size of a process, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


def wait_for(path: Path, job: subprocess.Popen[str]) -> None:
    """Until `path` exists; fail if the job ends first."""
    while not path.exists():
        assert job.poll() is None, job.communicate()
        time.sleep(0.05)


def test_the_daemon_answers_and_stays_bounded_during_an_overflowing_storm(
    starved: Roard, workdir: Path
) -> None:
    """While a tagged storm overflows the ring, roarctl status answers and shows the drops
    and a ring at least half full; afterwards the run names the category and the daemon's
    memory has not grown with the storm."""
    rss_before = rss_bytes(starved.proc.pid)
    (workdir / "storm.py").write_text(ENDLESS_STORM)
    job = subprocess.Popen(
        [str(VENV_BIN / "roarctl"), "tag", "--name", "endless", "--", python3(), "storm.py"],
        cwd=workdir,
        env=starved.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(workdir / "started", job)
        lost_seen = []
        for _ in range(5):
            status = json.loads(starved.roarctl("status", "--json", timeout=30).stdout)
            assert any(r["name"] == "endless" for r in status["runs"])
            lost_seen.append(status["lost"]["ringbuf_file"])
            time.sleep(0.2)
        assert lost_seen[-1] > lost_seen[0]  # the storm was overflowing the ring meanwhile
        assert status["ring"]["max_fill_ratio"] > 0.5
    finally:
        (workdir / "stop").touch()
        _, stderr = job.communicate(timeout=120)
    assert job.returncode == 0, stderr
    doc = starved.show("endless")
    assert doc["complete"] is False and doc["lost_events"] > 0
    assert any("ringbuf_file" in reason for reason in doc["loss_reasons"])
    growth = rss_bytes(starved.proc.pid) - rss_before
    assert growth < 50 << 20, f"RSS grew by {growth >> 20} MiB during the storm"

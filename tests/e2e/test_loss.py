"""Overload: when the ring buffer overflows, the drops are counted and the run says so."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import Roard, python3, start_roard, stop_roard

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
    recorded = [o for o in doc["outputs"] if o["path"].startswith(str(workdir))]
    assert len(recorded) + doc["lost_events"] >= 3000  # every file recorded or counted lost
    status = json.loads(starved.roarctl("status", "--json").stdout)
    assert status["lost"]["ringbuf_file"] >= doc["lost_events"] > 0

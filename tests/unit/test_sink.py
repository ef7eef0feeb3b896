"""Tests for roard.records.sink: numbered, batched, retried appends to the real spool."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from pathlib import Path

from pytest import MonkeyPatch

import roard.records.sink as sink_module
from roard.records.sink import SpoolSink
from roard.records.spool import Spool
from roard.v1 import records_pb2 as pb


class FlakySpool(Spool):
    """A real spool whose first `failures` appends fail (a full disk), and which can be
    held to observe flush() waiting."""

    def __init__(self, path: Path, failures: int = 0) -> None:
        super().__init__(path, max_bytes=1 << 30)
        self.failures = failures
        self.gate = threading.Event()
        self.gate.set()

    def append(
        self, records: Sequence[pb.Record], opened: Sequence[str], closed: Sequence[str]
    ) -> list[pb.Record]:
        self.gate.wait()
        if self.failures:
            self.failures -= 1
            raise OSError("disk full")
        return super().append(records, opened, closed)


def records(n: int) -> list[pb.Record]:
    return [pb.Record(id=f"r{i}", run_id="run") for i in range(n)]


def test_flush_waits_until_everything_emitted_is_spooled(tmp_path: Path) -> None:
    """emit() returns at once; flush() returns only once the records are on disk."""
    spool = FlakySpool(tmp_path / "spool.db")
    spool.gate.clear()
    spooled = threading.Event()
    sink = SpoolSink(spool, on_spooled=spooled.set)
    sink.emit(records(3))
    assert not sink.flush(timeout=0.2)  # the spool is held: not spooled yet
    spool.gate.set()
    assert sink.flush(timeout=5)
    stored = spool.after(0, 100)
    assert [r.id for r in stored] == ["r0", "r1", "r2"]
    seqs = [r.seq for r in stored]
    assert seqs == sorted(seqs) and len(set(seqs)) == 3
    assert sink.spooled_seq == seqs[-1] == sink.last_emitted
    assert spooled.wait(5)  # called after flush() waiters are woken, not before
    sink.close()


def test_a_failing_spool_is_retried_and_nothing_is_lost(tmp_path: Path) -> None:
    """A transient disk error is retried: every record is spooled once it recovers."""
    spool = FlakySpool(tmp_path / "spool.db", failures=2)
    sink = SpoolSink(spool)
    sink.emit(records(5))
    assert sink.flush(timeout=10)
    assert len(spool.after(0, 100)) == 5 and sink.failures == 2
    sink.close()


def test_numbers_keep_growing_across_restarts_even_if_the_clock_goes_back(
    tmp_path: Path,
) -> None:
    spool = Spool(tmp_path / "spool.db", 1 << 30)
    sink = SpoolSink(spool)
    sink.advance_past(time.time_ns())  # as if the clock had been far ahead before
    sink.emit(records(2))
    assert sink.flush(5)
    last = sink.last_emitted
    sink.close()
    spool.close()
    reopened = Spool(tmp_path / "spool.db", 1 << 30)
    again = SpoolSink(reopened)
    again.emit([pb.Record(id="later", run_id="run")])
    assert again.flush(5)
    assert reopened.after(last, 10)[0].id == "later"
    again.close()


def test_runs_opened_and_closed_are_remembered(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool.db", 1 << 30)
    sink = SpoolSink(spool)
    sink.emit(
        [
            pb.Record(id="a/t", run_id="a", run_tagged=pb.RunTagged()),
            pb.Record(id="b/t", run_id="b", run_tagged=pb.RunTagged()),
            pb.Record(id="a/f", run_id="a", run_finished=pb.RunFinished()),
        ]
    )
    assert sink.flush(5)
    assert spool.open_runs() == ["b"]
    sink.close()


def test_a_failing_spool_keeps_a_bounded_backlog_and_sheds_with_loss_notices(
    tmp_path: Path,
) -> None:
    """While the spool cannot be written, records wait in memory up to the cap; past it the
    least valuable are shed and each run that lost some gets a delivery loss notice. The
    run's start and end are never shed, and everything left lands once the spool works."""
    spool = FlakySpool(tmp_path / "spool.db", failures=1 << 30)
    sink = SpoolSink(spool, backlog_max_bytes=1 << 14)
    reads = [
        pb.Record(
            id=f"read{i}",
            run_id="run",
            file_access=pb.FileAccess(path=f"/data/{i:05d}" + "x" * 100, role=pb.ROLE_INPUT),
        )
        for i in range(1000)
    ]
    sink.emit(
        [
            pb.Record(id="start", run_id="run", run_tagged=pb.RunTagged()),
            *reads,
            pb.Record(id="end", run_id="run", run_finished=pb.RunFinished()),
        ]
    )
    assert not sink.flush(timeout=2)
    assert sink.problem is not None and str(tmp_path) in sink.problem.message
    assert sink.shed_records > 0 and sink.backlog_records < len(reads)
    spool.failures = 0
    assert sink.flush(timeout=30)
    assert sink.problem is None
    stored = spool.after(0, 10_000)
    ids = {r.id for r in stored}
    assert {"start", "end"} <= ids
    notices = [r.loss_notice for r in stored if r.HasField("loss_notice")]
    assert notices and all(n.delivery for n in notices)
    assert sum(n.lost_events for n in notices) == sink.shed_records
    assert len(ids & {r.id for r in reads}) == len(reads) - sink.shed_records
    sink.close()


class CountingSpool(Spool):
    """A real spool that counts its append transactions."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, max_bytes=1 << 30)
        self.appends = 0

    def append(
        self, records: Sequence[pb.Record], opened: Sequence[str], closed: Sequence[str]
    ) -> list[pb.Record]:
        self.appends += 1
        return super().append(records, opened, closed)


def test_records_emitted_in_a_trickle_share_transactions(
    tmp_path: Path, monkeypatch: MonkeyPatch
) -> None:
    """A job of many short processes emits a record every millisecond or so: the writer
    gathers them into a few transactions, not one each, and loses none."""
    # Wider than the default, which a loaded machine's millisecond sleeps can outlast.
    monkeypatch.setattr(sink_module, "_GATHER_SECONDS", 0.5)
    spool = CountingSpool(tmp_path / "spool.db")
    sink = SpoolSink(spool)
    for record in records(60):
        sink.emit([record])
        time.sleep(0.001)
    assert sink.flush(timeout=10)
    assert len(spool.after(0, 100)) == 60
    assert spool.appends <= 20
    sink.close()


def test_flush_does_not_wait_out_the_gathering(tmp_path: Path, monkeypatch: MonkeyPatch) -> None:
    """A flush() (a finalized run, a query) has what was emitted written at once, however
    long the writer would otherwise gather."""
    monkeypatch.setattr(sink_module, "_GATHER_SECONDS", 600.0)
    spool = CountingSpool(tmp_path / "spool.db")
    sink = SpoolSink(spool)
    sink.emit(records(3))
    assert sink.flush(timeout=10)
    assert len(spool.after(0, 100)) == 3
    sink.emit(records(2))
    assert sink.flush(timeout=10)
    assert len(spool.after(0, 100)) == 5
    sink.close()


def test_a_burst_of_records_is_written_without_gathering_more(
    tmp_path: Path, monkeypatch: MonkeyPatch
) -> None:
    """A finalization emits its records at once: enough for a transaction of their own,
    they are spooled together without waiting for more (nor for a flush)."""
    monkeypatch.setattr(sink_module, "_GATHER_SECONDS", 600.0)
    spool = CountingSpool(tmp_path / "spool.db")
    sink = SpoolSink(spool)
    sink.emit(records(sink_module._GATHER_ENOUGH))
    deadline = time.monotonic() + 30
    while len(spool.after(0, 1000)) < sink_module._GATHER_ENOUGH and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(spool.after(0, 1000)) == sink_module._GATHER_ENOUGH
    assert spool.appends == 1  # written together
    sink.close()

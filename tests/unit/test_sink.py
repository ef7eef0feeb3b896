"""Tests for roard.records.sink: queued, batched, retried delivery to the registry."""

from __future__ import annotations

import threading
from collections.abc import Sequence

from roard.records.sink import EmbeddedSink
from roard.v1 import records_pb2 as pb


class FlakyStore:
    """Fails the first `failures` ingests, then stores; can be held to test flush()."""

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.stored: list[pb.Record] = []
        self.gate = threading.Event()
        self.gate.set()

    def ingest(self, records: Sequence[pb.Record]) -> int:
        self.gate.wait()
        if self.failures:
            self.failures -= 1
            raise OSError("disk full")
        self.stored.extend(records)
        return len(records)


def records(n: int) -> list[pb.Record]:
    return [pb.Record(id=f"r{i}", run_id="run") for i in range(n)]


def test_flush_waits_until_everything_emitted_is_stored() -> None:
    """emit() returns at once; flush() returns only once the records are in the store."""
    store = FlakyStore()
    store.gate.clear()
    sink = EmbeddedSink(store)
    sink.emit(records(3))
    assert not sink.flush(timeout=0.2)  # the store is held: not stored yet
    store.gate.set()
    assert sink.flush(timeout=5)
    assert [r.id for r in store.stored] == ["r0", "r1", "r2"]
    seqs = [r.seq for r in store.stored]
    assert seqs == sorted(seqs) and len(set(seqs)) == 3
    sink.close()


def test_a_failing_store_is_retried_and_nothing_is_lost() -> None:
    """A transient storage error is retried: every record is stored once it recovers."""
    store = FlakyStore(failures=2)
    sink = EmbeddedSink(store)
    sink.emit(records(5))
    assert sink.flush(timeout=10)
    assert len(store.stored) == 5 and sink.failures == 2
    sink.close()

"""Where records go: a sequence number each, then the registry (in-process for now).

emit() only queues: the observer thread calls it for every process event and must never
wait on storage. A writer thread stores queued records in batches; flush() waits until
everything emitted so far is stored (a run is reported finalized only after that).
"""

from __future__ import annotations

import itertools
import queue
import threading
import time
from collections.abc import Sequence
from typing import Protocol

import structlog

from roard.v1 import records_pb2 as pb

log = structlog.get_logger("roard.sink")

_BATCH = 4096


class RecordStore(Protocol):
    """What a sink delivers to (the embedded registry's storage)."""

    def ingest(self, records: Sequence[pb.Record]) -> int: ...


class EmbeddedSink:
    """Numbers records and stores them in the in-process registry, in batches."""

    def __init__(self, store: RecordStore) -> None:
        self._store = store
        # Seeded from the clock so numbers keep growing across daemon restarts.
        self._seq = itertools.count(time.time_ns() // 1000)
        self._seq_lock = threading.Lock()
        self._queue: queue.Queue[pb.Record | None] = queue.Queue()
        self._stored = threading.Condition()
        self._emitted = 0
        self.delivered = 0
        self.failures = 0
        self._writer = threading.Thread(target=self._write_loop, name="roard-sink", daemon=True)
        self._writer.start()

    def emit(self, records: Sequence[pb.Record]) -> None:
        """Queue records, in order, for storage."""
        with self._seq_lock:
            for record in records:
                record.seq = next(self._seq)
                self._queue.put(record)
            self._emitted += len(records)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every record emitted so far is stored; False on timeout."""
        with self._seq_lock:
            target = self._emitted
        with self._stored:
            return self._stored.wait_for(lambda: self.delivered >= target, timeout)

    def close(self) -> None:
        """Store what is queued and stop the writer."""
        self._queue.put(None)
        self._writer.join()

    def _write_loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < _BATCH:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self._store_batch(batch)
                    return
                batch.append(item)
            self._store_batch(batch)

    def _store_batch(self, batch: list[pb.Record]) -> None:
        for attempt in range(5):
            try:
                self._store.ingest(batch)
                break
            except Exception:
                # Storage trouble (disk full, locked): retry, then give up loudly. The
                # registry deduplicates by record id, so a retried batch is harmless.
                self.failures += 1
                log.exception("storing records failed", records=len(batch), attempt=attempt)
                time.sleep(0.2 * (attempt + 1))
        with self._stored:
            self.delivered += len(batch)
            self._stored.notify_all()

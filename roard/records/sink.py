"""Where records go: a sequence number each, then the durable spool.

emit() only queues: the observer thread calls it for every process event and must never
wait on the disk. A writer thread appends queued records to the spool in batches (one
fsync'd transaction each); flush() waits until everything emitted so far is spooled (a run
is reported finalized only after that), and delivered() says whether the collector has
acked it.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Sequence

import structlog

from roard.records.spool import Spool
from roard.v1 import records_pb2 as pb

log = structlog.get_logger("roard.sink")

_BATCH = 4096


class SpoolSink:
    """Numbers records and appends them to the spool, in batches, on its own thread."""

    def __init__(self, spool: Spool, on_spooled: Callable[[], None] = lambda: None) -> None:
        """`on_spooled` is called (on the writer thread) after each batch is durable."""
        self._spool = spool
        self._on_spooled = on_spooled
        # Numbers keep growing across restarts (the spool remembers the last one) and
        # across wiped state dirs (seeded from the clock).
        self._next_seq = max(spool.last_seq() + 1, time.time_ns() // 1000)
        self._emitted_seq = 0  # the number of the latest record emitted by this sink
        self._seq_lock = threading.Lock()
        self._closing = threading.Event()
        self._queue: queue.Queue[pb.Record | None] = queue.Queue()
        self._spooled_cond = threading.Condition()
        self._spooled_seq = spool.last_seq()  # a backlog from before a restart counts
        self.spooled = 0
        self.failures = 0
        self._writer = threading.Thread(target=self._write_loop, name="roard-sink", daemon=True)
        self._writer.start()

    @property
    def spooled_seq(self) -> int:
        """The sequence number of the latest record spooled (0: none yet)."""
        return self._spooled_seq

    @property
    def last_emitted(self) -> int:
        """The sequence number of the latest record emitted (0: none yet)."""
        with self._seq_lock:
            return self._emitted_seq

    def advance_past(self, seq: int) -> None:
        """Keep numbering above `seq` (a collector has seen that number from this host)."""
        with self._seq_lock:
            self._next_seq = max(self._next_seq, seq + 1)

    def emit(self, records: Sequence[pb.Record]) -> None:
        """Queue records, in order, for the spool."""
        with self._seq_lock:
            for record in records:
                record.seq = self._next_seq
                self._next_seq += 1
                self._queue.put(record)
            if records:
                self._emitted_seq = records[-1].seq

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every record emitted so far is spooled; False on timeout."""
        target = self.last_emitted
        with self._spooled_cond:
            return self._spooled_cond.wait_for(lambda: self._spooled_seq >= target, timeout)

    def close(self) -> None:
        """Spool what is queued and stop the writer (which gives up retrying a failing
        spool now: what it cannot write is lost, and logged as such)."""
        self._closing.set()
        self._queue.put(None)
        self._writer.join()

    def _write_loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            stop = False
            while len(batch) < _BATCH:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    break
                batch.append(item)
            self._store(batch)
            if stop:
                return

    def _store(self, batch: list[pb.Record]) -> None:
        opened = [r.run_id for r in batch if r.HasField("run_tagged")]
        closed = [r.run_id for r in batch if r.HasField("run_finished")]
        delay = 0.2
        while True:
            try:
                notices = self._spool.append(batch, opened, closed)
                break
            except Exception:
                # Disk full or read-only state dir: keep the batch in memory and retry; the
                # daemon stays up and nothing emitted so far is dropped, until it stops.
                self.failures += 1
                if self._closing.is_set():
                    log.error(
                        "stopping with records that could not be spooled: lost",
                        records=len(batch),
                        runs=sorted({r.run_id for r in batch}),
                    )
                    return
                log.exception("spooling records failed; retrying", records=len(batch))
                self._closing.wait(delay)
                delay = min(delay * 2, 10.0)
        if notices:
            log.warning("spool full: shed records", runs=len(notices))
            self.emit(notices)
        with self._spooled_cond:
            self._spooled_seq = batch[-1].seq
            self.spooled += len(batch)
            self._spooled_cond.notify_all()
        self._on_spooled()

"""Where records go: a sequence number each, then the durable spool.

emit() only queues: the observer thread calls it for every process event and must never
wait on the disk. A writer thread appends queued records to the spool in batches (one
fsync'd transaction each), gathering what is emitted within a few milliseconds of a first
record into one batch: a job of a thousand short processes trickles records, and a
transaction each (then a collector transaction and an ack each) cost the daemon more than
the records. flush() waits until everything emitted so far is spooled, cutting the
gathering short (a run is reported finalized only after that).

When the spool cannot be written (the state dir is full or read-only), the writer keeps
records in a memory backlog and retries; `problem` says why. The backlog is bounded: past
`backlog_max_bytes` it sheds by the spool's priorities and leaves a delivery loss notice
on each run that lost something, so nothing is dropped silently.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence

import structlog

from roard.records import ids
from roard.records.spool import NEVER_SHED, Spool, delivery_loss, priority
from roard.statedir import StateDirProblem, diagnose
from roard.v1 import records_pb2 as pb

log = structlog.get_logger("roard.sink")

_BATCH = 4096
# How long the writer gathers records after the first before it writes them, unless a
# flush() waits or they came in a burst of _GATHER_ENOUGH or more (a finalization's
# records, emitted together: one transaction of their own, at once).
_GATHER_SECONDS = 0.01
_GATHER_ENOUGH = 256
_RETRY_FIRST = 0.2
_RETRY_MAX = 5.0
# While retrying, the queue is moved into the bounded backlog this often: the observer
# keeps emitting, and the queue itself is not bounded.
_DRAIN_EVERY = 0.2


class _WriteNow:
    """Queued by flush(): write what is gathered now."""


_WRITE_NOW = _WriteNow()


class SpoolSink:
    """Numbers records and appends them to the spool, in batches, on its own thread."""

    def __init__(
        self,
        spool: Spool,
        on_spooled: Callable[[], None] = lambda: None,
        backlog_max_bytes: int = 64 << 20,
    ) -> None:
        """`on_spooled` is called (on the writer thread) after each batch is durable;
        `backlog_max_bytes` bounds what is held in memory while the spool fails."""
        self._spool = spool
        self._on_spooled = on_spooled
        self._backlog_max = backlog_max_bytes
        # Numbers keep growing across restarts (the spool remembers the last one) and
        # across wiped state dirs (seeded from the clock).
        self._next_seq = max(spool.last_seq() + 1, time.time_ns() // 1000)
        self._emitted_seq = 0  # the number of the latest record emitted by this sink
        self._seq_lock = threading.Lock()
        self._closing = threading.Event()
        self._queue: queue.Queue[pb.Record | _WriteNow | None] = queue.Queue()
        self._spooled_cond = threading.Condition()
        self._spooled_seq = spool.last_seq()  # a backlog from before a restart counts
        self._backlog: list[pb.Record] = []  # the writer thread's only
        self._backlog_bytes = 0
        self.spooled = 0
        self.failures = 0
        self.backlog_records = 0  # waiting in memory for the spool
        self.shed_records = 0  # shed from the memory backlog
        self.problem: StateDirProblem | None = None  # set while the spool cannot be written
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
        """Queue records, in order, for the spool; a burst of _GATHER_ENOUGH or more is
        written at once, in one transaction."""
        with self._seq_lock:
            for record in records:
                record.seq = self._next_seq
                self._next_seq += 1
                self._queue.put(record)
            if records:
                self._emitted_seq = records[-1].seq
            if len(records) >= _GATHER_ENOUGH:
                self._queue.put(_WRITE_NOW)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every record emitted so far is spooled; False on timeout."""
        target = self.last_emitted
        with self._spooled_cond:
            if self._spooled_seq >= target:
                return True
        self._queue.put(_WRITE_NOW)
        with self._spooled_cond:
            return self._spooled_cond.wait_for(lambda: self._spooled_seq >= target, timeout)

    def close(self) -> None:
        """Spool what is queued and stop the writer (which gives up retrying a failing
        spool now: what it cannot write is lost, and logged as such)."""
        self._closing.set()
        self._queue.put(None)
        self._writer.join()

    def _write_loop(self) -> None:
        stopping = False
        delay = _RETRY_FIRST
        while True:
            # Nothing waiting: sleep until something is emitted, then gather for a moment.
            stopping = self._take(None if not self._backlog else 0, gather=True) or stopping
            if not self._backlog:
                if stopping:
                    return
                continue
            batch = self._backlog[:_BATCH]
            if self._store(batch):
                del self._backlog[: len(batch)]
                # Usually all of it: no need to size each record again.
                self._backlog_bytes -= (
                    sum(r.ByteSize() for r in batch) if self._backlog else self._backlog_bytes
                )
                self.backlog_records = len(self._backlog)
                delay = _RETRY_FIRST
                continue
            if stopping or self._closing.is_set():
                log.error(
                    "stopping with records that could not be spooled: lost",
                    records=len(self._backlog),
                    runs=sorted({ids.of_record(r) for r in self._backlog}),
                )
                return
            # Keep taking what is emitted while waiting to retry, within the bound.
            retry_at = time.monotonic() + delay
            while not stopping and (left := retry_at - time.monotonic()) > 0:
                stopping = self._take(min(left, _DRAIN_EVERY))
                self._bound()
            delay = min(delay * 2, _RETRY_MAX)

    def _take(self, timeout: float | None, gather: bool = False) -> bool:
        """Move queued records into the backlog (waiting up to `timeout` for the first;
        None: for ever); with `gather`, also those emitted within _GATHER_SECONDS of the
        first, until a flush() or a burst asks for a write, or a batch is full. True once
        close() asked to stop."""
        try:
            item = self._queue.get(timeout=timeout) if timeout != 0 else self._queue.get_nowait()
        except queue.Empty:
            return False
        until = time.monotonic() + _GATHER_SECONDS if gather else 0.0
        while item is not None:
            if isinstance(item, _WriteNow):
                until = 0.0
            else:
                self._backlog.append(item)
                self._backlog_bytes += item.ByteSize()
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                left = until - time.monotonic()
                if left <= 0 or len(self._backlog) >= _BATCH:
                    break
                try:
                    item = self._queue.get(timeout=left)
                except queue.Empty:
                    break
        self.backlog_records = len(self._backlog)
        return item is None

    def _store(self, batch: list[pb.Record]) -> bool:
        """Append one batch; False (with `problem` set) when the spool cannot take it."""
        opened = [ids.of_record(r) for r in batch if r.HasField("run_tagged")]
        closed = [ids.of_record(r) for r in batch if r.HasField("run_finished")]
        try:
            notices = self._spool.append(batch, opened, closed)
        except Exception as exc:
            self.failures += 1
            if self.problem is None:
                self.problem = diagnose(self._spool.path.parent, exc)
                log.error(
                    "cannot write the spool: records wait in memory until the state dir "
                    "is writable again",
                    state_dir=str(self.problem.state_dir),
                    error=self.problem.error,
                    fix=self.problem.fix,
                    records=len(self._backlog),
                )
            return False
        if self.problem is not None:
            log.warning(
                "the state dir is writable again: spooling the records that waited",
                state_dir=str(self.problem.state_dir),
                records=len(self._backlog),
                seconds=round(time.time() - self.problem.since, 1),
            )
            self.problem = None
        if notices:
            log.warning("spool full: shed records", runs=len(notices))
            self.emit(notices)
        with self._spooled_cond:
            self._spooled_seq = batch[-1].seq
            self.spooled += len(batch)
            self._spooled_cond.notify_all()
        self._on_spooled()
        return True

    def _bound(self) -> None:
        """Past the cap, shed the least valuable records in memory (the spool's order),
        down to 90% of it, and leave a delivery loss notice on each run that lost some."""
        if self._backlog_bytes <= self._backlog_max:
            return
        target = self._backlog_max * 9 // 10
        candidates = sorted(
            (i for i, r in enumerate(self._backlog) if priority(r) < NEVER_SHED),
            key=lambda i: (priority(self._backlog[i]), i),
        )
        dropped: set[int] = set()
        lost: Counter[str] = Counter()
        for i in candidates:
            if self._backlog_bytes <= target:
                break
            record = self._backlog[i]
            dropped.add(i)
            self._backlog_bytes -= record.ByteSize()
            lost[ids.of_record(record)] += 1
        if not dropped:
            return  # only records that must never be shed: hold them all
        self._backlog = [r for i, r in enumerate(self._backlog) if i not in dropped]
        self.backlog_records = len(self._backlog)
        self.shed_records += len(dropped)
        problem = self.problem
        why = problem.message if problem is not None else "the spool could not be written"
        log.error("memory backlog full: shed records", records=len(dropped), runs=len(lost))
        self.emit(
            [
                delivery_loss(
                    run_id,
                    n,
                    f"{why}; the daemon's memory backlog was full and shed {n} records of this run",
                )
                for run_id, n in sorted(lost.items())
            ]
        )

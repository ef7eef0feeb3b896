"""The durable spool: every record waits here (on disk) until the collector acks it.

One SQLite file in WAL mode under the state dir. Records keep their sequence number, so
after a crash, an outage or a reboot the exporter resends exactly what was never acked.
The spool is bounded: when it is over its byte budget it sheds the least valuable records
first (read summaries of system and package files, then other reads, then process
lifecycle, then outputs; never a run's opening, closing or loss records) and leaves a
delivery LossNotice on each run that lost something, so the run reads as incomplete.

The spool also remembers which runs are open, so a restarted daemon can close the runs its
predecessor left behind without asking a collector that may be unreachable.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from roard.artifacts.classify import USER_KINDS
from roard.errors import PrerequisiteError
from roard.records import ids
from roard.v1 import records_pb2 as pb

# run_id columns hold daemon-side ids ("RUN_ID/PART" for a part of a joined run).
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS spool (seq INTEGER PRIMARY KEY, run_id TEXT NOT NULL,"
    " priority INTEGER NOT NULL, size INTEGER NOT NULL, time DOUBLE PRECISION NOT NULL,"
    " payload BLOB NOT NULL)",
    "CREATE INDEX IF NOT EXISTS spool_shed ON spool (priority, seq)",
    "CREATE TABLE IF NOT EXISTS open_runs (run_id TEXT PRIMARY KEY)",
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL)",
    # Records the collector refused for good (kept for inspection, never resent).
    "CREATE TABLE IF NOT EXISTS rejected (seq INTEGER PRIMARY KEY, run_id TEXT NOT NULL,"
    " reason TEXT NOT NULL, payload BLOB NOT NULL)",
)

# Shedding order, lowest first. NEVER_SHED records are what make a run exist, end and say
# what it lost: without them the collector could show a complete run that is not.
PRIO_SUMMARY = 0  # reads of system / package files
PRIO_READ = 1  # reads of artifacts
PRIO_LIFECYCLE = 2  # processes started / exited, path changes
PRIO_OUTPUT = 3  # outputs and deleted temporaries
NEVER_SHED = 9
_NEVER_SHED_KINDS = frozenset({"run_tagged", "run_finished", "loss_notice"})
_LIFECYCLE_KINDS = frozenset({"process_started", "process_exited", "path_changed"})


def priority(record: pb.Record) -> int:
    """How much losing `record` would hurt (higher: kept longer)."""
    kind = record.WhichOneof("body") or ""
    if kind in _NEVER_SHED_KINDS:
        return NEVER_SHED
    if kind in _LIFECYCLE_KINDS:
        return PRIO_LIFECYCLE
    if kind == "file_access":
        access = record.file_access
        if access.role != pb.ROLE_INPUT:
            return PRIO_OUTPUT
        return PRIO_READ if access.kind in USER_KINDS else PRIO_SUMMARY
    if kind == "dataset":
        return PRIO_OUTPUT if record.dataset.role != pb.ROLE_INPUT else PRIO_READ
    return PRIO_LIFECYCLE


@dataclass(frozen=True)
class SpoolDepth:
    """How much is waiting for the collector."""

    records: int
    bytes: int
    oldest: float | None  # observation time of the oldest record, seconds since the epoch


class Spool:
    """Records on disk from spooling until acked. Thread-safe."""

    def __init__(self, path: Path, max_bytes: int) -> None:
        """Opens (creating) the spool at `path`, holding at most about `max_bytes`."""
        self._path = path
        self._max_bytes = max_bytes
        self._lock = threading.Lock()
        try:
            self._conn = sqlite3.connect(
                str(path), timeout=30.0, isolation_level=None, check_same_thread=False
            )
            self._conn.execute("PRAGMA journal_mode=WAL")
            # FULL: a record reported spooled survives power loss, not only a crash.
            self._conn.execute("PRAGMA synchronous=FULL")
            for statement in _SCHEMA:
                self._conn.execute(statement)
            row = self._conn.execute("SELECT COALESCE(SUM(size), 0) FROM spool").fetchone()
        except sqlite3.Error as exc:
            raise PrerequisiteError(
                f"cannot open the spool {path}: {exc}; check that the state dir is writable "
                "and has free space"
            ) from exc
        self._bytes = int(row[0])
        self.shed_records = 0

    @property
    def path(self) -> Path:
        """The spool file."""
        return self._path

    def last_seq(self) -> int:
        """The highest sequence number ever spooled (0 for a new spool), so numbering can
        continue above it whatever the clock says."""
        with self._lock:
            row = self._conn.execute("SELECT value FROM meta WHERE key = 'last_seq'").fetchone()
        return int(row[0]) if row else 0

    def append(
        self, records: Sequence[pb.Record], opened: Sequence[str], closed: Sequence[str]
    ) -> list[pb.Record]:
        """Stores `records` (numbered, in order) durably in one transaction, with the runs
        they open and close. Returns delivery loss notices created by shedding, which the
        caller must number and append."""
        payloads = [r.SerializeToString() for r in records]
        rows = [
            (r.seq, ids.of_record(r), priority(r), len(payload), r.time, payload)
            for r, payload in zip(records, payloads, strict=True)
        ]
        with self._write() as conn:
            conn.executemany(
                "INSERT OR REPLACE INTO spool (seq, run_id, priority, size, time, payload)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                rows,
            )
            conn.executemany(
                "INSERT OR IGNORE INTO open_runs (run_id) VALUES (?)", [(r,) for r in opened]
            )
            conn.executemany("DELETE FROM open_runs WHERE run_id = ?", [(r,) for r in closed])
            if rows:
                conn.execute(
                    "INSERT INTO meta (key, value) VALUES ('last_seq', ?) ON CONFLICT (key)"
                    " DO UPDATE SET value = MAX(value, excluded.value)",
                    (rows[-1][0],),
                )
            self._bytes += sum(r[3] for r in rows)
            shed = self._shed(conn) if self._bytes > self._max_bytes else Counter[str]()
        self.shed_records += sum(shed.values())  # counted once the deletions are durable
        return [
            delivery_loss(
                run_id,
                n,
                f"the daemon's spool was full and shed {n} records of this run "
                "(collector unreachable too long; raise spool_max_bytes)",
            )
            for run_id, n in sorted(shed.items())
        ]

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, serialized with every other use of the connection; on
        failure it is rolled back and the byte count re-read from the file."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
                self._conn.execute("COMMIT")
            except BaseException:
                # A failed COMMIT (disk full, I/O error) may have rolled back already.
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                # The running byte count was moved inside the transaction: re-read it.
                with contextlib.suppress(sqlite3.Error):
                    self._bytes = self._count_bytes()
                raise

    def _shed(self, conn: sqlite3.Connection) -> Counter[str]:
        """Deletes the least valuable records until the spool is at 90% of its budget;
        returns how many each run lost."""
        target = self._max_bytes * 9 // 10
        lost: Counter[str] = Counter()
        while self._bytes > target:
            rows = conn.execute(
                "SELECT seq, run_id, size FROM spool WHERE priority < ? ORDER BY priority, seq"
                " LIMIT 1000",
                (NEVER_SHED,),
            ).fetchall()
            if not rows:
                break  # only records that must never be shed are left: hold them all
            for seq, run_id, size in rows:
                if self._bytes <= target:
                    break
                conn.execute("DELETE FROM spool WHERE seq = ?", (seq,))
                self._bytes -= size
                lost[run_id] += 1
        return lost

    def _count_bytes(self) -> int:
        return int(self._conn.execute("SELECT COALESCE(SUM(size), 0) FROM spool").fetchone()[0])

    def after(self, seq: int, limit: int) -> list[pb.Record]:
        """Up to `limit` records with a sequence number above `seq`, in order."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT payload FROM spool WHERE seq > ? ORDER BY seq LIMIT ?", (seq, limit)
            ).fetchall()
        records = []
        for (payload,) in rows:
            record = pb.Record()
            record.ParseFromString(payload)
            records.append(record)
        return records

    def ack(self, seq: int) -> int:
        """Forgets every record up to `seq` (the collector stored them); returns how many."""
        with self._write() as conn:
            freed = conn.execute(
                "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM spool WHERE seq <= ?", (seq,)
            ).fetchone()
            conn.execute("DELETE FROM spool WHERE seq <= ?", (seq,))
            self._bytes -= int(freed[1])
        return int(freed[0])

    def reject(self, seq: int, reason: str) -> pb.Record | None:
        """Moves the record `seq` out of the way into the `rejected` table (the collector
        refuses it for good: resending it would block everything behind it)."""
        with self._write() as conn:
            row = conn.execute(
                "SELECT run_id, size, payload FROM spool WHERE seq = ?", (seq,)
            ).fetchone()
            if row is not None:
                conn.execute(
                    "INSERT OR REPLACE INTO rejected (seq, run_id, reason, payload)"
                    " VALUES (?, ?, ?, ?)",
                    (seq, row[0], reason, row[2]),
                )
                conn.execute("DELETE FROM spool WHERE seq = ?", (seq,))
                self._bytes -= int(row[1])
        if row is None:
            return None
        record = pb.Record()
        record.ParseFromString(row[2])
        return record

    def depth(self) -> SpoolDepth:
        """Records and bytes waiting, and the age of the oldest."""
        with self._lock:
            count, oldest = self._conn.execute("SELECT COUNT(*), MIN(time) FROM spool").fetchone()
            return SpoolDepth(int(count), self._bytes, oldest)

    def runs_waiting(self) -> set[str]:
        """Runs with records still waiting for the collector."""
        with self._lock:
            rows = self._conn.execute("SELECT DISTINCT run_id FROM spool").fetchall()
        return {r[0] for r in rows}

    def open_runs(self) -> list[str]:
        """Runs opened and not yet closed (by whoever spooled before)."""
        with self._lock:
            rows = self._conn.execute("SELECT run_id FROM open_runs ORDER BY run_id").fetchall()
        return [r[0] for r in rows]

    def close(self) -> None:
        """Closes the file. Idempotent."""
        with self._lock:
            self._conn.close()


def delivery_loss(local: str, count: int, reason: str) -> pb.Record:
    """A loss notice for records of a run (daemon-side id `local`, see roard.records.ids)
    that were observed but never delivered."""
    run_id, part = ids.split(local)
    return pb.Record(
        id=f"{local}/loss/delivery-{time.time_ns()}",
        run_id=run_id,
        part=part,
        time=time.time(),
        loss_notice=pb.LossNotice(lost_events=count, reason=reason, delivery=True),
    )

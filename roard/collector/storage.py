"""Registry storage: lineage records in, run descriptions (the `roarctl show/runs` JSON) out.

`LineageStore` is the interface the collector service codes against; `SqliteStore` is the
embedded implementation (one file, WAL mode). A PostgreSQL twin implements the same
protocol, so the SQL here stays plain: `INSERT ... ON CONFLICT`, `CASE`, no SQLite-only
functions, and booleans stored as 0/1.

Records arrive at least once and in any order, so every write is idempotent (deduplicated
by `Record.id`) and order-independent where it matters (a run row exists as soon as any of
its records does; the highest `seq` wins for file accesses and for run tagging/finishing).
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, Self

from roard.errors import ConfigError, NotFound, UsageError
from roard.v1 import records_pb2

__all__ = ["SCHEMA_VERSION", "LineageStore", "SqliteStore", "rfc3339"]

ROLE_INPUT = records_pb2.ROLE_INPUT
ROLE_OUTPUT = records_pb2.ROLE_OUTPUT
ROLE_DELETED = records_pb2.ROLE_DELETED

# Schema migrations: entry i takes the database from version i to i + 1 (PRAGMA
# user_version). Append only; never edit a released entry.
_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        # Every record ever accepted, raw: the deduplication key, and what a later schema
        # version can rebuild the derived tables below from.
        """
        CREATE TABLE records (
            id TEXT PRIMARY KEY,
            run_id TEXT NOT NULL,
            seq INTEGER NOT NULL,
            time DOUBLE PRECISION NOT NULL,
            kind TEXT NOT NULL,
            payload BLOB NOT NULL
        )
        """,
        "CREATE INDEX records_run ON records (run_id)",
        # One row per run, created by whichever of its records arrives first.
        # tagged_seq / finished_seq are NULL until RunTagged / RunFinished arrive.
        """
        CREATE TABLE runs (
            run_id TEXT PRIMARY KEY,
            started_at DOUBLE PRECISION NOT NULL,
            tagged_seq INTEGER,
            name TEXT NOT NULL DEFAULT '',
            labels TEXT NOT NULL DEFAULT '{}',
            host TEXT NOT NULL DEFAULT '',
            uid INTEGER,
            how TEXT NOT NULL DEFAULT '',
            root_pid INTEGER,
            loss_sum INTEGER NOT NULL DEFAULT 0,
            finished_seq INTEGER,
            has_exit_code INTEGER NOT NULL DEFAULT 0,
            exit_code INTEGER,
            ended_at DOUBLE PRECISION,
            complete INTEGER,
            final_lost INTEGER
        )
        """,
        "CREATE INDEX runs_name ON runs (name, started_at)",
        "CREATE INDEX runs_started ON runs (started_at)",
        # Processes are keyed by (pid, start_ticks): pids are reused, start times are not.
        """
        CREATE TABLE processes (
            run_id TEXT NOT NULL,
            pid INTEGER NOT NULL,
            start_ticks INTEGER NOT NULL,
            ppid INTEGER,
            exe TEXT,
            argv TEXT,
            cwd TEXT,
            uid INTEGER,
            started_at DOUBLE PRECISION,
            ended_at DOUBLE PRECISION,
            exit_code INTEGER,
            PRIMARY KEY (run_id, pid, start_ticks)
        )
        """,
        # The latest (highest seq) access per (run, role, path).
        """
        CREATE TABLE file_access (
            run_id TEXT NOT NULL,
            role INTEGER NOT NULL,
            path TEXT NOT NULL,
            seq INTEGER NOT NULL,
            hash TEXT NOT NULL,
            size INTEGER NOT NULL,
            kind TEXT NOT NULL,
            dev INTEGER NOT NULL,
            ino INTEGER NOT NULL,
            mtime_ns INTEGER NOT NULL,
            bytes_read INTEGER NOT NULL,
            bytes_written INTEGER NOT NULL,
            read_too INTEGER NOT NULL,
            PRIMARY KEY (run_id, role, path)
        )
        """,
        "CREATE INDEX file_access_hash ON file_access (hash, role)",
    ),
)

SCHEMA_VERSION = len(_MIGRATIONS)

_I64_LIMIT = 1 << 63


def _i64(value: int) -> int:
    """Maps a protobuf uint64 onto SQLite's (and PostgreSQL's) signed 64-bit INTEGER."""
    return value - (1 << 64) if value >= _I64_LIMIT else value


def _u64(value: int) -> int:
    """Inverse of `_i64`."""
    return value + (1 << 64) if value < 0 else value


def rfc3339(epoch_seconds: float) -> str:
    """Formats seconds since the epoch as RFC 3339 UTC with microseconds, e.g.
    "2026-11-26T06:11:28.123456Z"."""
    return datetime.fromtimestamp(epoch_seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _not_found(run: str) -> NotFound:
    return NotFound(f"no run '{run}': list runs with `roarctl runs`")


class LineageStore(Protocol):
    """What the collector needs from its storage (SQLite embedded, PostgreSQL at scale).

    Implementations are thread-safe. `uid` arguments restrict results to runs tagged by
    that user; None or 0 (root) sees everything.
    """

    def ingest(self, records: Iterable[records_pb2.Record]) -> int:
        """Stores records in one transaction, ignoring ids already stored; returns how many
        were new."""
        ...

    def show(self, run: str, uid: int | None = None) -> dict[str, Any]:
        """Describes one run (a run id, or a name meaning its latest run) as the
        `roarctl show --json` document; raises NotFound when absent or not visible."""
        ...

    def summary(self, run_id: str, uid: int | None = None) -> dict[str, Any]:
        """A run's header fields and its file counts by role and kind."""
        ...

    def unfinished(self, host: str) -> list[str]:
        """Ids of the runs of `host` that were tagged but never finished."""
        ...

    def runs(
        self, name: str | None = None, uid: int | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        """Summaries of visible runs, newest first, optionally only those named `name`."""
        ...

    def artifact_runs(self, file_hash: str) -> dict[str, list[str]]:
        """Run ids that left `file_hash` as an output ("produced_by") and that read it as an
        input ("consumed_by")."""
        ...

    def close(self) -> None:
        """Releases the storage; the store is unusable afterwards."""
        ...


def _visibility(uid: int | None) -> tuple[str, tuple[int, ...]]:
    """SQL condition (on table alias `r`) limiting runs to those a caller may see."""
    if uid is None or uid == 0:
        return "1 = 1", ()
    # An untagged run (RunTagged not yet arrived) has no owner yet: root only.
    return "r.tagged_seq IS NOT NULL AND r.uid = ?", (uid,)


class SqliteStore:
    """The embedded registry: a `LineageStore` over one SQLite file.

    One connection shared by all threads and serialized by a lock: SQLite allows one
    writer at a time anyway, and the registry's queries are small.
    """

    def __init__(self, path: Path) -> None:
        """Opens (creating if needed) the database at `path` and brings its schema up to
        date. Raises ConfigError when the file was written by a newer roard."""
        self._path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        # isolation_level=None: we issue BEGIN/COMMIT ourselves so each ingest batch is
        # exactly one transaction.
        self._conn = sqlite3.connect(
            str(path), timeout=30.0, isolation_level=None, check_same_thread=False
        )
        self._conn.row_factory = sqlite3.Row
        self._closed = False
        try:
            self._conn.execute("PRAGMA journal_mode=WAL")
            # FULL: an acked record must survive power loss (the daemon drops acked
            # records from its spool), which WAL's NORMAL does not promise.
            self._conn.execute("PRAGMA synchronous=FULL")
            self._migrate()
        except BaseException:
            self._conn.close()
            raise

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def path(self) -> Path:
        """The database file."""
        return self._path

    def _migrate(self) -> None:
        # BEGIN IMMEDIATE takes the write lock before reading the version, so two
        # processes opening a fresh file cannot both run the same migration.
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            version = int(self._conn.execute("PRAGMA user_version").fetchone()[0])
            if version > SCHEMA_VERSION:
                raise ConfigError(
                    f"registry database {self._path} has schema version {version}, newer "
                    f"than this roard understands ({SCHEMA_VERSION}): upgrade roard or "
                    "point it at another database"
                )
            for target, statements in enumerate(_MIGRATIONS[version:], start=version + 1):
                for statement in statements:
                    self._conn.execute(statement)
                # user_version lives in the file header and commits with the transaction.
                self._conn.execute(f"PRAGMA user_version = {target:d}")
            self._conn.execute("COMMIT")
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise

    def close(self) -> None:
        """Closes the database; further calls raise sqlite3.ProgrammingError. Idempotent."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._conn.close()

    # ----------------------------------------------------------------------------- writes

    def ingest(self, records: Iterable[records_pb2.Record]) -> int:
        """Stores `records` in one transaction and returns how many were new.

        Records whose id is already stored (or repeated within the batch) are ignored, so
        redelivery is harmless. A record without an id or run id raises UsageError and
        nothing of the batch is stored.
        """
        with self._lock:
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                new = 0
                for record in records:
                    if self._ingest_one(conn, record):
                        new += 1
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            return new

    def _ingest_one(self, conn: sqlite3.Connection, record: records_pb2.Record) -> bool:
        if not record.id or not record.run_id:
            raise UsageError(
                f"lineage record without an id or run id (id={record.id!r}, "
                f"run_id={record.run_id!r}): the sender is broken; upgrade roard on that host"
            )
        kind = record.WhichOneof("body") or ""
        cursor = conn.execute(
            "INSERT INTO records (id, run_id, seq, time, kind, payload) VALUES (?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (id) DO NOTHING",
            (
                record.id,
                record.run_id,
                _i64(record.seq),
                record.time,
                kind,
                record.SerializeToString(deterministic=True),
            ),
        )
        if cursor.rowcount != 1:
            return False  # seen before: its effects are already applied

        # Any record may be the first of its run to arrive: make sure the run row exists.
        # Until RunTagged arrives the run's start is the earliest record time seen.
        conn.execute(
            "INSERT INTO runs (run_id, started_at) VALUES (?, ?) ON CONFLICT (run_id) DO UPDATE"
            " SET started_at = CASE WHEN runs.tagged_seq IS NULL"
            " AND excluded.started_at < runs.started_at"
            " THEN excluded.started_at ELSE runs.started_at END",
            (record.run_id, record.time),
        )
        seq = _i64(record.seq)
        if kind == "run_tagged":
            self._apply_run_tagged(conn, record, seq)
        elif kind == "process_started":
            self._apply_process_started(conn, record)
        elif kind == "process_exited":
            self._apply_process_exited(conn, record)
        elif kind == "file_access":
            self._apply_file_access(conn, record, seq)
        elif kind == "loss_notice":
            conn.execute(
                "UPDATE runs SET loss_sum = loss_sum + ? WHERE run_id = ?",
                (_i64(record.loss_notice.lost_events), record.run_id),
            )
        elif kind == "run_finished":
            fin = record.run_finished
            # Ties on seq: the later-ingested record wins.
            conn.execute(
                "UPDATE runs SET finished_seq = ?, has_exit_code = ?, exit_code = ?,"
                " ended_at = ?, complete = ?, final_lost = ?"
                " WHERE run_id = ? AND (finished_seq IS NULL OR finished_seq <= ?)",
                (
                    seq,
                    int(fin.has_exit_code),
                    fin.exit_code if fin.has_exit_code else None,
                    fin.ended_at or record.time,
                    int(fin.complete),
                    _i64(fin.lost_events),
                    record.run_id,
                    seq,
                ),
            )
        # A record with no body (from a newer sender) is kept raw in `records` only.
        return True

    @staticmethod
    def _apply_run_tagged(conn: sqlite3.Connection, record: records_pb2.Record, seq: int) -> None:
        tag = record.run_tagged
        conn.execute(
            "UPDATE runs SET tagged_seq = ?, name = ?, labels = ?, host = ?, uid = ?, how = ?,"
            " root_pid = ?, started_at = ?"
            " WHERE run_id = ? AND (tagged_seq IS NULL OR tagged_seq <= ?)",
            (
                seq,
                tag.name,
                json.dumps(dict(sorted(tag.labels.items()))),
                tag.host,
                tag.uid,
                tag.how,
                tag.root_pid,
                tag.started_at or record.time,
                record.run_id,
                seq,
            ),
        )

    @staticmethod
    def _apply_process_started(conn: sqlite3.Connection, record: records_pb2.Record) -> None:
        ps = record.process_started
        # The exit may have arrived first: fill in the start fields, keep the exit fields.
        conn.execute(
            "INSERT INTO processes (run_id, pid, start_ticks, ppid, exe, argv, cwd, uid,"
            " started_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (run_id, pid, start_ticks) DO UPDATE SET ppid = excluded.ppid,"
            " exe = excluded.exe, argv = excluded.argv, cwd = excluded.cwd,"
            " uid = excluded.uid, started_at = excluded.started_at",
            (
                record.run_id,
                ps.pid,
                _i64(ps.start_ticks),
                ps.ppid,
                ps.exe,
                json.dumps(list(ps.argv)),
                ps.cwd,
                ps.uid,
                ps.started_at or record.time,
            ),
        )

    @staticmethod
    def _apply_process_exited(conn: sqlite3.Connection, record: records_pb2.Record) -> None:
        pe = record.process_exited
        # No start record (yet, or ever: e.g. adopted mid-life): keep what the exit tells.
        conn.execute(
            "INSERT INTO processes (run_id, pid, start_ticks, ended_at, exit_code)"
            " VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT (run_id, pid, start_ticks) DO UPDATE SET"
            " ended_at = excluded.ended_at, exit_code = excluded.exit_code",
            (
                record.run_id,
                pe.pid,
                _i64(pe.start_ticks),
                pe.ended_at or record.time,
                pe.exit_code,
            ),
        )

    @staticmethod
    def _apply_file_access(conn: sqlite3.Connection, record: records_pb2.Record, seq: int) -> None:
        fa = record.file_access
        # Highest seq wins per (run, role, path), whatever order the records came in.
        conn.execute(
            "INSERT INTO file_access (run_id, role, path, seq, hash, size, kind, dev, ino,"
            " mtime_ns, bytes_read, bytes_written, read_too)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (run_id, role, path) DO UPDATE SET seq = excluded.seq,"
            " hash = excluded.hash, size = excluded.size, kind = excluded.kind,"
            " dev = excluded.dev, ino = excluded.ino, mtime_ns = excluded.mtime_ns,"
            " bytes_read = excluded.bytes_read, bytes_written = excluded.bytes_written,"
            " read_too = excluded.read_too"
            " WHERE excluded.seq >= file_access.seq",
            (
                record.run_id,
                int(fa.role),
                fa.path,
                seq,
                fa.hash,
                _i64(fa.size),
                fa.kind,
                _i64(fa.dev),
                _i64(fa.ino),
                fa.mtime_ns,
                _i64(fa.bytes_read),
                _i64(fa.bytes_written),
                int(fa.read_too),
            ),
        )

    # ---------------------------------------------------------------------------- queries

    def show(self, run: str, uid: int | None = None) -> dict[str, Any]:
        """The `roarctl show RUN --json` document for `run`: a run id, or else a name
        meaning that name's latest visible run (by started_at).

        Fields not yet known (a run whose RunTagged has not arrived, a process seen only
        exiting) are None, "" or empty. Raises NotFound when no visible run matches.
        """
        where, params = _visibility(uid)
        with self._lock:
            conn = self._conn
            row = conn.execute(
                f"SELECT * FROM runs r WHERE r.run_id = ? AND {where}", (run, *params)
            ).fetchone()
            if row is None and run:
                row = conn.execute(
                    f"SELECT * FROM runs r WHERE r.name = ? AND {where}"
                    " ORDER BY r.started_at DESC, r.run_id DESC LIMIT 1",
                    (run, *params),
                ).fetchone()
            if row is None:
                raise _not_found(run)
            run_id = row["run_id"]
            processes = conn.execute(
                "SELECT * FROM processes WHERE run_id = ?"
                " ORDER BY started_at IS NULL, started_at, start_ticks, pid",
                (run_id,),
            ).fetchall()
            files = conn.execute(
                "SELECT * FROM file_access WHERE run_id = ? AND role IN (?, ?, ?) ORDER BY path",
                (run_id, ROLE_INPUT, ROLE_OUTPUT, ROLE_DELETED),
            ).fetchall()
            notices = conn.execute(
                "SELECT payload FROM records WHERE run_id = ? AND kind = 'loss_notice'"
                " ORDER BY seq",
                (run_id,),
            ).fetchall()

        doc = self._run_summary(row)
        doc.update(
            loss_reasons=[_loss_reason(n["payload"]) for n in notices],
            labels=json.loads(row["labels"]),
            how=row["how"] or None,
            root_pid=row["root_pid"],
            processes=[_process_doc(p) for p in processes],
            inputs=[_input_doc(f) for f in files if f["role"] == ROLE_INPUT],
            outputs=[_output_doc(f) for f in files if f["role"] == ROLE_OUTPUT],
            deleted=[
                {"path": f["path"], "kind": f["kind"], "bytes_written": _u64(f["bytes_written"])}
                for f in files
                if f["role"] == ROLE_DELETED
            ],
        )
        return doc

    def unfinished(self, host: str) -> list[str]:
        """Ids of the runs of `host` that were tagged but never finished (the daemon that
        tracked them stopped without finalizing them)."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT run_id FROM runs WHERE host = ? AND tagged_seq IS NOT NULL"
                " AND finished_seq IS NULL ORDER BY started_at",
                (host,),
            ).fetchall()
        return [row["run_id"] for row in rows]

    def summary(self, run_id: str, uid: int | None = None) -> dict[str, Any]:
        """A run's header fields plus file counts by role and kind ("inputs": {"artifact":
        2, "system": 40}), without listing the files: cheap for runs with many files."""
        where, params = _visibility(uid)
        with self._lock:
            row = self._conn.execute(
                f"SELECT * FROM runs r WHERE r.run_id = ? AND {where}", (run_id, *params)
            ).fetchone()
            if row is None:
                raise _not_found(run_id)
            counts = self._conn.execute(
                "SELECT role, kind, COUNT(*) AS n FROM file_access WHERE run_id = ?"
                " GROUP BY role, kind",
                (run_id,),
            ).fetchall()
        doc = self._run_summary(row)
        for role, key in ((ROLE_INPUT, "inputs"), (ROLE_OUTPUT, "outputs")):
            doc[key] = {c["kind"]: c["n"] for c in counts if c["role"] == role}
        return doc

    def runs(
        self, name: str | None = None, uid: int | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        """Summaries of the visible runs, newest (by started_at) first, at most `limit`;
        only runs called `name` when it is given."""
        where, params = _visibility(uid)
        sql = (
            "SELECT r.*,"
            " (SELECT COUNT(*) FROM file_access f WHERE f.run_id = r.run_id AND f.role = ?)"
            " AS n_inputs,"
            " (SELECT COUNT(*) FROM file_access f WHERE f.run_id = r.run_id AND f.role = ?)"
            " AS n_outputs"
            f" FROM runs r WHERE {where}"
        )
        args: list[Any] = [ROLE_INPUT, ROLE_OUTPUT, *params]
        if name is not None:
            sql += " AND r.name = ?"
            args.append(name)
        sql += " ORDER BY r.started_at DESC, r.run_id DESC LIMIT ?"
        args.append(max(limit, 0))
        with self._lock:
            rows = self._conn.execute(sql, args).fetchall()
        result = []
        for row in rows:
            item = self._run_summary(row)
            item.update(inputs=row["n_inputs"], outputs=row["n_outputs"])
            result.append(item)
        return result

    def artifact_runs(self, file_hash: str) -> dict[str, list[str]]:
        """Runs whose final output (per path) had content `file_hash` ("produced_by") and
        runs that read that content ("consumed_by"), oldest run first. Not filtered by
        uid: hashes are the registry's shared namespace."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT DISTINCT f.role, r.run_id, r.started_at FROM file_access f"
                " JOIN runs r ON r.run_id = f.run_id"
                " WHERE f.hash = ? AND f.role IN (?, ?)"
                " ORDER BY r.started_at, r.run_id",
                (file_hash, ROLE_INPUT, ROLE_OUTPUT),
            ).fetchall()
        return {
            "produced_by": [r["run_id"] for r in rows if r["role"] == ROLE_OUTPUT],
            "consumed_by": [r["run_id"] for r in rows if r["role"] == ROLE_INPUT],
        }

    @staticmethod
    def _run_summary(row: sqlite3.Row) -> dict[str, Any]:
        """The fields `show` and `runs` share, from a `runs` row."""
        finished = row["finished_seq"] is not None
        lost = _u64(row["final_lost"]) if finished else row["loss_sum"]
        return {
            "run_id": row["run_id"],
            "name": row["name"] or None,
            "status": "finished" if finished else "running",
            "exit_code": row["exit_code"] if finished and row["has_exit_code"] else None,
            "host": row["host"],
            "started_at": rfc3339(row["started_at"]),
            "ended_at": rfc3339(row["ended_at"]) if finished else None,
            "complete": bool(row["complete"]) if finished else lost == 0,
            "lost_events": lost,
            "uid": row["uid"],
            "tagged": row["tagged_seq"] is not None,
        }


def _loss_reason(payload: bytes) -> str:
    """The reason of a stored LossNotice record."""
    record = records_pb2.Record()
    record.ParseFromString(payload)
    return record.loss_notice.reason


def _opt_time(value: float | None) -> str | None:
    return None if value is None else rfc3339(value)


def _process_doc(row: sqlite3.Row) -> dict[str, Any]:
    argv: Sequence[str] = json.loads(row["argv"]) if row["argv"] is not None else []
    return {
        "pid": row["pid"],
        "ppid": row["ppid"],
        "exe": row["exe"],
        "argv": list(argv),
        "cwd": row["cwd"],
        "uid": row["uid"],
        "started_at": _opt_time(row["started_at"]),
        "ended_at": _opt_time(row["ended_at"]),
        "exit_code": row["exit_code"],
        "start_ticks": _u64(row["start_ticks"]),
    }


def _file_doc(row: sqlite3.Row) -> dict[str, Any]:
    return {
        "path": row["path"],
        "hash": row["hash"],
        "size": _u64(row["size"]),
        "kind": row["kind"],
    }


def _input_doc(row: sqlite3.Row) -> dict[str, Any]:
    return {**_file_doc(row), "bytes_read": _u64(row["bytes_read"])}


def _output_doc(row: sqlite3.Row) -> dict[str, Any]:
    return {
        **_file_doc(row),
        "bytes_written": _u64(row["bytes_written"]),
        "read_too": bool(row["read_too"]),
    }

"""The embedded registry: the registry's SQL (`SqlStore`) over one SQLite file."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from roard.collector.storage import SCHEMA_VERSION, Cursor, SqlStore
from roard.errors import ConfigError


class SqliteStore(SqlStore):
    """A `LineageStore` over one SQLite file in WAL mode.

    One connection shared by all threads and serialized by a lock: SQLite allows one writer
    at a time anyway, and the registry's queries are small.
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
            # Ingest speed: checkpoint the WAL every 64 MiB rather than every 4 MiB (each
            # checkpoint fsyncs the database file inside a COMMIT), and keep the hot index
            # pages cached. Durability is unchanged.
            self._conn.execute("PRAGMA wal_autocheckpoint=16384")
            self._conn.execute("PRAGMA cache_size=-131072")
            self._migrate()
        except BaseException:
            self._conn.close()
            raise

    @property
    def path(self) -> Path:
        """The database file."""
        return self._path

    @contextmanager
    def _write(self) -> Iterator[Cursor]:
        # BEGIN IMMEDIATE takes the write lock up front: no deadlock between two writers
        # that both started by reading.
        with self._lock:
            cur = self._conn.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                yield cur
                cur.execute("COMMIT")
            except BaseException:
                # A failed COMMIT (disk full, read-only) may have rolled back already; a
                # second ROLLBACK would hide the real error.
                if self._conn.in_transaction:
                    cur.execute("ROLLBACK")
                raise
            finally:
                cur.close()

    @contextmanager
    def _read(self) -> Iterator[Cursor]:
        with self._lock:
            cur = self._conn.cursor()
            cur.execute("BEGIN")  # one snapshot for all of a query's statements
            try:
                yield cur
            finally:
                cur.execute("COMMIT")
                cur.close()

    def _insert_new(self, cur: Cursor, rows: list[tuple[Any, ...]]) -> set[str]:
        new: set[str] = set()
        for row in rows:
            cur.execute(
                "INSERT INTO records (id, run_id, seq, time, kind, payload, host)"
                " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
                row,
            )
            if cur.rowcount == 1:
                new.add(row[0])
        return new

    def _migrate(self) -> None:
        with self._write() as cur:
            # Read inside the write transaction: two processes opening a fresh file cannot
            # both run the same migration.
            cur.execute("PRAGMA user_version")
            version = int(cur.fetchone()[0])
            if version > SCHEMA_VERSION:
                raise ConfigError(
                    f"registry database {self._path} has schema version {version}, newer "
                    f"than this roard understands ({SCHEMA_VERSION}): upgrade roard or "
                    "point it at another database"
                )
            if version < SCHEMA_VERSION:
                self._apply_migrations(cur, version, lambda sql: sql)
                # user_version lives in the file header and commits with the transaction.
                cur.execute(f"PRAGMA user_version = {SCHEMA_VERSION:d}")

    def close(self) -> None:
        """Closes the database; further calls raise sqlite3.ProgrammingError. Idempotent."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._conn.close()

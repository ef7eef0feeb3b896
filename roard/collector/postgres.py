"""The registry at scale: the registry's SQL (`SqlStore`) over a PostgreSQL database that
several collector processes may share.

Connections come from a small pool (opened lazily, at most `pool_size` at once) so the gRPC
server's threads run their transactions side by side. Writes run at READ COMMITTED: the
`records` primary key (`INSERT ... ON CONFLICT DO NOTHING`) makes exactly one of several
concurrent collectors see a record as new, and the derived rows of a run are only touched
while its `runs` row is locked. Rows are locked in sorted order, so collectors do not
deadlock on each other; a transaction that does anyway (or meets a serialization failure)
is rolled back and retried whole. Reads run in a READ ONLY REPEATABLE READ transaction: one
snapshot for all of a query's statements.
"""

from __future__ import annotations

import random
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from functools import lru_cache
from queue import Empty, LifoQueue
from typing import Any, TypeVar

import psycopg
import psycopg.errors
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import DictRow, dict_row

from roard.collector.scopes import DEFAULT_PROJECT
from roard.collector.storage import SCHEMA_VERSION, UPSERT_ACCESS, Cursor, SqlStore
from roard.errors import ConfigError, PrerequisiteError
from roard.v1 import records_pb2

__all__ = ["BadDatabaseUrl", "DatabaseUnavailable", "PostgresStore"]

T = TypeVar("T")

DEFAULT_POOL_SIZE = 8
CONNECT_TIMEOUT_S = 10
# Attempts of a write transaction that deadlocked or met a serialization failure.
WRITE_ATTEMPTS = 8
# pg_advisory_xact_lock key serializing schema migrations ("roardmig" in ASCII).
_MIGRATION_LOCK = 0x726F6172646D6967
_URL_FORM = "postgresql://USER[:PASSWORD]@HOST[:PORT]/DBNAME[?PARAM=VALUE&...]"
_RETRYABLE = (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure)


class DatabaseUnavailable(PrerequisiteError):
    """The PostgreSQL registry cannot be reached (server down, wrong host, credentials,
    missing database) or the connection to it was lost."""


class BadDatabaseUrl(ConfigError, PrerequisiteError):
    """The registry URL is not a valid PostgreSQL connection URL."""


def _adapt(sql: str) -> str:
    """Migration SQL in SQLite's spelling to PostgreSQL's: 64-bit integers, BYTEA, and text
    compared bytewise like SQLite does, whatever the database's default collation (so
    results come in the same order from both stores, and text indexes compare fast)."""
    sql = re.sub(r"\bINTEGER\b", "BIGINT", sql)
    sql = re.sub(r"\bBLOB\b", "BYTEA", sql)
    return re.sub(r"\bTEXT\b", 'TEXT COLLATE "C"', sql)


@lru_cache(maxsize=512)
def _placeholders(sql: str) -> str:
    """Rewrites the shared SQL's `?` placeholders to psycopg's `%s` (escaping any `%`).

    The registry's SQL never has `?` inside a literal or identifier; a quote next to one
    would mean that changed, so that is refused rather than silently mistranslated.
    """
    if "?" in sql and ("'?" in sql or "?'" in sql or '"?' in sql or '?"' in sql):
        raise ValueError(f"'?' inside a quoted string in SQL: {sql!r}")
    return sql.replace("%", "%%").replace("?", "%s")


_RECORD_COLUMNS = "id, run_id, seq, time, kind, payload, host"
_ACCESS_COLUMNS = (
    "run_id, host, role, path, seq, hash, size, kind, dev, ino, mtime_ns, bytes_read,"
    " bytes_written, read_too, unhashed, location, seen_path"
)


def _stage(
    cur: _PgCursor, staging: str, like: str, columns: str, rows: list[tuple[Any, ...]]
) -> None:
    """COPYs `rows` into a temporary table shaped like `like`, emptied at commit."""
    cur.raw.execute(
        f"CREATE TEMP TABLE IF NOT EXISTS {staging} (LIKE {like}) ON COMMIT DELETE ROWS"
    )
    with cur.raw.copy(f"COPY {staging} ({columns}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)


class _PgCursor:
    """The `Cursor` SqlStore codes against, over a psycopg cursor with dict rows."""

    def __init__(self, cur: psycopg.Cursor[DictRow]) -> None:
        self.raw = cur

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        # Always pass params (even empty) so `%%` is unescaped consistently.
        return self.raw.execute(_placeholders(sql), tuple(params))

    def executemany(self, sql: str, params: Iterable[Sequence[Any]]) -> Any:
        # psycopg pipelines executemany: one round trip for the whole batch.
        return self.raw.executemany(_placeholders(sql), [tuple(p) for p in params])

    def fetchone(self) -> Any:
        return self.raw.fetchone()

    def fetchall(self) -> list[Any]:
        return self.raw.fetchall()

    @property
    def rowcount(self) -> int:
        return self.raw.rowcount


def _describe(params: dict[str, Any]) -> str:
    """The database a conninfo names, for messages: never the password."""
    host = params.get("host") or params.get("hostaddr") or "the default local socket"
    port = f" port {params['port']}" if params.get("port") else ""
    user = params.get("user") or "(the current user)"
    dbname = params.get("dbname") or "(the user's default)"
    return f"database {dbname} on {host}{port} as {user}"


def _first_line(exc: BaseException) -> str:
    """The gist of a driver error, in one line."""
    lines = str(exc).strip().splitlines()
    text = lines[0] if lines else type(exc).__name__
    text = re.sub(r"^connection (failed|is bad): ", "", text)
    return re.sub(r"\b(FATAL|ERROR):\s+", "", text)


def _connect_hint(message: str) -> str:
    text = message.lower()
    if "password" in text or "authentication" in text or ("role" in text and "exist" in text):
        return "check the user name and password in the registry URL and the server's pg_hba.conf"
    if "database" in text and "does not exist" in text:
        return "create the database (createdb) or fix its name in the registry URL"
    if "translate host name" in text or "name or service not known" in text:
        return "check the host name in the registry URL"
    if "timeout" in text:
        return "check that the host and port are right and that no firewall blocks them"
    return (
        "check that the PostgreSQL server is running and reachable at the host and port "
        "(or socket directory) the registry URL names"
    )


class _Pool:
    """At most `size` connections, opened on demand and kept for reuse (newest first)."""

    def __init__(self, conninfo: str, kwargs: dict[str, Any], size: int, describe: str) -> None:
        self._conninfo = conninfo
        self._kwargs = kwargs
        self._describe = describe
        self._idle: LifoQueue[psycopg.Connection[DictRow]] = LifoQueue()
        self._slots = threading.BoundedSemaphore(size)
        self._lock = threading.Lock()
        self._closed = False

    def _connect(self) -> psycopg.Connection[DictRow]:
        try:
            return psycopg.connect(
                self._conninfo, autocommit=True, row_factory=dict_row, **self._kwargs
            )
        except psycopg.OperationalError as exc:
            raise DatabaseUnavailable(
                f"cannot connect to the PostgreSQL registry ({self._describe}): "
                f"{_first_line(exc)}: "
                f"{_connect_hint(str(exc))}"
            ) from None

    def checkout(self, fresh: bool = False) -> psycopg.Connection[DictRow]:
        """A connection with no transaction open; give it back with `checkin`."""
        self._slots.acquire()
        try:
            if self._closed:
                raise psycopg.InterfaceError("the PostgreSQL registry store is closed")
            if not fresh:
                try:
                    return self._idle.get_nowait()
                except Empty:
                    pass
            return self._connect()
        except BaseException:
            self._slots.release()
            raise

    def checkin(self, conn: psycopg.Connection[DictRow]) -> None:
        try:
            with self._lock:
                keep = (
                    not self._closed
                    and not conn.closed
                    and not conn.broken
                    and conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
                )
                if keep:
                    self._idle.put(conn)
            if not keep:
                conn.close()
        finally:
            self._slots.release()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            while True:
                try:
                    self._idle.get_nowait().close()
                except Empty:
                    break


class PostgresStore(SqlStore):
    """A `LineageStore` over a PostgreSQL database, shareable by several collectors."""

    def __init__(self, url: str, pool_size: int = DEFAULT_POOL_SIZE) -> None:
        """Connects to the database `url` names (postgresql://...) and brings its schema up
        to date. Raises DatabaseUnavailable (a PrerequisiteError) when the server cannot be
        reached or refuses the connection, BadDatabaseUrl for a malformed URL, and
        ConfigError when the database was written by a newer roard."""
        try:
            params = conninfo_to_dict(url)
        except psycopg.ProgrammingError as exc:
            raise BadDatabaseUrl(
                f"invalid PostgreSQL registry URL: {str(exc).strip()}: give {_URL_FORM}"
            ) from None
        self._where = _describe(params)
        kwargs: dict[str, Any] = {}
        if "connect_timeout" not in params:
            kwargs["connect_timeout"] = CONNECT_TIMEOUT_S
        if "application_name" not in params:
            kwargs["application_name"] = "roard-collector"
        self._pool = _Pool(url, kwargs, max(pool_size, 1), self._where)
        try:
            self._migrate()
        except BaseException:
            self._pool.close()
            raise

    # -------------------------------------------------------------------- transactions

    def _lost(self, exc: psycopg.Error) -> DatabaseUnavailable:
        return DatabaseUnavailable(
            f"lost the connection to the PostgreSQL registry ({self._where}): "
            f"{_first_line(exc)}: "
            "check that the server is running and reachable"
        )

    def _begin(self, begin: str) -> psycopg.Connection[DictRow]:
        """A pooled connection with a transaction opened by `begin`."""
        conn = self._pool.checkout()
        try:
            conn.execute(begin)
            return conn
        except psycopg.OperationalError as exc:
            stale = conn.broken
            self._pool.checkin(conn)
            if not stale:
                raise
            # A pooled connection the server closed meanwhile (restart, idle timeout):
            # nothing was done on it yet, so take a new one.
            lost: psycopg.Error = exc
        except BaseException:
            self._pool.checkin(conn)
            raise
        conn = self._pool.checkout(fresh=True)
        try:
            conn.execute(begin)
            return conn
        except BaseException as exc:
            self._pool.checkin(conn)
            if isinstance(exc, psycopg.OperationalError) and conn.broken:
                raise self._lost(exc) from lost
            raise

    @contextmanager
    def _transaction(self, begin: str) -> Iterator[Cursor]:
        conn = self._begin(begin)
        try:
            with conn.cursor() as cur:
                yield _PgCursor(cur)
            conn.execute("COMMIT")
        except BaseException as exc:
            if not conn.broken and not conn.closed:
                try:
                    conn.execute("ROLLBACK")
                except psycopg.Error:
                    conn.close()
            if isinstance(exc, psycopg.OperationalError) and conn.broken:
                raise self._lost(exc) from exc
            raise
        finally:
            self._pool.checkin(conn)

    def _write(self) -> AbstractContextManager[Cursor]:
        return self._transaction("BEGIN ISOLATION LEVEL READ COMMITTED")

    def _read(self) -> AbstractContextManager[Cursor]:
        return self._transaction("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")

    def _retrying(self, attempt: Callable[[], T]) -> T:
        """Runs `attempt` (one whole write transaction) again when PostgreSQL rolled it back
        for a deadlock or serialization failure, with jittered backoff."""
        for n in range(WRITE_ATTEMPTS):
            try:
                return attempt()
            except _RETRYABLE:
                if n == WRITE_ATTEMPTS - 1:
                    raise
                time.sleep(random.uniform(0, 0.005 * 2**n))
        raise AssertionError("unreachable")

    # -------------------------------------------------------------------------- writes

    def ingest(
        self,
        records: Iterable[records_pb2.Record],
        host: str | None = None,
        project: str = DEFAULT_PROJECT,
    ) -> int:
        batch = list(records)  # a retry needs the records again
        ingest = super().ingest
        return self._retrying(lambda: ingest(batch, host, project))

    def hello(self, host: str, boot_id: str, version: str, tier: str, now: float) -> int:
        hello = super().hello
        return self._retrying(lambda: hello(host, boot_id, version, tier, now))

    def acked(self, host: str, seq: int) -> None:
        acked = super().acked
        self._retrying(lambda: acked(host, seq))

    def _insert_new(self, cur: Cursor, rows: list[tuple[Any, ...]]) -> set[str]:
        assert isinstance(cur, _PgCursor)
        # COPY into a per-session staging table, then one INSERT ... SELECT: several times
        # faster than INSERT ... VALUES, whose parameters the server parses row by row.
        # Ordered by id: concurrent collectors inserting overlapping batches take the
        # records' index locks in the same order, so they wait instead of deadlocking.
        _stage(cur, "incoming_records", "records", _RECORD_COLUMNS, rows)
        cur.raw.execute(
            f"INSERT INTO records ({_RECORD_COLUMNS}) SELECT {_RECORD_COLUMNS}"
            " FROM incoming_records ORDER BY id ON CONFLICT (id) DO NOTHING RETURNING id"
        )
        return {row["id"] for row in cur.raw.fetchall()}

    def _upsert_accesses(self, cur: Cursor, rows: list[tuple[Any, ...]]) -> None:
        assert isinstance(cur, _PgCursor)
        _stage(cur, "incoming_access", "file_access", _ACCESS_COLUMNS, rows)
        # One row per key, the highest seq (one INSERT may not update a row twice); the
        # conflict clause is the shared statement's, so the semantics stay the same.
        conflict = UPSERT_ACCESS[UPSERT_ACCESS.index(" ON CONFLICT") :]
        cur.raw.execute(
            f"INSERT INTO file_access ({_ACCESS_COLUMNS})"
            f" SELECT DISTINCT ON (run_id, host, role, path) {_ACCESS_COLUMNS}"
            f" FROM incoming_access ORDER BY run_id, host, role, path, seq DESC{conflict}"
        )

    # ---------------------------------------------------------------------- migrations

    def _migrate(self) -> None:
        try:
            with self._write() as cur:
                # Collectors starting together on a fresh database take turns: the lock is
                # held until this transaction ends.
                cur.execute("SELECT pg_advisory_xact_lock(?)", (_MIGRATION_LOCK,))
                cur.execute(
                    "CREATE TABLE IF NOT EXISTS roard_schema ("
                    " id INTEGER PRIMARY KEY CHECK (id = 1), version BIGINT NOT NULL)"
                )
                cur.execute("SELECT version FROM roard_schema WHERE id = 1")
                row = cur.fetchone()
                version = 0 if row is None else int(row["version"])
                if version > SCHEMA_VERSION:
                    raise ConfigError(
                        f"registry {self._where} has schema version {version}, newer than "
                        f"this roard understands ({SCHEMA_VERSION}): upgrade roard or point "
                        "it at another database"
                    )
                if version < SCHEMA_VERSION:
                    self._apply_migrations(cur, version, _adapt)
                    cur.execute(
                        "INSERT INTO roard_schema (id, version) VALUES (1, ?)"
                        " ON CONFLICT (id) DO UPDATE SET version = excluded.version",
                        (SCHEMA_VERSION,),
                    )
        except psycopg.errors.InsufficientPrivilege as exc:
            raise DatabaseUnavailable(
                f"cannot create the registry's tables in {self._where}: "
                f"{_first_line(exc)}: make the URL's user the database's "
                "owner or grant it CREATE on the schema"
            ) from None

    def close(self) -> None:
        """Closes the pool's connections; further calls raise psycopg.InterfaceError.
        Idempotent. Connections in use are closed when their transaction ends."""
        self._pool.close()

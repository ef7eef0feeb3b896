"""Registry storage: lineage records in, run descriptions (the `roarctl show/runs` JSON) out.

`LineageStore` is the interface the collector service codes against. `SqlStore` holds all
of the SQL, written once in the dialect SQLite and PostgreSQL share (`?` placeholders that
the PostgreSQL driver layer rewrites, `INSERT ... ON CONFLICT`, `CASE`, booleans as 0/1);
`roard.collector.sqlite` and `roard.collector.postgres` only supply connections,
transactions and the schema version bookkeeping.

Records arrive at least once, in any order, from several collectors at once: every write is
idempotent (the `records` table deduplicates by `Record.id` and the derived tables are only
touched for records that were new) and order-independent where it matters (a run row exists
as soon as any of its records does; the highest `seq` wins for file accesses and for run
tagging/finishing).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from types import TracebackType
from typing import Any, Protocol, Self

from google.protobuf import json_format

from roard.artifacts.classify import DATASET, LINEAGE_KINDS, SYSTEM
from roard.collector.filters import RunFilter
from roard.collector.scopes import DEFAULT_PROJECT, EVERYONE, Viewer
from roard.context.trackers import parse_query
from roard.errors import NotFound, PermissionDenied, UsageError
from roard.records.summary import signal_name
from roard.times import rfc3339
from roard.v1 import records_pb2

__all__ = [
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "Cursor",
    "LineageStore",
    "Row",
    "RunFilter",
    "SqlStore",
    "Viewer",
    "rfc3339",
]

ROLE_INPUT = records_pb2.ROLE_INPUT
ROLE_OUTPUT = records_pb2.ROLE_OUTPUT
ROLE_DELETED = records_pb2.ROLE_DELETED

Row = Mapping[str, Any]


class Cursor(Protocol):
    """The slice of a DB-API cursor the SQL below uses; rows are mappings by column."""

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any: ...
    def executemany(self, sql: str, params: Iterable[Sequence[Any]]) -> Any: ...
    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...
    @property
    def rowcount(self) -> int: ...


def _backfill_labels(cur: Cursor) -> None:
    cur.execute("SELECT run_id, labels FROM runs WHERE labels <> '{}'")
    rows = [(r["run_id"], k, v) for r in cur.fetchall() for k, v in json.loads(r["labels"]).items()]
    if rows:
        cur.executemany(
            "INSERT INTO run_labels (run_id, key, value) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
            rows,
        )


# Schema migrations: entry i takes the database from version i to i + 1. A step is SQL, or a
# function of the open transaction for what SQL cannot do portably (copying JSON labels
# into rows). Append only; never edit a released entry. Types are SQLite's spelling; the
# PostgreSQL store maps INTEGER to BIGINT and BLOB to BYTEA.
MIGRATIONS: tuple[tuple[str | Callable[[Cursor], None], ...], ...] = (
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
    (
        # The host that sent each record (stamped by the collector, not trusted from it).
        "ALTER TABLE records ADD COLUMN host TEXT NOT NULL DEFAULT ''",
        # Losses in delivery (a full spool shed records) keep even a finished run incomplete.
        "ALTER TABLE runs ADD COLUMN delivery_lost INTEGER NOT NULL DEFAULT 0",
        "CREATE INDEX runs_host ON runs (host, started_at)",
        # Labels as rows, so `runs --label k=v` is an indexed lookup in either database.
        """
        CREATE TABLE run_labels (
            run_id TEXT NOT NULL,
            key TEXT NOT NULL,
            value TEXT NOT NULL,
            PRIMARY KEY (run_id, key)
        )
        """,
        "CREATE INDEX run_labels_kv ON run_labels (key, value)",
        _backfill_labels,
        "CREATE INDEX file_access_path ON file_access (path)",
        # One row per daemon host: what it last said in its hello, and how far it is acked.
        """
        CREATE TABLE hosts (
            host_id TEXT PRIMARY KEY,
            boot_id TEXT NOT NULL DEFAULT '',
            version TEXT NOT NULL DEFAULT '',
            tier TEXT NOT NULL DEFAULT '',
            last_seen DOUBLE PRECISION NOT NULL,
            acked_seq INTEGER NOT NULL DEFAULT 0
        )
        """,
    ),
    (
        # Why a file the run used has no hash (hash is then ''): over hash_max_bytes, past
        # hash_timeout_seconds... ('' when hashed).
        "ALTER TABLE file_access ADD COLUMN unhashed TEXT NOT NULL DEFAULT ''",
    ),
    (
        # Joined runs (one run across hosts, `roarctl tag --join`): each daemon sends its
        # own part; the runs row sums them up (see _settle_joined).
        "ALTER TABLE runs ADD COLUMN joined INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE runs ADD COLUMN join_hosts INTEGER NOT NULL DEFAULT 0",
        # When the collector gave up waiting for hosts that never joined (NULL: it did not).
        "ALTER TABLE runs ADD COLUMN join_timed_out DOUBLE PRECISION",
        # One row per part. Seqs are the sending daemon's, comparable within a part only;
        # last_seen and timed_out are the collector's clock.
        """
        CREATE TABLE run_parts (
            run_id TEXT NOT NULL,
            part TEXT NOT NULL,
            host TEXT NOT NULL,
            tagged_seq INTEGER,
            started_at DOUBLE PRECISION,
            finished_seq INTEGER,
            has_exit_code INTEGER NOT NULL DEFAULT 0,
            exit_code INTEGER,
            ended_at DOUBLE PRECISION,
            complete INTEGER,
            final_lost INTEGER,
            last_seen DOUBLE PRECISION NOT NULL,
            timed_out DOUBLE PRECISION,
            PRIMARY KEY (run_id, part)
        )
        """,
        "CREATE INDEX run_parts_host ON run_parts (host, finished_seq)",
        # Processes and files carry the host they were seen on (the parts of a joined run
        # run on several): rebuilt with the host in the key, filled from the run's host.
        """
        CREATE TABLE processes_v4 (
            run_id TEXT NOT NULL,
            host TEXT NOT NULL,
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
            PRIMARY KEY (run_id, host, pid, start_ticks)
        )
        """,
        "INSERT INTO processes_v4 SELECT p.run_id, COALESCE(r.host, ''), p.pid, p.start_ticks,"
        " p.ppid, p.exe, p.argv, p.cwd, p.uid, p.started_at, p.ended_at, p.exit_code"
        " FROM processes p LEFT JOIN runs r ON r.run_id = p.run_id",
        "DROP TABLE processes",
        "ALTER TABLE processes_v4 RENAME TO processes",
        # location: a shared filesystem's host-independent identity of the file ('' local).
        """
        CREATE TABLE file_access_v4 (
            run_id TEXT NOT NULL,
            host TEXT NOT NULL,
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
            unhashed TEXT NOT NULL DEFAULT '',
            location TEXT NOT NULL DEFAULT '',
            PRIMARY KEY (run_id, host, role, path)
        )
        """,
        "INSERT INTO file_access_v4 SELECT f.run_id, COALESCE(r.host, ''), f.role, f.path,"
        " f.seq, f.hash, f.size, f.kind, f.dev, f.ino, f.mtime_ns, f.bytes_read,"
        " f.bytes_written, f.read_too, f.unhashed, ''"
        " FROM file_access f LEFT JOIN runs r ON r.run_id = f.run_id",
        "DROP TABLE file_access",
        "ALTER TABLE file_access_v4 RENAME TO file_access",
        "CREATE INDEX file_access_hash ON file_access (hash, role)",
        "CREATE INDEX file_access_path ON file_access (path)",
        "CREATE INDEX file_access_location ON file_access (location) WHERE location <> ''",
    ),
    (
        # The (redacted) environment each process exec'd with, stored once per content.
        "ALTER TABLE processes ADD COLUMN env_hash TEXT NOT NULL DEFAULT ''",
        """
        CREATE TABLE environments (
            hash TEXT PRIMARY KEY,
            vars TEXT NOT NULL
        )
        """,
    ),
    (
        # The signal that killed a process, or a run's root (0: it exited), beside the
        # shell-style exit code (128 + N) that cannot tell `exit 137` from SIGKILL.
        "ALTER TABLE processes ADD COLUMN exit_signal INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE runs ADD COLUMN exit_signal INTEGER NOT NULL DEFAULT 0",
        # Datasets (Dataset records): each is also a file_access row of kind 'dataset' (path:
        # its directory, hash: its tree hash), so that artifact, lineage and graph queries
        # find it as they find a file; its files (paths relative to it) are here.
        """
        CREATE TABLE dataset_files (
            run_id TEXT NOT NULL,
            host TEXT NOT NULL,
            role INTEGER NOT NULL,
            dataset TEXT NOT NULL,
            path TEXT NOT NULL,
            hash TEXT NOT NULL,
            size INTEGER NOT NULL,
            PRIMARY KEY (run_id, host, role, dataset, path)
        )
        """,
        # Environments known only in part: the process was gone before the rest was read.
        "ALTER TABLE environments ADD COLUMN truncated INTEGER NOT NULL DEFAULT 0",
    ),
    (
        # Experiment-tracker runs (W&B, MLflow, Neptune) each run belongs to (TrackerLink
        # records): one row per (run, tracker, tracker run id), completed by later records.
        """
        CREATE TABLE run_links (
            run_id TEXT NOT NULL,
            tracker TEXT NOT NULL,
            tracker_run_id TEXT NOT NULL,
            project TEXT NOT NULL DEFAULT '',
            url TEXT NOT NULL DEFAULT '',
            source TEXT NOT NULL DEFAULT '',
            PRIMARY KEY (run_id, tracker, tracker_run_id)
        )
        """,
        "CREATE INDEX run_links_tracker_run ON run_links (tracker_run_id)",
        # Projects own runs (the project of the host whose records created the run; runs
        # stored before projects existed are the default project's); public runs are
        # visible to every authenticated caller (`roarctl tag --public`).
        "ALTER TABLE runs ADD COLUMN project TEXT NOT NULL DEFAULT 'default'",
        "ALTER TABLE runs ADD COLUMN public INTEGER NOT NULL DEFAULT 0",
        "CREATE INDEX runs_project ON runs (project, started_at)",
    ),
    (
        # The path a process in another mount namespace used for a file ('' when it is
        # the path itself): FileAccess.seen_path.
        "ALTER TABLE file_access ADD COLUMN seen_path TEXT NOT NULL DEFAULT ''",
    ),
)

SCHEMA_VERSION = len(MIGRATIONS)

_I64_LIMIT = 1 << 63
DEFAULT_DEPTH = 5
MAX_DEPTH = 50
# A lineage answer stops growing at max_nodes (and says so): a walk through a hub artifact
# (a shared base image, a tokenizer) can otherwise reach the whole registry. 500 nodes is
# more than a person reads, and keeps a 10-level walk within tens of milliseconds.
DEFAULT_MAX_NODES = 500
MAX_NODES_LIMIT = 20_000
_HEX = frozenset("0123456789abcdef")
_MIN_PREFIX = 6
_HASH_DIGITS = 64  # a whole BLAKE3 digest in hex


def _i64(value: int) -> int:
    """Maps a protobuf uint64 onto SQLite's (and PostgreSQL's) signed 64-bit INTEGER."""
    return value - (1 << 64) if value >= _I64_LIMIT else value


def _u64(value: int) -> int:
    """Inverse of `_i64`."""
    return value + (1 << 64) if value < 0 else value


def _not_found(run: str) -> NotFound:
    return NotFound(f"no run '{run}': list runs with `roarctl runs`")


def _marks(n: int) -> str:
    return ", ".join("?" * n)


class LineageStore(Protocol):
    """What the collector needs from its storage (SQLite embedded, PostgreSQL at scale).

    Implementations are thread-safe. `viewer` arguments restrict results to the runs that
    viewer may see (`Viewer`: its projects, its uid, and public runs); the default sees
    everything. Hashes are the registry's shared namespace: any caller may learn whether
    a hash exists, not who used it outside its projects.
    """

    def ingest(
        self,
        records: Iterable[records_pb2.Record],
        host: str | None = None,
        project: str = DEFAULT_PROJECT,
    ) -> int:
        """Stores records in one transaction, ignoring ids already stored; returns how many
        were new. With `host`, the records come from that authenticated host and may only
        concern its own runs. Runs they create belong to `project`."""
        ...

    def hello(self, host: str, boot_id: str, version: str, tier: str, now: float) -> int:
        """Registers a daemon's (re)connection; returns the highest seq acked to it."""
        ...

    def acked(self, host: str, seq: int) -> None:
        """Remembers that `host`'s records up to `seq` are stored."""
        ...

    def show(self, run: str, viewer: Viewer = EVERYONE) -> dict[str, Any]:
        """Describes one run (a run id, or a name meaning its latest run) as the
        `roarctl show --json` document; raises NotFound when absent or not visible."""
        ...

    def summary(self, run_id: str, viewer: Viewer = EVERYONE) -> dict[str, Any]:
        """A run's header fields and its file counts by role and kind."""
        ...

    def unfinished(self, host: str) -> list[str]:
        """Ids of the runs of `host` that were tagged but never finished."""
        ...

    def runs(self, where: RunFilter, viewer: Viewer = EVERYONE) -> list[dict[str, Any]]:
        """Summaries of visible runs matching `where`, newest first."""
        ...

    def seen(self, host: str, now: float) -> None:
        """`host`'s daemon is alive (it sent records or a heartbeat)."""
        ...

    def expire_parts(self, now: float, timeout: float) -> list[str]:
        """Stops waiting for joined runs' parts from hosts silent for `timeout` seconds
        (and for expected hosts that never joined); returns the runs that changed."""
        ...

    def artifact(
        self, query: str, host: str | None = None, viewer: Viewer = EVERYONE
    ) -> dict[str, Any]:
        """An artifact by full hash, hash prefix or absolute path (+host): its paths and
        the runs that produced and consumed it."""
        ...

    def lineage(
        self,
        query: str,
        up: bool,
        down: bool,
        depth: int = DEFAULT_DEPTH,
        host: str | None = None,
        viewer: Viewer = EVERYONE,
        max_nodes: int = DEFAULT_MAX_NODES,
    ) -> dict[str, Any]:
        """The lineage graph around an artifact, `depth` run levels up and/or down."""
        ...

    def run_graph(
        self,
        run: str,
        depth: int = DEFAULT_DEPTH,
        viewer: Viewer = EVERYONE,
        max_nodes: int = DEFAULT_MAX_NODES,
    ) -> dict[str, Any]:
        """A run's DAG: its inputs' producers upstream and its outputs' consumers downstream."""
        ...

    def close(self) -> None:
        """Releases the storage; the store is unusable afterwards."""
        ...


class SqlStore:
    """All of the registry's SQL over an abstract connection (see the module docstring).

    Subclasses implement `_write()` and `_read()`: context managers yielding a Cursor inside
    one transaction (committed on success, rolled back on error), and the schema version
    bookkeeping used by `_migrate()`.
    """

    def _write(self) -> AbstractContextManager[Cursor]:
        raise NotImplementedError

    def _read(self) -> AbstractContextManager[Cursor]:
        raise NotImplementedError

    def _insert_new(self, cur: Cursor, rows: list[tuple[Any, ...]]) -> set[str]:
        """Inserts `records` rows (id first), skipping stored ids; returns the new ids."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def _upsert_accesses(self, cur: Cursor, rows: list[tuple[Any, ...]]) -> None:
        """Applies file-access rows (in `UPSERT_ACCESS` column order); a store may
        override this with a faster bulk path that keeps the same semantics."""
        cur.executemany(UPSERT_ACCESS, rows)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @staticmethod
    def _apply_migrations(cur: Cursor, version: int, adapt: Callable[[str], str]) -> int:
        """Runs the migrations after `version` in `cur`'s transaction; returns the new
        version. `adapt` rewrites SQL for the dialect."""
        for step in (s for m in MIGRATIONS[version:] for s in m):
            if isinstance(step, str):
                cur.execute(adapt(step))
            else:
                step(cur)
        return SCHEMA_VERSION

    # ----------------------------------------------------------------------------- writes

    def ingest(
        self,
        records: Iterable[records_pb2.Record],
        host: str | None = None,
        project: str = DEFAULT_PROJECT,
    ) -> int:
        """Stores `records` in one transaction and returns how many were new; runs they
        create belong to `project` (a run keeps the project it was created in).

        Records whose id is already stored (or repeated within the batch) are ignored, so
        redelivery is harmless. A record without an id or run id raises UsageError, and one
        for another host's run raises PermissionDenied; nothing of the batch is stored then.
        """
        batch = _unique(records)
        if not batch:
            return 0
        run_ids = sorted({r.run_id for r in batch})
        with self._write() as cur:
            if host is not None:
                _check_owner(cur, batch, run_ids, host)
            rows = [
                (
                    r.id,
                    r.run_id,
                    _i64(r.seq),
                    r.time,
                    r.WhichOneof("body") or "",
                    r.SerializeToString(deterministic=True),
                    host or "",
                )
                for r in batch
            ]
            new_ids = self._insert_new(cur, rows)
            new = [r for r in batch if r.id in new_ids]
            if new:
                _apply(cur, new, host or "", project, self._upsert_accesses)
            return len(new)

    def hello(self, host: str, boot_id: str, version: str, tier: str, now: float) -> int:
        """Registers a daemon's (re)connection; returns the highest seq acked to it."""
        with self._write() as cur:
            cur.execute(
                "INSERT INTO hosts (host_id, boot_id, version, tier, last_seen) VALUES"
                " (?, ?, ?, ?, ?) ON CONFLICT (host_id) DO UPDATE SET boot_id = excluded.boot_id,"
                " version = excluded.version, tier = excluded.tier,"
                " last_seen = excluded.last_seen",
                (host, boot_id, version, tier, now),
            )
            cur.execute("SELECT acked_seq FROM hosts WHERE host_id = ?", (host,))
            return _u64(int(cur.fetchone()["acked_seq"]))

    def acked(self, host: str, seq: int) -> None:
        """Remembers that `host`'s records up to `seq` are stored (never moves backwards)."""
        with self._write() as cur:
            cur.execute(
                "UPDATE hosts SET acked_seq = ? WHERE host_id = ? AND acked_seq < ?",
                (_i64(seq), host, _i64(seq)),
            )

    # ---------------------------------------------------------------------------- queries

    def _find_run(self, cur: Cursor, run: str, viewer: Viewer) -> Row:
        where, params = viewer.sql()
        cur.execute(f"SELECT * FROM runs r WHERE r.run_id = ? AND {where}", (run, *params))
        row = cur.fetchone()
        if row is None and run:
            cur.execute(
                f"SELECT * FROM runs r WHERE r.name = ? AND {where}"
                " ORDER BY r.started_at DESC, r.run_id DESC LIMIT 1",
                (run, *params),
            )
            row = cur.fetchone()
        if row is None:
            raise _not_found(run)
        return dict(row)

    def show(self, run: str, viewer: Viewer = EVERYONE) -> dict[str, Any]:
        """The `roarctl show RUN --json` document for `run`: a run id, or else a name
        meaning that name's latest visible run (by started_at).

        Fields not yet known (a run whose RunTagged has not arrived, a process seen only
        exiting) are None, "" or empty. Raises NotFound when no visible run matches.
        """
        with self._read() as cur:
            row = self._find_run(cur, run, viewer)
            run_id = row["run_id"]
            cur.execute(
                "SELECT * FROM processes WHERE run_id = ?"
                " ORDER BY started_at IS NULL, started_at, host, start_ticks, pid",
                (run_id,),
            )
            processes = cur.fetchall()
            cur.execute(
                "SELECT * FROM file_access WHERE run_id = ? AND role IN (?, ?, ?)"
                " AND kind <> ? ORDER BY path, host",
                (run_id, ROLE_INPUT, ROLE_OUTPUT, ROLE_DELETED, DATASET),
            )
            files = cur.fetchall()
            datasets = _datasets(cur, run_id)
            cur.execute(
                "SELECT payload FROM records WHERE run_id = ?"
                " AND kind IN ('loss_notice', 'path_changed', 'run_tagged', 'run_context')"
                " ORDER BY seq",
                (run_id,),
            )
            history = [_parse(bytes(r["payload"])) for r in cur.fetchall()]
            cur.execute("SELECT * FROM run_parts WHERE run_id = ? ORDER BY started_at", (run_id,))
            parts = cur.fetchall()
            cur.execute(
                "SELECT hash, vars, truncated FROM environments WHERE hash IN"
                " (SELECT env_hash FROM processes WHERE run_id = ?) ORDER BY hash",
                (run_id,),
            )
            env_rows = cur.fetchall()
            links = _links(cur, [run_id]).get(run_id, [])

        tagged = [r.run_tagged for r in history if r.HasField("run_tagged")]
        # A program is an input of the run that exec'd it: its hash is the exe's.
        exe_hashes = {(f["host"], f["path"]): f["hash"] for f in files if f["role"] == ROLE_INPUT}
        doc = _run_summary(row)
        host = row["host"]
        doc.update(
            hosts=sorted({p["host"] for p in parts} or {host}),
            loss_reasons=[r.loss_notice.reason for r in history if r.HasField("loss_notice")]
            + _join_losses(row, parts),
            path_changes=[_path_change_doc(r) for r in history if r.HasField("path_changed")],
            labels=json.loads(row["labels"]),
            how=row["how"] or None,
            # Read from the record, not a column: only cgroup runs have one.
            cgroup=tagged[-1].cgroup or None if tagged else None,
            signal=signal_name(row["exit_signal"]) if row["finished_seq"] is not None else None,
            placement=_placement_doc(tagged[-1]) if tagged else None,
            root_pid=row["root_pid"],
            links=links,
            processes=[_process_doc(p, host, exe_hashes) for p in processes],
            # Each distinct environment the processes exec'd with (secrets redacted), by the
            # env_hash processes name.
            environments={e["hash"]: json.loads(e["vars"]) for e in env_rows},
            # Those of them of which only the start is known (whole entries only).
            environments_truncated=[e["hash"] for e in env_rows if e["truncated"]],
            inputs=[
                _input_doc(f, host) for f in files if f["role"] == ROLE_INPUT and not f["unhashed"]
            ],
            outputs=[
                _output_doc(f, host)
                for f in files
                if f["role"] == ROLE_OUTPUT and not f["unhashed"]
            ],
            # Inputs and outputs without a hash: listed apart, so every "hash" above is one.
            unhashed=[_unhashed_doc(f, host) for f in files if f["unhashed"]],
            deleted=[
                {
                    "path": f["path"],
                    "kind": f["kind"],
                    "bytes_written": _u64(f["bytes_written"]),
                    "host": f["host"] or host,
                }
                for f in files
                if f["role"] == ROLE_DELETED
            ],  # Directories of many files used as one; their files are listed above too.
            datasets=[_dataset_doc(d, components, host) for d, components in datasets],
        )
        contexts = [r.run_context for r in history if r.HasField("run_context")]
        if contexts:
            doc["context"] = _context_doc(contexts)
        if row["joined"]:
            doc.update(join_hosts=row["join_hosts"] or None, parts=[_part_doc(p) for p in parts])
        return doc

    def unfinished(self, host: str) -> list[str]:
        """Daemon-side ids (see roard.records.ids) of the runs and joined-run parts of
        `host` that were tagged but never finished (the daemon that tracked them stopped
        without finalizing them)."""
        with self._read() as cur:
            cur.execute(
                "SELECT run_id, started_at FROM runs WHERE host = ? AND joined = 0"
                " AND tagged_seq IS NOT NULL AND finished_seq IS NULL"
                " UNION ALL SELECT run_id || '/' || part, started_at FROM run_parts"
                " WHERE host = ? AND tagged_seq IS NOT NULL AND finished_seq IS NULL"
                " ORDER BY started_at",
                (host, host),
            )
            return [row["run_id"] for row in cur.fetchall()]

    def seen(self, host: str, now: float) -> None:
        """`host`'s daemon is alive (it sent records or a heartbeat)."""
        with self._write() as cur:
            cur.execute("UPDATE hosts SET last_seen = ? WHERE host_id = ?", (now, host))

    def expire_parts(self, now: float, timeout: float) -> list[str]:
        """Stops waiting for joined runs' missing parts: a part whose host has been silent
        for `timeout` seconds times out, and so does a run still short of the hosts it
        expects `timeout` seconds after its last part ended. Returns the runs that changed."""
        cutoff = now - timeout
        with self._write() as cur:
            cur.execute(
                "SELECT p.run_id, p.part FROM run_parts p LEFT JOIN hosts h"
                " ON h.host_id = p.host WHERE p.finished_seq IS NULL AND p.timed_out IS NULL"
                " AND p.last_seen < ? AND (h.last_seen IS NULL OR h.last_seen < ?)",
                (cutoff, cutoff),
            )
            stale = [(now, r["run_id"], r["part"]) for r in cur.fetchall()]
            cur.executemany(
                "UPDATE run_parts SET timed_out = ? WHERE run_id = ? AND part = ?", stale
            )
            cur.execute(
                "SELECT r.run_id FROM runs r WHERE r.joined = 1 AND r.join_hosts > 0"
                " AND r.join_timed_out IS NULL AND r.finished_seq IS NULL"
                " AND NOT EXISTS (SELECT 1 FROM run_parts p WHERE p.run_id = r.run_id"
                " AND p.finished_seq IS NULL AND p.timed_out IS NULL)"
                " AND (SELECT COUNT(DISTINCT p.host) FROM run_parts p"
                " WHERE p.run_id = r.run_id) < r.join_hosts"
                " AND (SELECT MAX(p.last_seen) FROM run_parts p WHERE p.run_id = r.run_id) < ?",
                (cutoff,),
            )
            short = [r["run_id"] for r in cur.fetchall()]
            cur.executemany(
                "UPDATE runs SET join_timed_out = ? WHERE run_id = ?", [(now, r) for r in short]
            )
            changed = sorted({run_id for _, run_id, _ in stale} | set(short))
            _settle_joined(cur, changed)
        return changed

    def summary(self, run_id: str, viewer: Viewer = EVERYONE) -> dict[str, Any]:
        """A run's header fields plus file counts by role and kind ("inputs": {"artifact":
        2, "system": 40}), without listing the files: cheap for runs with many files."""
        where, params = viewer.sql()
        with self._read() as cur:
            cur.execute(f"SELECT * FROM runs r WHERE r.run_id = ? AND {where}", (run_id, *params))
            row = cur.fetchone()
            if row is None:
                raise _not_found(run_id)
            cur.execute(
                "SELECT role, kind, unhashed <> '' AS unhashed, COUNT(*) AS n FROM file_access"
                " WHERE run_id = ? GROUP BY role, kind, unhashed <> ''",
                (run_id,),
            )
            counts = cur.fetchall()
        doc = _run_summary(row)
        for role, key in ((ROLE_INPUT, "inputs"), (ROLE_OUTPUT, "outputs")):
            doc[key] = {
                c["kind"]: c["n"] for c in counts if c["role"] == role and not c["unhashed"]
            }
        doc["unhashed"] = sum(  # system files unhashed are the kernel's /proc, /sys...
            c["n"]
            for c in counts
            if c["unhashed"] and c["role"] in (ROLE_INPUT, ROLE_OUTPUT) and c["kind"] != SYSTEM
        )
        return doc

    def runs(
        self, where: RunFilter | None = None, viewer: Viewer = EVERYONE
    ) -> list[dict[str, Any]]:
        """Summaries of the visible runs matching `where`, newest (by started_at) first."""
        where = where or RunFilter()
        cond, params = viewer.sql()
        sql = (
            "SELECT r.*,"
            " (SELECT COUNT(*) FROM file_access f WHERE f.run_id = r.run_id AND f.role = ?"
            " AND f.kind <> ?) AS n_inputs,"
            " (SELECT COUNT(*) FROM file_access f WHERE f.run_id = r.run_id AND f.role = ?"
            " AND f.kind <> ?) AS n_outputs"
            f" FROM runs r WHERE {cond}"
        )
        args: list[Any] = [ROLE_INPUT, DATASET, ROLE_OUTPUT, DATASET, *params]
        if where.host is not None:
            sql += (
                " AND (r.host = ? OR EXISTS (SELECT 1 FROM run_parts p"
                " WHERE p.run_id = r.run_id AND p.host = ?))"
            )
            args += [where.host, where.host]
        for column, op, value in (
            ("name", "=", where.name),
            ("project", "=", where.project),
            ("started_at", ">=", where.since),
            ("started_at", "<", where.until),
        ):
            if value is not None:
                sql += f" AND r.{column} {op} ?"
                args.append(value)
        for key, value in sorted((where.labels or {}).items()):
            sql += (
                " AND EXISTS (SELECT 1 FROM run_labels l WHERE l.run_id = r.run_id"
                " AND l.key = ? AND l.value = ?)"
            )
            args += [key, value]
        if where.link:
            tracker, tracker_run_id = parse_query(where.link)
            sql += (
                " AND EXISTS (SELECT 1 FROM run_links k WHERE k.run_id = r.run_id"
                " AND k.tracker_run_id = ?"
            )
            args.append(tracker_run_id)
            if tracker is not None:
                sql += " AND k.tracker = ?"
                args.append(tracker)
            sql += ")"
        sql += " ORDER BY r.started_at DESC, r.run_id DESC LIMIT ?"
        args.append(max(where.limit, 0))
        with self._read() as cur:
            cur.execute(sql, args)
            rows = cur.fetchall()
            links = _links(cur, [row["run_id"] for row in rows])
        result = []
        for row in rows:
            item = _run_summary(row)
            item.update(
                inputs=row["n_inputs"], outputs=row["n_outputs"], links=links.get(row["run_id"], [])
            )
            result.append(item)
        return result

    def artifact(
        self, query: str, host: str | None = None, viewer: Viewer = EVERYONE
    ) -> dict[str, Any]:
        """Resolves `query` (see `_resolve`) to artifacts, newest first, each with its known
        paths (host, path) and the visible runs that produced and consumed it."""
        with self._read() as cur:
            hashes = _resolve(cur, query, host, viewer)
            found = []
            for file_hash in hashes:
                uses = _uses(cur, [file_hash], ROLE_OUTPUT) + _uses(cur, [file_hash], ROLE_INPUT)
                found.append(_artifact_doc(file_hash, uses, viewer))
        return {"query": query, "artifacts": found}

    def lineage(
        self,
        query: str,
        up: bool,
        down: bool,
        depth: int = DEFAULT_DEPTH,
        host: str | None = None,
        viewer: Viewer = EVERYONE,
        max_nodes: int = DEFAULT_MAX_NODES,
    ) -> dict[str, Any]:
        """The graph around the artifact `query` names (its newest match): runs that
        produced it and, recursively, their inputs' producers (`up`), and runs that
        consumed it and their outputs' consumers (`down`), `depth` run levels each way.

        Nodes are artifacts (by hash) and runs; edges are "used" (artifact -> run) and
        "generated" (run -> artifact). Runs the caller may not see are counted, not shown.
        At most `max_nodes` nodes (then `truncated` is true).
        """
        depth = _checked_depth(depth)
        with self._read() as cur:
            hashes = _resolve(cur, query, host, viewer)
            graph = _Graph(cur, viewer, _checked_max_nodes(max_nodes))
            graph.add_artifact(hashes[0])
            if up:
                graph.walk({hashes[0]}, ROLE_OUTPUT, depth)
            if down:
                graph.walk({hashes[0]}, ROLE_INPUT, depth)
            doc = graph.document()
        doc.update(
            query=query,
            root={"type": "artifact", "hash": hashes[0]},
            direction="both" if up and down else ("up" if up else "down"),
            depth=depth,
            other_matches=hashes[1:],
        )
        return doc

    def run_graph(
        self,
        run: str,
        depth: int = DEFAULT_DEPTH,
        viewer: Viewer = EVERYONE,
        max_nodes: int = DEFAULT_MAX_NODES,
    ) -> dict[str, Any]:
        """A run's DAG: the run, its inputs and outputs, then `depth` levels of producers
        upstream and consumers downstream (same node/edge shape as `lineage`)."""
        depth = _checked_depth(depth)
        with self._read() as cur:
            row = self._find_run(cur, run, viewer)
            graph = _Graph(cur, viewer, _checked_max_nodes(max_nodes))
            graph.add_runs({row["run_id"]})
            ins = graph.expand_runs({row["run_id"]}, ROLE_INPUT)
            outs = graph.expand_runs({row["run_id"]}, ROLE_OUTPUT)
            graph.walk(ins, ROLE_OUTPUT, depth)
            graph.walk(outs, ROLE_INPUT, depth)
            doc = graph.document()
        doc.update(root={"type": "run", "run_id": row["run_id"]}, depth=depth)
        return doc


# ------------------------------------------------------------------------------- ingest


def _unique(records: Iterable[records_pb2.Record]) -> list[records_pb2.Record]:
    """The batch without repeated ids (first wins); rejects records that cannot be stored."""
    seen: set[str] = set()
    batch = []
    for record in records:
        if not record.id or not record.run_id:
            raise UsageError(
                f"lineage record without an id or run id (id={record.id!r}, "
                f"run_id={record.run_id!r}): the sender is broken; upgrade roard on that host"
            )
        if record.id not in seen:
            seen.add(record.id)
            batch.append(record)
    return batch


def _check_owner(
    cur: Cursor, batch: list[records_pb2.Record], run_ids: list[str], host: str
) -> None:
    """A host may only write its own runs, or its own parts of joined runs: a RunTagged
    naming another host, a record for a run another host tagged, or a part of a run that
    is not joined (and the reverse) rejects the batch."""
    for record in batch:
        if record.HasField("run_tagged") and record.run_tagged.host != host:
            raise PermissionDenied(
                f"host {host!r} sent run {record.run_id} tagged on {record.run_tagged.host!r}:"
                " a host may only record its own runs (check the daemon's host_id)"
            )
    parts = {r.run_id for r in batch if r.part}
    for chunk in _chunks(run_ids, 500):
        cur.execute(
            f"SELECT run_id, host, joined FROM runs WHERE run_id IN ({_marks(len(chunk))})"
            " AND host <> ''",
            chunk,
        )
        for row in cur.fetchall():
            joined, run_id = bool(row["joined"]), row["run_id"]
            if joined != (run_id in parts):
                raise PermissionDenied(
                    f"run id {run_id} is taken by a run of host {row['host']!r} that is"
                    f" {'' if joined else 'not '}joined: pick another id for"
                    " `roarctl tag --join` / ROARD_RUN=NAME@ID"
                )
            if not joined and row["host"] != host:
                raise PermissionDenied(
                    f"run {run_id} belongs to host {row['host']!r}, not {host!r}:"
                    " a host may only record its own runs"
                )


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _apply(
    cur: Cursor,
    new: list[records_pb2.Record],
    host: str,
    project: str,
    upsert_accesses: Callable[[Cursor, list[tuple[Any, ...]]], None],
) -> None:
    """Applies the effects of records stored for the first time, one statement per kind
    (file accesses, the bulk of the records, through the store's own bulk path)."""
    # Any record may be the first of its run to arrive: make sure the run row exists. Until
    # RunTagged arrives the run's start is the earliest record time seen, and its owner the
    # host that sent it (so no other host can write into it meanwhile). Its project is that
    # host's, for good: a joined run's is the first part's, and another project's host
    # that joins it adds its records to it (they are kept, under the run's project).
    first: dict[str, float] = {}
    for r in new:
        first[r.run_id] = min(first.get(r.run_id, r.time), r.time)
    joined = {r.run_id for r in new if r.part}
    cur.executemany(
        "INSERT INTO runs (run_id, started_at, host, joined, project) VALUES (?, ?, ?, ?, ?)"
        " ON CONFLICT (run_id) DO UPDATE SET started_at = CASE WHEN runs.tagged_seq IS NULL"
        " AND excluded.started_at < runs.started_at"
        " THEN excluded.started_at ELSE runs.started_at END",
        [(run_id, t, host, int(run_id in joined), project) for run_id, t in sorted(first.items())],
    )
    by_kind: dict[str, list[records_pb2.Record]] = {}
    for r in new:
        kind = r.WhichOneof("body") or ""
        # A part's opening and closing are the part's; _settle_joined sums them up.
        if r.part and kind in ("run_tagged", "run_finished"):
            kind = f"part_{kind.removeprefix('run_')}"
        by_kind.setdefault(kind, []).append(r)
    if joined:
        now = time.time()
        cur.executemany(
            "INSERT INTO run_parts (run_id, part, host, last_seen) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (run_id, part) DO UPDATE SET last_seen = excluded.last_seen",
            sorted({(r.run_id, r.part, host, now) for r in new if r.part}),
        )
    for kind, records in by_kind.items():
        if kind == "file_access":
            upsert_accesses(cur, [_access_params(r, host) for r in records])
            continue
        if kind == "dataset":
            _store_datasets(cur, records, host, upsert_accesses)
            continue
        # Other kinds (newer senders, path changes) stay raw.
        for sql, params in _APPLY.get(kind, ()):
            cur.executemany(sql, [params(r, host) for r in records])
    tags = by_kind.get("run_tagged", []) + by_kind.get("part_tagged", [])
    for r in tags:
        cur.execute("DELETE FROM run_labels WHERE run_id = ?", (r.run_id,))
    if tags:
        # Labels of the winning (highest seq) RunTagged, whatever order they came in.
        ids = sorted({r.run_id for r in tags})
        cur.execute(f"SELECT run_id, labels FROM runs WHERE run_id IN ({_marks(len(ids))})", ids)
        rows = [
            (x["run_id"], k, v) for x in cur.fetchall() for k, v in json.loads(x["labels"]).items()
        ]
        if rows:
            cur.executemany(
                "INSERT INTO run_labels (run_id, key, value) VALUES (?, ?, ?)"
                " ON CONFLICT (run_id, key) DO UPDATE SET value = excluded.value",
                rows,
            )
    if joined:
        _settle_joined(cur, sorted(joined))


def _settle_joined(cur: Cursor, run_ids: Sequence[str]) -> None:
    """Sums up the parts of joined runs into their runs rows, so that every query reads a
    joined run as it reads any other. A joined run is finished once every part has
    finished or timed out, and at least `join_hosts` hosts took part (unless the
    collector stopped waiting for them: join_timed_out)."""
    for chunk in _chunks(list(run_ids), 500):
        cur.execute(f"SELECT * FROM run_parts WHERE run_id IN ({_marks(len(chunk))})", chunk)
        parts: dict[str, list[Row]] = {}
        for row in cur.fetchall():
            parts.setdefault(row["run_id"], []).append(dict(row))
        cur.execute(
            f"SELECT run_id, join_hosts, join_timed_out, started_at FROM runs"
            f" WHERE run_id IN ({_marks(len(chunk))})",
            chunk,
        )
        runs = {row["run_id"]: dict(row) for row in cur.fetchall()}
        cur.executemany(
            "UPDATE runs SET tagged_seq = ?, started_at = ?, finished_seq = ?,"
            " has_exit_code = ?, exit_code = ?, ended_at = ?, complete = ?, final_lost = ?"
            " WHERE run_id = ?",
            [(*_joined_state(runs[r], parts.get(r, [])), r) for r in chunk if r in runs],
        )


def _joined_state(run: Row, parts: list[Row]) -> tuple[Any, ...]:
    """The runs columns _settle_joined sets, from a joined run's parts."""
    tagged = [p["tagged_seq"] for p in parts if p["tagged_seq"] is not None]
    starts = [p["started_at"] for p in parts if p["started_at"] is not None]
    done = [p for p in parts if p["finished_seq"] is not None]
    timed_out = [p for p in parts if p["finished_seq"] is None and p["timed_out"] is not None]
    hosts = {p["host"] for p in parts}
    enough = len(hosts) >= run["join_hosts"] or run["join_timed_out"] is not None
    finished = bool(parts) and len(done) + len(timed_out) == len(parts) and enough
    if not finished:
        return (max(tagged, default=None), min(starts, default=run["started_at"]),
                None, 0, None, None, None, None)  # fmt: skip
    codes = [p["exit_code"] for p in done if p["has_exit_code"]]
    missing = max(run["join_hosts"] - len(hosts), 0)
    lost = sum(_u64(p["final_lost"] or 0) for p in done) + len(timed_out) + missing
    complete = all(p["complete"] for p in done) and lost == 0
    return (
        max(tagged, default=None),
        min(starts, default=run["started_at"]),
        max(p["finished_seq"] for p in done) if done else 0,
        int(bool(codes)),
        next((c for c in codes if c != 0), 0) if codes else None,
        # (A run whose every part timed out ends when the collector gave up on them.)
        max(
            [p["ended_at"] for p in done]
            + [p["timed_out"] for p in timed_out]
            + [run["join_timed_out"] or run["started_at"]]
        ),
        int(complete),
        lost,
    )


def _tagged_params(record: records_pb2.Record, host: str) -> tuple[Any, ...]:
    tag, seq = record.run_tagged, _i64(record.seq)
    labels = json.dumps(dict(sorted(tag.labels.items())))
    return (seq, tag.name, labels, tag.host, tag.uid, tag.how, tag.root_pid,
            tag.started_at or record.time, int(tag.public), record.run_id, seq)  # fmt: skip


def _part_tagged_params(record: records_pb2.Record, host: str) -> tuple[Any, ...]:
    tag, seq = record.run_tagged, _i64(record.seq)
    return (seq, tag.started_at or record.time, record.run_id, record.part, seq)


def _joined_tagged_params(record: records_pb2.Record, host: str) -> tuple[Any, ...]:
    tag = record.run_tagged
    labels = json.dumps(dict(sorted(tag.labels.items())))
    return (tag.join_hosts, tag.join_hosts, tag.name, labels, tag.uid, tag.how,
            tag.root_pid, int(tag.public), record.run_id)  # fmt: skip


def _part_finished_params(record: records_pb2.Record, host: str) -> tuple[Any, ...]:
    fin, seq = record.run_finished, _i64(record.seq)
    return (seq, int(fin.has_exit_code), fin.exit_code if fin.has_exit_code else None,
            fin.ended_at or record.time, int(fin.complete), _i64(fin.lost_events),
            record.run_id, record.part, seq)  # fmt: skip


def _started_params(record: records_pb2.Record, host: str) -> tuple[Any, ...]:
    ps = record.process_started
    return (record.run_id, host, ps.pid, _i64(ps.start_ticks), ps.ppid, ps.exe,
            json.dumps(list(ps.argv)), ps.cwd, ps.uid, ps.started_at or record.time,
            ps.env_hash)  # fmt: skip


def _environment_params(record: records_pb2.Record, host: str) -> tuple[Any, ...]:
    env = record.environment
    return (env.hash, json.dumps(dict(sorted(env.vars.items()))), int(env.truncated))


def _exited_params(record: records_pb2.Record, host: str) -> tuple[Any, ...]:
    pe = record.process_exited
    return (record.run_id, host, pe.pid, _i64(pe.start_ticks), pe.ended_at or record.time,
            pe.exit_code, pe.signal)  # fmt: skip


def _access_params(record: records_pb2.Record, host: str) -> tuple[Any, ...]:
    fa = record.file_access
    return (record.run_id, host, int(fa.role), fa.path, _i64(record.seq), fa.hash,
            _i64(fa.size), fa.kind, _i64(fa.dev), _i64(fa.ino), fa.mtime_ns,
            _i64(fa.bytes_read), _i64(fa.bytes_written), int(fa.read_too), fa.unhashed,
            fa.location, fa.seen_path)  # fmt: skip


def _store_datasets(
    cur: Cursor,
    records: list[records_pb2.Record],
    host: str,
    upsert_accesses: Callable[[Cursor, list[tuple[Any, ...]]], None],
) -> None:
    """A dataset's own row (with the file accesses) and its files. A run sends one record
    per dataset, once (its id is stable): its files are replaced, not merged."""
    upsert_accesses(
        cur,
        [
            (r.run_id, host, int(r.dataset.role), r.dataset.path, _i64(r.seq), r.dataset.hash,
             _i64(r.dataset.size), DATASET, 0, 0, 0, 0, 0, 0, r.dataset.unhashed, "", "")
            for r in records
        ],
    )  # fmt: skip
    keys = [(r.run_id, host, int(r.dataset.role), r.dataset.path) for r in records]
    cur.executemany(
        "DELETE FROM dataset_files WHERE run_id = ? AND host = ? AND role = ? AND dataset = ?",
        keys,
    )
    cur.executemany(
        "INSERT INTO dataset_files (run_id, host, role, dataset, path, hash, size)"
        " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        [(*key, f.path, f.hash, _i64(f.size)) for key, r in zip(keys, records, strict=True)
         for f in r.dataset.files],
    )  # fmt: skip


def _link_params(record: records_pb2.Record, host: str) -> tuple[Any, ...]:
    link = record.tracker_link
    return (record.run_id, link.tracker, link.run_id, link.project, link.url, link.source)


def _loss_params(record: records_pb2.Record, host: str) -> tuple[Any, ...]:
    notice = record.loss_notice
    lost = _i64(notice.lost_events)
    return (0 if notice.delivery else lost, lost if notice.delivery else 0, record.run_id)


def _finished_params(record: records_pb2.Record, host: str) -> tuple[Any, ...]:
    fin, seq = record.run_finished, _i64(record.seq)
    return (seq, int(fin.has_exit_code), fin.exit_code if fin.has_exit_code else None,
            fin.ended_at or record.time, int(fin.complete), _i64(fin.lost_events),
            fin.signal, record.run_id, seq)  # fmt: skip


# Highest seq wins per (run, host, role, path), whatever order the records came in.
UPSERT_ACCESS = (
    "INSERT INTO file_access (run_id, host, role, path, seq, hash, size, kind, dev, ino,"
    " mtime_ns, bytes_read, bytes_written, read_too, unhashed, location, seen_path)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (run_id, host, role, path) DO UPDATE SET seq = excluded.seq,"
    " hash = excluded.hash, size = excluded.size, kind = excluded.kind,"
    " dev = excluded.dev, ino = excluded.ino, mtime_ns = excluded.mtime_ns,"
    " bytes_read = excluded.bytes_read, bytes_written = excluded.bytes_written,"
    " read_too = excluded.read_too, unhashed = excluded.unhashed,"
    " location = excluded.location, seen_path = excluded.seen_path"
    " WHERE excluded.seq >= file_access.seq"
)

_Params = Callable[[records_pb2.Record, str], tuple[Any, ...]]

# What a newly stored record does to the derived tables: statements by record kind (with
# "part_*" for the opening and closing of a part of a joined run), each with the function
# of (record, sending host) that gives its parameters.
_APPLY: dict[str, tuple[tuple[str, _Params], ...]] = {
    "run_tagged": (
        (
            "UPDATE runs SET tagged_seq = ?, name = ?, labels = ?, host = ?, uid = ?, how = ?,"
            " root_pid = ?, started_at = ?, public = ?"
            " WHERE run_id = ? AND (tagged_seq IS NULL OR tagged_seq <= ?)",
            _tagged_params,
        ),
    ),
    "part_tagged": (
        (
            "UPDATE run_parts SET tagged_seq = ?, started_at = ?"
            " WHERE run_id = ? AND part = ? AND (tagged_seq IS NULL OR tagged_seq <= ?)",
            _part_tagged_params,
        ),
        # The run's name, labels, owner and publicity: those of the first part tagged (the parts'
        # seqs are not comparable); the largest expected host count any part gave.
        (
            "UPDATE runs SET join_hosts = CASE WHEN join_hosts < ? THEN ? ELSE join_hosts END,"
            " name = CASE WHEN tagged_seq IS NULL THEN ? ELSE name END,"
            " labels = CASE WHEN tagged_seq IS NULL THEN ? ELSE labels END,"
            " uid = CASE WHEN tagged_seq IS NULL THEN ? ELSE uid END,"
            " how = CASE WHEN tagged_seq IS NULL THEN ? ELSE how END,"
            " root_pid = CASE WHEN tagged_seq IS NULL THEN ? ELSE root_pid END,"
            " public = CASE WHEN tagged_seq IS NULL THEN ? ELSE public END"
            " WHERE run_id = ?",
            _joined_tagged_params,
        ),
    ),
    # The exit may have arrived first: fill in the start fields, keep the exit fields.
    "process_started": (
        (
            "INSERT INTO processes (run_id, host, pid, start_ticks, ppid, exe, argv, cwd, uid,"
            " started_at, env_hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (run_id, host, pid, start_ticks) DO UPDATE SET ppid = excluded.ppid,"
            " exe = excluded.exe, argv = excluded.argv, cwd = excluded.cwd,"
            " uid = excluded.uid, started_at = excluded.started_at,"
            " env_hash = excluded.env_hash",
            _started_params,
        ),
    ),
    # No start record (yet, or ever: e.g. adopted mid-life): keep what the exit tells.
    "process_exited": (
        (
            "INSERT INTO processes (run_id, host, pid, start_ticks, ended_at, exit_code,"
            " exit_signal) VALUES (?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (run_id, host, pid, start_ticks) DO UPDATE SET"
            " ended_at = excluded.ended_at, exit_code = excluded.exit_code,"
            " exit_signal = excluded.exit_signal",
            _exited_params,
        ),
    ),
    # Content-addressed: the first copy stays (every copy is the same).
    "environment": (
        (
            "INSERT INTO environments (hash, vars, truncated) VALUES (?, ?, ?)"
            " ON CONFLICT (hash) DO NOTHING",
            _environment_params,
        ),
    ),
    # A later record may know more (a project, a URL): fill in what is empty, never
    # overwrite, so that redelivery and order do not matter.
    "tracker_link": (
        (
            "INSERT INTO run_links (run_id, tracker, tracker_run_id, project, url, source)"
            " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (run_id, tracker, tracker_run_id) DO UPDATE"
            " SET project = CASE WHEN run_links.project = '' THEN excluded.project"
            " ELSE run_links.project END,"
            " url = CASE WHEN run_links.url = '' THEN excluded.url ELSE run_links.url END",
            _link_params,
        ),
    ),
    "loss_notice": (
        (
            "UPDATE runs SET loss_sum = loss_sum + ?, delivery_lost = delivery_lost + ?"
            " WHERE run_id = ?",
            _loss_params,
        ),
    ),
    # Ties on seq: the later-ingested record wins.
    "run_finished": (
        (
            "UPDATE runs SET finished_seq = ?, has_exit_code = ?, exit_code = ?,"
            " ended_at = ?, complete = ?, final_lost = ?, exit_signal = ?"
            " WHERE run_id = ? AND (finished_seq IS NULL OR finished_seq <= ?)",
            _finished_params,
        ),
    ),
    "part_finished": (
        (
            "UPDATE run_parts SET finished_seq = ?, has_exit_code = ?, exit_code = ?,"
            " ended_at = ?, complete = ?, final_lost = ?, timed_out = NULL"
            " WHERE run_id = ? AND part = ? AND (finished_seq IS NULL OR finished_seq <= ?)",
            _part_finished_params,
        ),
    ),
}


# ------------------------------------------------------------------------------ lineage


def _checked_max_nodes(max_nodes: int) -> int:
    if max_nodes == 0:
        return DEFAULT_MAX_NODES
    if not 1 <= max_nodes <= MAX_NODES_LIMIT:
        raise UsageError(f"--max-nodes {max_nodes}: give a number between 1 and {MAX_NODES_LIMIT}")
    return max_nodes


def _checked_depth(depth: int) -> int:
    if depth == 0:
        return DEFAULT_DEPTH
    if not 1 <= depth <= MAX_DEPTH:
        raise UsageError(f"--depth {depth}: give a depth between 1 and {MAX_DEPTH}")
    return depth


def _resolve(cur: Cursor, query: str, host: str | None, viewer: Viewer) -> list[str]:
    """The hashes `query` names, newest use first: a full "blake3:<hex>" hash, a hex prefix
    of at least 6 digits (with or without "blake3:"), or an absolute path (every content
    that path had in a run `viewer` may see, optionally only on `host`; for a file on a
    shared filesystem, under whatever path other hosts mount it). Hashes are known to
    every viewer; a prefix only names hashes of runs in the viewer's projects (or public).
    Raises NotFound or UsageError."""
    text = query.strip()
    if text.startswith("/"):
        visible, scope = viewer.sql()
        where, args = "{f}path = ?", [text]
        if host:  # (a record stored without its sender: the run's host)
            where += (
                " AND ({f}host = ? OR {f}host = '' AND {f}run_id IN"
                " (SELECT run_id FROM runs WHERE host = ?))"
            )
            args += [host, host]
        sql = (
            "SELECT f.hash, MAX(r.started_at) AS t FROM file_access f JOIN runs r"
            " ON r.run_id = f.run_id WHERE f.role IN (?, ?) AND f.hash <> ''"
            f" AND ({where.format(f='f.')} OR f.location IN (SELECT location FROM file_access"
            f" WHERE {where.format(f='')} AND location <> '')) AND {visible}"
        )
        params: list[Any] = [ROLE_INPUT, ROLE_OUTPUT, *args, *args, *scope]
        cur.execute(sql + " GROUP BY f.hash ORDER BY t DESC", params)
        hashes = [row["hash"] for row in cur.fetchall()]
        if not hashes:
            where = f" on host {host}" if host else ""
            raise NotFound(f"no run read or wrote {text}{where}: check the path (absolute)")
        return hashes
    digits = text.removeprefix("blake3:").lower()
    if len(digits) < _MIN_PREFIX or not set(digits) <= _HEX:
        raise UsageError(
            f"{query!r} is neither an absolute path nor a hash: give blake3:<hex>, at least "
            f"{_MIN_PREFIX} hex digits of one, or an absolute path"
        )
    low = "blake3:" + digits
    # A full hash may be asked about by anyone; a prefix must not list another project's
    # hashes (it would let a caller enumerate them), so it only matches visible runs'.
    whole = len(digits) == _HASH_DIGITS
    matched, matched_args = ("1 = 1", ()) if whole else Viewer(projects=viewer.projects).sql()
    # A range scan on the hash index, the same in both databases (LIKE is not, for indexes).
    cur.execute(
        "SELECT f.hash, MAX(r.started_at) AS t FROM file_access f JOIN runs r"
        f" ON r.run_id = f.run_id WHERE f.hash >= ? AND f.hash < ? AND {matched}"
        " GROUP BY f.hash ORDER BY t DESC LIMIT 20",
        (low, low + "g", *matched_args),
    )
    hashes = [row["hash"] for row in cur.fetchall()]
    if not hashes:
        raise NotFound(f"no artifact with hash {low}: no run read or wrote that content")
    return hashes


def _uses(
    cur: Cursor,
    hashes: Sequence[str],
    role: int,
    limit: int = -1,
    viewer: Viewer = EVERYONE,
) -> list[Row]:
    """Every (run, path) that used one of `hashes` in `role`, with run fields, oldest
    run first; only runs `viewer` may see; with `limit` >= 0, at most that many."""
    where, scope = viewer.sql()
    found: list[Row] = []
    for chunk in _chunks(list(hashes), 500):
        if 0 <= limit <= len(found):
            break
        sql = (
            "SELECT f.hash, f.role, f.path, f.size, f.kind, f.location, f.host AS file_host,"
            " r.* FROM file_access f"
            " JOIN runs r ON r.run_id = f.run_id"
            f" WHERE f.hash IN ({_marks(len(chunk))}) AND f.role = ? AND {where}"
            " ORDER BY r.started_at, r.run_id, f.path"
        )
        if limit >= 0:  # (PostgreSQL has no "LIMIT -1" for "no limit")
            cur.execute(sql + " LIMIT ?", (*chunk, role, *scope, limit - len(found)))
        else:
            cur.execute(sql, (*chunk, role, *scope))
        found += cur.fetchall()
    return found


def _hidden_users(cur: Cursor, hashes: Sequence[str], role: int, viewer: Viewer) -> dict[str, str]:
    """Runs that used `hashes` in `role` which `viewer` may not see, with their projects
    (counted, never shown)."""
    if viewer.everything:
        return {}
    where, scope = viewer.sql()
    hidden: dict[str, str] = {}
    for chunk in _chunks(list(hashes), 500):
        cur.execute(
            "SELECT DISTINCT r.run_id, r.project FROM file_access f"
            " JOIN runs r ON r.run_id = f.run_id"
            f" WHERE f.hash IN ({_marks(len(chunk))}) AND f.role = ? AND NOT {where}",
            (*chunk, role, *scope),
        )
        hidden.update((row["run_id"], row["project"]) for row in cur.fetchall())
    return hidden


def _hidden_doc(projects: Mapping[str, str], viewer: Viewer, what: str) -> dict[str, Any]:
    """What a viewer learns of the runs it may not see (run id -> project): how many, in
    how many projects outside its own, and a sentence saying so. `what`: "upstream ",
    "downstream " or ""."""
    foreign = [p for p in projects.values() if viewer.outside(p)]
    runs = len(projects)
    noun = f"{runs} {what}run{'s' if runs != 1 else ''}"
    if len(foreign) == runs:
        message = f"{noun} in projects you cannot see"
    elif not foreign:
        message = f"{noun} of other users you cannot see"
    else:
        message = f"{noun} you cannot see, {len(foreign)} of them in projects you cannot see"
    return {"runs": runs, "projects": len(set(foreign)), "message": message}


def _artifact_doc(file_hash: str, uses: list[Row], viewer: Viewer) -> dict[str, Any]:
    """An artifact as `viewer` may see it: that the hash is known, and only the paths,
    runs and projects of the runs it may see (the others are counted)."""
    shown = [u for u in uses if viewer.sees(u)]
    hidden = {u["run_id"]: u["project"] for u in uses if not viewer.sees(u)}
    paths = sorted({(u["file_host"] or u["host"], u["path"], u["location"]) for u in shown})

    def runs(role: int) -> list[dict[str, Any]]:
        seen: dict[str, dict[str, Any]] = {}
        for u in shown:
            if u["role"] == role and u["run_id"] not in seen:
                seen[u["run_id"]] = _run_summary(u)
        return list(seen.values())

    doc = {
        "hash": file_hash,
        "known": True,
        "size": _u64(shown[0]["size"]) if shown else None,
        "kind": shown[0]["kind"] if shown else None,
        "projects": sorted({u["project"] for u in shown}),
        "paths": [
            {"host": h, "path": p, **({"location": loc} if loc else {})} for h, p, loc in paths
        ],
        "produced_by": runs(ROLE_OUTPUT),
        "consumed_by": runs(ROLE_INPUT),
        "hidden_runs": len(hidden),
    }
    if hidden:
        doc["hidden"] = _hidden_doc(hidden, viewer, "")
    return doc


class _Graph:
    """Breadth-first lineage walk state: nodes, edges and what was cut."""

    def __init__(self, cur: Cursor, viewer: Viewer, max_nodes: int) -> None:
        self._cur = cur
        self._viewer = viewer
        self._max_nodes = max_nodes
        self.artifacts: dict[str, dict[str, Any]] = {}
        self.runs: dict[str, dict[str, Any]] = {}
        self.edges: set[tuple[str, str, str]] = set()
        # Runs the viewer may not see where a walk reached them, by direction (the walk
        # stops there): run id -> project.
        self.hidden: dict[str, dict[str, str]] = {"upstream": {}, "downstream": {}}
        self.truncated = False

    def _room(self) -> bool:
        if len(self.artifacts) + len(self.runs) >= self._max_nodes:
            self.truncated = True
        return not self.truncated

    def add_artifact(self, file_hash: str, path: str = "", size: int = 0, kind: str = "") -> None:
        node = self.artifacts.setdefault(
            file_hash, {"hash": file_hash, "paths": [], "size": size or None, "kind": kind or None}
        )
        if path and path not in node["paths"]:
            node["paths"].append(path)

    def add_runs(self, run_ids: set[str]) -> None:
        missing = sorted(run_ids - set(self.runs))
        for chunk in _chunks(missing, 500):
            self._cur.execute(
                f"SELECT * FROM runs r WHERE r.run_id IN ({_marks(len(chunk))})", chunk
            )
            for row in self._cur.fetchall():
                self.runs[row["run_id"]] = _run_summary(row)

    def expand_runs(self, run_ids: set[str], role: int) -> set[str]:
        """Adds the artifact and code inputs (or outputs) of `run_ids`; returns their
        hashes. (Code is lineage too: a generated script's producer, a script's users.)"""
        found: set[str] = set()
        for chunk in _chunks(sorted(run_ids), 500):
            if not self._room():
                break
            # Rows past twice the room left could only add edges between nodes already
            # cut off: do not fetch them (and say the answer is cut).
            limit = 2 * self._max_nodes
            self._cur.execute(
                "SELECT run_id, hash, path, size, kind FROM file_access"
                f" WHERE run_id IN ({_marks(len(chunk))}) AND role = ?"
                f" AND kind IN ({_marks(len(LINEAGE_KINDS))})"
                " AND hash <> '' ORDER BY run_id, path LIMIT ?",
                (*chunk, role, *sorted(LINEAGE_KINDS), limit),
            )
            rows = self._cur.fetchall()
            self.truncated = self.truncated or len(rows) == limit
            for row in rows:
                if not self._room() and row["hash"] not in self.artifacts:
                    continue
                self.add_artifact(row["hash"], row["path"], _u64(row["size"]), row["kind"])
                edge = (
                    (row["hash"], row["run_id"], "used")
                    if role == ROLE_INPUT
                    else (row["run_id"], row["hash"], "generated")
                )
                self.edges.add(edge)
                found.add(row["hash"])
        return found

    def walk(self, frontier: set[str], role: int, depth: int) -> None:
        """From artifacts `frontier`, follow runs that used them in `role` (OUTPUT: up to
        producers, INPUT: down to consumers), then those runs' other side, `depth` times."""
        seen_runs: set[str] = set()
        for _ in range(depth):
            if not frontier or not self._room():
                return
            limit = 2 * self._max_nodes
            found = _uses(self._cur, sorted(frontier), role, limit, self._viewer)
            self.truncated = self.truncated or len(found) >= limit
            direction = "upstream" if role == ROLE_OUTPUT else "downstream"
            self.hidden[direction].update(
                _hidden_users(self._cur, sorted(frontier), role, self._viewer)
            )
            run_ids: set[str] = set()
            for u in (u for u in found if u["run_id"] not in seen_runs):
                if u["run_id"] not in self.runs and not self._room():
                    continue
                if u["run_id"] not in self.runs:
                    self.runs[u["run_id"]] = _run_summary(u)
                self.add_artifact(u["hash"], u["path"], _u64(u["size"]), u["kind"])
                edge = (
                    (u["run_id"], u["hash"], "generated")
                    if role == ROLE_OUTPUT
                    else (u["hash"], u["run_id"], "used")
                )
                self.edges.add(edge)
                run_ids.add(u["run_id"])
            seen_runs |= run_ids
            other = ROLE_INPUT if role == ROLE_OUTPUT else ROLE_OUTPUT
            frontier = self.expand_runs(run_ids, other) - frontier

    def document(self) -> dict[str, Any]:
        by_direction = {
            direction: {r: p for r, p in runs.items() if r not in self.runs}
            for direction, runs in self.hidden.items()
        }
        hidden = {r for runs in by_direction.values() for r in runs}
        for node in self.artifacts.values():
            node["paths"].sort()
        return {
            "artifacts": sorted(self.artifacts.values(), key=lambda a: a["hash"]),
            "runs": sorted(self.runs.values(), key=lambda r: (r["started_at"], r["run_id"])),
            "edges": [{"from": a, "to": b, "kind": k} for a, b, k in sorted(self.edges)],
            "hidden_runs": len(hidden),
            # Where the walk stopped at runs the viewer may not see, per direction.
            "hidden": {
                direction: _hidden_doc(runs, self._viewer, f"{direction} ")
                for direction, runs in by_direction.items()
                if runs
            },
            "truncated": self.truncated,
        }


# ------------------------------------------------------------------------------ documents


def _links(cur: Cursor, run_ids: Sequence[str]) -> dict[str, list[dict[str, str]]]:
    """The tracker links of these runs, by run id, each run's sorted by tracker and id."""
    found: dict[str, list[dict[str, str]]] = {}
    for chunk in _chunks(list(run_ids), 500):
        cur.execute(
            f"SELECT * FROM run_links WHERE run_id IN ({_marks(len(chunk))})"
            " ORDER BY run_id, tracker, tracker_run_id",
            chunk,
        )
        for row in cur.fetchall():
            found.setdefault(row["run_id"], []).append(
                {
                    "tracker": row["tracker"],
                    "project": row["project"],
                    "run_id": row["tracker_run_id"],
                    "url": row["url"],
                    "source": row["source"],
                }
            )
    return found


def _run_summary(row: Row) -> dict[str, Any]:
    """The fields `show`, `runs` and lineage nodes share, from a `runs` row."""
    finished = row["finished_seq"] is not None
    delivery_lost = row["delivery_lost"]
    lost = (_u64(row["final_lost"]) if finished else row["loss_sum"]) + delivery_lost
    return {
        "run_id": row["run_id"],
        "name": row["name"] or None,
        "status": "finished" if finished else "running",
        "exit_code": row["exit_code"] if finished and row["has_exit_code"] else None,
        "host": row["host"],
        "started_at": rfc3339(row["started_at"]),
        "ended_at": rfc3339(row["ended_at"]) if finished else None,
        "complete": (bool(row["complete"]) if finished else True) and lost == 0,
        "lost_events": lost,
        "uid": row["uid"],
        "project": row["project"],
        "public": bool(row["public"]),
        "tagged": row["tagged_seq"] is not None,
        "joined": bool(row["joined"]),  # one run across hosts: `show` lists its parts
    }


def _context_doc(contexts: Sequence[records_pb2.RunContext]) -> dict[str, Any]:
    """`show`'s context: git trees, packages and hosts of every part that sent one
    (one for a run of one host), without repeats."""

    def plain(message: Any) -> dict[str, Any]:
        doc: dict[str, Any] = json_format.MessageToDict(
            message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
        )
        return doc

    def unique(items: Iterable[Any]) -> list[dict[str, Any]]:
        seen: dict[str, dict[str, Any]] = {}
        for item in items:
            doc = plain(item)
            seen.setdefault(json.dumps(doc, sort_keys=True), doc)
        return list(seen.values())

    hosts = unique(c.host for c in contexts if c.HasField("host"))
    return {
        "git": unique(g for c in contexts for g in c.git),
        "packages": {
            "python": unique(d for c in contexts for d in c.python),
            "system": unique(s for c in contexts for s in c.system),
        },
        "host": hosts[0] if len(hosts) == 1 else hosts,
    }


def _part_doc(row: Row) -> dict[str, Any]:
    """One host's part of a joined run, for `show`."""
    finished = row["finished_seq"] is not None
    status = "finished" if finished else ("timed_out" if row["timed_out"] else "running")
    return {
        "part": row["part"],
        "host": row["host"],
        "status": status,
        "started_at": _opt_time(row["started_at"]),
        "ended_at": _opt_time(row["ended_at"]) if finished else None,
        "exit_code": row["exit_code"] if finished and row["has_exit_code"] else None,
        "complete": bool(row["complete"]) if finished else None,
        "lost_events": _u64(row["final_lost"]) if finished else None,
    }


def _join_losses(run: Row, parts: Sequence[Row]) -> list[str]:
    """Why a joined run is incomplete beyond what its parts said: parts the collector
    stopped waiting for."""
    reasons = [
        f"the part on host {p['host']} never finished: its daemon was silent past the"
        " collector's join timeout"
        for p in parts
        if p["finished_seq"] is None and p["timed_out"] is not None
    ]
    hosts = len({p["host"] for p in parts})
    if run["join_timed_out"] is not None and hosts < run["join_hosts"]:
        reasons.append(
            f"only {hosts} of the {run['join_hosts']} expected hosts joined before the"
            " collector's join timeout"
        )
    return reasons


def _parse(payload: bytes) -> records_pb2.Record:
    record = records_pb2.Record()
    record.ParseFromString(payload)
    return record


def _path_change_doc(record: records_pb2.Record) -> dict[str, Any]:
    change = record.path_changed
    known = change.op in records_pb2.PathChanged.Op.values()
    # A newer daemon may send an operation this collector does not know: show its number.
    name = records_pb2.PathChanged.Op.Name(change.op) if known else f"OP_{change.op}"
    op = name.removeprefix("OP_").lower()
    return {
        "op": op,
        "path": change.path,
        "new_path": change.new_path or None,
        "pid": change.pid,
        "at": rfc3339(record.time),
    }


def _placement_doc(tagged: records_pb2.RunTagged) -> dict[str, str] | None:
    """Where the run's root was when tagged; None from daemons that did not say."""
    if not tagged.HasField("placement"):
        return None
    p = tagged.placement
    return {
        "cgroup": p.cgroup,
        "container": p.container,
        "kubernetes_pod": p.kubernetes_pod,
        "kubernetes_pod_uid": p.kubernetes_pod_uid,
    }


def _opt_time(value: float | None) -> str | None:
    return None if value is None else rfc3339(value)


def _process_doc(
    row: Row, run_host: str, exe_hashes: Mapping[tuple[str, str], str]
) -> dict[str, Any]:
    argv: Sequence[str] = json.loads(row["argv"]) if row["argv"] is not None else []
    return {
        "host": row["host"] or run_host,
        "pid": row["pid"],
        "ppid": row["ppid"],
        "exe": row["exe"],
        "exe_hash": exe_hashes.get((row["host"], row["exe"])) or None,
        "argv": list(argv),
        "cwd": row["cwd"],
        "uid": row["uid"],
        "started_at": _opt_time(row["started_at"]),
        "ended_at": _opt_time(row["ended_at"]),
        "exit_code": row["exit_code"],
        "signal": signal_name(row["exit_signal"]),
        "start_ticks": _u64(row["start_ticks"]),
        "env_hash": row["env_hash"] or None,
    }


def _file_doc(row: Row, run_host: str) -> dict[str, Any]:
    doc = {
        "path": row["path"],
        "hash": row["hash"],
        "size": _u64(row["size"]),
        "kind": row["kind"],
        "host": row["host"] or run_host,
    }
    if row["location"]:
        doc["location"] = row["location"]
    if row["seen_path"]:
        doc["seen_path"] = row["seen_path"]
    return doc


def _input_doc(row: Row, run_host: str) -> dict[str, Any]:
    return {**_file_doc(row, run_host), "bytes_read": _u64(row["bytes_read"])}


def _unhashed_doc(row: Row, run_host: str) -> dict[str, Any]:
    return {
        "host": row["host"] or run_host,
        "path": row["path"],
        "role": "output" if row["role"] == ROLE_OUTPUT else "input",
        "size": _u64(row["size"]),
        "kind": row["kind"],
        "reason": row["unhashed"],
        "bytes_read": _u64(row["bytes_read"]),
        "bytes_written": _u64(row["bytes_written"]),
    }


def _datasets(cur: Cursor, run_id: str) -> list[tuple[Row, list[Row]]]:
    """A run's datasets (their file_access rows), each with its files."""
    cur.execute(
        "SELECT * FROM file_access WHERE run_id = ? AND kind = ? ORDER BY role, path, host",
        (run_id, DATASET),
    )
    rows = cur.fetchall()
    cur.execute("SELECT * FROM dataset_files WHERE run_id = ? ORDER BY path", (run_id,))
    files: dict[tuple[str, int, str], list[Row]] = {}
    for f in cur.fetchall():
        files.setdefault((f["host"], f["role"], f["dataset"]), []).append(f)
    return [(d, files.get((d["host"], d["role"], d["path"]), [])) for d in rows]


def _dataset_doc(row: Row, files: list[Row], run_host: str) -> dict[str, Any]:
    doc = {
        "path": row["path"],
        "hash": row["hash"],
        "role": "output" if row["role"] == ROLE_OUTPUT else "input",
        "size": _u64(row["size"]),
        "file_count": len(files),
        "host": row["host"] or run_host,
        "files": [{"path": f["path"], "hash": f["hash"], "size": _u64(f["size"])} for f in files],
    }
    if row["unhashed"]:
        doc["unhashed"] = row["unhashed"]
    return doc


def _output_doc(row: Row, run_host: str) -> dict[str, Any]:
    return {
        **_file_doc(row, run_host),
        "bytes_written": _u64(row["bytes_written"]),
        "read_too": bool(row["read_too"]),
    }

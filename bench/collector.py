#!/usr/bin/env python3
"""Collector benchmark: ingest rate, lineage walk latency and spool replay rate, on the
embedded SQLite registry and on PostgreSQL (a private server, as the tests start one).

Three measurements per database, each on a fresh, empty database:

1. Ingest: records per second (a) straight into `store.ingest(batch, host=...)` in
   batches of 2000, and (b) end to end: a daemon's delivery path (Spool + SpoolSink +
   Exporter, as `tests/unit/test_stream.py` assembles it) streaming over a Unix socket to a
   CollectorServer in another process, from the first emit until the last record is acked.
2. Lineage: a registry of runs in generations (each run reads 2-3 outputs of runs of the
   previous generation and writes 5 outputs), bulk-loaded straight into the derived tables
   (`runs`, `file_access`; not ingested), then `store.lineage(hash, up=True, down=False,
   depth=10, max_nodes=--max-nodes)` for random artifacts of the deepest generations.
   Also: the same walks at the default depth, where the time goes (per statement, and
   cProfile for the Python), and the plans of the statements.
3. Spool replay: with the collector down, the daemon spools N records (a collector
   outage, long enough for the exporter's reconnect backoff to reach its cap), then the
   collector starts; time from its start until the spool is empty.

It measures the product as shipped: the stores' own settings and code, nothing patched.

    .venv/bin/python bench/collector.py [--db sqlite|postgres|both] [--quick]
        [--phases ingest,lineage,replay] [--max-nodes N] [--explain] [--joined]

Needs PostgreSQL's server binaries for the PostgreSQL half (see tests/pgserver.py).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import random
import re
import shlex
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # for tests.pgserver

from roard.collector.storage import DEFAULT_DEPTH, DEFAULT_MAX_NODES, SqlStore  # noqa: E402
from roard.collector.stores import open_store  # noqa: E402
from roard.collector.transport import CollectorTarget  # noqa: E402
from roard.config import CollectorConfig  # noqa: E402
from roard.export.stream import Exporter, HelloInfo  # noqa: E402
from roard.records import ids  # noqa: E402
from roard.records.sink import SpoolSink  # noqa: E402
from roard.records.spool import Spool  # noqa: E402
from roard.v1 import records_pb2 as pb  # noqa: E402

HOST = "bench-host"
BASE_TIME = 1_780_000_000.0
TARGET_INGEST = 20_000
TARGET_P50_MS = 20.0
TARGET_P99_MS = 100.0
TARGET_REPLAY = 10_000
INGEST_BATCH = 2000


def quiet_logs() -> None:
    """Only errors from roard's structlog loggers (the exporter warns on each failed
    reconnect during the simulated outage)."""
    import logging

    import structlog

    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
    )


# ----------------------------------------------------------------------------- records


def blake3_like(rng: random.Random) -> str:
    return "blake3:" + rng.randbytes(32).hex()


class RecordMaker:
    """Whole runs as a daemon sends them: RunTagged, processes started and exited, file
    accesses (mostly), RunFinished. Ids follow roard.records.convert. With `joined`, each
    run is one host's part of a joined run (`roarctl tag --join`)."""

    def __init__(self, seed: int, per_run: int, joined: bool = False) -> None:
        self.rng = random.Random(seed)
        self.joined = joined
        self.per_run = max(per_run, 8)
        self.system = [
            (f"/usr/lib/python3.11/mod{i:04d}.py", blake3_like(self.rng)) for i in range(500)
        ]
        self.runs = 0

    def run(self) -> list[pb.Record]:
        rng = self.rng
        run_id = rng.randbytes(8).hex()
        t = BASE_TIME + self.runs
        self.runs += 1

        part = "p0" if self.joined else ""
        local = ids.local_id(run_id, part)

        def rec(suffix: str, **body: Any) -> pb.Record:
            return pb.Record(id=f"{local}/{suffix}", run_id=run_id, part=part, time=t, **body)

        out = [
            rec(
                "tagged",
                run_tagged=pb.RunTagged(
                    name=f"bench-{self.runs % 100}",
                    labels={"bench": "collector"},
                    host=HOST,
                    uid=1000,
                    how="spawn",
                    root_pid=4000,
                    started_at=t,
                    joined=self.joined,
                ),
            )
        ]
        procs = 2
        for p in range(procs):
            out.append(
                rec(
                    f"proc/{4000 + p}-{900 + p}/start/0",
                    process_started=pb.ProcessStarted(
                        pid=4000 + p,
                        ppid=3999 + p,
                        start_ticks=900 + p,
                        exe="/usr/bin/python3",
                        argv=["python3", "train.py", "--epochs", "3"],
                        cwd="/home/user/project",
                        uid=1000,
                        started_at=t,
                    ),
                )
            )
        files = self.per_run - 2 - 2 * procs
        # 55% reads of shared system files, 25% artifact reads, 20% outputs; one record
        # per (role, path), as the daemon sends them.
        system = iter(rng.sample(self.system, files * 55 // 100))
        for i in range(files):
            draw = i / files
            if draw < 0.55 and (shared := next(system, None)) is not None:
                path, digest = shared
                role, kind = pb.ROLE_INPUT, "system"
            elif draw < 0.8:
                path, digest = f"/data/in/{run_id}/{i}.csv", blake3_like(rng)
                role, kind = pb.ROLE_INPUT, "artifact"
            else:
                path, digest = f"/data/out/{run_id}/{i}.bin", blake3_like(rng)
                role, kind = pb.ROLE_OUTPUT, "artifact"
            size = rng.randrange(1, 1 << 24)
            out.append(
                rec(
                    f"file/{pb.Role.Name(role)}/{path}",
                    file_access=pb.FileAccess(
                        path=path,
                        role=role,
                        hash=digest,
                        size=size,
                        kind=kind,
                        dev=2049,
                        ino=rng.randrange(1, 1 << 32),
                        mtime_ns=int(t * 1e9),
                        bytes_read=size if role == pb.ROLE_INPUT else 0,
                        bytes_written=size if role == pb.ROLE_OUTPUT else 0,
                    ),
                )
            )
        for p in range(procs):
            out.append(
                rec(
                    f"proc/{4000 + p}-{900 + p}/exit",
                    process_exited=pb.ProcessExited(
                        pid=4000 + p, start_ticks=900 + p, exit_code=0, ended_at=t + 1
                    ),
                )
            )
        out.append(
            rec(
                "finished",
                run_finished=pb.RunFinished(has_exit_code=True, ended_at=t + 1, complete=True),
            )
        )
        return out

    def records(self, n: int) -> list[pb.Record]:
        out: list[pb.Record] = []
        while len(out) < n:
            out += self.run()
        for seq, record in enumerate(out, 1):
            record.seq = seq
        return out


def file_access_share(records: Sequence[pb.Record]) -> float:
    return sum(r.HasField("file_access") for r in records) / max(len(records), 1)


# ----------------------------------------------------------------------------- databases


class Databases:
    """Hands out fresh, empty registry URLs for one kind of database."""

    def __init__(self, kind: str, tmp: Path, pg: Any = None) -> None:
        self.kind = kind
        self._tmp = tmp
        self._pg = pg
        self._n = 0

    def fresh(self) -> str:
        self._n += 1
        if self.kind == "sqlite":
            return str(self._tmp / f"registry-{self._n}.db")
        return str(self._pg.create_database())


def start_postgres(durable: bool) -> Any:
    """The tests' private server (tests/pgserver.py); with `durable`, fsync and synchronous
    commit back on (the tests turn them off), so an ack means what it means in production."""
    import psycopg

    from tests.pgserver import PgServer, find_bindir

    bindir = find_bindir()
    if bindir is None:
        return None
    server = PgServer(bindir)
    if durable:
        with psycopg.connect(server.url(), autocommit=True) as conn:
            for setting in ("fsync", "synchronous_commit", "full_page_writes"):
                conn.execute(f"ALTER SYSTEM SET {setting} = on".encode())
            conn.execute("SELECT pg_reload_conf()")
    return server


def pg_settings(url: str) -> dict[str, str]:
    import psycopg

    with psycopg.connect(url) as conn:
        return {
            name: str(conn.execute(f"SHOW {name}".encode()).fetchone()[0])  # type: ignore[index]
            for name in (
                "server_version",
                "fsync",
                "synchronous_commit",
                "shared_buffers",
                "work_mem",
            )
        }


def sqlite_settings(path: str) -> str:
    """The pragmas of a SqliteStore's own connection, as the store sets them."""
    store = open_store(path)
    try:
        conn = store._conn  # type: ignore[attr-defined]
        names = ("journal_mode", "synchronous", "wal_autocheckpoint", "cache_size")
        return ", ".join(f"{n}={conn.execute(f'PRAGMA {n}').fetchone()[0]}" for n in names)
    finally:
        store.close()


def count_records(url: str) -> int:
    store = open_store(url)
    try:
        with store._read() as cur:
            cur.execute("SELECT COUNT(*) AS n FROM records")
            return int(cur.fetchone()["n"])
    finally:
        store.close()


# ----------------------------------------------------------------------------- collector


def serve_collector(url: str, address: str, ready: str) -> None:
    """The collector process (`--serve-collector`): serves until SIGTERM."""
    quiet_logs()
    from roard.collector.service import CollectorServer

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    store = open_store(url)
    server = CollectorServer(store, address)
    server.start()
    Path(ready).write_text("ready")
    stop.wait()
    server.stop(grace=1.0)
    store.close()


@dataclass
class Collector:
    proc: subprocess.Popen[bytes]
    started: float  # monotonic, just before the process was started
    ready: float  # monotonic, when it was serving
    ready_file: Path

    def cpu_seconds(self) -> float:
        times = psutil.Process(self.proc.pid).cpu_times()
        return float(times.user + times.system)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self.ready_file.unlink(missing_ok=True)


def start_collector(url: str, address: str, tmp: Path) -> Collector:
    """A CollectorServer in its own process (as in production: not the daemon's)."""
    ready = Path(f"{address.removeprefix('unix:')}.ready")
    log = (tmp / f"{Path(ready).stem}.log").open("wb")
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), "--serve-collector", url, address,
         str(ready)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    while not ready.exists():
        if proc.poll() is not None:
            raise SystemExit(f"collector exited {proc.returncode}; see {log.name}")
        time.sleep(0.005)
    return Collector(proc, started, time.monotonic(), ready)


@dataclass
class Host:
    """A daemon's delivery path (as tests/unit/test_stream.py start_host builds it)."""

    spool: Spool
    sink: SpoolSink
    exporter: Exporter

    def close(self) -> None:
        self.sink.close()
        self.exporter.stop()
        self.spool.close()


def start_host(state: Path, address: str) -> Host:
    state.mkdir(parents=True, exist_ok=True)
    config = CollectorConfig()
    spool = Spool(state / "spool.db", config.spool_max_bytes)
    holder: list[Exporter] = []

    def spooled() -> None:
        if holder:
            holder[0].notify()

    sink = SpoolSink(spool, on_spooled=spooled)
    exporter = Exporter(
        spool,
        sink,
        CollectorTarget(address),
        HelloInfo(HOST, "boot", "bench", "tracepoint"),
        backoff_max=config.reconnect_max_seconds,
    )
    holder.append(exporter)
    exporter.start()
    return Host(spool, sink, exporter)


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.002)


# ----------------------------------------------------------------------------- 1. ingest


def bench_ingest_direct(url: str, records: list[pb.Record]) -> dict[str, Any]:
    store = open_store(url)
    try:
        new = 0
        start = time.perf_counter()
        for i in range(0, len(records), INGEST_BATCH):
            new += store.ingest(records[i : i + INGEST_BATCH], host=HOST)
        seconds = time.perf_counter() - start
    finally:
        store.close()
    assert new == len(records), (new, len(records))
    return {"records": len(records), "seconds": seconds, "rate": len(records) / seconds}


def bench_ingest_stream(url: str, records: list[pb.Record], tmp: Path) -> dict[str, Any]:
    address = f"unix:{tmp / 'e2e.sock'}"
    collector = start_collector(url, address, tmp)
    host = start_host(tmp / "e2e-state", address)
    try:
        wait_until(lambda: host.exporter.connected, 30, "the exporter to connect")
        cpu0 = collector.cpu_seconds()
        start = time.monotonic()
        host.sink.emit(records)
        assert host.sink.flush(600)
        spooled = time.monotonic()
        last = host.sink.last_emitted
        assert host.exporter.wait_acked(last, 600), "records not acked in 600 s"
        done = time.monotonic()
        cpu = collector.cpu_seconds() - cpu0
        left = host.spool.depth().records
    finally:
        host.close()
        collector.stop()
    assert left == 0, left
    stored = count_records(url)
    assert stored == len(records), (stored, len(records))
    seconds = done - start
    return {
        "records": len(records),
        "seconds": seconds,
        "rate": len(records) / seconds,
        "spooled_s": spooled - start,
        "collector_cpu": cpu / seconds,
    }


# ----------------------------------------------------------------------------- 2. lineage

RUN_COLUMNS = (
    "run_id", "started_at", "tagged_seq", "name", "labels", "host", "uid", "how", "root_pid",
    "loss_sum", "finished_seq", "has_exit_code", "exit_code", "ended_at", "complete",
    "final_lost", "delivery_lost",
)  # fmt: skip
ACCESS_COLUMNS = (
    "run_id", "role", "path", "seq", "hash", "size", "kind", "dev", "ino", "mtime_ns",
    "bytes_read", "bytes_written", "read_too",
)  # fmt: skip


@dataclass
class Registry:
    generations: list[list[str]] = field(default_factory=list)  # output hashes per generation
    runs: int = 0
    artifacts: int = 0
    access_rows: int = 0
    seconds: float = 0.0


def registry_rows(
    runs: int, artifacts: int, generations: int, system_inputs: int, seed: int
) -> Iterator[tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], list[str]]]:
    """Per generation: `runs` rows, `file_access` rows and the generation's output hashes.

    Generation g's runs each read 2 or 3 outputs of generation g-1 (and `system_inputs`
    shared system files) and write `artifacts // runs` outputs."""
    rng = random.Random(seed)
    per_gen = runs // generations
    outputs = max(artifacts // runs, 1)
    system = [(f"/usr/lib/x86_64-linux-gnu/lib{i}.so", blake3_like(rng)) for i in range(2000)]
    previous: list[tuple[str, str, int]] = []
    seq = 0
    for g in range(generations):
        run_rows: list[tuple[Any, ...]] = []
        access: list[tuple[Any, ...]] = []
        produced: list[tuple[str, str, int]] = []
        for i in range(per_gen):
            run_id = rng.randbytes(8).hex()
            t = BASE_TIME + g * 86_400 + i
            seq += 1
            run_rows.append(
                (run_id, t, seq, f"gen{g:03d}", '{"bench": "lineage"}', f"host-{i % 50}", 1000,
                 "spawn", 4000, 0, seq + 1, 1, 0, t + 60, 1, 0, 0)
            )  # fmt: skip
            reads = rng.sample(previous, min(len(previous), rng.choice((2, 3))))
            for digest, path, size in reads:
                seq += 1
                access.append(
                    (run_id, pb.ROLE_INPUT, path, seq, digest, size, "artifact", 2049,
                     rng.randrange(1 << 40), int(t * 1e9), size, 0, 0)
                )  # fmt: skip
            for path, digest in rng.sample(system, system_inputs):
                seq += 1
                access.append(
                    (run_id, pb.ROLE_INPUT, path, seq, digest, 100_000, "system", 2049, 7,
                     0, 100_000, 0, 0)
                )  # fmt: skip
            for k in range(outputs):
                seq += 1
                digest = blake3_like(rng)
                path = f"/data/g{g:03d}/{run_id}/out{k}.bin"
                size = rng.randrange(1, 1 << 30)
                access.append(
                    (run_id, pb.ROLE_OUTPUT, path, seq, digest, size, "artifact", 2049,
                     rng.randrange(1 << 40), int(t * 1e9), 0, size, 0)
                )  # fmt: skip
                produced.append((digest, path, size))
            seq += 1
        yield run_rows, access, [d for d, _, _ in produced]
        previous = produced


def bulk_load(url: str, kind: str, args: argparse.Namespace) -> Registry:
    """Loads the registry straight into `runs` and `file_access` in one transaction
    (executemany on SQLite, COPY on PostgreSQL), then lets PostgreSQL gather statistics
    as its autovacuum would (VACUUM ANALYZE). Not ingested: no `records` rows."""
    store = open_store(url)  # creates the schema
    store.close()
    reg = Registry()
    rows = registry_rows(args.runs, args.artifacts, args.generations, args.system_inputs, 7)
    start = time.perf_counter()
    if kind == "sqlite":
        conn = sqlite3.connect(url, isolation_level=None)
        conn.execute("BEGIN")
        for run_rows, access, hashes in rows:
            conn.executemany(
                f"INSERT INTO runs ({', '.join(RUN_COLUMNS)})"
                f" VALUES ({', '.join('?' * len(RUN_COLUMNS))})",
                run_rows,
            )
            conn.executemany(
                f"INSERT INTO file_access ({', '.join(ACCESS_COLUMNS)})"
                f" VALUES ({', '.join('?' * len(ACCESS_COLUMNS))})",
                access,
            )
            reg.generations.append(hashes)
            reg.runs += len(run_rows)
            reg.artifacts += len(hashes)
            reg.access_rows += len(access)
        conn.execute("COMMIT")
        conn.close()
    else:
        import psycopg

        with psycopg.connect(url) as pgc:
            with pgc.cursor() as cur:
                for run_rows, access, hashes in rows:
                    with cur.copy(f"COPY runs ({', '.join(RUN_COLUMNS)}) FROM STDIN") as copy:
                        for row in run_rows:
                            copy.write_row(row)
                    with cur.copy(
                        f"COPY file_access ({', '.join(ACCESS_COLUMNS)}) FROM STDIN"
                    ) as copy:
                        for row in access:
                            copy.write_row(row)
                    reg.generations.append(hashes)
                    reg.runs += len(run_rows)
                    reg.artifacts += len(hashes)
                    reg.access_rows += len(access)
            pgc.commit()
        with psycopg.connect(url, autocommit=True) as pgc:
            pgc.execute("VACUUM ANALYZE")
            pgc.execute("CHECKPOINT")
    reg.seconds = time.perf_counter() - start
    # Queries run against a registry at rest, not one whose freshly written pages the
    # kernel is still writing back (which costs the queries half again on this VM).
    os.sync()
    return reg


class TimedCursor:
    """A store cursor that adds each statement's time (execute + fetch) to `stats`."""

    def __init__(self, cur: Any, stats: dict[str, list[float]]) -> None:
        self._cur = cur
        self._stats = stats
        self._key = ""

    def _add(self, seconds: float, rows: int = 0) -> None:
        entry = self._stats[self._key]
        entry[0] += seconds
        entry[2] += rows

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        self._key = statement_name(sql)
        self._stats[self._key][1] += 1
        start = time.perf_counter()
        result = self._cur.execute(sql, params)
        self._add(time.perf_counter() - start)
        return result

    def executemany(self, sql: str, params: Any) -> Any:
        raise AssertionError("reads only")

    def fetchone(self) -> Any:
        start = time.perf_counter()
        row = self._cur.fetchone()
        self._add(time.perf_counter() - start, int(row is not None))
        return row

    def fetchall(self) -> list[Any]:
        start = time.perf_counter()
        rows = self._cur.fetchall()
        self._add(time.perf_counter() - start, len(rows))
        return list(rows)

    @property
    def rowcount(self) -> int:
        return int(self._cur.rowcount)


def statement_name(sql: str) -> str:
    if "f.hash >= ?" in sql:
        return "_resolve: file_access hash range JOIN runs"
    if "WHERE f.hash IN" in sql:
        return "_uses: file_access hash IN (..) JOIN runs"
    if "FROM file_access WHERE run_id IN" in sql:
        return "expand_runs: file_access run_id IN (..)"
    if "FROM runs r WHERE r.run_id IN" in sql:
        return "add_runs: runs run_id IN (..)"
    return sql[:60]


@contextmanager
def timed_reads(store: SqlStore, stats: dict[str, list[float]]) -> Iterator[None]:
    """Wraps the cursor of every read transaction of `store` in a TimedCursor."""
    original = store._read

    @contextmanager
    def read() -> Iterator[Any]:
        with original() as cur:
            yield TimedCursor(cur, stats)

    store._read = read  # type: ignore[method-assign]
    try:
        yield
    finally:
        store._read = original  # type: ignore[method-assign]


def pct(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def walk(store: SqlStore, query: str, depth: int, max_nodes: int) -> dict[str, Any]:
    return store.lineage(query, up=True, down=False, depth=depth, max_nodes=max_nodes)


def run_queries(
    store: SqlStore, queries: Sequence[str], depth: int, max_nodes: int
) -> dict[str, Any]:
    times, nodes, levels, truncated = [], [], [], 0
    for query in queries:
        start = time.perf_counter()
        doc = walk(store, query, depth, max_nodes)
        times.append((time.perf_counter() - start) * 1000)
        nodes.append(len(doc["artifacts"]) + len(doc["runs"]))
        gens = [int(r["name"][3:]) for r in doc["runs"]]
        levels.append(max(gens) - min(gens) + 1 if gens else 0)
        truncated += bool(doc["truncated"])
    return {
        "n": len(queries),
        "depth": depth,
        "p50": statistics.median(times),
        "p99": pct(times, 0.99),
        "max": max(times),
        "mean": statistics.fmean(times),
        "nodes": statistics.fmean(nodes),
        "levels": statistics.fmean(levels),
        "truncated": truncated,
    }


def representative_sql(
    store: SqlStore, query: str, depth: int, max_nodes: int
) -> list[tuple[str, list[Any]]]:
    """The largest statement of each kind one lineage walk issues, with its parameters."""
    seen: dict[str, tuple[str, list[Any]]] = {}
    original = store._read

    class Recorder(TimedCursor):
        def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
            key = statement_name(sql)
            if key not in seen or len(params) > len(seen[key][1]):
                seen[key] = (sql, list(params))
            return super().execute(sql, params)

    @contextmanager
    def read() -> Iterator[Any]:
        with original() as cur:
            yield Recorder(cur, defaultdict(lambda: [0.0, 0, 0]))

    store._read = read  # type: ignore[method-assign]
    try:
        walk(store, query, depth, max_nodes)
    finally:
        store._read = original  # type: ignore[method-assign]
    return list(seen.values())


def explain(url: str, kind: str, statements: list[tuple[str, list[Any]]]) -> list[str]:
    """EXPLAIN QUERY PLAN (SQLite) / EXPLAIN (ANALYZE, BUFFERS) (PostgreSQL) lines."""
    out: list[str] = []
    if kind == "sqlite":
        conn = sqlite3.connect(url)
        for sql, params in statements:
            out.append(f"-- {statement_name(sql)} ({len(params)} parameters)")
            start = time.perf_counter()
            n = len(conn.execute(sql, params).fetchall())
            ms = (time.perf_counter() - start) * 1000
            for row in conn.execute("EXPLAIN QUERY PLAN " + sql, params):
                out.append(f"   {row[3]}")
            out.append(f"   ({n} rows, {ms:.2f} ms)")
        conn.close()
        return out
    import psycopg

    with psycopg.connect(url) as pgc:
        for sql, params in statements:
            out.append(f"-- {statement_name(sql)} ({len(params)} parameters)")
            text = "EXPLAIN (ANALYZE, BUFFERS) " + sql.replace("?", "%s")
            for row in pgc.execute(text.encode(), params).fetchall():
                line = str(row[0])
                if len(line) > 150:
                    line = line[:147] + "..."
                out.append(f"   {line}")
    return out


def python_profile(
    store: SqlStore, queries: Sequence[str], depth: int, max_nodes: int
) -> list[str]:
    """The functions where lineage walks spend their own time (cProfile, tottime)."""
    import cProfile
    import pstats

    profile = cProfile.Profile()
    profile.enable()
    for query in queries:
        walk(store, query, depth, max_nodes)
    profile.disable()
    stats = pstats.Stats(profile)
    rows = sorted(stats.stats.items(), key=lambda kv: -kv[1][2])  # type: ignore[attr-defined]
    out = []
    n = len(queries)
    for (filename, line, name), (_, calls, tottime, cumtime, _) in rows[:8]:
        where = f"{Path(filename).name}:{line} {name}" if line else name
        out.append(
            f"{where}: {tottime / n * 1000:.2f} ms/walk own, "
            f"{cumtime / n * 1000:.2f} ms/walk with callees, {calls / n:.0f} calls/walk"
        )
    return out


def bench_lineage(url: str, kind: str, args: argparse.Namespace) -> dict[str, Any]:
    reg = bulk_load(url, kind, args)
    rng = random.Random(11)
    pool = [h for gen in reg.generations[-2:] for h in gen]  # the two deepest generations
    queries = rng.sample(pool, min(len(pool), args.queries + 10))
    warm, measured = queries[:10], queries[10:]
    sample = measured[: min(len(measured), 50)]
    depth, cap = args.depth, args.max_nodes
    store = open_store(url)
    try:
        run_queries(store, warm, depth, cap)  # caches warm; not counted
        result = run_queries(store, measured, depth, cap)
        result["default_depth"] = run_queries(store, measured, DEFAULT_DEPTH, cap)
        stats: dict[str, list[float]] = defaultdict(lambda: [0.0, 0, 0])
        start = time.perf_counter()
        with timed_reads(store, stats):
            for query in sample:
                walk(store, query, depth, cap)
        total = time.perf_counter() - start
        result["python"] = python_profile(store, sample, depth, cap)
        statements = representative_sql(store, measured[0], depth, cap)
    finally:
        store.close()
    result["registry"] = reg
    result["max_nodes"] = cap
    result["profile"] = (len(sample), total, dict(stats))
    missed = result["p50"] > TARGET_P50_MS or result["p99"] > TARGET_P99_MS
    result["plans"] = explain(url, kind, statements) if missed or args.explain else []
    return result


# ----------------------------------------------------------------------------- 3. replay


def bench_replay(url: str, n: int, per_run: int, tmp: Path, long_outage: bool) -> dict[str, Any]:
    address = f"unix:{tmp / 'replay.sock'}"
    host = start_host(tmp / "replay-state", address)  # the collector is down
    maker = RecordMaker(seed=3, per_run=per_run)
    try:
        start = time.monotonic()
        emitted = 0
        while emitted < n:
            records = maker.records(min(20_000, n - emitted))
            host.sink.emit(records)  # renumbers them
            emitted += len(records)
        assert host.sink.flush(600)
        spool_s = time.monotonic() - start
        depth = host.spool.depth()
        if long_outage:
            # As after any outage over about a minute: the exporter's backoff has reached
            # reconnect_max_seconds (its 9th pause is the first at the cap), and the
            # collector comes back at a random point of a pause.
            wait_until(lambda: host.exporter.reconnects >= 9, 180, "the backoff to reach its cap")
            time.sleep(random.Random(5).uniform(0, CollectorConfig().reconnect_max_seconds))
        outage_s = time.monotonic() - start
        collector = start_collector(url, address, tmp)
        try:
            wait_until(
                lambda: host.exporter.connected or host.spool.depth().records == 0,
                120,
                "the exporter to reconnect",
            )
            connected = time.monotonic()
            cpu0 = collector.cpu_seconds()
            assert host.exporter.wait_acked(host.sink.last_emitted, 900), "not drained in 900 s"
            done = time.monotonic()
            cpu = collector.cpu_seconds() - cpu0
            left = host.spool.depth().records
        finally:
            collector.stop()
    finally:
        host.close()
    assert left == 0, left
    stored = count_records(url)
    assert stored == emitted, (stored, emitted)
    total = done - collector.started
    return {
        "records": emitted,
        "spool_bytes": depth.bytes,
        "spool_rate": emitted / spool_s,
        "outage_s": outage_s,
        "start_s": collector.ready - collector.started,
        "reconnect_s": connected - collector.ready,
        "drain_s": done - connected,
        "total_s": total,
        "rate": emitted / total,
        "drain_rate": emitted / (done - connected),
        "collector_cpu": cpu / (done - connected),
        "shed": host.spool.shed_records,
        "share": file_access_share(maker.records(2000)),
        "long_outage": long_outage,
    }


# ----------------------------------------------------------------------------- report


def machine_facts(pg_version: str | None, tmp: Path) -> list[str]:
    model = "unknown"
    with contextlib.suppress(OSError):
        match = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.M)
        model = match.group(1).strip() if match else model
    mem = psutil.virtual_memory().total / 2**30
    fs = subprocess.run(
        ["df", "--output=source,fstype", str(tmp)],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.split()[-2:]
    return [
        f"- Machine: {os.cpu_count()} CPUs ({model}), {mem:.0f} GiB RAM, kernel "
        f"{platform.release()}, temp dir {tmp.parent} on {' '.join(fs)}",
        f"- Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}, PostgreSQL "
        f"{pg_version or 'not run'}",
    ]


def fmt_rate(value: float) -> str:
    return f"{value:,.0f}/s"


def verdict(ok: bool) -> str:
    return "met" if ok else "**missed**"


def summary_cells(r: dict[str, Any]) -> dict[str, str]:
    """One database's cells of the summary table, by row label."""
    out: dict[str, str] = {}
    if "direct" in r:
        for key, label in (("direct", ROW_DIRECT), ("stream", ROW_STREAM)):
            rate = r[key]["rate"]
            out[label] = f"{fmt_rate(rate)} ({verdict(rate >= TARGET_INGEST)})"
    if "lineage" in r:
        lin = r["lineage"]
        out[ROW_P50] = f"{lin['p50']:.1f} ms ({verdict(lin['p50'] <= TARGET_P50_MS)})"
        out[ROW_P99] = f"{lin['p99']:.1f} ms ({verdict(lin['p99'] <= TARGET_P99_MS)})"
        out[ROW_MAX] = f"{lin['max']:.1f} / {lin['mean']:.1f} ms"
        out[ROW_NODES] = f"{lin['nodes']:,.0f} (over {lin['levels']:.1f} levels)"
        out[ROW_TRUNC] = f"{lin['truncated']} of {lin['n']} (max_nodes={lin['max_nodes']:,})"
        d5 = lin["default_depth"]
        out[ROW_D5] = (
            f"{d5['p50']:.1f} / {d5['p99']:.1f} ms, {d5['nodes']:,.0f} nodes, "
            f"{d5['truncated']} truncated"
        )
    if "replay" in r:
        rp = r["replay"]
        out[ROW_REPLAY] = (
            f"{fmt_rate(rp['rate'])} in {rp['total_s']:.1f} s "
            f"({verdict(rp['rate'] >= TARGET_REPLAY)})"
        )
        out[ROW_DRAIN] = f"{fmt_rate(rp['drain_rate'])} in {rp['drain_s']:.1f} s"
    return out


ROW_DIRECT = f"ingest, `store.ingest` ({INGEST_BATCH}/batch)"
ROW_STREAM = "ingest, end to end over gRPC (emit to ack)"
ROW_P50 = "lineage up, depth 10: p50"
ROW_P99 = "lineage up, depth 10: p99"
ROW_MAX = "lineage: max / mean"
ROW_NODES = "lineage: nodes returned (mean)"
ROW_TRUNC = "lineage: answers truncated at max_nodes"
ROW_D5 = f"lineage up, default depth {DEFAULT_DEPTH}: p50 / p99"
ROW_REPLAY = "spool replay, collector start to spool empty"
ROW_DRAIN = "spool replay, drain only (reconnected to empty)"
ROWS = (
    (ROW_DIRECT, f">= {TARGET_INGEST:,}/s"),
    (ROW_STREAM, f">= {TARGET_INGEST:,}/s"),
    (ROW_P50, f"<= {TARGET_P50_MS:g} ms"),
    (ROW_P99, f"<= {TARGET_P99_MS:g} ms"),
    (ROW_MAX, ""),
    (ROW_NODES, ""),
    (ROW_TRUNC, ""),
    (ROW_D5, ""),
    (ROW_REPLAY, f">= {TARGET_REPLAY:,}/s"),
    (ROW_DRAIN, ""),
)


def report(results: dict[str, dict[str, Any]]) -> list[str]:
    names = {"sqlite": "SQLite", "postgres": "PostgreSQL"}
    cells = {db: summary_cells(r) for db, r in results.items()}
    lines = [
        "| measure | " + " | ".join(names[d] for d in cells) + " | target |",
        "| --- | " + " | ".join("---" for _ in cells) + " | --- |",
    ]
    for label, target in ROWS:
        if any(label in c for c in cells.values()):
            row = " | ".join(c.get(label, "-") for c in cells.values())
            lines.append(f"| {label} | {row} | {target} |")
    return lines


def details(results: dict[str, dict[str, Any]]) -> list[str]:
    out = []
    for db, r in results.items():
        out.append(f"{db}:")
        if "direct" in r:
            d, s = r["direct"], r["stream"]
            out.append(
                f"  ingest: {d['records']:,} records ({r['share'] * 100:.0f}% file accesses, "
                f"{r['per_run']} per run); store.ingest {d['seconds']:.1f} s; end to end "
                f"{s['seconds']:.1f} s (all spooled after {s['spooled_s']:.1f} s; collector "
                f"process CPU {s['collector_cpu'] * 100:.0f}% of a core)"
            )
        if "lineage" in r:
            lin, reg = r["lineage"], r["lineage"]["registry"]
            out.append(
                f"  lineage registry: BULK-LOADED (not ingested) {reg.runs:,} runs, "
                f"{reg.artifacts:,} artifacts, {len(reg.generations)} generations, "
                f"{reg.access_rows:,} file_access rows, in {reg.seconds:.1f} s"
            )
            out.append(
                f"  lineage queries: {lin['n']} random artifacts of the 2 deepest "
                f"generations, after 10 warm-up queries; mean {lin['mean']:.1f} ms"
            )
            n, total, stats = lin["profile"]
            sql = sum(v[0] for v in stats.values())
            out.append(
                f"  profile over {n} walks: {total / n * 1000:.1f} ms per walk, of which SQL "
                f"(execute + fetch) {sql / n * 1000:.1f} ms, "
                f"Python {(total - sql) / n * 1000:.1f} ms"
            )
            for key, (seconds, calls, rows) in sorted(stats.items(), key=lambda kv: -kv[1][0]):
                out.append(
                    f"    {key}: {seconds / n * 1000:.2f} ms/walk, {calls / n:.1f} statements/walk,"
                    f" {rows / max(calls, 1):.0f} rows/statement"
                )
            out.append("  Python (cProfile, same walks), top own time:")
            out += [f"    {line}" for line in lin["python"]]
            if lin["plans"]:
                out.append("  plans of the largest statement of each kind in one walk:")
                out += ["  " + line for line in lin["plans"]]
        if "replay" in r:
            rp = r["replay"]
            out.append(
                f"  replay: {rp['records']:,} records ({rp['share'] * 100:.0f}% file accesses), "
                f"{rp['spool_bytes'] / 2**20:.0f} MiB spooled at {fmt_rate(rp['spool_rate'])} "
                f"during a {rp['outage_s']:.0f} s outage, {rp['shed']} shed; collector start "
                f"{rp['start_s']:.2f} s, exporter reconnect (backoff) {rp['reconnect_s']:.2f} s, "
                f"drain {rp['drain_s']:.1f} s (collector CPU {rp['collector_cpu'] * 100:.0f}% "
                f"of a core)"
            )
            if rp["long_outage"]:
                cap = CollectorConfig().reconnect_max_seconds
                out.append(
                    f"  replay outage: the collector started after the exporter's backoff had "
                    f"reached its cap (reconnect_max_seconds={cap:g}: pauses of "
                    f"{cap / 2:g}-{cap * 1.5:g} s), at a random point of a pause"
                )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--quick", action="store_true", help="smoke-test sizes")
    parser.add_argument("--ingest-records", type=int, help="default 200000 (quick: 20000)")
    parser.add_argument("--replay-records", type=int, help="default 600000 (quick: 50000)")
    parser.add_argument("--artifacts", type=int, help="default 1000000 (quick: 100000)")
    parser.add_argument("--runs", type=int, help="default 200000 (quick: 20000)")
    parser.add_argument("--generations", type=int, default=20)
    parser.add_argument(
        "--system-inputs", type=int, default=0, help="shared system files each run reads"
    )
    parser.add_argument("--queries", type=int, help="default 200 (quick: 50)")
    parser.add_argument("--depth", type=int, default=10)
    parser.add_argument("--records-per-run", type=int, default=200)
    parser.add_argument(
        "--joined", action="store_true", help="ingest: every run is a part of a joined run"
    )
    parser.add_argument(
        "--phases", default="ingest,lineage,replay", help="comma-separated subset to run"
    )
    parser.add_argument("--explain", action="store_true", help="print query plans always")
    parser.add_argument(
        "--max-nodes",
        type=int,
        default=DEFAULT_MAX_NODES,
        help=f"lineage answer cap passed to store.lineage (default: the store's, "
        f"{DEFAULT_MAX_NODES})",
    )
    parser.add_argument(
        "--short-outage",
        action="store_true",
        help="start the collector as soon as the outage's records are spooled, before the "
        "exporter's backoff reaches its cap (quick implies it)",
    )
    parser.add_argument(
        "--pg-no-fsync",
        action="store_true",
        help="keep the test server's fsync=off, synchronous_commit=off",
    )
    parser.add_argument("--dir", type=Path, default=None, help="temp dir (default: system's)")
    parser.add_argument("--serve-collector", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_collector:
        serve_collector(*args.serve_collector)
        return
    quiet_logs()
    sizes = {
        "ingest_records": (200_000, 20_000),
        "replay_records": (600_000, 50_000),
        "artifacts": (1_000_000, 100_000),
        "runs": (200_000, 20_000),
        "queries": (200, 50),
    }
    args.short_outage = args.short_outage or args.quick
    for name, (full, quick) in sizes.items():
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)
    phases = set(args.phases.split(","))
    kinds = ["sqlite", "postgres"] if args.db == "both" else [args.db]

    print(f"command: {shlex.join(sys.orig_argv)}")
    results: dict[str, dict[str, Any]] = {}
    pg_version = None
    sqlite_settings_line = ""
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="roard-bench-collector-", dir=args.dir) as name:
        tmp = Path(name)
        pg = None
        if "postgres" in kinds:
            pg = start_postgres(durable=not args.pg_no_fsync)
            if pg is None:
                if args.db == "postgres":
                    raise SystemExit("PostgreSQL server binaries not found (see tests/pgserver.py)")
                kinds.remove("postgres")
                notes.append("PostgreSQL not run: server binaries not found")
        try:
            for kind in kinds:
                work = tmp / kind
                work.mkdir()
                dbs = Databases(kind, work, pg)
                r: dict[str, Any] = {}
                results[kind] = r
                if kind == "sqlite":
                    sqlite_settings_line = sqlite_settings(dbs.fresh())
                if kind == "postgres":
                    settings = pg_settings(dbs.fresh())
                    pg_version = settings.pop("server_version")
                    notes.append(
                        "PostgreSQL: private server from tests/pgserver.py, default settings "
                        "except " + ", ".join(f"{k}={v}" for k, v in settings.items())
                    )
                if "ingest" in phases:
                    maker = RecordMaker(1, args.records_per_run, joined=args.joined)
                    records = maker.records(args.ingest_records)
                    r["share"] = file_access_share(records)
                    r["per_run"] = args.records_per_run
                    print(f"[{kind}] ingest: store.ingest ...", flush=True)
                    r["direct"] = bench_ingest_direct(dbs.fresh(), records)
                    print(f"[{kind}] ingest: end to end ...", flush=True)
                    r["stream"] = bench_ingest_stream(dbs.fresh(), records, work)
                    del records
                if "lineage" in phases:
                    print(f"[{kind}] lineage: bulk load + queries ...", flush=True)
                    r["lineage"] = bench_lineage(dbs.fresh(), kind, args)
                if "replay" in phases:
                    print(f"[{kind}] replay ...", flush=True)
                    r["replay"] = bench_replay(
                        dbs.fresh(),
                        args.replay_records,
                        args.records_per_run,
                        work,
                        long_outage=not args.short_outage,
                    )
        finally:
            if pg is not None:
                pg.stop()
        print()
        print("\n".join(machine_facts(pg_version, tmp)))
    for note in notes:
        print(f"- {note}")
    if "sqlite" in results:
        print(f"- SQLite: the store's settings ({sqlite_settings_line}); the temp dir is on disk")
    print()
    print("\n".join(report(results)))
    print()
    print("\n".join(details(results)))


if __name__ == "__main__":
    main()

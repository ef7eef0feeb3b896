"""Tests for roard.collector.storage on real protobuf records: every store-generic test runs
against SqliteStore (a file in a temp dir) and PostgresStore (a fresh database on a private
server, see tests/pgserver.py)."""

from __future__ import annotations

import itertools
import json
import random
import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from roard.collector.postgres import PostgresStore
from roard.collector.scopes import Viewer
from roard.collector.sqlite import SqliteStore
from roard.collector.storage import SCHEMA_VERSION, LineageStore, RunFilter, SqlStore
from roard.collector.stores import open_store
from roard.errors import (
    ConfigError,
    NotFound,
    PermissionDenied,
    PrerequisiteError,
    RoardError,
    UsageError,
)
from roard.times import rfc3339
from roard.v1 import records_pb2 as pb
from tests.pgserver import SUPERUSER, PgServer

T0 = 1_795_000_000.0  # an arbitrary moment in 2026
HASH_A = "blake3:" + "a" * 64
HASH_B = "blake3:" + "b" * 64
HASH_C = "blake3:" + "c" * 64


class RecordFactory:
    """Builds records of one run with fresh ids and increasing seq numbers."""

    def __init__(self, run_id: str, counter: Iterator[int]) -> None:
        self.run_id = run_id
        self.counter = counter

    def _record(self, seq: int | None = None, **body: Any) -> pb.Record:
        n = next(self.counter)
        return pb.Record(
            id=f"{self.run_id}-r{n}",
            seq=n if seq is None else seq,
            run_id=self.run_id,
            time=T0 + n,
            **body,
        )

    def tagged(
        self,
        name: str = "",
        uid: int = 1000,
        started_at: float = T0,
        labels: dict[str, str] | None = None,
    ) -> pb.Record:
        return self._record(
            run_tagged=pb.RunTagged(
                name=name,
                labels=labels or {},
                host="host-1",
                uid=uid,
                how="spawn",
                root_pid=100,
                started_at=started_at,
            )
        )

    def started(self, pid: int, ticks: int, at: float, ppid: int = 1) -> pb.Record:
        return self._record(
            process_started=pb.ProcessStarted(
                pid=pid,
                ppid=ppid,
                start_ticks=ticks,
                exe="/usr/bin/python3",
                argv=["python3", "train.py", f"--pid={pid}"],
                cwd="/work",
                uid=1000,
                started_at=at,
            )
        )

    def exited(self, pid: int, ticks: int, code: int, at: float) -> pb.Record:
        return self._record(
            process_exited=pb.ProcessExited(pid=pid, start_ticks=ticks, exit_code=code, ended_at=at)
        )

    def access(
        self,
        path: str,
        role: pb.Role,
        file_hash: str = HASH_A,
        seq: int | None = None,
        size: int = 10,
        read_too: bool = False,
    ) -> pb.Record:
        return self._record(
            seq=seq,
            file_access=pb.FileAccess(
                path=path,
                role=role,
                hash=file_hash,
                size=size,
                kind="artifact",
                dev=2049,
                ino=12345,
                mtime_ns=1,
                bytes_read=size if role == pb.ROLE_INPUT or read_too else 0,
                bytes_written=size if role == pb.ROLE_OUTPUT else 0,
                read_too=read_too,
            ),
        )

    def loss(self, lost: int) -> pb.Record:
        return self._record(loss_notice=pb.LossNotice(lost_events=lost, reason="ringbuf full"))

    def finished(
        self,
        code: int | None = 0,
        ended_at: float = T0 + 60,
        complete: bool = True,
        lost: int = 0,
    ) -> pb.Record:
        return self._record(
            run_finished=pb.RunFinished(
                has_exit_code=code is not None,
                exit_code=code or 0,
                ended_at=ended_at,
                complete=complete,
                lost_events=lost,
            )
        )


@pytest.fixture
def counter() -> Iterator[int]:
    return itertools.count(1)


@pytest.fixture(params=["sqlite", "postgres"])
def opener(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], SqlStore]:
    """Opens a store on one registry (a fresh SQLite file, or a fresh PostgreSQL
    database), again each call: a restarted collector."""
    if request.param == "sqlite":
        path = tmp_path / "state" / "registry.db"
        return lambda: SqliteStore(path)
    url = request.getfixturevalue("postgres_url")
    return lambda: PostgresStore(url)


@pytest.fixture
def store(opener: Callable[[], SqlStore]) -> Iterator[SqlStore]:
    s = opener()
    yield s
    s.close()


def full_run(run_id: str, counter: Iterator[int], name: str = "train") -> list[pb.Record]:
    f = RecordFactory(run_id, counter)
    return [
        f.tagged(name=name, labels={"team": "vision", "git": "abc123"}),
        f.started(100, 5000, T0 + 1),
        f.started(101, 5100, T0 + 2, ppid=100),
        f.access("/data/in.csv", pb.ROLE_INPUT, HASH_A, size=100),
        f.access("/out/model.bin", pb.ROLE_OUTPUT, HASH_B, size=200),
        f.access("/out/log.txt", pb.ROLE_OUTPUT, HASH_C, read_too=True),
        f.exited(101, 5100, 0, T0 + 30),
        f.exited(100, 5000, 3, T0 + 59),
        f.finished(code=3),
    ]


def test_satisfies_protocol(store: SqlStore) -> None:
    as_protocol: LineageStore = store
    assert as_protocol is store


def test_rfc3339() -> None:
    assert rfc3339(0) == "1970-01-01T00:00:00.000000Z"
    assert rfc3339(1_795_673_488.123456) == "2026-11-26T06:11:28.123456Z"


def test_creates_parent_dir_wal_and_schema_version(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "registry.db"
    with SqliteStore(path):
        assert path.exists()
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    finally:
        conn.close()


def test_refuses_newer_schema(tmp_path: Path) -> None:
    path = tmp_path / "registry.db"
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(ConfigError, match="upgrade roard"):
        SqliteStore(path)


def test_show_full_run(store: SqlStore, counter: Iterator[int]) -> None:
    assert store.ingest(full_run("run-1", counter)) == 9
    doc = store.show("run-1")
    assert doc["run_id"] == "run-1"
    assert doc["name"] == "train"
    assert doc["status"] == "finished"
    assert doc["exit_code"] == 3
    assert doc["host"] == "host-1"
    assert doc["uid"] == 1000
    assert doc["started_at"] == rfc3339(T0)
    assert doc["ended_at"] == rfc3339(T0 + 60)
    assert doc["complete"] is True
    assert doc["lost_events"] == 0
    assert doc["labels"] == {"git": "abc123", "team": "vision"}
    assert [p["pid"] for p in doc["processes"]] == [100, 101]
    root = doc["processes"][0]
    assert root == {
        **root,
        "pid": 100,
        "ppid": 1,
        "exe": "/usr/bin/python3",
        "argv": ["python3", "train.py", "--pid=100"],
        "cwd": "/work",
        "uid": 1000,
        "started_at": rfc3339(T0 + 1),
        "ended_at": rfc3339(T0 + 59),
        "exit_code": 3,
    }
    input_doc = {"path": "/data/in.csv", "hash": HASH_A, "size": 100, "kind": "artifact"}
    assert doc["inputs"] == [{**input_doc, "host": "host-1", "bytes_read": 100}]
    assert [o["path"] for o in doc["outputs"]] == ["/out/log.txt", "/out/model.bin"]
    log, model = doc["outputs"]
    assert log["read_too"] is True
    assert model == {
        "path": "/out/model.bin",
        "hash": HASH_B,
        "size": 200,
        "kind": "artifact",
        "host": "host-1",
        "bytes_written": 200,
        "read_too": False,
    }
    assert doc["hosts"] == ["host-1"] and "parts" not in doc


def test_show_says_which_environments_are_known_only_in_part(
    store: SqlStore, counter: Iterator[int]
) -> None:
    """Environments are stored once by hash; those recorded as cut (the process was gone
    before the rest was read) are listed apart, their variables shown as they are."""
    f = RecordFactory("run-1", counter)
    whole = pb.Environment(hash="blake3:aa", vars={"A": "1"})
    cut = pb.Environment(hash="blake3:bb", vars={"A": "1"}, truncated=True)
    procs = [f.started(100, 10, T0), f.started(101, 11, T0)]
    procs[0].process_started.env_hash, procs[1].process_started.env_hash = whole.hash, cut.hash
    store.ingest([f.tagged(), *procs, f._record(environment=whole), f._record(environment=cut)])
    doc = store.show("run-1")
    assert doc["environments"] == {"blake3:aa": {"A": "1"}, "blake3:bb": {"A": "1"}}
    assert doc["environments_truncated"] == ["blake3:bb"]


def test_show_is_json_serializable(store: SqlStore, counter: Iterator[int]) -> None:
    store.ingest(full_run("run-1", counter))
    f = RecordFactory("run-2", counter)
    store.ingest([f.exited(7, 70, 1, T0 + 5), f.access("/x", pb.ROLE_INPUT)])  # sparse run
    for run in ("run-1", "run-2"):
        doc = store.show(run)
        assert json.loads(json.dumps(doc)) == doc
    listing = store.runs()
    assert json.loads(json.dumps(listing)) == listing


def test_reingest_is_idempotent(store: SqlStore, counter: Iterator[int]) -> None:
    records = full_run("run-1", counter)
    f = RecordFactory("run-1", counter)
    records.insert(1, f.loss(5))
    assert store.ingest(records) == 10
    before = store.show("run-1")
    assert store.ingest(records) == 0
    assert store.ingest(reversed(records)) == 0
    assert store.show("run-1") == before
    # A duplicate inside one batch counts once, and loss is not double counted.
    g = RecordFactory("run-2", counter)
    loss = g.loss(4)
    assert store.ingest([g.tagged(), loss, loss]) == 2
    assert store.show("run-2")["lost_events"] == 4
    # A batch of stored and new records (a resend after a lost ack, with more): only the
    # new ones count and apply, in batches larger than one id lookup.
    h = RecordFactory("run-3", counter)
    accesses = [h.access(f"/data/{i}", pb.ROLE_INPUT) for i in range(1200)]
    assert store.ingest([h.tagged(), *accesses[:700]]) == 701
    assert store.ingest([*accesses, h.loss(2)]) == 501
    doc = store.show("run-3")
    assert (len(doc["inputs"]), doc["lost_events"]) == (1200, 2)


def test_name_means_latest_run(store: SqlStore, counter: Iterator[int]) -> None:
    old = RecordFactory("run-old", counter)
    new = RecordFactory("run-new", counter)
    other = RecordFactory("run-other", counter)
    # Ingest the newer one first: "latest" is by started_at, not arrival.
    store.ingest([new.tagged(name="train", started_at=T0 + 100)])
    store.ingest([old.tagged(name="train", started_at=T0)])
    store.ingest([other.tagged(name="eval", started_at=T0 + 200)])
    assert store.show("train")["run_id"] == "run-new"
    assert store.show("run-old")["run_id"] == "run-old"  # a run id wins over a name
    assert [r["run_id"] for r in store.runs(RunFilter(name="train"))] == ["run-new", "run-old"]
    assert [r["run_id"] for r in store.runs()] == ["run-other", "run-new", "run-old"]
    assert [r["run_id"] for r in store.runs(RunFilter(limit=1))] == ["run-other"]


def test_not_found_message(store: SqlStore) -> None:
    with pytest.raises(NotFound) as excinfo:
        store.show("nope")
    assert str(excinfo.value) == "no run 'nope': list runs with `roarctl runs`"
    assert isinstance(excinfo.value, RoardError)
    with pytest.raises(NotFound):
        store.show("")


def test_out_of_order_records(store: SqlStore, counter: Iterator[int]) -> None:
    f = RecordFactory("run-1", counter)
    tagged = f.tagged(name="late", started_at=T0)
    exited = f.exited(100, 5000, 0, T0 + 9)
    started = f.started(100, 5000, T0 + 1)
    access = f.access("/data/in.csv", pb.ROLE_INPUT)
    finished = f.finished(code=0)

    # File access and an exit before the run is even tagged: stored, shown as known.
    assert store.ingest([access, exited]) == 2
    early = store.show("run-1")
    assert early["name"] is None
    assert early["status"] == "running"
    assert early["tagged"] is False
    assert early["uid"] is None
    assert [i["path"] for i in early["inputs"]] == ["/data/in.csv"]
    orphan = early["processes"][0]
    assert orphan["pid"] == 100
    assert orphan["exit_code"] == 0
    assert orphan["ended_at"] == rfc3339(T0 + 9)
    assert orphan["started_at"] is None
    assert orphan["exe"] is None
    assert orphan["argv"] == []

    assert store.ingest([finished, started, tagged]) == 3
    doc = store.show("late")
    assert doc["run_id"] == "run-1"
    assert doc["status"] == "finished"
    assert doc["started_at"] == rfc3339(T0)  # RunTagged's start replaces the earliest seen
    assert len(doc["processes"]) == 1
    proc = doc["processes"][0]
    assert proc["exe"] == "/usr/bin/python3"
    assert proc["started_at"] == rfc3339(T0 + 1)
    assert proc["ended_at"] == rfc3339(T0 + 9)
    assert proc["exit_code"] == 0


def test_exit_without_start_is_kept(store: SqlStore, counter: Iterator[int]) -> None:
    f = RecordFactory("run-1", counter)
    store.ingest([f.tagged(), f.started(100, 5000, T0 + 1), f.exited(200, 6000, 9, T0 + 5)])
    procs = store.show("run-1")["processes"]
    # Sorted by start time; the exit-only process (start unknown) goes last.
    assert [(p["pid"], p["exit_code"]) for p in procs] == [(100, None), (200, 9)]


def test_pid_reuse_keeps_processes_apart(store: SqlStore, counter: Iterator[int]) -> None:
    f = RecordFactory("run-1", counter)
    store.ingest(
        [
            f.tagged(),
            f.started(100, 5000, T0 + 1),
            f.exited(100, 5000, 0, T0 + 2),
            f.started(100, 7000, T0 + 3),
        ]
    )
    procs = store.show("run-1")["processes"]
    assert [(p["pid"], p["exit_code"]) for p in procs] == [(100, 0), (100, None)]


def test_highest_seq_wins(store: SqlStore, counter: Iterator[int]) -> None:
    f = RecordFactory("run-1", counter)
    first = f.access("/out/model.bin", pb.ROLE_OUTPUT, HASH_A, seq=10, size=1)
    last = f.access("/out/model.bin", pb.ROLE_OUTPUT, HASH_B, seq=30, size=3)
    middle = f.access("/out/model.bin", pb.ROLE_OUTPUT, HASH_C, seq=20, size=2)
    read = f.access("/out/model.bin", pb.ROLE_INPUT, HASH_A, seq=5)
    store.ingest([f.tagged(), last])
    store.ingest([first, middle, read])
    doc = store.show("run-1")
    assert [(o["hash"], o["size"]) for o in doc["outputs"]] == [(HASH_B, 3)]
    # Roles are separate: the same path read earlier is still an input.
    assert [i["hash"] for i in doc["inputs"]] == [HASH_A]
    assert store.runs()[0]["outputs"] == 1
    # Only the winning hash is the run's product.
    (b,) = store.artifact(HASH_B)["artifacts"]
    assert [r["run_id"] for r in b["produced_by"]] == ["run-1"]
    with pytest.raises(NotFound):
        store.artifact(HASH_C)


def test_uid_visibility(store: SqlStore, counter: Iterator[int]) -> None:
    alice = RecordFactory("run-alice", counter)
    bob = RecordFactory("run-bob", counter)
    untagged = RecordFactory("run-untagged", counter)
    store.ingest([alice.tagged(name="train", uid=1000, started_at=T0)])
    store.ingest([bob.tagged(name="train", uid=1001, started_at=T0 + 10)])
    store.ingest([untagged.access("/x", pb.ROLE_INPUT)])

    assert store.show("run-alice", viewer=Viewer(uid=1000))["run_id"] == "run-alice"
    with pytest.raises(NotFound, match="no run 'run-bob'"):
        store.show("run-bob", viewer=Viewer(uid=1000))
    with pytest.raises(NotFound):
        store.show("run-untagged", viewer=Viewer(uid=1000))
    # A name resolves to the caller's own latest run, not someone else's newer one.
    assert store.show("train", viewer=Viewer(uid=1000))["run_id"] == "run-alice"
    assert store.show("train")["run_id"] == "run-bob"
    assert store.show("train", viewer=Viewer(uid=0))["run_id"] == "run-bob"

    assert [r["run_id"] for r in store.runs(viewer=Viewer(uid=1000))] == ["run-alice"]
    assert [r["run_id"] for r in store.runs(viewer=Viewer(uid=1001))] == ["run-bob"]
    assert {r["run_id"] for r in store.runs(viewer=Viewer(uid=0))} == {
        "run-alice",
        "run-bob",
        "run-untagged",
    }
    assert len(store.runs()) == 3


def test_running_with_loss_is_incomplete(store: SqlStore, counter: Iterator[int]) -> None:
    f = RecordFactory("run-1", counter)
    store.ingest([f.tagged()])
    doc = store.show("run-1")
    assert (doc["status"], doc["complete"], doc["lost_events"]) == ("running", True, 0)
    assert doc["exit_code"] is None
    assert doc["ended_at"] is None

    store.ingest([f.loss(3), f.loss(4)])
    doc = store.show("run-1")
    assert (doc["status"], doc["complete"], doc["lost_events"]) == ("running", False, 7)
    summary = store.runs()[0]
    assert (summary["status"], summary["complete"]) == ("running", False)


def test_finished_reports_final_loss(store: SqlStore, counter: Iterator[int]) -> None:
    f = RecordFactory("run-1", counter)
    store.ingest([f.tagged(), f.loss(3), f.finished(code=None, complete=False, lost=12)])
    doc = store.show("run-1")
    assert doc["status"] == "finished"
    assert doc["exit_code"] is None  # e.g. adopted by pid: no exit status to report
    assert doc["ended_at"] == rfc3339(T0 + 60)
    assert (doc["complete"], doc["lost_events"]) == (False, 12)


def test_runs_summary_fields(store: SqlStore, counter: Iterator[int]) -> None:
    store.ingest(full_run("run-1", counter))
    (item,) = store.runs()
    assert item == {
        **item,
        "run_id": "run-1",
        "name": "train",
        "status": "finished",
        "started_at": rfc3339(T0),
        "ended_at": rfc3339(T0 + 60),
        "exit_code": 3,
        "complete": True,
        "inputs": 1,
        "outputs": 2,
        "host": "host-1",
    }
    assert store.runs(RunFilter(name="nothing")) == []
    assert store.runs(RunFilter(limit=0)) == []


def test_reopen_keeps_data(opener: Callable[[], SqlStore], counter: Iterator[int]) -> None:
    with opener() as first:
        records = full_run("run-1", counter)
        first.ingest(records)
        before = first.show("train")
    with opener() as second:
        assert second.show("train") == before
        assert second.ingest(records) == 0  # dedup survives a restart


def test_artifact_runs(store: SqlStore, counter: Iterator[int]) -> None:
    producer = RecordFactory("run-prep", counter)
    consumer = RecordFactory("run-train", counter)
    store.ingest(
        [
            producer.tagged(started_at=T0),
            producer.access("/data/clean.csv", pb.ROLE_OUTPUT, HASH_A),
            producer.access("/data/copy.csv", pb.ROLE_OUTPUT, HASH_A),
            consumer.tagged(started_at=T0 + 100),
            consumer.access("/data/clean.csv", pb.ROLE_INPUT, HASH_A),
            consumer.access("/out/model.bin", pb.ROLE_OUTPUT, HASH_B),
        ]
    )
    (a,) = store.artifact(HASH_A)["artifacts"]
    assert [r["run_id"] for r in a["produced_by"]] == ["run-prep"]
    assert [r["run_id"] for r in a["consumed_by"]] == ["run-train"]
    assert a["paths"] == [
        {"host": "host-1", "path": "/data/clean.csv"},
        {"host": "host-1", "path": "/data/copy.csv"},
    ]
    (b,) = store.artifact(HASH_B[:16])["artifacts"]
    assert b["hash"] == HASH_B and b["consumed_by"] == []
    with pytest.raises(NotFound):
        store.artifact(HASH_C)


def test_bad_record_rolls_back_batch(store: SqlStore, counter: Iterator[int]) -> None:
    f = RecordFactory("run-1", counter)
    good = f.tagged()
    with pytest.raises(UsageError):
        store.ingest([good, pb.Record(id="", run_id="run-1")])
    with pytest.raises(UsageError):
        store.ingest([pb.Record(id="x", run_id="")])
    with pytest.raises(NotFound):
        store.show("run-1")
    assert store.ingest([good]) == 1


def test_large_uint64_values_round_trip(store: SqlStore, counter: Iterator[int]) -> None:
    f = RecordFactory("run-1", counter)
    big = (1 << 64) - 1
    store.ingest([f.tagged(), f.access("/big", pb.ROLE_INPUT, size=big)])
    assert store.show("run-1")["inputs"][0]["size"] == big


def test_concurrent_ingest_and_queries(store: SqlStore) -> None:
    counter = itertools.count(1)
    lock = threading.Lock()
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            for i in range(20):
                with lock:  # the shared counter, not the store, needs the lock
                    records = full_run(f"run-{n}-{i}", counter, name=f"w{n}")
                store.ingest(records)
                store.show(f"w{n}")
                store.runs(RunFilter(limit=5))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(store.runs(RunFilter(limit=1000))) == 80


def test_close_is_idempotent(opener: Callable[[], SqlStore]) -> None:
    s = opener()
    s.close()
    s.close()
    closed_error = (
        sqlite3.ProgrammingError if isinstance(s, SqliteStore) else psycopg.InterfaceError
    )
    with pytest.raises(closed_error):
        s.runs()


def test_summary_counts_unhashed_files_but_not_the_kernels(
    store: SqlStore, counter: Iterator[int]
) -> None:
    """A finished run's summary counts the files left unhashed that a user may care about;
    the kernel's /proc and /sys files (system, never hashed) are not among them."""
    run = RecordFactory("run-unhashed", counter)
    unhashed = []
    for path, kind, why in (
        ("/proc/meminfo", "system", "content made by the kernel when read: not hashed"),
        ("/data/huge.bin", "artifact", "over hash_max_bytes"),
    ):
        record = run.access(path, pb.ROLE_INPUT, "")
        record.file_access.kind, record.file_access.unhashed = kind, why
        unhashed.append(record)
    store.ingest([run.tagged(), *unhashed, run.finished(code=0)], host="host-1")
    assert store.summary("run-unhashed")["unhashed"] == 1
    assert {f["path"] for f in store.show("run-unhashed")["unhashed"]} == {
        "/proc/meminfo",
        "/data/huge.bin",
    }


def test_hosts_acks_and_queries(store: SqlStore, counter: Iterator[int]) -> None:
    """The rest of the store's surface, so each dialect runs every query at least once."""
    big = 1 << 40
    assert store.hello("host-1", "boot-a", "0.1.0", "full", T0) == 0
    store.acked("host-1", 7)
    store.acked("host-1", 3)  # never moves backwards
    assert store.hello("host-1", "boot-b", "0.1.1", "full", T0 + 1) == 7
    store.acked("host-1", big)
    assert store.hello("host-1", "boot-b", "0.1.1", "full", T0 + 2) == big

    prep = RecordFactory("run-prep", counter)
    train = RecordFactory("run-train", counter)
    store.ingest(
        [
            prep.tagged(name="prep", started_at=T0, labels={"team": "data"}),
            prep.access("/data/clean.csv", pb.ROLE_OUTPUT, HASH_A),
            prep.finished(code=0),
            train.tagged(name="train", started_at=T0 + 100, labels={"team": "vision"}),
            train.access("/data/clean.csv", pb.ROLE_INPUT, HASH_A),
            train.access("/out/model.bin", pb.ROLE_OUTPUT, HASH_B),
        ],
        host="host-1",
    )
    assert store.unfinished("host-1") == ["run-train"]
    assert store.unfinished("host-2") == []
    summary = store.summary("run-train")
    assert (summary["inputs"], summary["outputs"]) == ({"artifact": 1}, {"artifact": 1})
    assert [r["run_id"] for r in store.runs(RunFilter(labels={"team": "data"}))] == ["run-prep"]
    assert [r["run_id"] for r in store.runs(RunFilter(host="host-1", since=T0 + 50))] == [
        "run-train"
    ]
    assert store.runs(RunFilter(until=T0)) == []

    up = store.lineage(HASH_B, up=True, down=False)
    assert [r["run_id"] for r in up["runs"]] == ["run-prep", "run-train"]
    assert {(e["from"], e["to"], e["kind"]) for e in up["edges"]} == {
        ("run-prep", HASH_A, "generated"),
        (HASH_A, "run-train", "used"),
        ("run-train", HASH_B, "generated"),
    }
    down = store.lineage("/data/clean.csv", up=False, down=True)
    assert [r["run_id"] for r in down["runs"]] == ["run-train"]
    graph = store.run_graph("train")
    assert [r["run_id"] for r in graph["runs"]] == ["run-prep", "run-train"]
    assert store.artifact(HASH_A[:13])["artifacts"][0]["hash"] == HASH_A

    # Another host may not write host-1's runs; the whole batch is refused.
    intruder = RecordFactory("run-train", counter)
    with pytest.raises(PermissionDenied):
        store.ingest([intruder.loss(1)], host="host-2")
    assert store.show("run-train")["lost_events"] == 0

    # Before its RunTagged arrives, a run belongs to the host that sent its first record.
    early = RecordFactory("run-early", counter)
    store.ingest([early.access("/x", pb.ROLE_INPUT)], host="host-1")
    with pytest.raises(PermissionDenied):
        claim = pb.RunTagged(host="host-2", uid=0)
        store.ingest([pb.Record(id="claim", run_id="run-early", run_tagged=claim)], host="host-2")


def test_lineage_answers_are_capped_and_say_so(store: SqlStore, counter: Iterator[int]) -> None:
    """A chain of 30 runs, each reading the previous one's output: a walk up from the end
    stops at max_nodes with truncated set; a generous cap returns the whole chain."""
    records: list[pb.Record] = []
    for i in range(30):
        f = RecordFactory(f"run-{i:02d}", counter)
        records += [f.tagged(started_at=T0 + i)]
        if i:
            records.append(f.access(f"/d/{i - 1}", pb.ROLE_INPUT, f"blake3:{i - 1:064x}"))
        records.append(f.access(f"/d/{i}", pb.ROLE_OUTPUT, f"blake3:{i:064x}"))
    store.ingest(records)
    end = f"blake3:{29:064x}"
    capped = store.lineage(end, up=True, down=False, depth=50, max_nodes=10)
    assert capped["truncated"] is True
    assert len(capped["runs"]) + len(capped["artifacts"]) <= 10
    whole = store.lineage(end, up=True, down=False, depth=50, max_nodes=1000)
    assert whole["truncated"] is False and len(whole["runs"]) == 30
    shallow = store.lineage(end, up=True, down=False, depth=3)
    assert [r["run_id"] for r in shallow["runs"]] == ["run-27", "run-28", "run-29"]
    for bad in (-1, 20_001):
        with pytest.raises(UsageError, match="max-nodes"):
            store.lineage(end, up=True, down=False, max_nodes=bad)
    with pytest.raises(UsageError, match="depth"):
        store.lineage(end, up=True, down=False, depth=51)


def test_lineage_shows_the_callers_runs_among_many_hidden(
    store: SqlStore, counter: Iterator[int]
) -> None:
    """The answer's size limit applies after the visibility filter: a user's own run is
    found even when many other users' runs read the same artifact first."""
    records: list[pb.Record] = []
    for i in range(15):
        other = RecordFactory(f"other-{i:02d}", counter)
        records += [other.tagged(uid=2000, started_at=T0 + i)]
        records.append(other.access("/shared/data", pb.ROLE_INPUT, HASH_A))
    mine = RecordFactory("mine", counter)
    records += [mine.tagged(uid=1000, started_at=T0 + 100)]
    records.append(mine.access("/shared/data", pb.ROLE_INPUT, HASH_A))
    store.ingest(records)
    doc = store.lineage(HASH_A, up=False, down=True, viewer=Viewer(uid=1000), max_nodes=5)
    assert [r["run_id"] for r in doc["runs"]] == ["mine"]
    assert doc["hidden_runs"] == 15


# --------------------------------------------------------------------- PostgreSQL-specific


def _pg_query(url: str, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        cur = conn.execute(sql, params)
        return cur.fetchall() if cur.description else []


def test_postgres_schema_version_and_types(postgres_url: str) -> None:
    with PostgresStore(postgres_url):
        pass
    assert _pg_query(postgres_url, "SELECT version FROM roard_schema") == [(SCHEMA_VERSION,)]
    types = dict(
        _pg_query(
            postgres_url,
            "SELECT column_name, data_type FROM information_schema.columns"
            " WHERE table_name = 'records'",
        )
    )
    assert types["seq"] == "bigint"
    assert types["payload"] == "bytea"
    assert types["time"] == "double precision"
    # Reopening an up-to-date database changes nothing.
    with PostgresStore(postgres_url):
        pass
    assert _pg_query(postgres_url, "SELECT version FROM roard_schema") == [(SCHEMA_VERSION,)]


def test_postgres_refuses_newer_schema(postgres_url: str) -> None:
    with PostgresStore(postgres_url):
        pass
    _pg_query(postgres_url, "UPDATE roard_schema SET version = %s", (SCHEMA_VERSION + 1,))
    with pytest.raises(ConfigError, match=r"newer than this roard.*upgrade roard"):
        PostgresStore(postgres_url)


def test_postgres_collectors_migrate_together(postgres_url: str) -> None:
    """Collectors starting at once on a fresh database migrate it exactly once."""
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def start() -> None:
        try:
            barrier.wait()
            PostgresStore(postgres_url).close()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert _pg_query(postgres_url, "SELECT version FROM roard_schema") == [(SCHEMA_VERSION,)]


def test_postgres_orders_text_like_sqlite(
    postgres_server: PgServer, tmp_path: Path, counter: Iterator[int]
) -> None:
    """Text compares bytewise in both stores, even in a database whose default collation
    (ICU en-US here) would sort "a" before "B"."""
    with psycopg.connect(postgres_server.url(), autocommit=True) as conn:
        if conn.info.server_version < 150000:
            pytest.skip("ICU databases need PostgreSQL 15 (LOCALE_PROVIDER)")
    url = postgres_server.create_database(
        "TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C'"
    )
    records = []
    for run_id in ("run-b", "run-B", "run-a", "run-_"):
        f = RecordFactory(run_id, counter)
        records += [f.tagged(name="same", started_at=T0)]
        records += [f.access(p, pb.ROLE_INPUT) for p in ("/d/b", "/d/B", "/d/a", "/d/_", "/d/Z")]
    with SqliteStore(tmp_path / "r.db") as lite, PostgresStore(url) as pg:
        lite.ingest(records)
        pg.ingest(records)
        assert [r["run_id"] for r in pg.runs()] == ["run-b", "run-a", "run-_", "run-B"]
        assert pg.runs() == lite.runs()
        assert [i["path"] for i in pg.show("run-a")["inputs"]] == sorted(
            ["/d/b", "/d/B", "/d/a", "/d/_", "/d/Z"]
        )
        assert pg.show("same") == lite.show("same")


def _contended_runs(counter: Iterator[int]) -> list[pb.Record]:
    """Records of 20 runs, with loss notices (additive) and rewrites of one path (highest
    seq wins): applying any record twice, or in the wrong order, would show."""
    records = []
    for i in range(20):
        run = f"run-{i:02d}"
        f = RecordFactory(run, counter)
        records += full_run(run, counter, name=f"job{i % 5}")
        records += [f.loss(i + 1), f.loss(2)]
        records += [
            f.access("/out/ckpt.pt", pb.ROLE_OUTPUT, h, seq=1000 + n, size=n)
            for n, h in enumerate([HASH_A, HASH_C, HASH_B, HASH_A, HASH_C])
        ]
    return records


def test_postgres_two_collectors_store_each_record_once(
    postgres_url: str, tmp_path: Path, counter: Iterator[int]
) -> None:
    """Two collectors (stores) share one database; 8 threads each deliver every record, in
    their own order and batching, so batches overlap: each record is new exactly once."""
    records = _contended_runs(counter)
    with SqliteStore(tmp_path / "reference.db") as reference:
        assert reference.ingest(records) == len(records)
        expected = {r.run_id: reference.show(r.run_id) for r in records}

    errors: list[BaseException] = []
    new_counts: list[int] = []
    barrier = threading.Barrier(8)
    with PostgresStore(postgres_url) as one, PostgresStore(postgres_url, pool_size=2) as two:

        def deliver(n: int) -> None:
            rng = random.Random(n)
            store = (one, two)[n % 2]
            mine = records[:]
            rng.shuffle(mine)
            try:
                barrier.wait()
                while mine:
                    size = rng.randint(5, 60)
                    batch, mine = mine[:size], mine[size:]
                    new_counts.append(store.ingest(batch))
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=deliver, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert sum(new_counts) == len(records)
        assert _pg_query(postgres_url, "SELECT COUNT(*), COUNT(DISTINCT id) FROM records") == [
            (len(records), len(records))
        ]
        for run_id, doc in expected.items():
            assert one.show(run_id) == doc
            assert two.show(run_id) == doc
        assert len(one.runs(RunFilter(limit=1000))) == 20


def test_postgres_retries_deadlocked_write(
    postgres_url: str, counter: Iterator[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    with PostgresStore(postgres_url) as store:
        calls = 0
        insert_new = store._insert_new

        def flaky(cur: Any, rows: list[tuple[Any, ...]]) -> set[str]:
            nonlocal calls
            calls += 1
            if calls == 1:
                raise psycopg.errors.DeadlockDetected("deadlock detected")
            if calls == 2:
                raise psycopg.errors.SerializationFailure("could not serialize access")
            return insert_new(cur, rows)

        monkeypatch.setattr(store, "_insert_new", flaky)
        records = full_run("run-1", counter)
        # A generator: a retry must still have the records.
        assert store.ingest(r for r in records) == len(records)
        assert calls == 3
        assert store.show("run-1")["exit_code"] == 3


def test_postgres_replaces_connections_the_server_closed(
    postgres_url: str, counter: Iterator[int]
) -> None:
    with PostgresStore(postgres_url) as store:
        store.ingest(full_run("run-1", counter))
        assert store.runs()
        killed = _pg_query(
            postgres_url,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()",
        )
        assert killed  # the store's idle pooled connection
        assert store.show("run-1")["run_id"] == "run-1"
        assert store.ingest(full_run("run-2", counter, name="eval")) == 9


def test_postgres_connection_lost_mid_transaction(
    postgres_url: str, counter: Iterator[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    with PostgresStore(postgres_url) as store:
        insert_new = store._insert_new

        def dies(cur: Any, rows: list[tuple[Any, ...]]) -> set[str]:
            cur.execute("SELECT pg_terminate_backend(pg_backend_pid())")
            return insert_new(cur, rows)

        monkeypatch.setattr(store, "_insert_new", dies)
        records = full_run("run-1", counter)
        with pytest.raises(PrerequisiteError, match=r"lost the connection.*server is running"):
            store.ingest(records)
        monkeypatch.undo()
        assert store.ingest(records) == len(records)  # nothing was stored; a new connection


@pytest.mark.parametrize(
    ("url", "hint"),
    [
        ("postgresql://roard@/registry?host=/nonexistent/socket/dir", "server is running"),
        ("postgresql://roard:s3cret@127.0.0.1:1/registry", "server is running"),
    ],
)
def test_postgres_unreachable_server(url: str, hint: str) -> None:
    with pytest.raises(PrerequisiteError) as excinfo:
        PostgresStore(url)
    message = str(excinfo.value)
    assert message.startswith("cannot connect to the PostgreSQL registry (database registry")
    assert hint in message
    assert "s3cret" not in message
    assert excinfo.value.__cause__ is None  # one line for the user, no driver traceback


def test_postgres_wrong_database_or_user(postgres_server: PgServer) -> None:
    with pytest.raises(PrerequisiteError, match=r"does not exist.*createdb"):
        PostgresStore(postgres_server.url("no_such_db"))
    wrong_user = postgres_server.url().replace(f"//{SUPERUSER}@", "//no_such_user@")
    with pytest.raises(PrerequisiteError, match="check the user name and password"):
        PostgresStore(wrong_user)


def test_postgres_malformed_url() -> None:
    with pytest.raises(PrerequisiteError, match=r"invalid PostgreSQL registry URL.*postgresql://"):
        PostgresStore("postgresql://host/db?no_such_option=1")
    with pytest.raises(ConfigError):  # also a configuration error (exit code 2)
        PostgresStore("postgresql://[::1/db")


# ------------------------------------------------------------------------------ open_store


def test_open_store_sqlite(tmp_path: Path) -> None:
    path = tmp_path / "a" / "registry.db"
    with open_store(f"sqlite://{path}") as s:
        assert isinstance(s, SqliteStore) and s.path == path
    with open_store(str(path)) as s:
        assert isinstance(s, SqliteStore) and s.path == path


def test_open_store_postgres(postgres_url: str) -> None:
    with open_store(postgres_url) as s:
        assert isinstance(s, PostgresStore)
    with open_store(postgres_url.replace("postgresql://", "postgres://", 1)) as s:
        assert isinstance(s, PostgresStore)


@pytest.mark.parametrize(
    "url", ["mysql://db/registry", "sqlite://relative.db", "sqlite:relative.db", ""]
)
def test_open_store_refuses_other_urls(url: str) -> None:
    with pytest.raises(ConfigError, match=r"sqlite:///.*postgresql://"):
        open_store(url)


def test_signals_and_placement_are_shown(store: SqlStore, counter: Iterator[int]) -> None:
    """A process killed by a signal says which, apart from `exit 137`; the run says where
    its root ran (container, pod) as the daemon saw it when tagged."""
    f = RecordFactory("run-1", counter)
    tagged = f.tagged()
    tagged.run_tagged.placement.container = "ab" * 32
    tagged.run_tagged.placement.kubernetes_pod = "train-0"
    killed = f.exited(101, 5100, 137, T0 + 5)
    killed.process_exited.signal = 9
    finished = f.finished(code=137)
    finished.run_finished.signal = 9
    started = [f.started(100, 5000, T0 + 1), f.started(101, 5100, T0 + 2, ppid=100)]
    store.ingest([tagged, *started, killed, f.exited(100, 5000, 137, T0 + 6), finished])
    doc = store.show("run-1")
    assert (doc["exit_code"], doc["signal"]) == (137, "SIGKILL")
    assert [(p["pid"], p["exit_code"], p["signal"]) for p in doc["processes"]] == [
        (100, 137, None),  # `exit 137`: the same code, no signal
        (101, 137, "SIGKILL"),
    ]
    assert doc["placement"] == {
        "cgroup": "",
        "container": "ab" * 32,
        "kubernetes_pod": "train-0",
        "kubernetes_pod_uid": "",
    }
    old = RecordFactory("run-2", counter)  # from a daemon that did not say
    store.ingest([old.tagged(), old.finished(code=0)])
    assert store.show("run-2")["placement"] is None
    assert store.show("run-2")["signal"] is None


def _dataset(
    f: RecordFactory, path: str, role: pb.Role, files: dict[str, str], unhashed: str = ""
) -> pb.Record:
    """A Dataset record over `files` (relative path: hash), each 10 bytes."""
    return f._record(
        dataset=pb.Dataset(
            path=path,
            role=role,
            hash="" if unhashed else HASH_C,
            size=10 * len(files),
            files=[pb.DatasetFile(path=p, hash=h, size=10) for p, h in sorted(files.items())],
            unhashed=unhashed,
        )
    )


def _dataset_runs(store: SqlStore, counter: Iterator[int]) -> None:
    """run-w wrote /ckpt (a dataset over its two files); run-r read it back."""
    writer, reader = RecordFactory("run-w", counter), RecordFactory("run-r", counter)
    files = {"a.pt": HASH_A, "sub/b.pt": HASH_B}
    store.ingest(
        [
            writer.tagged(started_at=T0),
            writer.access("/ckpt/a.pt", pb.ROLE_OUTPUT, HASH_A),
            writer.access("/ckpt/sub/b.pt", pb.ROLE_OUTPUT, HASH_B),
            _dataset(writer, "/ckpt", pb.ROLE_OUTPUT, files),
            writer.finished(),
            reader.tagged(started_at=T0 + 100),
            reader.access("/ckpt/a.pt", pb.ROLE_INPUT, HASH_A),
            reader.access("/ckpt/sub/b.pt", pb.ROLE_INPUT, HASH_B),
            _dataset(reader, "/ckpt", pb.ROLE_INPUT, files),
            _dataset(reader, "/broken", pb.ROLE_INPUT, {"x": ""}, unhashed="1 of 1 unhashed"),
            reader.finished(),
        ]
    )


def test_datasets_in_show(store: SqlStore, counter: Iterator[int]) -> None:
    """show lists datasets apart; their files stay among the inputs and outputs."""
    _dataset_runs(store, counter)
    doc = store.show("run-w")
    assert [f["path"] for f in doc["outputs"]] == ["/ckpt/a.pt", "/ckpt/sub/b.pt"]
    assert doc["datasets"] == [
        {
            "path": "/ckpt",
            "hash": HASH_C,
            "role": "output",
            "size": 20,
            "file_count": 2,
            "host": "host-1",
            "files": [
                {"path": "a.pt", "hash": HASH_A, "size": 10},
                {"path": "sub/b.pt", "hash": HASH_B, "size": 10},
            ],
        }
    ]
    doc = store.show("run-r")
    assert [f["path"] for f in doc["inputs"]] == ["/ckpt/a.pt", "/ckpt/sub/b.pt"]
    assert doc["unhashed"] == []
    broken = next(d for d in doc["datasets"] if d["path"] == "/broken")
    assert (broken["hash"], broken["unhashed"], broken["file_count"]) == ("", "1 of 1 unhashed", 1)
    assert [r["inputs"] for r in store.runs()] == [2, 0]


def test_a_dataset_hash_is_an_artifact(store: SqlStore, counter: Iterator[int]) -> None:
    """artifact, lineage (by hash or directory) and graph treat a dataset as a file."""
    _dataset_runs(store, counter)
    (found,) = store.artifact(HASH_C)["artifacts"]
    assert (found["kind"], found["size"]) == ("dataset", 20)
    assert [r["run_id"] for r in found["produced_by"]] == ["run-w"]
    assert [r["run_id"] for r in found["consumed_by"]] == ["run-r"]
    up = store.lineage(HASH_C, up=True, down=False)
    assert {"from": "run-w", "to": HASH_C, "kind": "generated"} in up["edges"]
    down = store.lineage("/ckpt", up=False, down=True)
    assert {"from": HASH_C, "to": "run-r", "kind": "used"} in down["edges"]
    graph = store.run_graph("run-r")
    assert {"from": HASH_C, "to": "run-r", "kind": "used"} in graph["edges"]
    assert "run-w" in {r["run_id"] for r in graph["runs"]}


def test_a_registry_from_before_datasets_upgrades_with_its_runs(
    opener: Callable[[], SqlStore],
    counter: Iterator[int],
    request: pytest.FixtureRequest,
    tmp_path: Path,
) -> None:
    """A schema-5 registry (no dataset_files, no run_links, no seen paths) with runs in it
    upgrades and then stores datasets; its runs read back as before."""
    with opener() as store:
        store.ingest(full_run("old", counter))
        before = store.show("old")
    if isinstance(store, SqliteStore):
        conn = sqlite3.connect(tmp_path / "state" / "registry.db")  # (the opener's)
        conn.executescript(
            "DROP TABLE dataset_files; ALTER TABLE processes DROP COLUMN exit_signal;"
            " ALTER TABLE runs DROP COLUMN exit_signal;"
            " ALTER TABLE environments DROP COLUMN truncated; DROP TABLE run_links;"
            " DROP INDEX runs_project;"
            " ALTER TABLE runs DROP COLUMN project; ALTER TABLE runs DROP COLUMN public;"
            " ALTER TABLE file_access DROP COLUMN seen_path;"
            " PRAGMA user_version = 5;"
        )
        conn.close()
    else:
        url = request.getfixturevalue("postgres_url")
        _pg_query(url, "DROP TABLE dataset_files")
        _pg_query(url, "ALTER TABLE processes DROP COLUMN exit_signal")
        _pg_query(url, "ALTER TABLE runs DROP COLUMN exit_signal")
        _pg_query(url, "ALTER TABLE environments DROP COLUMN truncated")
        _pg_query(url, "DROP TABLE run_links")
        _pg_query(url, "ALTER TABLE runs DROP COLUMN project")  # (its index goes with it)
        _pg_query(url, "ALTER TABLE runs DROP COLUMN public")
        _pg_query(url, "ALTER TABLE file_access DROP COLUMN seen_path")
        _pg_query(url, "UPDATE roard_schema SET version = 5")
    with opener() as store:
        assert store.show("old") == before
        _dataset_runs(store, counter)
        datasets = store.show("run-r")["datasets"]
        assert [(d["path"], d["file_count"]) for d in datasets] == [("/broken", 1), ("/ckpt", 2)]


def _link(
    f: RecordFactory, tracker: str, run_id: str, project: str = "", url: str = ""
) -> pb.Record:
    return f._record(
        tracker_link=pb.TrackerLink(
            tracker=tracker, run_id=run_id, project=project, url=url, source="env"
        )
    )


def test_tracker_links_in_show_and_runs(store: SqlStore, counter: Iterator[int]) -> None:
    f = RecordFactory("run-1", counter)
    url = "https://wandb.ai/team/resnet/runs/abc"
    early = f._record(tracker_link=pb.TrackerLink(tracker="wandb", run_id="abc", source="files"))
    richer = _link(f, "wandb", "abc", "team/resnet", url)
    records = [f.tagged(), early, _link(f, "mlflow", "m" * 32, "0"), richer, f.finished()]
    g = RecordFactory("run-2", counter)
    other = [g.tagged(), _link(g, "mlflow", "abc"), g.finished()]
    # Redelivered, and in any order: the richer sighting completes the first one.
    store.ingest(list(reversed(records)) + other)
    store.ingest(records)
    store.ingest([early])
    expected = [
        {"tracker": "mlflow", "project": "0", "run_id": "m" * 32, "url": "", "source": "env"},
        {
            "tracker": "wandb",
            "project": "team/resnet",
            "run_id": "abc",
            "url": url,
            "source": "env",
        },
    ]
    assert store.show("run-1")["links"] == expected
    assert store.show("run-2")["links"][0]["tracker"] == "mlflow"

    def found(link: str) -> list[str]:
        return [r["run_id"] for r in store.runs(RunFilter(link=link))]

    assert found("abc") == ["run-2", "run-1"]  # both have a tracker run "abc"
    assert found("wandb=abc") == ["run-1"]
    assert found("mlflow=abc") == ["run-2"]
    assert found("wandb=team/resnet/abc") == ["run-1"]
    assert found("nothing") == []
    listed = {r["run_id"]: r["links"] for r in store.runs()}
    assert listed["run-1"] == expected


def test_a_run_without_links_shows_none(store: SqlStore, counter: Iterator[int]) -> None:
    store.ingest(full_run("run-1", counter))
    assert store.show("run-1")["links"] == []
    assert store.runs()[0]["links"] == []

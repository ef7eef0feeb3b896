"""Tests for roard.collector.storage: SqliteStore on real protobuf records in a temp dir."""

from __future__ import annotations

import itertools
import json
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from roard.collector.storage import SCHEMA_VERSION, LineageStore, SqliteStore, rfc3339
from roard.errors import ConfigError, NotFound, RoardError, UsageError
from roard.v1 import records_pb2 as pb

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


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    s = SqliteStore(tmp_path / "state" / "registry.db")
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


def test_satisfies_protocol(store: SqliteStore) -> None:
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


def test_show_full_run(store: SqliteStore, counter: Iterator[int]) -> None:
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
    assert doc["inputs"] == [
        {"path": "/data/in.csv", "hash": HASH_A, "size": 100, "kind": "artifact", "bytes_read": 100}
    ]
    assert [o["path"] for o in doc["outputs"]] == ["/out/log.txt", "/out/model.bin"]
    log, model = doc["outputs"]
    assert log["read_too"] is True
    assert model == {
        "path": "/out/model.bin",
        "hash": HASH_B,
        "size": 200,
        "kind": "artifact",
        "bytes_written": 200,
        "read_too": False,
    }


def test_show_is_json_serializable(store: SqliteStore, counter: Iterator[int]) -> None:
    store.ingest(full_run("run-1", counter))
    f = RecordFactory("run-2", counter)
    store.ingest([f.exited(7, 70, 1, T0 + 5), f.access("/x", pb.ROLE_INPUT)])  # sparse run
    for run in ("run-1", "run-2"):
        doc = store.show(run)
        assert json.loads(json.dumps(doc)) == doc
    listing = store.runs()
    assert json.loads(json.dumps(listing)) == listing


def test_reingest_is_idempotent(store: SqliteStore, counter: Iterator[int]) -> None:
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


def test_name_means_latest_run(store: SqliteStore, counter: Iterator[int]) -> None:
    old = RecordFactory("run-old", counter)
    new = RecordFactory("run-new", counter)
    other = RecordFactory("run-other", counter)
    # Ingest the newer one first: "latest" is by started_at, not arrival.
    store.ingest([new.tagged(name="train", started_at=T0 + 100)])
    store.ingest([old.tagged(name="train", started_at=T0)])
    store.ingest([other.tagged(name="eval", started_at=T0 + 200)])
    assert store.show("train")["run_id"] == "run-new"
    assert store.show("run-old")["run_id"] == "run-old"  # a run id wins over a name
    assert [r["run_id"] for r in store.runs(name="train")] == ["run-new", "run-old"]
    assert [r["run_id"] for r in store.runs()] == ["run-other", "run-new", "run-old"]
    assert [r["run_id"] for r in store.runs(limit=1)] == ["run-other"]


def test_not_found_message(store: SqliteStore) -> None:
    with pytest.raises(NotFound) as excinfo:
        store.show("nope")
    assert str(excinfo.value) == "no run 'nope': list runs with `roarctl runs`"
    assert isinstance(excinfo.value, RoardError)
    with pytest.raises(NotFound):
        store.show("")


def test_out_of_order_records(store: SqliteStore, counter: Iterator[int]) -> None:
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


def test_exit_without_start_is_kept(store: SqliteStore, counter: Iterator[int]) -> None:
    f = RecordFactory("run-1", counter)
    store.ingest([f.tagged(), f.started(100, 5000, T0 + 1), f.exited(200, 6000, 9, T0 + 5)])
    procs = store.show("run-1")["processes"]
    # Sorted by start time; the exit-only process (start unknown) goes last.
    assert [(p["pid"], p["exit_code"]) for p in procs] == [(100, None), (200, 9)]


def test_pid_reuse_keeps_processes_apart(store: SqliteStore, counter: Iterator[int]) -> None:
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


def test_highest_seq_wins(store: SqliteStore, counter: Iterator[int]) -> None:
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
    assert store.artifact_runs(HASH_B)["produced_by"] == ["run-1"]
    assert store.artifact_runs(HASH_C)["produced_by"] == []


def test_uid_visibility(store: SqliteStore, counter: Iterator[int]) -> None:
    alice = RecordFactory("run-alice", counter)
    bob = RecordFactory("run-bob", counter)
    untagged = RecordFactory("run-untagged", counter)
    store.ingest([alice.tagged(name="train", uid=1000, started_at=T0)])
    store.ingest([bob.tagged(name="train", uid=1001, started_at=T0 + 10)])
    store.ingest([untagged.access("/x", pb.ROLE_INPUT)])

    assert store.show("run-alice", uid=1000)["run_id"] == "run-alice"
    with pytest.raises(NotFound, match="no run 'run-bob'"):
        store.show("run-bob", uid=1000)
    with pytest.raises(NotFound):
        store.show("run-untagged", uid=1000)
    # A name resolves to the caller's own latest run, not someone else's newer one.
    assert store.show("train", uid=1000)["run_id"] == "run-alice"
    assert store.show("train")["run_id"] == "run-bob"
    assert store.show("train", uid=0)["run_id"] == "run-bob"

    assert [r["run_id"] for r in store.runs(uid=1000)] == ["run-alice"]
    assert [r["run_id"] for r in store.runs(uid=1001)] == ["run-bob"]
    assert {r["run_id"] for r in store.runs(uid=0)} == {"run-alice", "run-bob", "run-untagged"}
    assert len(store.runs()) == 3


def test_running_with_loss_is_incomplete(store: SqliteStore, counter: Iterator[int]) -> None:
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


def test_finished_reports_final_loss(store: SqliteStore, counter: Iterator[int]) -> None:
    f = RecordFactory("run-1", counter)
    store.ingest([f.tagged(), f.loss(3), f.finished(code=None, complete=False, lost=12)])
    doc = store.show("run-1")
    assert doc["status"] == "finished"
    assert doc["exit_code"] is None  # e.g. adopted by pid: no exit status to report
    assert doc["ended_at"] == rfc3339(T0 + 60)
    assert (doc["complete"], doc["lost_events"]) == (False, 12)


def test_runs_summary_fields(store: SqliteStore, counter: Iterator[int]) -> None:
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
    assert store.runs(name="nothing") == []
    assert store.runs(limit=0) == []


def test_reopen_keeps_data(tmp_path: Path, counter: Iterator[int]) -> None:
    path = tmp_path / "registry.db"
    with SqliteStore(path) as first:
        records = full_run("run-1", counter)
        first.ingest(records)
        before = first.show("train")
    with SqliteStore(path) as second:
        assert second.show("train") == before
        assert second.ingest(records) == 0  # dedup survives a restart


def test_artifact_runs(store: SqliteStore, counter: Iterator[int]) -> None:
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
    assert store.artifact_runs(HASH_A) == {
        "produced_by": ["run-prep"],
        "consumed_by": ["run-train"],
    }
    assert store.artifact_runs(HASH_B) == {"produced_by": ["run-train"], "consumed_by": []}
    assert store.artifact_runs(HASH_C) == {"produced_by": [], "consumed_by": []}


def test_bad_record_rolls_back_batch(store: SqliteStore, counter: Iterator[int]) -> None:
    f = RecordFactory("run-1", counter)
    good = f.tagged()
    with pytest.raises(UsageError):
        store.ingest([good, pb.Record(id="", run_id="run-1")])
    with pytest.raises(UsageError):
        store.ingest([pb.Record(id="x", run_id="")])
    with pytest.raises(NotFound):
        store.show("run-1")
    assert store.ingest([good]) == 1


def test_large_uint64_values_round_trip(store: SqliteStore, counter: Iterator[int]) -> None:
    f = RecordFactory("run-1", counter)
    big = (1 << 64) - 1
    store.ingest([f.tagged(), f.access("/big", pb.ROLE_INPUT, size=big)])
    assert store.show("run-1")["inputs"][0]["size"] == big


def test_concurrent_ingest_and_queries(store: SqliteStore) -> None:
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
                store.runs(limit=5)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(store.runs(limit=1000)) == 80


def test_close_is_idempotent(tmp_path: Path) -> None:
    s = SqliteStore(tmp_path / "r.db")
    s.close()
    s.close()
    with pytest.raises(sqlite3.ProgrammingError):
        s.runs()

"""The registry's side of joined runs: one run id, a part per host (`roarctl tag --join`).

Each part is sent by its own daemon; the store sums the parts up into one run, keeps every
host's processes and files apart, and stops waiting for hosts that went silent."""

from __future__ import annotations

import itertools
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from roard.collector.storage import RunFilter, SqlStore
from roard.errors import PermissionDenied
from roard.v1 import records_pb2 as pb
from tests.unit.test_storage import HASH_A, HASH_B, T0, counter, opener, store

__all__ = ["counter", "opener", "store"]  # fixtures shared with test_storage

RUN = "slurm-4242"


class Part:
    """Records of one host's part of run RUN, as that host's daemon numbers them."""

    def __init__(self, host: str, part: str, seqs: Iterator[int], join_hosts: int = 0) -> None:
        self.host, self.part, self.seqs, self.join_hosts = host, part, seqs, join_hosts

    def _record(self, suffix: str, **body: Any) -> pb.Record:
        seq = next(self.seqs)
        return pb.Record(
            id=f"{RUN}/{self.part}/{suffix}",
            seq=seq,
            run_id=RUN,
            part=self.part,
            time=T0 + seq,
            **body,
        )

    def tagged(self, name: str = "train", started_at: float = T0) -> pb.Record:
        return self._record(
            "tagged",
            run_tagged=pb.RunTagged(
                name=name,
                host=self.host,
                uid=1000,
                how="spawn",
                root_pid=100,
                started_at=started_at,
                joined=True,
                join_hosts=self.join_hosts,
            ),
        )

    def process(self, pid: int) -> pb.Record:
        return self._record(
            f"proc/{pid}",
            process_started=pb.ProcessStarted(
                pid=pid, start_ticks=7, exe="/usr/bin/python3", argv=["python3", "train.py"]
            ),
        )

    def access(self, path: str, role: pb.Role, file_hash: str, location: str = "") -> pb.Record:
        return self._record(
            f"file/{role}/{path}",
            file_access=pb.FileAccess(
                path=path, role=role, hash=file_hash, size=10, kind="artifact", location=location
            ),
        )

    def finished(self, code: int = 0, complete: bool = True, lost: int = 0) -> pb.Record:
        return self._record(
            "finished",
            run_finished=pb.RunFinished(
                has_exit_code=True,
                exit_code=code,
                ended_at=T0 + 100,
                complete=complete,
                lost_events=lost,
            ),
        )


def _parts(store: SqlStore, *hosts: str, join_hosts: int = 0) -> list[Part]:
    parts = []
    for i, host in enumerate(hosts):
        store.hello(host, "boot", "test", "tracepoint", T0)
        parts.append(Part(host, f"part{i}", itertools.count(1), join_hosts))
    return parts


def test_parts_of_two_hosts_are_one_run(store: SqlStore) -> None:
    """Both hosts' processes and files are in one run, each with its host; the run is
    running until every part has finished, then takes the first failing exit code."""
    a, b = _parts(store, "node-a", "node-b")
    store.ingest(
        [a.tagged(), a.process(100), a.access("/data/in", pb.ROLE_INPUT, HASH_A)], "node-a"
    )
    store.ingest(
        [b.tagged(), b.process(100), b.access("/scratch/x", pb.ROLE_OUTPUT, HASH_B)], "node-b"
    )
    store.ingest([a.finished(code=0)], "node-a")
    doc = store.show(RUN)
    assert doc["status"] == "running"
    assert doc["hosts"] == ["node-a", "node-b"]
    assert {(p["host"], p["status"]) for p in doc["parts"]} == {
        ("node-a", "finished"),
        ("node-b", "running"),
    }
    # The same pid on two hosts: two processes.
    assert sorted((p["host"], p["pid"]) for p in doc["processes"]) == [
        ("node-a", 100),
        ("node-b", 100),
    ]
    assert [(f["host"], f["path"]) for f in doc["inputs"]] == [("node-a", "/data/in")]
    assert [(f["host"], f["path"]) for f in doc["outputs"]] == [("node-b", "/scratch/x")]

    store.ingest([b.finished(code=3)], "node-b")
    doc = store.show(RUN)
    assert (doc["status"], doc["exit_code"], doc["complete"]) == ("finished", 3, True)
    assert [r["run_id"] for r in store.runs(RunFilter(host="node-b"))] == [RUN]


def test_a_part_that_lost_events_makes_the_run_incomplete(store: SqlStore) -> None:
    a, b = _parts(store, "node-a", "node-b")
    store.ingest([a.tagged(), a.finished()], "node-a")
    store.ingest([b.tagged(), b.finished(complete=False, lost=4)], "node-b")
    doc = store.show(RUN)
    assert (doc["status"], doc["complete"], doc["lost_events"]) == ("finished", False, 4)


def test_the_same_path_on_two_hosts_is_two_files(store: SqlStore) -> None:
    """/tmp/out written on each node is a different file: neither hides the other."""
    a, b = _parts(store, "node-a", "node-b")
    store.ingest([a.tagged(), a.access("/tmp/out", pb.ROLE_OUTPUT, HASH_A)], "node-a")
    store.ingest([b.tagged(), b.access("/tmp/out", pb.ROLE_OUTPUT, HASH_B)], "node-b")
    outputs = store.show(RUN)["outputs"]
    assert sorted((f["host"], f["hash"]) for f in outputs) == [
        ("node-a", HASH_A),
        ("node-b", HASH_B),
    ]


def test_expected_hosts_keep_the_run_open_then_time_out(store: SqlStore) -> None:
    """--hosts 2 and only one host ever joins: running until the join timeout, then
    finished, incomplete, saying why."""
    (a,) = _parts(store, "node-a", join_hosts=2)
    store.ingest([a.tagged(), a.finished()], "node-a")
    assert store.show(RUN)["status"] == "running"
    now = time.time()
    assert store.expire_parts(now, 3600) == []  # not yet
    assert store.expire_parts(now + 7200, 3600) == [RUN]
    doc = store.show(RUN)
    assert (doc["status"], doc["complete"]) == ("finished", False)
    assert doc["join_hosts"] == 2
    assert any("only 1 of the 2 expected hosts" in r for r in doc["loss_reasons"])


def test_a_silent_hosts_part_times_out_and_a_late_finish_still_counts(store: SqlStore) -> None:
    a, b = _parts(store, "node-a", "node-b")
    store.ingest([a.tagged(), a.finished()], "node-a")
    store.ingest([b.tagged()], "node-b")
    now = time.time()
    store.seen("node-a", now + 7200)  # node-a still talks; node-b fell silent
    assert store.expire_parts(now + 7200, 3600) == [RUN]
    doc = store.show(RUN)
    assert (doc["status"], doc["complete"]) == ("finished", False)
    assert {p["host"]: p["status"] for p in doc["parts"]} == {
        "node-a": "finished",
        "node-b": "timed_out",
    }
    assert any("host node-b never finished" in r for r in doc["loss_reasons"])
    # Its daemon comes back and finishes the part: the run is whole again.
    store.ingest([b.finished()], "node-b")
    doc = store.show(RUN)
    assert (doc["status"], doc["complete"], doc["loss_reasons"]) == ("finished", True, [])


def test_a_run_whose_only_part_timed_out_ends_when_the_collector_gave_up(
    store: SqlStore,
) -> None:
    (a,) = _parts(store, "node-a")
    store.ingest([a.tagged()], "node-a")
    now = time.time()
    assert store.expire_parts(now + 7200, 3600) == [RUN]
    doc = store.show(RUN)
    assert (doc["status"], doc["complete"], doc["exit_code"]) == ("finished", False, None)
    assert doc["ended_at"] is not None and doc["lost_events"] == 1


def test_a_live_host_keeps_its_part_waiting(store: SqlStore) -> None:
    """A long part on a host that keeps sending heartbeats never times out."""
    a, b = _parts(store, "node-a", "node-b")
    store.ingest([a.tagged(), a.finished()], "node-a")
    store.ingest([b.tagged()], "node-b")
    now = time.time()
    store.seen("node-b", now + 7000)
    assert store.expire_parts(now + 7200, 3600) == []
    assert store.show(RUN)["status"] == "running"


def test_unfinished_lists_this_hosts_parts_by_daemon_side_id(store: SqlStore) -> None:
    a, b = _parts(store, "node-a", "node-b")
    store.ingest([a.tagged()], "node-a")
    store.ingest([b.tagged()], "node-b")
    assert store.unfinished("node-a") == [f"{RUN}/part0"]
    assert store.unfinished("node-b") == [f"{RUN}/part1"]


def test_joined_and_unjoined_runs_cannot_share_an_id(store: SqlStore) -> None:
    """A part for a run id that a host uses for a run of its own (or the reverse) is
    refused, naming the clash; another host's records never enter an unjoined run."""
    (a,) = _parts(store, "node-a")
    store.hello("node-b", "boot", "test", "tracepoint", T0)
    own = pb.Record(
        id="solo/tagged",
        seq=1,
        run_id="solo",
        time=T0,
        run_tagged=pb.RunTagged(host="node-b", how="spawn"),
    )
    store.ingest([own], "node-b")
    with pytest.raises(PermissionDenied, match="is taken by a run of host 'node-b'"):
        store.ingest([pb.Record(id="solo/p/tagged", seq=1, run_id="solo", part="p")], "node-a")
    # Not even the host that owns it may turn its own run into a joined one.
    with pytest.raises(PermissionDenied, match="that is not joined"):
        store.ingest([pb.Record(id="solo/q/tagged", seq=2, run_id="solo", part="q")], "node-b")
    store.ingest([a.tagged()], "node-a")
    unjoined = pb.Record(id=f"{RUN}/x", seq=9, run_id=RUN, time=T0)
    with pytest.raises(PermissionDenied, match="joined"):
        store.ingest([unjoined], "node-b")


def test_a_shared_files_path_finds_it_under_any_hosts_mount_point(store: SqlStore) -> None:
    """rank 0 writes ckpt.pt on NFS mounted at /mnt/a; a job on another node reads it at
    /mnt/b: looking up either path finds the same content, produced by the joined run."""
    (a,) = _parts(store, "node-a")
    where = "nfs://fs1:/export/ckpt.pt"
    store.ingest(
        [a.tagged(), a.access("/mnt/a/ckpt.pt", pb.ROLE_OUTPUT, HASH_A, where), a.finished()],
        "node-a",
    )
    store.hello("node-b", "boot", "test", "tracepoint", T0)
    other = pb.Record(
        id="eval/tagged",
        seq=1,
        run_id="eval",
        time=T0 + 200,
        run_tagged=pb.RunTagged(host="node-b", how="spawn", started_at=T0 + 200),
    )
    read = pb.Record(
        id="eval/in",
        seq=2,
        run_id="eval",
        time=T0 + 201,
        file_access=pb.FileAccess(
            path="/mnt/b/ckpt.pt", role=pb.ROLE_INPUT, hash=HASH_A, kind="artifact", location=where
        ),
    )
    store.ingest([other, read], "node-b")
    found = store.artifact("/mnt/b/ckpt.pt", host="node-b")["artifacts"]
    assert [f["hash"] for f in found] == [HASH_A]
    assert [r["run_id"] for r in found[0]["produced_by"]] == [RUN]
    assert {(p["host"], p["path"], p["location"]) for p in found[0]["paths"]} == {
        ("node-a", "/mnt/a/ckpt.pt", where),
        ("node-b", "/mnt/b/ckpt.pt", where),
    }
    up = store.lineage("/mnt/b/ckpt.pt", up=True, down=False, host="node-b")
    assert RUN in {r["run_id"] for r in up["runs"]}


def test_a_registry_from_before_joined_runs_keeps_its_runs(tmp_path: Path) -> None:
    """Upgrading a schema-3 registry: processes and files move to the host-keyed tables
    with their run's host, and read back as before."""
    from roard.collector.sqlite import SqliteStore
    from roard.collector.storage import MIGRATIONS

    path = tmp_path / "registry.db"
    conn = sqlite3.connect(path)
    conn.row_factory = sqlite3.Row
    for step in (s for m in MIGRATIONS[:3] for s in m):
        if isinstance(step, str):
            conn.execute(step)
        else:
            step(conn.cursor())
    conn.execute(
        "INSERT INTO runs (run_id, started_at, tagged_seq, host, uid, finished_seq, complete,"
        " final_lost, ended_at) VALUES ('old', ?, 1, 'node-z', 0, 9, 1, 0, ?)",
        (T0, T0 + 5),
    )
    conn.execute(
        "INSERT INTO processes (run_id, pid, start_ticks, argv) VALUES ('old', 7, 70, '[]')"
    )
    conn.execute(
        "INSERT INTO file_access VALUES ('old', 1, '/d/in', 3, ?, 5, 'artifact', 1, 2, 3, 5,"
        " 0, 0, '')",
        (HASH_A,),
    )
    conn.execute("PRAGMA user_version = 3")
    conn.commit()
    conn.close()
    with SqliteStore(path) as store:
        doc = store.show("old")
        assert [(p["host"], p["pid"]) for p in doc["processes"]] == [("node-z", 7)]
        assert [(f["host"], f["path"], f["hash"]) for f in doc["inputs"]] == [
            ("node-z", "/d/in", HASH_A)
        ]
        assert store.artifact("/d/in", host="node-z")["artifacts"][0]["hash"] == HASH_A

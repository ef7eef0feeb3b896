"""The daemon's account of a finalized run (what `roarctl tag` prints before the collector
has the run) says what the collector's summary of the same records says."""

from __future__ import annotations

import itertools
import signal
from pathlib import Path

from roard.collector.sqlite import SqliteStore
from roard.records import summary
from roard.v1 import records_pb2 as pb
from tests.unit.test_storage import HASH_A, HASH_B, HASH_C, RecordFactory


def _mixed_run(run: RecordFactory) -> list[pb.Record]:
    """Every kind of file record a finalization emits, with a (role, path) sent twice."""
    records = [run.tagged(name="train")]
    for path, role, kind, why in (
        ("/data/in.csv", pb.ROLE_INPUT, "artifact", ""),
        ("/work/train.py", pb.ROLE_INPUT, "code", ""),
        ("/usr/lib/libc.so.6", pb.ROLE_INPUT, "system", ""),
        ("/proc/meminfo", pb.ROLE_INPUT, "system", "content made by the kernel when read"),
        ("/data/huge.bin", pb.ROLE_INPUT, "artifact", "over hash_max_bytes"),
        ("/out/model.bin", pb.ROLE_OUTPUT, "artifact", ""),
        ("/out/log.txt", pb.ROLE_OUTPUT, "artifact", ""),
        ("/out/log.txt", pb.ROLE_OUTPUT, "artifact", "changed while hashed, twice"),
        ("/out/tmp.part", pb.ROLE_DELETED, "artifact", ""),
    ):
        record = run.access(path, role, HASH_A if not why else "")
        record.file_access.kind, record.file_access.unhashed = kind, why
        records.append(record)
    for path, role, file_hash in (
        ("/data/shards", pb.ROLE_INPUT, HASH_B),
        ("/out/ckpt", pb.ROLE_OUTPUT, HASH_C),
    ):
        found = pb.Dataset(path=path, role=role, hash=file_hash, size=3)
        found.files.add(path="a", hash=HASH_A, size=3)
        records.append(run._record(dataset=found))
    records.append(run.loss(2))
    last = run.finished(code=None, complete=False, lost=2)
    last.run_finished.signal = signal.SIGKILL
    return [*records, last]


def test_the_daemons_summary_is_the_collectors(tmp_path: Path) -> None:
    """Counts by role and kind (datasets as a kind), unhashed files that are not the
    kernel's, a later record of a path replacing the earlier one, deleted temporaries in
    neither list, the signal and the loss: as the collector summarizes the same records."""
    records = _mixed_run(RecordFactory("run-1", itertools.count(1)))
    ours = summary.finalized("run-1", "train", records)
    with SqliteStore(tmp_path / "registry.db") as store:
        store.ingest(records, host="host-1")
        theirs = store.summary("run-1")
    assert ours["inputs"] == {"artifact": 1, "code": 1, "system": 1, "dataset": 1}
    assert ours["outputs"] == {"artifact": 1, "dataset": 1}
    assert (ours["unhashed"], ours["signal"], ours["exit_code"]) == (2, "SIGKILL", None)
    assert (ours["complete"], ours["lost_events"]) == (False, 2)
    shared = set(ours) & set(theirs)
    assert shared >= {"run_id", "name", "status", "exit_code", "complete", "lost_events"}
    assert {k: ours[k] for k in shared} == {k: theirs[k] for k in shared}


def test_a_run_that_ended_cleanly() -> None:
    """Exit status, no signal, complete."""
    run = RecordFactory("run-2", itertools.count(1))
    records = [run.tagged(), run.access("/out/a", pb.ROLE_OUTPUT), run.finished(code=3)]
    doc = summary.finalized("run-2", None, records)
    assert (doc["exit_code"], doc["signal"], doc["complete"]) == (3, None, True)
    assert (doc["inputs"], doc["outputs"], doc["unhashed"]) == ({}, {"artifact": 1}, 0)


def test_signal_names() -> None:
    assert summary.signal_name(0) is None
    assert summary.signal_name(9) == "SIGKILL"
    assert summary.signal_name(200) == "SIG200"

"""Run checkpoints: what a restarted roard reads back is what was saved."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from roard.tracking.cgroups import Cgroup
from roard.tracking.checkpoint import CheckpointStore, FileState, RunState
from roard.tracking.fds import OpenFile
from roard.tracking.processes import Process
from roard.tracking.runs import FileUse


def _state(run_id: str, saved_at: float) -> RunState:
    proc = Process(
        pid=41,
        start_ticks=900,
        ppid=1,
        run_id=run_id,
        started_at=10.0,
        exe="/usr/bin/python3",
        argv=("python3", "train.py", "--lr=0.1"),
        cwd="/work",
        uid=1000,
        fds={3, 17},
    )
    return RunState(
        run_id=run_id,
        key=7,
        name="train",
        labels={"team": "ml"},
        uid=1000,
        how="spawn",
        root_pid=41,
        started_at=10.0,
        exit_code=None,
        lost_events=2,
        lost_reasons=["kernel: ringbuf_file (2)"],
        saved_at=saved_at,
        processes=[proc],
        fds=[(41, 17, OpenFile("/work/data\nodd name.bin", 2049, 12, 0o2, True))],
        files=[FileState("/work/in.csv", 2049, 11, 4096, 0, True, False)],
        cgroup=Cgroup("/sys/fs/cgroup/job_1", 0, 4242, 0) if run_id == "r1" else None,
    )


def test_a_saved_state_reads_back_equal(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path / "runs.db")
    state = _state("r1", 20.0)
    store.save([state], [])
    assert store.load() == [state]


def test_saving_again_replaces_and_finished_runs_are_forgotten(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path / "runs.db")
    store.save([_state("r1", 20.0), _state("r2", 20.0)], [])
    store.save([_state("r1", 25.0)], ["r2"])
    store.close()
    reopened = CheckpointStore(tmp_path / "runs.db")
    assert [(s.run_id, s.saved_at) for s in reopened.load()] == [("r1", 25.0)]


def test_an_unreadable_state_is_skipped_not_fatal(tmp_path: Path) -> None:
    """A checkpoint another roard version wrote must not stop the daemon from starting."""
    store = CheckpointStore(tmp_path / "runs.db")
    store.save([_state("r1", 20.0)], [])
    store._conn.execute("INSERT INTO runs VALUES ('r0', 1.0, '{\"run_id\": \"r0\"}')")
    assert [s.run_id for s in store.load()] == ["r1"]


def test_every_file_use_field_but_its_pending_hash_is_saved() -> None:
    """A run carried on after a restart knows all it knew of each file (a name it linked
    elsewhere is still no deleted output); only the hash in flight is taken again."""
    saved = {f.name for f in dataclasses.fields(FileState)}
    assert saved == {f.name for f in dataclasses.fields(FileUse)} - {"consumed"}

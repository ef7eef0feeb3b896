"""Checkpoints of open runs: what a restarted roard needs to carry a run on.

A run's file uses live in the tracker's memory until the run is finalized. To survive a
restart (SIGTERM, or SIGKILL with at most one checkpoint interval lost), the daemon saves
the state of each run that changed every few seconds, in runs.db in the state dir, and
deletes it once the run's final records are in the spool.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import structlog

from roard.tracking.cgroups import Cgroup
from roard.tracking.fds import OpenFile
from roard.tracking.processes import Process

log = structlog.get_logger("roard.checkpoint")

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS runs (run_id TEXT PRIMARY KEY, saved_at REAL NOT NULL,"
    " state TEXT NOT NULL)"
)


@dataclass
class FileState:
    """A run's use of one path, without its pending hashes (re-taken at finalization)."""

    path: str
    dev: int
    ino: int
    bytes_read: int
    bytes_written: int
    read: bool
    written: bool
    seen: str = ""  # FileUse.seen
    generated: bool = False  # FileUse.generated
    executed: bool = False  # FileUse.executed
    linked: bool = False  # FileUse.linked


@dataclass
class RunState:
    """Everything about an open run that is not already in the spool."""

    run_id: str
    key: int
    name: str | None
    labels: dict[str, str]
    uid: int
    how: str
    root_pid: int
    started_at: float
    exit_code: int | None
    lost_events: int
    lost_reasons: list[str]
    saved_at: float
    cgroup: Cgroup | None = None
    processes: list[Process] = field(default_factory=list)
    fds: list[tuple[int, int, OpenFile]] = field(default_factory=list)  # (pid, fd, file)
    files: list[FileState] = field(default_factory=list)
    scripts: list[str] = field(default_factory=list)  # Run.scripts

    def to_json(self) -> str:
        """The state as one JSON document."""
        doc = asdict(self)
        for proc in doc["processes"]:
            proc["fds"] = sorted(proc["fds"])
        return json.dumps(doc, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> RunState:
        """The state saved by to_json()."""
        doc: dict[str, Any] = json.loads(text)
        procs = [
            Process(**{**p, "argv": tuple(p["argv"]), "fds": set(p["fds"])})
            for p in doc.pop("processes")
        ]
        fds = [(pid, fd, OpenFile(**f)) for pid, fd, f in doc.pop("fds")]
        files = [FileState(**f) for f in doc.pop("files")]
        raw_cgroup = doc.pop("cgroup", None)
        cgroup = Cgroup(**raw_cgroup) if raw_cgroup else None
        return cls(**doc, cgroup=cgroup, processes=procs, fds=fds, files=files)


class CheckpointStore:
    """runs.db: the latest saved state of each open run."""

    def __init__(self, path: Path) -> None:
        self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        with self._lock:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute(_SCHEMA)

    def save(self, states: list[RunState], finished: list[str]) -> None:
        """Replace the saved states of `states` and forget the `finished` runs, atomically."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._conn.executemany(
                    "INSERT OR REPLACE INTO runs (run_id, saved_at, state) VALUES (?, ?, ?)",
                    [(s.run_id, s.saved_at, s.to_json()) for s in states],
                )
                self._conn.executemany(
                    "DELETE FROM runs WHERE run_id = ?", [(r,) for r in finished]
                )
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise

    def load(self) -> list[RunState]:
        """Every saved state that can be read (one that cannot, e.g. from another roard
        version, is skipped: its run is then closed as interrupted, not resumed)."""
        with self._lock:
            rows = self._conn.execute("SELECT run_id, state FROM runs ORDER BY run_id").fetchall()
        states = []
        for run_id, text in rows:
            try:
                states.append(RunState.from_json(text))
            except (ValueError, TypeError, KeyError) as exc:
                log.warning(
                    "run checkpoint unreadable; the run will not be resumed",
                    run_id=run_id,
                    error=str(exc),
                )
        return states

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._conn.close()

"""Content hashes remembered by file identity, so an unchanged file is never read twice."""

from __future__ import annotations

import itertools
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import NamedTuple

import structlog

from roard.statedir import StateDirProblem, diagnose

log = structlog.get_logger("roard.hashcache")

_PENDING_MAX = 10_000  # entries kept for disk while it cannot be written
# Entries in the memory front (about 400 bytes each): a daemon's life of files must not
# grow it for ever; the older half is forgotten, and found on disk from then on.
_MEMORY_MAX = 100_000
# The cache file's version (SQLite user_version). 2: entries are made only outside their
# filesystem's change window (roard.artifacts.changetimes); older ones may answer for a
# same-size rewrite their stamp hid, so a cache of an earlier version is emptied.
_VERSION = 2


class FileStamp(NamedTuple):
    """What must be unchanged for a cached hash to still be right. A named tuple: made and
    looked up several times for every file hashed, twice as fast as a frozen dataclass."""

    dev: int
    ino: int
    size: int
    mtime_ns: int
    ctime_ns: int

    @classmethod
    def of(cls, st: os.stat_result) -> FileStamp:
        """The stamp of a stat(2) result."""
        return cls(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class HashCache:
    """A persistent (SQLite) map from FileStamp to hash, with an in-memory front."""

    def __init__(self, path: Path, memory_max: int = _MEMORY_MAX) -> None:
        """Opens (creating) the cache database at `path`; at most `memory_max` entries are
        kept in memory."""
        self._path = path
        self._memory_max = memory_max
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS hashes (dev INTEGER, ino INTEGER, size INTEGER,"
            " mtime_ns INTEGER, ctime_ns INTEGER, hash TEXT NOT NULL,"
            " PRIMARY KEY (dev, ino, size, mtime_ns, ctime_ns))"
        )
        (version,) = self._db.execute("PRAGMA user_version").fetchone()
        if version < _VERSION:
            self._db.execute("DELETE FROM hashes")
            self._db.execute(f"PRAGMA user_version = {_VERSION}")
        self._lock = threading.Lock()
        # A file whose inode changed after this moment can only have been hashed by this
        # process (a stamp holds the ctime it was hashed at, never later than then): its
        # entry is in memory or nowhere. A job's fresh outputs skip the disk lookup (3 of
        # the 20 us a new small file costs). A server's clock ahead of ours (NFS) costs at
        # worst one hash again after a restart. Moved on when memory forgets entries.
        self._opened_ns = time.time_ns()
        self._memory: dict[FileStamp, str] = {}
        self._pending: list[tuple[FileStamp, str]] = []
        self.hits = 0
        self.misses = 0
        self.problem: StateDirProblem | None = None  # set while the file cannot be written

    def get(self, stamp: FileStamp) -> str | None:
        """The hash stored for exactly this stamp, if any."""
        with self._lock:
            found = self._memory.get(stamp)
            if found is None and stamp.ctime_ns <= self._opened_ns:
                row = self._db.execute(
                    "SELECT hash FROM hashes WHERE dev=? AND ino=? AND size=? AND mtime_ns=?"
                    " AND ctime_ns=?",
                    (stamp.dev, stamp.ino, stamp.size, stamp.mtime_ns, stamp.ctime_ns),
                ).fetchone()
                found = row[0] if row else None
                if found is not None:
                    self._remember(stamp, found)
            if found is None:
                self.misses += 1
            else:
                self.hits += 1
            return found

    def put(self, stamp: FileStamp, digest: str) -> None:
        """Remember a hash (on disk at the next flush(), or every 512 entries)."""
        with self._lock:
            self._remember(stamp, digest)
            self._pending.append((stamp, digest))
            if self.problem is not None:
                del self._pending[:-_PENDING_MAX]  # the periodic flush retries
            elif len(self._pending) >= 512:
                self._flush_locked()

    def _remember(self, stamp: FileStamp, digest: str) -> None:
        """Into the memory front; past its size, the older half (dicts keep insertion
        order) is written out and forgotten (called with the lock held)."""
        self._memory[stamp] = digest
        if len(self._memory) > self._memory_max:
            self._flush_locked()
            for old in list(itertools.islice(self._memory, len(self._memory) // 2)):
                del self._memory[old]
            # Files hashed until now may be on disk only: look there for them.
            self._opened_ns = time.time_ns()

    def flush(self) -> None:
        """Write remembered hashes to disk in one transaction."""
        with self._lock:
            self._flush_locked()

    def _flush_locked(self) -> None:
        if not self._pending:
            return
        # One row per inode, the newest stamp: an older one can never match again.
        latest = {(s.dev, s.ino): (s, h) for s, h in self._pending}
        rows = [(s.dev, s.ino, s.size, s.mtime_ns, s.ctime_ns, h) for s, h in latest.values()]
        try:
            with self._db:
                self._db.execute("BEGIN")
                self._db.executemany(
                    "DELETE FROM hashes WHERE dev=? AND ino=?", [(r[0], r[1]) for r in rows]
                )
                self._db.executemany(
                    "INSERT OR REPLACE INTO hashes VALUES (?, ?, ?, ?, ?, ?)", rows
                )
        except sqlite3.Error as exc:
            # Only a cache: the memory front still answers, hashing goes on whatever the
            # state dir's state, and the newest entries are written at a later flush.
            del self._pending[:-_PENDING_MAX]
            if self.problem is None:
                self.problem = diagnose(self._path.parent, exc)
                log.error(
                    "cannot write the hash cache; hashes are kept in memory only",
                    state_dir=str(self.problem.state_dir),
                    error=self.problem.error,
                    fix=self.problem.fix,
                )
            return
        self._pending.clear()
        if self.problem is not None:
            log.warning("the hash cache is writable again", path=str(self._path))
            self.problem = None

    def close(self) -> None:
        """Flush and close the database."""
        with self._lock:
            self._flush_locked()
            self._db.close()

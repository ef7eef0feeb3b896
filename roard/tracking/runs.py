"""Runs: tagged process trees, what their processes did to files, and their lifecycle."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from roard.artifacts.hasher import Digest, Pending
from roard.context.trackers import Links
from roard.kernel.abi import Abi
from roard.records import ids
from roard.tracking.cgroups import Cgroup


@dataclass
class FileUse:
    """Everything a run did to one path, summed over its processes and descriptors."""

    path: str
    dev: int
    ino: int
    bytes_read: int = 0
    bytes_written: int = 0
    read: bool = False
    written: bool = False
    consumed: Pending[Digest] | None = None  # hash taken when the run finished reading it
    # The run linked this name to another: its content may live on under that name, so
    # the name gone at run end is no deleted file.
    linked: bool = False
    # The path the run's processes used for it, when not `path`: a process in another
    # mount namespace names files through its own mounts.
    seen: str = ""
    # On a filesystem whose content the kernel makes when read (proc, sysfs...): never
    # read to be hashed, recorded unhashed (the kernel says so: CloseEvent.generated).
    generated: bool = False
    # Mapped executable by one of its processes (a shared library the loader mapped): code
    # the run executed, whatever its path says (CloseEvent.mmap_exec).
    executed: bool = False


@dataclass
class HashProgress:
    """Bytes a finalization must hash and has hashed so far (what `roarctl tag` shows while
    it waits on a large checkpoint). Updated by hashing threads; ints are atomic enough."""

    started: float = 0.0  # time.monotonic() when finalization began; 0: not yet
    files: int = 0
    files_done: int = 0
    bytes: int = 0
    bytes_done: int = 0

    def expect(self, size: int) -> None:
        """One more file of `size` bytes to hash."""
        self.files += 1
        self.bytes += size

    def advance(self, count: int) -> None:
        """`count` more bytes hashed."""
        self.bytes_done += count

    def file_done(self) -> None:
        """One file finished (hashed, or failed)."""
        self.files_done += 1


@dataclass(frozen=True)
class Join:
    """Tag as one more part of a run several hosts share (`roarctl tag --join`,
    ROARD_RUN=NAME@ID)."""

    run_id: str  # valid per names.check_run_id
    hosts: int = 0  # how many hosts' parts the collector should expect (0: whoever joins)


@dataclass
class Run:
    """A tagged process tree and what it read and wrote: a run, or this host's part of a
    joined run (then `run_id` is "RUN_ID/PART", see roard.records.ids)."""

    run_id: str
    key: int  # the run's id in the kernel's tracked map
    name: str | None
    labels: dict[str, str]
    uid: int
    how: str  # "spawn", "pid", "cgroup" or "env" (ROARD_RUN at exec)
    root_pid: int  # 0 for a cgroup run
    started_at: float
    # A cgroup run's cgroup: it ends on untag or when the cgroup is removed, not when empty.
    cgroup: Cgroup | None = None
    live: set[int] = field(default_factory=set)
    files: dict[str, FileUse] = field(default_factory=dict)
    exit_code: int | None = None
    exit_signal: int = 0  # the signal that killed the root (spawned and ROARD_RUN runs)
    ended_at: float | None = None
    lost_events: int = 0
    lost_reasons: set[str] = field(default_factory=set)
    root_exited: threading.Event = field(default_factory=threading.Event)
    finalized: threading.Event = field(default_factory=threading.Event)
    finalizing: bool = False
    progress: HashProgress = field(default_factory=HashProgress)
    changes: int = 0  # events applied so far: a checkpoint is due when this moved
    join_hosts: int = 0  # a joined run: how many hosts' parts the collector should expect
    public: bool = False  # visible to every project on the collector (`tag --public`)
    environments: set[str] = field(default_factory=set)  # env hashes sent for this run
    scripts: set[str] = field(default_factory=set)  # files run by an interpreter: code
    cwds: set[str] = field(default_factory=set)  # its processes' working directories
    links: Links = field(default_factory=Links)  # experiment-tracker runs it belongs to
    # Once finalized: its account from the records spooled (roard.records.summary).
    summary: dict[str, Any] | None = None

    @property
    def joined(self) -> bool:
        """Whether this is one part of a run several hosts share."""
        return bool(ids.split(self.run_id)[1])

    @property
    def shared_id(self) -> str:
        """The run id users see: shared by every part of a joined run."""
        return ids.split(self.run_id)[0]

    def file_by_inode(self, dev: int, ino: int) -> FileUse | None:
        """The use of the file with this identity, if the run used it under some path."""
        return next((u for u in self.files.values() if (u.dev, u.ino) == (dev, ino)), None)

    def use(self, path: str, dev: int, ino: int) -> FileUse:
        """The FileUse for a path, created on first use."""
        found = self.files.get(path)
        if found is None:
            found = self.files[path] = FileUse(path, dev, ino)
        return found

    def lose(self, count: int, reason: str) -> None:
        """Note events of this run that were lost: the run will say it is incomplete."""
        self.lost_events += count
        self.lost_reasons.add(reason)


# Keys from here up are picked by the kernel for ROARD_RUN runs (from roard_abi.h).
ENV_KEYS = 1 << Abi.load().const("ENV_KEY_TOP_BIT")


class Runs:
    """All runs the daemon holds in memory (until finalized)."""

    def __init__(self) -> None:
        self._next_key = 1
        self._by_id: dict[str, Run] = {}
        self._by_key: dict[int, Run] = {}

    def create(
        self,
        name: str | None,
        labels: dict[str, str],
        uid: int,
        how: str,
        root_pid: int,
        now: float,
        cgroup: Cgroup | None = None,
        key: int | None = None,
        join: Join | None = None,
        public: bool = False,
    ) -> Run:
        """A new run with a fresh id, or with `join` a new part of that shared run; under
        `key` when the kernel picked one (ROARD_RUN runs, from a range this class never
        allocates), else a fresh kernel key."""
        if key is not None and key in self._by_key:
            raise ValueError(f"run key {key:#x} is already held by run {self._by_key[key].run_id}")
        run = Run(
            run_id=ids.local_id(join.run_id, ids.new_id()) if join else ids.new_id(),
            key=self._next_key if key is None else key,
            name=name,
            labels=labels,
            uid=uid,
            how=how,
            root_pid=root_pid,
            started_at=now,
            cgroup=cgroup,
            join_hosts=join.hosts if join else 0,
            public=public,
        )
        self._hold(run)
        return run

    def _hold(self, run: Run) -> None:
        self._by_id[run.run_id] = run
        self._by_key[run.key] = run
        if run.key < ENV_KEYS:  # the kernel allocates the keys of ROARD_RUN runs itself
            self._next_key = max(self._next_key, run.key + 1)

    def restore(self, run: Run) -> None:
        """Hold a run carried over from a previous roard, under its own key (the kernel's
        pinned maps still use it); new runs get keys above it."""
        self._hold(run)

    def by_key(self, key: int) -> Run | None:
        """The run with this kernel key, if still held."""
        return self._by_key.get(key)

    def by_id(self, run_id: str) -> Run | None:
        """The run with this id, if still held."""
        return self._by_id.get(run_id)

    def parts(self, shared_id: str) -> list[Run]:
        """The parts of joined run `shared_id` this daemon holds."""
        return [r for r in self._by_id.values() if r.joined and r.shared_id == shared_id]

    def drop(self, run: Run) -> None:
        """Forget a finalized run."""
        self._by_id.pop(run.run_id, None)
        self._by_key.pop(run.key, None)

    def active(self) -> list[Run]:
        """Runs not yet finalized."""
        return list(self._by_id.values())

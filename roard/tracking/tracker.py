"""The tracker: turns kernel events into per-run process and file state, and finalizes runs.

The observer thread calls handle() for every event; it never waits on hashing or storage:
reads are hashed in the hasher's pool, and runs are finalized on a finalizer thread.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pwd
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

import psutil
import structlog

from roard import procfs
from roard.artifacts import datasets
from roard.artifacts.classify import ARTIFACT, SYSTEM, classify, interpreted_script
from roard.artifacts.filesystems import Locator, SharedRules
from roard.artifacts.hashcache import FileStamp
from roard.artifacts.hasher import (
    UNHASHED_REASONS,
    Digest,
    Hasher,
    KernelGenerated,
    Pending,
    Unhashed,
)
from roard.config import ClassifyRules, DatasetsConfig
from roard.context.environment import (
    Environments,
    Redactor,
    parse_environ,
    read_environ,
    read_environ_block,
)
from roard.context.host import cgroup_context, process_context
from roard.context.probe import ContextProbe
from roard.context.trackers import TrackerLink, from_environment, from_paths
from roard.errors import NotFound, PermissionDenied, UsageError
from roard.kernel.decode import (
    CgroupJoinEvent,
    CloseEvent,
    EnvRunEvent,
    Event,
    ExecEvent,
    ExitEvent,
    ForkEvent,
    NameEvent,
    OpenEvent,
    RenameEvent,
)
from roard.records import convert, summary
from roard.tracking import addressed, cgroups, longpaths, views
from roard.tracking.cgroups import Cgroup
from roard.tracking.checkpoint import FileState, RunState
from roard.tracking.fds import FdTable, OpenFile, renamed
from roard.tracking.names import parse_env_run
from roard.tracking.processes import Process, ProcessTable, start_ticks, ticks_from_ns
from roard.tracking.runs import FileUse, Join, Run, Runs
from roard.v1 import records_pb2 as pb

log = structlog.get_logger("roard.tracker")

_ADOPTION_SCANS = 5
# Unhashed files whose content existed but could not be read consistently: the run's
# record of what it used is then incomplete. (Files over a limit are a policy, and a FIFO
# has no content to lose: those are recorded unhashed, the run stays complete.)
_LOST_CONTENT = frozenset({"changing", "unreadable"})


class KernelMaps(Protocol):
    """What the tracker needs from the loaded BPF programs."""

    def track(self, tgid: int, run_key: int) -> None: ...
    def untrack(self, tgid: int, run_key: int | None = None) -> None: ...
    def flush_fds(self, tgid: int, fds: set[int], run_key: int) -> list[CloseEvent]: ...
    @property
    def lazy_fds(self) -> int: ...
    def take_run_losses(self, run_key: int) -> dict[str, int]: ...
    def tracked_entries(self) -> dict[int, int]: ...
    def settle(self, kept: dict[int, int]) -> list[CloseEvent]: ...
    def tag_cgroup(self, hierarchy_id: int, kn_id: int, run_key: int, uid: int | None) -> None: ...
    def untag_cgroup(self, hierarchy_id: int, kn_id: int) -> None: ...


class Sink(Protocol):
    """Where records go."""

    def emit(self, records: list[pb.Record]) -> None: ...
    def flush(self, timeout: float | None = None) -> bool: ...


@dataclass(frozen=True)
class Caller:
    """Who asked (from SO_PEERCRED)."""

    uid: int
    pid: int

    @property
    def root(self) -> bool:
        """Root may act on anything."""
        return self.uid == 0


class Tracker:
    """Processes, descriptors and runs; the single owner of that state."""

    def __init__(
        self,
        kernel: KernelMaps,
        hasher: Hasher,
        sink: Sink,
        rules: ClassifyRules,
        linger_seconds: float = 2.0,
        clock: Callable[[], float] = time.time,
        exit_grace_seconds: float = 5.0,
        host: str | None = None,
        spool_wait_seconds: float = 5.0,
        locator: Locator | None = None,
        redactor: Redactor | None = None,
        context: ContextProbe | None = None,
        datasets: DatasetsConfig | None = None,
        socket_path: str | None = None,
    ) -> None:
        """`locator` names files on shared filesystems the same on every host (default:
        the stock shared filesystem types); `redactor` takes secrets out of environments
        and argv before they are recorded; `context` describes each run's code, packages
        and host when it ends (None: not recorded); `datasets` groups directories of many
        files into dataset records (None: the defaults); `socket_path`: this daemon's
        control socket, to leave ROARD_RUN jobs meant for another roard to it (None: take
        every one)."""
        self._kernel = kernel
        self._hasher = hasher
        self._sink = sink
        self._rules = rules
        self._linger = linger_seconds
        # How long an exit that roarctl already saw may take to come through the ring.
        self._exit_grace = exit_grace_seconds
        self._clock = clock
        # How long tagging and finalizing wait for the spool: a full or read-only state dir
        # must not hang roarctl (the records wait in the sink's backlog meanwhile).
        self._spool_wait = spool_wait_seconds
        self._host = host or socket.gethostname()
        self._locator = locator or Locator(SharedRules())
        self._redactor = redactor or Redactor()
        self._environments = Environments(self._redactor)
        self._context = context
        self._datasets = datasets or DatasetsConfig()
        self._socket_path = socket_path
        self._lock = threading.RLock()
        # Paths of processes in another mount namespace are mapped into this one (views).
        self._own = views.OwnNamespace()
        self._procs = ProcessTable()
        self._fds = FdTable()
        self._runs = Runs()
        self._generation = 0
        self._suspects: set[tuple[int, int]] = set()  # found dead once by reap()
        self._finalizer = ThreadPoolExecutor(max_workers=2, thread_name_prefix="roard-final")
        self.unattributed = 0  # events for runs no longer held (e.g. after untag)
        # Files recorded without a hash, by reason (status and /metrics).
        self._unhashed = dict.fromkeys(UNHASHED_REASONS, 0)
        self.env_runs_started = 0  # runs started by ROARD_RUN at exec
        self.env_runs_rejected = 0  # ROARD_RUN values that started nothing (invalid)
        self.env_runs_elsewhere = 0  # ROARD_RUN jobs whose ROARD_SOCKET names another roard
        # ROARD_RUN jobs gone before /proc showed their ROARD_SOCKET, by run key: decided at
        # their next event, the exec, which carries the kernel's copy of the environment.
        self._env_runs_waiting: dict[int, EnvRunEvent] = {}

    # -- control side -------------------------------------------------------------------

    def tag(
        self,
        caller: Caller,
        pid: int,
        name: str | None,
        labels: dict[str, str],
        spawned: bool,
        join: Join | None = None,
        links: Iterable[TrackerLink] = (),
        public: bool = False,
    ) -> Run:
        """Start a run rooted at `pid`: that process and all its current and future
        descendants; with `join`, as this host's part of that shared run; `links`: the
        tracker runs the user says it belongs to; `public`: visible to every project on the
        collector. Raises NotFound / PermissionDenied for a bad pid."""
        try:
            root = psutil.Process(pid)
            owner = root.uids().real
        except psutil.NoSuchProcess:
            raise NotFound(f"no process with pid {pid}") from None
        if not caller.root and owner != caller.uid:
            raise PermissionDenied(
                f"process {pid} belongs to uid {owner}: only root may tag other users' processes"
            )
        placement = process_context(pid)  # /proc reads: not under the lock events wait on
        with self._lock:
            now = self._clock()
            how = "spawn" if spawned else "pid"
            run = self._runs.create(name, labels, owner, how, pid, now, join=join, public=public)
            records = [convert.run_tagged(run, self._host, now, placement)]
            records += self._link_records(run, links, now)
            # The root first: children it forks from here on are tracked by the kernel;
            # those that already exist are found by the scans. A spawned root waits to
            # exec and has forked none: no scan of every process on the host.
            candidates = (lambda: [root]) if spawned else (lambda: [root, *self._descendants(root)])
            records += self._adopt_all(run, caller, now, candidates)
            if not run.live:
                self._runs.drop(run)
                raise NotFound(f"process {pid} exited before it could be tagged")
        self._sink.emit(records)
        # On disk before the job goes on (unless the spool is failing): a daemon that dies
        # from here on cannot lose the run's opening.
        spooled = self._sink.flush(self._spool_wait)
        log.info(
            "run tagged",
            run_id=run.run_id,
            name=name,
            pid=pid,
            processes=len(run.live),
            spooled=spooled,
        )
        return run

    def tag_cgroup(
        self,
        caller: Caller,
        cgroup: Cgroup,
        name: str | None,
        labels: dict[str, str],
        join: Join | None = None,
        links: Iterable[TrackerLink] = (),
        public: bool = False,
    ) -> Run:
        """Start a run of every process in `cgroup` and below it: those there now, those
        moved in later, and all their descendants (`links`: as for tag()). It ends on
        untag or when the cgroup is removed, not when it is empty (a scheduler may tag
        before the job arrives). Raises PermissionDenied unless the caller is root or owns
        the cgroup's directory."""
        if not caller.root and cgroup.owner != caller.uid:
            raise PermissionDenied(
                f"cgroup {cgroup.path} belongs to uid {cgroup.owner}: only root, or the user "
                "a cgroup is delegated to (its directory's owner), may tag it"
            )
        with self._lock:
            for other in self._runs.active():
                if (
                    other.cgroup is not None
                    and not other.finalizing
                    and _same(other.cgroup, cgroup)
                ):
                    raise UsageError(
                        f"cgroup {cgroup.path} is already tagged by run {other.run_id}: "
                        f"`roarctl untag {other.run_id}` first"
                    )
            now = self._clock()
            run = self._runs.create(
                name, labels, cgroup.owner, "cgroup", 0, now, cgroup, join=join, public=public
            )
            placement = cgroup_context(cgroup.path)
            records = [convert.run_tagged(run, self._host, now, placement)]
            records += self._link_records(run, links, now)
            # The kernel map first: a process moved in from now on joins by itself, so the
            # scans that follow cannot miss one that arrives meanwhile.
            uid = None if caller.root else caller.uid
            self._kernel.tag_cgroup(cgroup.hierarchy_id, cgroup.kn_id, run.key, uid)
            records += self._adopt_all(run, caller, now, lambda: _processes(cgroups.pids(cgroup)))
        self._sink.emit(records)
        # On disk before the job goes on (unless the spool is failing): a daemon that dies
        # from here on cannot lose the run's opening.
        self._sink.flush(self._spool_wait)
        log.info(
            "cgroup tagged",
            run_id=run.run_id,
            name=name,
            cgroup=cgroup.path,
            processes=len(run.live),
        )
        return run

    def _adopt_all(
        self,
        run: Run,
        caller: Caller,
        now: float,
        candidates: Callable[[], list[psutil.Process]],
    ) -> list[pb.Record]:
        """Adopt the processes `candidates()` lists, scanning again until a scan finds none
        it has not tried (one may fork, or be moved into a cgroup, before it is tracked)."""
        records = []
        tried: set[int] = set()
        for _scan in range(_ADOPTION_SCANS):
            pending = [p for p in candidates() if p.pid not in tried]
            if not pending:
                break
            for proc in pending:
                tried.add(proc.pid)
                if not caller.root and _real_uid(proc) != caller.uid:
                    continue  # e.g. a sudo child: not the caller's to record
                tracked = self._adopt(run, proc, now)
                if tracked is not None:
                    records += self._started(run, tracked, exec_=True)
        return records

    @staticmethod
    def _descendants(root: psutil.Process) -> list[psutil.Process]:
        """All current descendants (none if the root is gone)."""
        try:
            return list(root.children(recursive=True))
        except psutil.NoSuchProcess:
            return []

    def _adopt(self, run: Run, proc: psutil.Process, now: float) -> Process | None:
        try:
            with proc.oneshot():
                cmdline = proc.cmdline()
                info = Process(
                    pid=proc.pid,
                    start_ticks=start_ticks(proc),
                    ppid=proc.ppid(),
                    run_id=run.run_id,
                    started_at=proc.create_time(),
                    exe=proc.exe(),
                    argv=self._redactor.argv(cmdline),
                    cwd=proc.cwd(),
                    uid=proc.uids().real,
                )
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            return None
        self._kernel.track(proc.pid, run.key)
        if not proc.is_running():  # it exited before the kernel filter knew it
            self._kernel.untrack(proc.pid)
            return None
        self._move_out(self._procs.get(info.pid))
        self._procs.add(info)
        run.live.add(info.pid)
        self._note_script(run, cmdline, info)
        return info

    def _note_script(self, run: Run, argv: Iterable[str], proc: Process) -> None:
        """Remember the script an interpreter process runs: it is code, not data."""
        script = interpreted_script(tuple(argv), proc.exe, proc.cwd, self._rules)
        if script is not None:
            run.scripts.add(script)

    def _move_out(self, proc: Process | None) -> None:
        """A process of one run was tagged into a new run (roarctl tag inside a tagged job):
        from now on its I/O belongs to the new run only."""
        if proc is None:
            return
        old_run = self._runs.by_id(proc.run_id)
        # Its announced descriptors' aggregates still carry the old run's key: flush them
        # into the old run now; what the process does next belongs to the new run.
        if old_run is not None:
            self._take_kernel_files(old_run, proc.pid, proc.fds)
            old_run.live.discard(proc.pid)
            self._emptied(old_run, "its processes moved to a nested run")

    def active_run(self, caller: Caller, run_id: str) -> Run | None:
        """The run, if still being tracked or finalized, and the caller may act on it.
        None once it is finalized (its records are then in the registry)."""
        with self._lock:
            run = self._runs.by_id(run_id)
        if run is not None and not caller.root and run.uid != caller.uid:
            raise PermissionDenied(f"run {run_id} belongs to another user")
        return run

    def finish(self, run: Run, exit_code: int | None, timeout: float | None) -> bool:
        """For a spawned run: its root has exited with `exit_code`. Wait for the exit to be
        observed, give stragglers `linger` seconds, finalize; True when finalized in time."""
        deadline = None if not timeout else time.monotonic() + timeout

        def remaining() -> float | None:
            return None if deadline is None else max(0.0, deadline - time.monotonic())

        if exit_code is not None:
            run.exit_code = exit_code
            # roarctl saw the root exit: its exit event is due within moments. If it never
            # comes (dropped by a full ring), finalize anyway and say the run is incomplete.
            if not run.root_exited.wait(self._exit_grace):
                with self._lock:
                    run.lose(1, "the root's exit event never arrived")
                self._schedule_finalize(run, "root exited unobserved")
        run.root_exited.wait(remaining())
        if not run.finalized.wait(min(self._linger, remaining() or self._linger)):
            self._schedule_finalize(run, "linger")
        return run.finalized.wait(remaining())

    def untag(self, run: Run) -> None:
        """Stop tracking a run now and finalize it with what was seen."""
        self._schedule_finalize(run, "untag")
        run.finalized.wait()

    def reap(self) -> None:
        """Catch processes whose exit event was lost (a full ring): a tracked process found
        dead on two passes in a row is taken as exited, and its run as incomplete. Without
        this, a run adopted with --pid could stay running for ever."""
        with self._lock:
            watched = [
                (run, proc)
                for run in self._runs.active()
                if not run.finalizing
                for proc in (self._procs.get(pid) for pid in run.live)
                if proc is not None
            ]
        # /proc is read without the lock: the observer must not wait on thousands of reads.
        dead = {proc.key: (run, proc) for run, proc in watched if not _alive(proc)}
        with self._lock:
            for key, (run, proc) in dead.items():
                if key not in self._suspects or run.finalizing:
                    continue
                if self._procs.remove(proc.pid, proc.start_ticks) is None:
                    continue  # its exit event came in meanwhile
                self._take_kernel_files(run, proc.pid, proc.fds)
                run.live.discard(proc.pid)
                run.lose(1, "a process's exit event never arrived")
                if proc.pid == run.root_pid:
                    run.root_exited.set()
                self._emptied(run, "its processes died unobserved")
            self._suspects = set(dead) - self._suspects
        for run in self._removed_cgroup_runs():
            self._schedule_finalize(run, "its cgroup was removed")

    def _removed_cgroup_runs(self) -> list[Run]:
        """Cgroup runs whose cgroup directory is gone: nothing can join them any more."""
        with self._lock:
            held = [(run, run.cgroup) for run in self._runs.active() if not run.finalizing]
        return [run for run, cgroup in held if cgroup is not None and not cgroups.present(cgroup)]

    def active_parts(self, caller: Caller, shared_id: str) -> list[Run]:
        """This host's parts of joined run `shared_id` that the caller may act on."""
        with self._lock:
            parts = self._runs.parts(shared_id)
        return [r for r in parts if caller.root or r.uid == caller.uid]

    def active_runs(self) -> list[Run]:
        """Runs being tracked."""
        with self._lock:
            return self._runs.active()

    def counts(self) -> dict[str, int]:
        """Sizes of the tracker's tables, for status."""
        with self._lock:
            return {
                "processes": len(self._procs),
                "open_files": len(self._fds),
                "runs": len(self._runs.active()),
                "unattributed_events": self.unattributed,
                "env_runs_started": self.env_runs_started,
                "env_runs_rejected": self.env_runs_rejected,
                "env_runs_elsewhere": self.env_runs_elsewhere,
            }

    # -- restarts ------------------------------------------------------------------------

    def checkpoint(
        self, last: Mapping[str, int], now: float
    ) -> tuple[list[RunState], dict[str, int]]:
        """The states of runs that changed since they were last saved (`last`: run id ->
        change count then), and the change count of every run still held."""
        with self._lock:
            counts = {run.run_id: run.changes for run in self._runs.active()}
            states = [
                self._state(run, now)
                for run in self._runs.active()
                if not run.finalizing and last.get(run.run_id) != run.changes
            ]
        for state in states:  # /proc is read without the lock
            state.fds += _lazy_files(state, self._kernel.lazy_fds)
        return states, counts

    def _state(self, run: Run, now: float) -> RunState:
        procs = [p for p in (self._procs.get(pid) for pid in sorted(run.live)) if p is not None]
        return RunState(
            run_id=run.run_id,
            key=run.key,
            name=run.name,
            labels=dict(run.labels),
            uid=run.uid,
            how=run.how,
            root_pid=run.root_pid,
            started_at=run.started_at,
            exit_code=run.exit_code,
            lost_events=run.lost_events,
            lost_reasons=sorted(run.lost_reasons),
            saved_at=now,
            cgroup=run.cgroup,
            processes=[dataclasses.replace(p, fds=set(p.fds)) for p in procs],
            fds=[
                (p.pid, fd, file)
                for p in procs
                for fd in sorted(p.fds)
                if (file := self._fds.get(p.pid, fd)) is not None
            ],
            files=[
                FileState(**{f.name: getattr(u, f.name) for f in dataclasses.fields(FileState)})
                for u in run.files.values()
            ],
            scripts=sorted(run.scripts),
        )

    def resume(self, states: list[RunState], now: float) -> list[Run]:
        """Carry on the runs a previous roard left open: hold them again under their kernel
        keys, re-adopt their processes still alive (checkpointed, left in the pinned kernel
        filter, or their descendants), apply the I/O the kernel aggregated for descriptors
        closed meanwhile, and say that the time roard was down was not observed. Runs with
        no process left are finalized with what was seen."""
        in_kernel = self._kernel.tracked_entries()
        records: list[pb.Record] = []
        resumed = []
        with self._lock:
            for state in states:
                run = self._restore(state, now)
                records += self._readopt(run, state, in_kernel, now)
                resumed.append(run)
            kept = {pid: run.key for run in resumed for pid in run.live}
            saved = {(pid, fd): file for state in states for pid, fd, file in state.fds}
            for close in self._kernel.settle(kept):
                owner = self._runs.by_key(close.run_key)
                if owner is None:
                    continue
                # Closed while no roard ran: the checkpoint knows what it was open on.
                hint = saved.get((close.tgid, close.fd))
                if hint is not None and self._fds.get(close.tgid, close.fd) is None:
                    self._fds.set(close.tgid, close.fd, hint)
                self._on_close(owner, close)
        self._sink.emit(records)
        for run in resumed:
            log.info("run resumed", run_id=run.run_id, processes=len(run.live))
            with self._lock:
                self._emptied(run, "its processes ended while roard was not running")
        return resumed

    def _restore(self, state: RunState, now: float) -> Run:
        run = Run(
            run_id=state.run_id,
            key=state.key,
            name=state.name,
            labels=state.labels,
            uid=state.uid,
            how=state.how,
            root_pid=state.root_pid,
            started_at=state.started_at,
            exit_code=state.exit_code,
            lost_events=state.lost_events,
            lost_reasons=set(state.lost_reasons),
            cgroup=state.cgroup,
            scripts=set(state.scripts),
        )
        run.files = {f.path: FileUse(**dataclasses.asdict(f)) for f in state.files}
        gap = max(0.0, now - state.saved_at)
        run.lose(1, f"roard stopped for about {gap:.0f} s during the run: not observed then")
        self._runs.restore(run)
        return run

    def _readopt(
        self, run: Run, state: RunState, in_kernel: Mapping[int, int], now: float
    ) -> list[pb.Record]:
        """Re-adopt a resumed run's live processes; records for those new to it."""
        for proc in state.processes:
            if _alive(proc):
                self._procs.add(proc)
                run.live.add(proc.pid)
                self._kernel.track(proc.pid, run.key)
        for pid, fd, file in state.fds:
            if pid in run.live:
                self._fds.set(pid, fd, file)
        if run.cgroup is not None:  # the cgroup map is not pinned: tell the kernel again
            uid = run.uid if run.uid else None
            self._kernel.tag_cgroup(run.cgroup.hierarchy_id, run.cgroup.kn_id, run.key, uid)
        # A non-root user's cgroup run holds only that user's processes; other runs every
        # process the kernel followed.
        caller = Caller(uid=run.uid if run.cgroup is not None else 0, pid=0)
        kernel_kept = {pid for pid, key in in_kernel.items() if key == run.key}

        def candidates() -> list[psutil.Process]:
            """Forked after the last checkpoint (the kernel filter kept them, unless the
            pid was reused since), forked while roard was down (descendants), or moved
            into the run's cgroup meanwhile."""
            kept = [p for p in _processes(kernel_kept) if _started_since(p, run.started_at)]
            below = [c for pid in sorted(run.live) for c in self._descendants_of(pid)]
            members = _processes(cgroups.pids(run.cgroup)) if run.cgroup is not None else []
            return [p for p in kept + below + members if p.pid not in run.live]

        return self._adopt_all(run, caller, now, candidates)

    def _descendants_of(self, pid: int) -> list[psutil.Process]:
        try:
            return self._descendants(psutil.Process(pid))
        except psutil.NoSuchProcess:
            return []

    def suspend(self) -> None:
        """roard is stopping: let finalizations under way end; the other runs stay open,
        for the next roard to resume from their checkpoints."""
        for run in self.active_runs():
            if run.finalizing:
                run.finalized.wait()

    def unhashed_counts(self) -> dict[str, int]:
        """Files recorded unhashed since start, by reason ("size", "timeout", ...)."""
        with self._lock:
            return dict(self._unhashed)

    # -- event side (observer thread) ---------------------------------------------------

    def handle(self, event: Event) -> None:
        """Apply one kernel event."""
        with self._lock:
            if isinstance(event, EnvRunEvent):
                self._on_env_run(event)
                return
            waiting = self._env_runs_waiting.pop(event.run_key, None)
            if waiting is not None:
                exec_env = _exec_environment(event)[0] if isinstance(event, ExecEvent) else b""
                if self._left_elsewhere(waiting, parse_environ(exec_env)) or not (
                    self._start_env_run(waiting)
                ):
                    return  # no run: nor is this event one's
            run = self._runs.by_key(event.run_key)
            if run is None or run.finalizing:
                self._unattributed(run, event)
                return
            run.changes += 1
            if isinstance(event, OpenEvent):
                self._on_open(event)
            elif isinstance(event, CloseEvent):
                self._on_close(run, event)
            elif isinstance(event, ForkEvent):
                self._on_fork(run, event)
            elif isinstance(event, ExecEvent):
                self._on_exec(run, event)
            elif isinstance(event, RenameEvent):
                self._on_rename(run, event)
            elif isinstance(event, NameEvent):
                self._on_name(run, event)
            elif isinstance(event, CgroupJoinEvent):
                self._on_cgroup_join(run, event)
            else:
                self._on_exit(run, event)

    def _unattributed(self, run: Run | None, event: Event) -> None:
        """An event of a run already finalized (or being finalized): it can no longer be
        recorded, so it is counted, and a process forked into that run stops being tracked
        (else it and its descendants would stay in the kernel filter under a dead run)."""
        self.unattributed += 1
        if isinstance(event, ForkEvent | CgroupJoinEvent):
            self._kernel.untrack(event.tgid, event.run_key)
        if run is not None:
            run.lose(1, "events arrived after finalization began")

    def note_lost(self, count: int, reason: str) -> None:
        """Events lost before they could be attributed (e.g. undecodable): every active
        run may be affected, so each is marked incomplete."""
        with self._lock:
            for run in self._runs.active():
                run.lose(count, reason)

    def _on_env_run(self, ev: EnvRunEvent) -> None:
        """The kernel started tracking a process that exec'd with ROARD_RUN set: make it
        the root of a run under the key the kernel chose (its exec event follows), or,
        for a value that is not a valid run name, or a job meant for another roard, stop
        tracking it."""
        if self._socket_path is not None:
            environ = read_environ(ev.tgid)
            if environ is None:  # gone already (a short job read late): see its exec event
                self._env_runs_waiting[ev.run_key] = ev
                return
            if self._left_elsewhere(ev, environ):
                return
        self._start_env_run(ev)

    def _left_elsewhere(self, ev: EnvRunEvent, environ: Mapping[str, str]) -> bool:
        """Whether the job's ROARD_SOCKET (in `environ`) names another roard: then it is
        no longer tracked here, and counted."""
        if self._socket_path is None:
            return False
        elsewhere = addressed.other_daemon(ev.tgid, environ, self._socket_path)
        if elsewhere is None:
            return False
        self.env_runs_elsewhere += 1
        self._kernel.untrack(ev.tgid, ev.run_key)
        log.info("ROARD_RUN left to the roard of its ROARD_SOCKET", pid=ev.tgid, socket=elsewhere)
        return True

    def _start_env_run(self, ev: EnvRunEvent) -> bool:
        """Start the run ROARD_RUN names; False (no longer tracked) for an invalid value."""
        try:
            wanted = parse_env_run(ev.value, ev.truncated)
        except UsageError as exc:
            self.env_runs_rejected += 1
            self._kernel.untrack(ev.tgid, ev.run_key)
            log.warning("ROARD_RUN ignored: no run started", pid=ev.tgid, reason=str(exc))
            return False
        now = self._clock()
        name, join = wanted.name, Join(wanted.join) if wanted.join else None
        run = self._runs.create(name, {}, ev.uid, "env", ev.tgid, now, key=ev.run_key, join=join)
        # Known from now on: should its exec event be lost, its exit still ends the run.
        root = Process(ev.tgid, ticks_from_ns(ev.start_ns), ev.ppid, run.run_id, now, uid=ev.uid)
        self._replace(self._procs.add(root))
        run.live.add(root.pid)
        self.env_runs_started += 1
        self._sink.emit([convert.run_tagged(run, self._host, now, process_context(ev.tgid))])
        log.info("run started by ROARD_RUN", run_id=run.run_id, name=name, pid=ev.tgid)
        return True

    def _on_open(self, ev: OpenEvent) -> None:
        """A file on a high descriptor, announced at open; its I/O comes with its close."""
        path = (
            self._walked(ev.tgid, ev.path, ev.other_ns, ev.dev, ev.fs_path)
            if not ev.truncated
            else _fd_path(ev.tgid, ev.fd, ev.ino)
        )
        if path is None:
            path = longpaths.complete(ev.tgid, ev.path)
        if path is None:
            run = self._runs.by_key(ev.run_key)
            if run is not None:
                run.lose(1, "path deeper than the in-kernel walk, gone before it was read")
            return
        seen = _seen(ev.seen, None if ev.truncated else ev.path, path)
        opened = OpenFile(path, ev.dev, ev.ino, ev.open_flags, ev.created, seen)
        self._fds.set(ev.tgid, ev.fd, opened)
        proc = self._procs.get(ev.tgid)
        if proc is not None:
            proc.fds.add(ev.fd)

    def _walked(
        self, pid: int, path: str, other_ns: bool, dev: int = 0, fs_path: str | None = None
    ) -> str:
        """A path the kernel walked whole, as roard can open it (a chroot's already is one).
        One named in another mount namespace (the kernel says which) is made a host path:
        where roard's mounts show the same directory of the same filesystem (`fs_path`,
        from the kernel), else as judged from /proc by the process or, once it is gone, by
        its nearest known ancestor."""
        if not other_ns:
            return path
        if fs_path is not None and (found := self._own.reach(dev, fs_path)) is not None:
            return found
        return self._own.host_path(self._self_and_ancestors(pid), path)

    def _self_and_ancestors(self, pid: int) -> Iterator[int]:
        """`pid`, then its known ancestors nearest first (at most 64), produced only as
        far as the caller reads: usually the process itself is still alive."""
        seen: set[int] = set()
        while pid not in seen and len(seen) < 64:
            yield pid
            seen.add(pid)
            proc = self._procs.get(pid)
            if proc is None:
                return
            pid = proc.ppid

    def _take_kernel_files(self, run: Run, pid: int, fds: set[int]) -> None:
        """Apply the I/O the kernel still holds for these descriptors of `pid` to `run`
        (no close(2) will report it: the process exited, left the run or was untagged)."""
        for close in self._kernel.flush_fds(pid, fds, run.key):
            self._on_close(run, close)

    def _on_close(self, run: Run, ev: CloseEvent) -> None:
        proc = self._procs.get(ev.tgid)
        if proc is not None:
            proc.fds.discard(ev.fd)
        announced = self._fds.pop(ev.tgid, ev.fd)
        if ev.open_flags & os.O_TMPFILE == os.O_TMPFILE:
            # An anonymous file: its only names are those linkat gave it (outputs); a
            # made-up name ("#<inode>") must not show as a deleted file.
            return
        path = (
            self._walked(ev.tgid, ev.path, ev.other_ns, ev.dev, ev.fs_path)
            if ev.path is not None and not ev.truncated
            else None
        )
        seen = _seen(ev.seen, None if ev.truncated else ev.path, path)
        if path is None and announced is None:  # the process may still hold it (untag)
            path = _fd_path(ev.tgid, ev.fd, ev.ino)
        if path is None and ev.truncated and ev.path is not None:
            path = longpaths.complete(ev.tgid, ev.path)
        if path is not None:
            file = OpenFile(path, ev.dev, ev.ino, ev.open_flags, ev.created, seen)
        elif announced is not None and (announced.dev, announced.ino) == (ev.dev, ev.ino):
            file = announced
        elif (known := run.file_by_inode(ev.dev, ev.ino)) is not None:
            # Closed while no roard ran, by a process gone since: the run used this very
            # file under this name before.
            file = OpenFile(known.path, ev.dev, ev.ino, ev.open_flags, ev.created)
        else:
            why = "path too deep for the in-kernel walk" if ev.truncated else "file of unknown path"
            run.lose(1, why)
            return
        use = run.use(file.path, file.dev, file.ino)
        use.seen = file.seen or use.seen
        use.bytes_read += ev.rbytes
        use.bytes_written += ev.wbytes
        use.generated = use.generated or ev.generated
        use.executed = use.executed or ev.mmap_exec
        if file.changed_by_open or ev.wbytes or ev.mmap_shared_write or ev.resized or ev.vfs_write:
            use.written = True
            if not use.generated:  # hash ahead, while the job runs: the cache answers at end
                self._hasher.ahead(file.path)
        if ev.rbytes or ev.mmap_read or ev.vfs_read:
            use.read = True
            if not use.written and not use.generated:
                self._consume(use, file.path)

    def _consume(self, use: FileUse, path: str) -> None:
        """Hash an input as consumed: now, before anything else changes it. A hash still
        waiting in the pool's queue will read the file as it is now anyway (a job's thousand
        processes reading one file ask about once, not a thousand times)."""
        if use.consumed is None or use.consumed.done() or use.consumed.running():
            use.consumed = self._hasher.submit(path)

    def _on_rename(self, run: Run, ev: RenameEvent) -> None:
        """What the run wrote or read under the old name (or under the old directory) is
        known by its new name from now on: write to a temporary then rename, and the final
        name is the output; the temporary name is not."""
        if ev.truncated:
            run.lose(1, "a rename whose names could not be read")
            return
        seen = (ev.seen_old or ev.old, ev.seen_new or ev.new)  # as the process named them
        ev = dataclasses.replace(
            ev,
            old=self._walked(ev.tgid, ev.old, ev.other_ns),
            new=self._walked(ev.tgid, ev.new, ev.other_ns),
        )
        self._fds.rename(ev.old, ev.new, ev.exchange, seen)
        op = pb.PathChanged.OP_EXCHANGE if ev.exchange else pb.PathChanged.OP_RENAME
        self._sink.emit(
            [convert.path_changed(run.run_id, ev.tgid, op, ev.old, ev.new, self._clock())]
        )
        moves = {
            path: target
            for path in run.files
            if (target := renamed(path, ev.old, ev.new, ev.exchange)) is not None
        }
        taken = {path: run.files.pop(path) for path in moves}
        for path, use in taken.items():
            use.path = moves[path]
            if use.seen:  # its new name in the namespace that renamed it, if it saw it
                use.seen = renamed(use.seen, *seen, ev.exchange) or ""
            replaced = run.files.get(use.path)
            if replaced is not None and not ev.exchange:
                # The run had read what the new name held before: an in-place update.
                use.read = use.read or replaced.read
                use.bytes_read += replaced.bytes_read
            run.files[use.path] = use

    def _on_name(self, run: Run, ev: NameEvent) -> None:
        """A new link names an output (write a temporary, link it into place: the final
        name is the output); a file truncated by name changed: an output; an unlinked file
        is gone: recorded as deleted at run end, unless the run made it again meanwhile or
        had linked it to another name first. Each is hashed as left at run end."""
        if ev.truncated:
            run.lose(1, f"a {ev.op} whose names could not be read")
            return
        path = self._walked(ev.tgid, ev.path, ev.other_ns)
        new = self._walked(ev.tgid, ev.new, ev.other_ns) if ev.new else ""
        history = {"link": pb.PathChanged.OP_LINK, "unlink": pb.PathChanged.OP_UNLINK}
        if ev.op in history:
            change = convert.path_changed(
                run.run_id, ev.tgid, history[ev.op], path, new, self._clock()
            )
            self._sink.emit([change])
        if ev.op == "link":  # the old name's descriptor may not be closed yet
            run.use(path, 0, 0).linked = True
        use = run.use(new or path, 0, 0)
        use.written = True
        used = _seen(ev.seen_new, ev.new, new) if ev.new else _seen(ev.seen_path, ev.path, path)
        use.seen = used or use.seen

    def _on_fork(self, run: Run, ev: ForkEvent) -> None:
        known = self._procs.get(ev.tgid)
        if known is not None and known.start_ticks == ticks_from_ns(ev.start_ns):
            return  # already adopted into a nested run before this fork was seen
        parent = self._procs.get(ev.ppid)
        child = Process(
            pid=ev.tgid,
            start_ticks=ticks_from_ns(ev.start_ns),
            ppid=ev.ppid,
            run_id=run.run_id,
            started_at=self._clock(),
            exe=parent.exe if parent else "",
            argv=parent.argv if parent else (),
            cwd=parent.cwd if parent else "",
            uid=parent.uid if parent else run.uid,
            env_hash=parent.env_hash if parent else "",
        )
        self._replace(self._procs.add(child))
        run.live.add(child.pid)
        self._sink.emit(self._started(run, child))

    def _on_cgroup_join(self, run: Run, ev: CgroupJoinEvent) -> None:
        """A process moved into the run's cgroup: the kernel tracks it already; adopt it
        as `tag` does (exe, argv, cwd from /proc). One that exited before this was handled
        (a short job step) is recorded with what the event says: its file events and its
        exit follow this event in the ring."""
        ticks = ticks_from_ns(ev.start_ns)
        known = self._procs.get(ev.tgid)
        if known is not None and known.start_ticks == ticks and known.run_id == run.run_id:
            return  # found by the scan of `tag --cgroup` already
        try:
            proc = psutil.Process(ev.tgid)
            same = start_ticks(proc) == ticks
        except psutil.NoSuchProcess:
            same = False
        adopted = self._adopt(run, proc, self._clock()) if same else None
        if adopted is not None:
            self._sink.emit(self._started(run, adopted, exec_=True))
            return
        moved = known if known is not None and known.start_ticks == ticks else None
        self._move_out(moved)  # from another run's tree, as _adopt does
        now = self._clock()
        gone = (
            dataclasses.replace(moved, run_id=run.run_id, started_at=now, fds=set())
            if moved is not None
            else Process(ev.tgid, ticks, ev.ppid, run.run_id, now, uid=ev.uid)
        )
        self._replace(self._procs.add(gone))
        run.live.add(gone.pid)
        self._sink.emit(self._started(run, gone))

    def _on_exec(self, run: Run, ev: ExecEvent) -> None:
        proc = self._procs.get(ev.tgid)
        if proc is None:
            proc = Process(ev.tgid, ticks_from_ns(ev.start_ns), ev.ppid, run.run_id, self._clock())
            self._replace(self._procs.add(proc))
            run.live.add(proc.pid)
        # Host paths, as for files: a container's program is hashed where roard sees it.
        proc.exe = self._walked(ev.tgid, ev.exe, ev.other_ns, ev.exe_dev, ev.exe_fs_path)
        proc.cwd = self._walked(ev.tgid, ev.cwd, ev.other_ns, ev.cwd_dev, ev.cwd_fs_path)
        proc.uid = ev.uid
        proc.argv = self._redactor.argv(ev.argv)
        self._note_script(run, ev.argv, proc)
        if ev.truncated:
            run.lose(1, "exe or cwd path deeper than the in-kernel walk")
        use = run.use(proc.exe, 0, 0)
        use.read = use.executed = True
        use.seen = _seen(ev.seen_exe, ev.exe, proc.exe) or use.seen  # the name it ran
        self._consume(use, proc.exe)
        self._sink.emit(self._started(run, proc, exec_=True, event=ev))

    def _on_exit(self, run: Run, ev: ExitEvent) -> None:
        proc = self._procs.remove(ev.tgid, ticks_from_ns(ev.start_ns))
        if proc is None:
            return  # a duplicate report from a second exiting thread
        self._take_kernel_files(run, proc.pid, proc.fds)
        proc.ended_at = self._clock()
        proc.exit_code = _exit_status(ev.exit_code)
        proc.exit_signal = ev.exit_code & 0x7F
        run.live.discard(proc.pid)
        self._sink.emit([convert.process_exited(proc, proc.ended_at)])
        if proc.pid == run.root_pid:
            # A ROARD_RUN root is the job itself, as a spawned command is; an adopted
            # process (--pid) may be any process of a longer job.
            if run.how in ("spawn", "env"):
                run.exit_signal = proc.exit_signal
                if run.exit_code is None:
                    run.exit_code = proc.exit_code
            run.root_exited.set()
        self._emptied(run, "all processes exited")

    def _replace(self, stale: Process | None) -> None:
        """A pid was reused while we still held its old process: that exit was lost."""
        if stale is None:
            return
        for fd in stale.fds:
            self._fds.pop(stale.pid, fd)
        old_run = self._runs.by_id(stale.run_id)
        if old_run is not None:
            old_run.live.discard(stale.pid)
            old_run.lose(1, "process exit not observed")
            self._emptied(old_run, "last process gone (pid reused)")

    def _emptied(self, run: Run, why: str) -> None:
        """A process left `run`: finalize it if that was its last, unless it is a cgroup
        run (those end on untag or when their cgroup is removed)."""
        if not run.live and run.cgroup is None:
            self._schedule_finalize(run, why)

    def _run_context(self, run: Run, read: list[str]) -> Callable[[], pb.RunContext | None]:
        """Start describing the run; the call returned gives its context, or None when not
        configured or the probe failed (the run's files are all there: only the
        description of its code is missing)."""
        if self._context is None:
            return lambda: None
        pending = self._context.begin(read)

        def result() -> pb.RunContext | None:
            try:
                return pending()
            except Exception:
                log.exception("could not describe the run's code and packages", run_id=run.run_id)
                return None

        return result

    def _dataset_records(
        self,
        run: Run,
        members: Mapping[bool, list[datasets.Member]],
        context: pb.RunContext | None,
        now: float,
    ) -> list[pb.Record]:
        """Dataset records over the run's artifacts, inputs and outputs apart. Datasets
        never span the run's working directories, its git work trees or the user's home."""
        if not self._datasets.enabled:
            return []
        stops = set(run.cwds) | {g.root for g in (context.git if context else ())}
        with contextlib.suppress(KeyError):  # a uid without a passwd entry has no home
            stops.add(pwd.getpwuid(run.uid).pw_dir)
        return [
            convert.dataset(run, found, output, now)
            for output, files in sorted(members.items())
            for found in datasets.group(files, self._datasets.min_files, stops)
        ]

    def _started(
        self, run: Run, proc: Process, exec_: bool = False, event: ExecEvent | None = None
    ) -> list[pb.Record]:
        """The records of a process as known now; with `exec_` (it exec'd, or was adopted),
        its environment first (from the exec `event`, or /proc for an adopted process),
        sent if the run has not seen it yet."""
        self._generation += 1
        now = self._clock()
        records = []
        if exec_:
            block, truncated = (
                _exec_environment(event) if event else (read_environ_block(proc.pid), False)
            )
            proc.env_hash = ""
            if block is not None:
                env = self._environments.of(block, truncated)
                # Before redaction, which may hide an id that merely looks like a secret;
                # only ids, projects and URLs are taken from it, never a credential.
                records += self._link_records(run, from_environment(env.variables), now)
                proc.env_hash = env.digest
                if proc.env_hash not in run.environments:
                    run.environments.add(proc.env_hash)
                    records.append(
                        convert.environment(run.run_id, proc.env_hash, env.redacted, truncated, now)
                    )
        if proc.cwd:
            run.cwds.add(proc.cwd)
        records.append(convert.process_started(proc, now, self._generation))
        return records

    def _link_records(self, run: Run, found: Iterable[TrackerLink], now: float) -> list[pb.Record]:
        """Records of the tracker links in `found` that are new to the run or now tell
        more (a project or URL an earlier sighting lacked)."""
        with self._lock:
            changed = run.links.add(found)
        return [convert.tracker_link(run.run_id, link, now) for link in changed]

    # -- finalization (finalizer threads) -----------------------------------------------

    def _schedule_finalize(self, run: Run, why: str) -> None:
        with self._lock:
            if run.finalizing:
                return
            run.finalizing = True
            if run.cgroup is not None:  # first, so no process joins while it is wound up
                self._kernel.untag_cgroup(run.cgroup.hierarchy_id, run.cgroup.kn_id)
            survivors = [p for p in (self._procs.get(pid) for pid in run.live) if p]
            for proc in survivors:
                self._kernel.untrack(proc.pid, run.key)
                # Its lazily announced files too: the kernel will not flush them at exit
                # now that the process is no longer tracked.
                held = proc.fds | set(range(self._kernel.lazy_fds))
                self._take_kernel_files(run, proc.pid, held)
                self._procs.remove(proc.pid)
            run.live.clear()
            run.root_exited.set()
        log.info("finalizing run", run_id=run.run_id, why=why, survivors=len(survivors))
        self._finalizer.submit(self._finalize, run)

    def _finalize(self, run: Run) -> None:
        start = time.monotonic()
        run.progress.started = start
        try:
            records = self._final_records(run)
            self._hasher.flush()
            self._sink.emit(records)
            run.summary = self._summary(run, records)
            log.info(
                "run finalized",
                run_id=run.run_id,
                records=len(records),
                seconds=round(time.monotonic() - start, 3),
                spooled=self._sink.flush(self._spool_wait),
            )
        except Exception:
            log.exception("finalizing run failed", run_id=run.run_id)
            # Still close the run, saying it is incomplete, rather than leave it running.
            run.lose(1, "finalization failed: see the daemon's log")
            # No summary of its own (unless made before the failure): roarctl asks the
            # collector, which has whatever was spooled.
            self._sink.emit([convert.run_finished(run, self._clock())])
            self._sink.flush(self._spool_wait)
        finally:
            with self._lock:
                self._runs.drop(run)
            run.finalized.set()

    @staticmethod
    def _summary(run: Run, records: list[pb.Record]) -> dict[str, Any] | None:
        """The run's account for roarctl; None (roarctl then asks the collector) if it
        cannot be made: the records are spooled already, the run must not read as failed."""
        try:
            return summary.finalized(run.shared_id, run.name, records)
        except Exception:
            log.exception("could not summarize a finalized run", run_id=run.run_id)
            return None

    def _final_records(self, run: Run) -> list[pb.Record]:
        now = self._clock()
        run.ended_at = run.ended_at or now
        for category, count in self._kernel.take_run_losses(run.key).items():
            run.lose(count, f"kernel: {category} ({count})")
        chosen = [
            use
            for use in sorted(run.files.values(), key=lambda u: u.path)
            if use.written or use.read
        ]
        # Outputs as left now: even the stat runs in the pool, under the hash deadline (on
        # a hung mount it would block this thread for ever), queued before the waits.
        written = [use.path for use in chosen if use.written and not use.generated]
        stamps = self._hasher.stamps(written) if written else None
        # Inputs as consumed, hashed while the job ran. Once they are in, the context probe
        # (git, mostly) starts on those hashed, so on a mount that answers (the probes stat
        # around them), and runs while the outputs are checked and the records made.
        consumed = {u.path: self._final_hash(u, {}, run) for u in chosen if not u.written}
        inputs = {path: _outcome(found) for path, found in consumed.items()}  # the waits
        context_of = self._run_context(
            run, [path for path, found in inputs.items() if isinstance(found, Digest)]
        )
        left = self._stamps(stamps)
        outputs = {u.path: self._final_hash(u, left, run) for u in chosen if u.written}
        outcomes = [_outcome(outputs[u.path]) if u.written else inputs[u.path] for u in chosen]
        records: list[pb.Record] = []
        members: dict[bool, list[datasets.Member]] = {False: [], True: []}  # by written
        for use, outcome in zip(chosen, outcomes, strict=True):
            kind = (
                SYSTEM
                if use.generated
                else classify(use.path, self._rules, run.scripts, use.executed)
            )
            if kind == ARTIFACT and outcome is not None:
                members[use.written].append(_member(use.path, outcome))
            if isinstance(outcome, Unhashed):
                with self._lock:
                    self._unhashed[outcome.reason] += 1
                if outcome.reason in _LOST_CONTENT:
                    run.lose(1, f"{use.path}: {outcome}")
            if outcome is not None:
                dev = outcome.stamp.dev if isinstance(outcome, Digest) else None
                location = self._locator.locate(use.path, dev)
                records.append(
                    convert.file_access(run, use, outcome, kind, use.written, now, location)
                )
            elif use.written and not use.linked:
                records.append(convert.file_deleted(run, use, kind, now))
                records += self._deleted_input(run, use, kind, now)
        # Tracker runs whose local files (wandb/run-*/, mlruns/EXP/RUN/...) the run wrote: by
        # path alone, so found even when those files are gone by now.
        records += self._link_records(
            run, from_paths(u.path for u in run.files.values() if u.written), now
        )
        context = context_of()
        if context is not None:
            records.append(convert.run_context(run, context, now))
        records += self._dataset_records(run, members, context, now)
        if run.lost_events:
            reasons = ", ".join(sorted(run.lost_reasons))
            records.append(convert.loss_notice(run.run_id, run.lost_events, reasons, now, "final"))
        records.append(convert.run_finished(run, now))
        return records

    @staticmethod
    def _stamps(pending: Pending[dict[str, FileStamp]] | None) -> dict[str, FileStamp]:
        """The outputs' stamps (Hasher.stamps) once taken; none when that failed (each file
        is then asked about on its own)."""
        if pending is None:
            return {}
        try:
            return pending.result()
        except OSError:
            return {}

    def _final_hash(
        self, use: FileUse, left: dict[str, FileStamp], run: Run
    ) -> Pending[Digest] | Digest | Unhashed:
        """A file's hash for the run's record: an input's as consumed; an output's from the
        cache if hashed ahead as it is now (`left`: its stamp now), else from the pool.
        Files the kernel makes as they are read have none."""
        if use.generated:
            return KernelGenerated("content made by the kernel when read: not hashed")
        if not use.written and use.consumed is not None:
            return use.consumed
        stamp = left.get(use.path)
        if stamp is not None and (found := self._hasher.cached(stamp)) is not None:
            return Digest(use.path, found, stamp)
        return self._hasher.submit(use.path, run.progress)

    def _deleted_input(self, run: Run, use: FileUse, kind: str, now: float) -> list[pb.Record]:
        """The input record of a file the run read and then deleted: its content as
        consumed, if hashed before it went; if not, the run says what it lost."""
        if not use.read:
            return []
        consumed = _outcome(use.consumed) if use.consumed is not None else None
        if isinstance(consumed, Digest):
            return [
                convert.file_access(
                    run,
                    use,
                    consumed,
                    kind,
                    False,
                    now,
                    self._locator.locate(use.path, consumed.stamp.dev),
                )
            ]
        run.lose(1, f"{use.path}: deleted before it could be hashed")
        return []


def _exec_environment(ev: ExecEvent) -> tuple[bytes, bool]:
    """The environment block `ev`'s program got, and whether only its start is known. The
    kernel's copy when whole; else /proc's, which is whole, while the process lives and if
    it starts with the kernel's copy (so it is this exec's block, not a later exec's nor a
    reused pid's); else the kernel's start of it."""
    if not ev.env_truncated:
        return ev.env, False
    block = read_environ_block(ev.tgid)
    if block and block.startswith(ev.env):
        return block, False
    return ev.env, True


def _alive(proc: Process) -> bool:
    """Whether this very process (pid and start time) still runs (a zombie has exited)."""
    try:
        live = psutil.Process(proc.pid)
        return start_ticks(live) == proc.start_ticks and live.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _lazy_files(state: RunState, lazy_fds: int) -> list[tuple[int, int, OpenFile]]:
    """The files behind the low descriptors of a run's processes, which the kernel names
    only when they are closed: a checkpoint needs them in case that close happens while no
    roard runs. Only /proc is read (a stat(2) of the file could hang on a dead mount)."""
    announced = {(pid, fd) for pid, fd, _file in state.fds}
    found = []
    for proc in state.processes:
        devices: dict[str, int] | None = None  # read once, for the first file found
        for fd in range(lazy_fds):
            if (proc.pid, fd) in announced:
                continue
            described = procfs.describe_fd(proc.pid, fd)
            if described is None:
                continue
            path, info = described
            if devices is None:
                devices = procfs.mount_devices(proc.pid)
            dev = devices.get(info.get("mnt_id", ""))
            if dev is not None and info.get("ino", "").isdigit():
                flags = int(info.get("flags", "0"), 8)
                found.append((proc.pid, fd, OpenFile(path, dev, int(info["ino"]), flags, False)))
    return found


def _same(a: Cgroup, b: Cgroup) -> bool:
    """Whether two resolved cgroups are one (by the kernel's identity, not the path)."""
    return (a.hierarchy_id, a.kn_id) == (b.hierarchy_id, b.kn_id)


def _started_since(proc: psutil.Process, when: float) -> bool:
    """Whether the process started at or after `when` (a second of clock slack)."""
    try:
        return bool(proc.create_time() >= when - 1)
    except psutil.NoSuchProcess:
        return False


def _processes(pids: Iterable[int]) -> list[psutil.Process]:
    """The processes with these pids that still exist."""
    found = []
    for pid in sorted(pids):
        try:
            found.append(psutil.Process(pid))
        except psutil.NoSuchProcess:
            continue
    return found


def _real_uid(proc: psutil.Process) -> int | None:
    """A process's real uid, or None if it is gone."""
    try:
        return int(proc.uids().real)
    except psutil.NoSuchProcess:
        return None


def _seen(seen: str, named: str | None, walked: str | None) -> str:
    """The path a process used for a file roard records as `walked` (the host path made
    from the kernel's walk), when it differs: a chrooted process's `seen` (the kernel says
    which part of the walk was below its root), else the name it gave in another mount
    namespace (`named`: None when not known whole); "" when the two are the same."""
    if seen:
        return seen
    if walked is None or named is None or named == walked:
        return ""
    return named


def _fd_path(pid: int, fd: int, ino: int) -> str | None:
    """The path of a descriptor a live process still holds, if it is still that file
    (completes paths the kernel walk cut short, and files flushed at untag). Only /proc is
    read: a stat(2) of the path would block the observer thread on a hung mount."""
    described = procfs.describe_fd(pid, fd)
    if described is None:
        return None
    path, info = described
    return path if info.get("ino") == str(ino) else None


def _member(path: str, outcome: Digest | Unhashed) -> datasets.Member:
    """A file as dataset grouping takes it."""
    if isinstance(outcome, Digest):
        return datasets.Member(path, outcome.hash, outcome.stamp.size)
    return datasets.Member(path, "", outcome.size, str(outcome))


def _outcome(found: Pending[Digest] | Digest | Unhashed) -> Digest | Unhashed | None:
    """A hash, or why there is none; None for a file that is simply gone (deleted, or a
    /proc file of a process that has exited since: ESRCH)."""
    if isinstance(found, (Digest, Unhashed)):
        return found
    try:
        return found.result()
    except (FileNotFoundError, ProcessLookupError):
        return None
    except Unhashed as exc:
        return exc
    except OSError as exc:
        return Unhashed(f"could not be read: {exc.strerror}")


def _exit_status(code: int) -> int:
    """Kernel exit_code (status << 8 | signal) to a shell-style status."""
    if code & 0x7F:
        return 128 + (code & 0x7F)
    return (code >> 8) & 0xFF

"""Processes of tracked runs, keyed by (pid, start time) so a reused pid is a new process."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import psutil

CLK_TCK = os.sysconf("SC_CLK_TCK")


def ticks_from_ns(boottime_ns: int) -> int:
    """Kernel start_boottime (ns) to the clock ticks /proc/<pid>/stat reports."""
    return boottime_ns * CLK_TCK // 1_000_000_000


def start_ticks(proc: psutil.Process) -> int:
    """A live process's start time in clock ticks since boot, as the kernel reports it."""
    return round((proc.create_time() - psutil.boot_time()) * CLK_TCK)


@dataclass
class Process:
    """One process of a run (a thread group), from fork or adoption to exit."""

    pid: int
    start_ticks: int
    ppid: int
    run_id: str
    started_at: float
    exe: str = ""
    argv: tuple[str, ...] = ()
    cwd: str = ""
    uid: int = 0
    ended_at: float | None = None
    exit_code: int | None = None  # shell-style: 128 + N when killed by signal N
    exit_signal: int = 0  # the signal that killed it; 0 when it exited
    fds: set[int] = field(default_factory=set)  # descriptors with an open-file entry
    env_hash: str = ""  # its redacted environment (roard.context.environment); "": unknown

    @property
    def key(self) -> tuple[int, int]:
        """(pid, start ticks): unique over the life of the host."""
        return (self.pid, self.start_ticks)


class ProcessTable:
    """The live processes of all runs: at most one per pid at any time."""

    def __init__(self) -> None:
        self._live: dict[int, Process] = {}

    def add(self, proc: Process) -> Process | None:
        """Insert a process; return the older process it replaces (its pid was reused and
        its exit was never seen), if any."""
        old = self._live.get(proc.pid)
        self._live[proc.pid] = proc
        return old if old is not None and old.key != proc.key else None

    def get(self, pid: int) -> Process | None:
        """The live process with this pid, if tracked."""
        return self._live.get(pid)

    def remove(self, pid: int, start: int | None = None) -> Process | None:
        """Remove the live process `pid` (only if its start time matches, when given)."""
        proc = self._live.get(pid)
        if proc is None or (start is not None and proc.start_ticks != start):
            return None
        return self._live.pop(pid)

    def __len__(self) -> int:
        return len(self._live)

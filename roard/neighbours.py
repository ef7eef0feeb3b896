"""Other roard daemons on this host. Each attaches its own programs to the kernel's hooks,
so with two up every process on the host pays both daemons' hooks, traced or not: a
benchmark's "untraced" runs are not, and a job's cost doubles. Said at start, in
`roarctl status`, and checked by the benchmarks before they measure."""

from __future__ import annotations

import os
from dataclasses import dataclass

import psutil

_PROGRAM = "anon_inode:bpf-prog"  # what /proc/PID/fd shows for a loaded BPF program


@dataclass(frozen=True)
class Neighbour:
    """Another roard: its pid and command line."""

    pid: int
    command: str


def other_daemons(own_pid: int) -> list[Neighbour]:
    """The roard daemons running here besides `own_pid`: a `roard run` command line (the
    roard script or `-m roard.cli.roard_main`) in a process that holds BPF programs (so
    not a sudo or timeout that merely started one)."""
    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        pid, cmdline = proc.info["pid"], proc.info["cmdline"] or []
        if pid != own_pid and daemon_command(cmdline) and _holds_programs(pid):
            found.append(Neighbour(pid, " ".join(cmdline)))
    return found


def daemon_command(cmdline: list[str]) -> bool:
    """Whether `cmdline` runs `roard run`."""
    for i, arg in enumerate(cmdline):
        if os.path.basename(arg) == "roard" or arg == "roard.cli.roard_main":
            return "run" in cmdline[i + 1 :]
    return False


def _holds_programs(pid: int) -> bool:
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") == _PROGRAM:
                return True
        except OSError:
            continue
    return False

"""Which roard a ROARD_RUN job means. Every roard on a host sees every exec, so with a
second one up (a private daemon for tests or benchmarks beside the system one) both would
start a run for the same job and both would trace it. A job whose ROARD_SOCKET names a
roard's control socket, as it does for the roarctl it runs, means that roard alone; a job
without ROARD_SOCKET means any (the system roard, normally the only one)."""

from __future__ import annotations

import os
import stat

from roard.context.environment import read_environ


def other_daemon(pid: int, own_socket: str) -> str | None:
    """The ROARD_SOCKET of process `pid` when it names a socket other than `own_socket`;
    None when it names ours, names no socket, is unset, or cannot be read (the process is
    gone): only a job that positively means another roard is left to it. The path is
    resolved as the process sees it (its root and working directory), so a container that
    has the host's socket mounted under another path still means this roard."""
    env = read_environ(pid)
    named = env.get("ROARD_SOCKET") if env else None
    if not named:
        return None
    base = f"/proc/{pid}/root" if named.startswith("/") else f"/proc/{pid}/cwd/"
    try:
        found = os.stat(base + named)
    except OSError:
        return None
    if not stat.S_ISSOCK(found.st_mode):
        return None
    try:
        own = os.stat(own_socket)
    except OSError:
        return named  # not listening yet: a socket that is there is another roard's
    return None if os.path.samestat(found, own) else named

"""Which roard a ROARD_RUN job means. Every roard on a host sees every exec, so with a
second one up (a private daemon for tests or benchmarks beside the system one) both would
start a run for the same job and both would trace it. A job whose ROARD_SOCKET names a
roard's control socket, as it does for the roarctl it runs, means that roard alone; a job
without ROARD_SOCKET means any (the system roard, normally the only one)."""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping


def other_daemon(pid: int, env: Mapping[str, str], own_socket: str) -> str | None:
    """The ROARD_SOCKET in `env` (process `pid`'s environment) when it names a socket other
    than `own_socket`; None when it names ours, names no socket, or is unset: only a job
    that positively means another roard is left to it. The path is resolved as the process
    sees it (its root and working directory) while it lives, so a container that has the
    host's socket mounted under another path still means this roard; an absolute path of a
    process gone already, as this daemon sees it."""
    named = env.get("ROARD_SOCKET")
    if not named:
        return None
    if named.startswith("/"):
        # As the process sees it; once it is gone, as this daemon does.
        path = (f"/proc/{pid}/root" if os.path.isdir(f"/proc/{pid}") else "") + named
    else:
        path = f"/proc/{pid}/cwd/{named}"
    try:
        found = os.stat(path)
    except OSError:
        return None
    if not stat.S_ISSOCK(found.st_mode):
        return None
    try:
        own = os.stat(own_socket)
    except OSError:
        return named  # not listening yet: a socket that is there is another roard's
    return None if os.path.samestat(found, own) else named

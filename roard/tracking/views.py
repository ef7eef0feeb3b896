"""Paths as a process in another mount namespace saw them, made paths roard can open: the
in-kernel walk stops at the namespace's root, and the process names files through that
namespace's mounts. (A chroot needs nothing here: the walk goes past the process's root.)
Only /proc is read (never the files: a stat could block on a hung mount)."""

from __future__ import annotations

import os
from collections.abc import Iterable

from roard import procfs


def own_namespace() -> str:
    """roard's own mount namespace (read once: it never changes)."""
    return os.readlink("/proc/self/ns/mnt")


def host_path(pids: Iterable[int], seen: str, own_ns: str) -> str:
    """The path in roard's own mount namespace of the file the first of `pids` still alive
    named `seen` (a process, then its ancestors: a process that exited before its event was
    handled is taken to have shared its parent's mounts); `seen` itself when it shares
    roard's namespace, when all are gone, or when no mount of roard's reaches the file (e.g.
    a tmpfs private to its namespace). `own_ns`: own_namespace()."""
    for pid in pids:
        try:
            other_ns = os.readlink(f"/proc/{pid}/ns/mnt") != own_ns
        except OSError:
            continue
        return _through_mounts(pid, seen) if other_ns else seen
    return seen


def _through_mounts(pid: int, seen: str) -> str:
    """`seen` in `pid`'s mount namespace, as reached through roard's mounts: the same
    directory of the same filesystem (device), e.g. the source of a bind mount."""
    try:
        theirs = procfs.parse_mountinfo(procfs.read_mountinfo(pid))
        ours = procfs.parse_mountinfo(procfs.read_mountinfo("self"))
    except OSError:
        return seen
    under = [m for m in theirs if _within(seen, m.point)]
    if not under:
        return seen
    mount = max(under, key=lambda m: len(m.point))
    in_fs = os.path.normpath(mount.root + "/" + seen[len(mount.point) :])
    reaching = [m for m in ours if m.dev == mount.dev and _within(in_fs, m.root)]
    if not reaching:
        return seen
    best = max(reaching, key=lambda m: len(m.root))
    return os.path.normpath(best.point + "/" + in_fs[len(best.root) :])


def _within(path: str, directory: str) -> bool:
    return directory in ("/", path) or path.startswith(directory.rstrip("/") + "/")

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


class OwnMounts:
    """roard's own mounts, read again only when a lookup misses (mounts come and go)."""

    def __init__(self) -> None:
        self._mounts: list[procfs.Mount] | None = None

    def reach(self, dev: int, in_fs: str) -> str | None:
        """Where roard's namespace shows directory `in_fs` of filesystem `dev` (a path
        from that filesystem's root), or None when none of its mounts reaches it."""
        for fresh in (False, True):
            if fresh or self._mounts is None:
                try:
                    self._mounts = procfs.parse_mountinfo(procfs.read_mountinfo("self"))
                except OSError:
                    return None
            found = _reach(self._mounts, dev, in_fs)
            if found is not None:
                return found
        return None


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
    in_fs = _join(mount.root, seen[len(mount.point) :])
    return _reach(ours, mount.dev, in_fs) or seen


def _reach(mounts: list[procfs.Mount], dev: int, in_fs: str) -> str | None:
    """The path under `mounts` of `in_fs` on filesystem `dev`: through the mount of that
    filesystem whose root is the nearest directory above it."""
    reaching = [m for m in mounts if m.dev == dev and _within(in_fs, m.root)]
    if not reaching:
        return None
    best = max(reaching, key=lambda m: len(m.root))
    return _join(best.point, in_fs[len(best.root) :])


def _within(path: str, directory: str) -> bool:
    return directory in ("/", path) or path.startswith(directory.rstrip("/") + "/")


def _join(directory: str, rest: str) -> str:
    """`directory`/`rest` with single slashes (normpath keeps a leading "//")."""
    return os.path.normpath(directory.rstrip("/") + "/" + rest.lstrip("/"))

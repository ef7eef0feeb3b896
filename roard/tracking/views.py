"""Paths as a process in another mount namespace saw them, made paths roard can open: the
in-kernel walk stops at the namespace's root, and the process names files through that
namespace's mounts. (A chroot needs nothing here: the walk goes past the process's root.)
Only /proc is read (never the files: a stat could block on a hung mount)."""

from __future__ import annotations

import os
from collections.abc import Iterable

from roard import procfs
from roard.artifacts.filesystems import clean_path, relative_path


class OwnNamespace:
    """roard's own mount namespace: which one it is (read once: it never changes) and its
    mounts (read again only when a lookup misses: mounts come and go)."""

    def __init__(self) -> None:
        self.namespace = os.readlink("/proc/self/ns/mnt")
        self._mounts: list[procfs.Mount] | None = None

    def reach(self, dev: int, in_fs: str) -> str | None:
        """Where roard's namespace shows directory `in_fs` of filesystem `dev` (a path
        from that filesystem's root): through the mount of that filesystem whose root is
        the nearest directory above it; None when none of its mounts reaches it."""
        for fresh in (False, True):
            if fresh or self._mounts is None:
                try:
                    self._mounts = procfs.parse_mountinfo(procfs.read_mountinfo("self"))
                except OSError:
                    return None
            reaching = [
                (m, rest)
                for m in self._mounts
                if m.dev == dev and (rest := relative_path(in_fs, m.root)) is not None
            ]
            if reaching:
                best, rest = max(reaching, key=lambda found: len(found[0].root))
                return clean_path(best.point + "/" + rest)
        return None

    def host_path(self, pids: Iterable[int], seen: str) -> str:
        """The path in roard's own mount namespace of the file the first of `pids` still
        alive named `seen` (a process, then its ancestors: a process that exited before its
        event was handled is taken to have shared its parent's mounts); `seen` itself when
        it shares roard's namespace, when all are gone, or when no mount of roard's reaches
        the file (e.g. a tmpfs private to its namespace)."""
        for pid in pids:
            try:
                other_ns = os.readlink(f"/proc/{pid}/ns/mnt") != self.namespace
            except OSError:
                continue
            return self._through_mounts(pid, seen) if other_ns else seen
        return seen

    def _through_mounts(self, pid: int, seen: str) -> str:
        """`seen` in `pid`'s mount namespace, as reached through roard's mounts: the same
        directory of the same filesystem (device), e.g. the source of a bind mount."""
        try:
            theirs = procfs.parse_mountinfo(procfs.read_mountinfo(pid))
        except OSError:
            return seen
        under = [(m, rest) for m in theirs if (rest := relative_path(seen, m.point)) is not None]
        if not under:
            return seen
        mount, rest = max(under, key=lambda found: len(found[0].point))
        return self.reach(mount.dev, clean_path(mount.root + "/" + rest)) or seen

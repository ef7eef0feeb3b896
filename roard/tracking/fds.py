"""The files behind the descriptors of tracked processes, as announced by the kernel."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass


@dataclass(frozen=True)
class OpenFile:
    """A regular file reachable through one (pid, fd)."""

    path: str
    dev: int
    ino: int
    open_flags: int
    created: bool  # the open created it
    seen: str = ""  # the path the process used, when not `path` (another mount namespace)

    @property
    def changed_by_open(self) -> bool:
        """The open itself changed the file: it created it, or truncated it for writing."""
        writable = (self.open_flags & os.O_ACCMODE) != os.O_RDONLY
        return self.created or (writable and bool(self.open_flags & os.O_TRUNC))


class FdTable:
    """(pid, fd) -> OpenFile for every descriptor with an in-kernel aggregate."""

    def __init__(self) -> None:
        self._files: dict[tuple[int, int], OpenFile] = {}

    def set(self, pid: int, fd: int, file: OpenFile) -> None:
        """Record what (pid, fd) refers to, replacing any stale entry."""
        self._files[(pid, fd)] = file

    def get(self, pid: int, fd: int) -> OpenFile | None:
        """What (pid, fd) refers to, if announced."""
        return self._files.get((pid, fd))

    def pop(self, pid: int, fd: int) -> OpenFile | None:
        """Forget (pid, fd) and return what it referred to."""
        return self._files.pop((pid, fd), None)

    def rename(
        self, old: str, new: str, exchange: bool = False, seen: tuple[str, str] = ("", "")
    ) -> None:
        """Descriptors open on `old`, or on files under the directory `old`, now reach
        them under `new` (and the other way round too when the names were exchanged).
        `seen`: the two names as the renaming process saw them, for files known by such."""
        for key, file in self._files.items():
            moved = renamed(file.path, old, new, exchange)
            if moved is not None:
                now_seen = renamed(file.seen, *seen, exchange) or ""  # "" stays ""
                self._files[key] = dataclasses.replace(file, path=moved, seen=now_seen)

    def __len__(self) -> int:
        return len(self._files)


def renamed(path: str, old: str, new: str, exchange: bool = False) -> str | None:
    """`path` after `old` was renamed to `new` (either may be a directory; with exchange,
    the two names swapped), or None when the rename does not concern it."""
    for before, after in ((old, new), (new, old)) if exchange else ((old, new),):
        if path == before:
            return after
        if path.startswith(before + "/"):
            return after + path[len(before) :]
    return None

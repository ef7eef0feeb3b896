"""The files behind the descriptors of tracked processes, as announced by the kernel."""

from __future__ import annotations

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

    def pop(self, pid: int, fd: int) -> OpenFile | None:
        """Forget (pid, fd) and return what it referred to."""
        return self._files.pop((pid, fd), None)

    def __len__(self) -> int:
        return len(self._files)

"""A FUSE file system that hangs for one process: a stand-in for a dead network mount.

    python hungfs.py MOUNTPOINT HUNG_PID RELEASE_FILE

It serves one file, data.bin. Every request from process HUNG_PID (any of its threads)
blocks until RELEASE_FILE exists; other processes are answered at once, so a tagged
program can read the file and the daemon then finds the mount hung when it hashes it.
"""

from __future__ import annotations

import errno
import stat
import sys
import time
from pathlib import Path
from typing import Any

from fuse import FUSE, FuseOSError, Operations, fuse_get_context

CONTENT = b"bytes behind a mount that hangs\n" * 64
NAME = "/data.bin"


def _tgid(tid: int) -> int:
    """The process a requesting thread belongs to (FUSE reports the thread's id)."""
    try:
        for line in Path(f"/proc/{tid}/status").read_text().splitlines():
            if line.startswith("Tgid:"):
                return int(line.split()[1])
    except OSError:
        pass
    return tid


class HungFs(Operations):
    """data.bin, read-only; hung for one process until released."""

    def __init__(self, hung_pid: int, release: Path) -> None:
        self._hung_pid = hung_pid
        self._release = release
        self._now = time.time()

    def __call__(self, op: str, *args: Any) -> Any:
        _uid, _gid, pid = fuse_get_context()
        if pid and _tgid(pid) == self._hung_pid:
            while not self._release.exists():
                time.sleep(0.05)
        return super().__call__(op, *args)

    def getattr(self, path: str, fh: int | None = None) -> dict[str, Any]:
        times = {"st_atime": self._now, "st_mtime": self._now, "st_ctime": self._now}
        if path == "/":
            return {"st_mode": stat.S_IFDIR | 0o755, "st_nlink": 2, **times}
        if path == NAME:
            return {
                "st_mode": stat.S_IFREG | 0o444,
                "st_nlink": 1,
                "st_size": len(CONTENT),
                **times,
            }
        raise FuseOSError(errno.ENOENT)

    def readdir(self, path: str, fh: int) -> list[str]:
        return [".", "..", NAME[1:]]

    def open(self, path: str, flags: int) -> int:
        if path != NAME:
            raise FuseOSError(errno.ENOENT)
        return 0

    def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
        return CONTENT[offset : offset + size]


def main() -> None:
    mountpoint, hung_pid, release = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
    FUSE(HungFs(hung_pid, release), mountpoint, foreground=True, nothreads=False, ro=True)


if __name__ == "__main__":
    main()

"""A FUSE file system that refuses one process: a file the job can read and the daemon
cannot (as a mount without allow_other, or a server's ACL, would).

    python denyfs.py MOUNTPOINT DENIED_PID

It serves hungfs's data.bin; opens by any thread of DENIED_PID fail with EACCES.
"""

from __future__ import annotations

import errno
import sys
from pathlib import Path
from typing import Any

from fuse import FUSE, FuseOSError, fuse_get_context
from hungfs import HungFs, _tgid


class DenyFs(HungFs):
    """hungfs's data.bin, never hung, refused to one process."""

    def __init__(self, denied_pid: int) -> None:
        super().__init__(-1, Path("/"))
        self._denied_pid = denied_pid

    def __call__(self, op: str, *args: Any) -> Any:
        _uid, _gid, pid = fuse_get_context()
        if op == "open" and pid and _tgid(pid) == self._denied_pid:
            raise FuseOSError(errno.EACCES)
        return super().__call__(op, *args)


def main() -> None:
    mountpoint, denied_pid = sys.argv[1], int(sys.argv[2])
    FUSE(
        DenyFs(denied_pid), mountpoint, foreground=True, nothreads=False, ro=True, allow_other=True
    )


if __name__ == "__main__":
    main()

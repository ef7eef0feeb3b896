"""How soon after a change a file's stamp can be trusted to show the next change.

A cached hash answers for a file while its stamp (size, mtime, ctime) is unchanged. Before
Linux 6.13 a write takes its times from the clock's last tick (1 to 10 ms apart): a file
rewritten at the same size within the tick of its previous change keeps its stamp, and a
hash read in that tick would answer for content it never read. Since 6.13, ext4, xfs,
btrfs and tmpfs give a change made after a stat a finer time (multigrain timestamps), so
every write after a hash's first fstat changes the stamp. Elsewhere the hasher waits out
this window after a change before it reads for the cache (git calls such entries racy).
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable

from roard.artifacts.filesystems import DEFAULT_SHARED_FSTYPES, MountTable
from roard.errors import RoardError

# Kernels from this release on give these filesystems multigrain timestamps.
_MULTIGRAIN_SINCE = (6, 13)
_MULTIGRAIN_FSTYPES = frozenset({"ext4", "xfs", "btrfs", "tmpfs"})
# A window of one timestamp granule suffices (a read that starts a granule after a change
# sees any later change stamped differently): twice the tick at HZ=100.
LOCAL_WINDOW_NS = 20_000_000
# Network and FUSE filesystems take their times from a server, some in whole seconds.
SHARED_WINDOW_NS = 1_000_000_000
# Seconds between two reloads of the mount table for a dev it lacks (a btrfs subvolume's
# dev is in no mount: it must not reread mountinfo for every file).
_RELOAD_INTERVAL = 1.0
# Seconds a table is trusted: an unmounted filesystem's dev number may come back with
# another filesystem (anonymous devs are reused).
_MAX_AGE = 30.0


def multigrain_kernel(release: str) -> bool:
    """Whether a kernel of this `uname -r` release gives multigrain timestamps."""
    found = re.match(r"(\d+)\.(\d+)", release)
    return found is not None and (int(found[1]), int(found[2])) >= _MULTIGRAIN_SINCE


def window_ns(fstype: str | None, multigrain: bool) -> int:
    """How long after a change to a file on a filesystem of `fstype` (None: unknown) a
    later change may keep its stamp; 0 when every later change shows."""
    if multigrain and fstype in _MULTIGRAIN_FSTYPES:
        return 0
    if fstype is not None and (fstype in DEFAULT_SHARED_FSTYPES or fstype.startswith("fuse.")):
        return SHARED_WINDOW_NS
    return LOCAL_WINDOW_NS


class ChangeTimes:
    """The window of each device (by st_dev), from this process's mount table: safe to
    share between threads."""

    def __init__(
        self,
        release: str | None = None,
        loader: Callable[[], MountTable] = MountTable.load,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._multigrain = multigrain_kernel(release or os.uname().release)
        self._loader = loader
        self._clock = clock
        self._lock = threading.Lock()
        self._windows: dict[int, int] = {}
        self._loaded_at: float | None = None  # when last loaded (or tried)

    def window_ns(self, dev: int) -> int:
        """The window of files with st_dev `dev` (LOCAL_WINDOW_NS when no mount has it)."""
        now = self._clock()
        loaded = self._loaded_at
        found = self._windows.get(dev)
        if found is not None and loaded is not None and now - loaded < _MAX_AGE:
            return found
        with self._lock:
            loaded = self._loaded_at
            if (
                loaded is None
                or now - loaded >= _MAX_AGE
                or (dev not in self._windows and now - loaded >= _RELOAD_INTERVAL)
            ):
                self._loaded_at = now  # a failed load waits too: no retry storm
                self._reload()
            return self._windows.get(dev, LOCAL_WINDOW_NS)

    def _reload(self) -> None:
        """Learn the devs of the mount table afresh (called with the lock held)."""
        try:
            mounts = self._loader().mounts
        except RoardError:
            return  # unknown devs get the local window: waits a little, never wrong
        self._windows = {m.dev: window_ns(m.fstype, self._multigrain) for m in mounts}

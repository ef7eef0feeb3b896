"""A host-independent name for a file on a shared filesystem.

Rank 0 writes ckpt.pt on an NFS (Lustre, CephFS...) mount and a job on another node reads
it, perhaps mounted elsewhere: both must name the file alike for the lineage to join. The
name is built from /proc/self/mountinfo alone, by string work: never a stat(2) or open(2),
which would block for ever on a hung network mount.

Known limits: hosts must name the server alike ("nfs1:/export" and "10.0.0.5:/export" differ,
as do two Lustre or Ceph monitor lists); btrfs subvolumes report a dev no mount has (found by
path instead). SharedRules.paths covers whatever the mount table cannot tell.
"""

from __future__ import annotations

import posixpath
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from roard import procfs
from roard.errors import ConfigError, PrerequisiteError, RoardError
from roard.procfs import Mount

__all__ = [
    "DEFAULT_SHARED_FSTYPES",
    "Locator",
    "Mount",
    "MountTable",
    "SharedRules",
    "clean_path",
    "location",
    "relative_path",
]

FUSE_ANY = "fuse.*"  # in SharedRules.fstypes: every "fuse.<subtype>" mount counts as shared

DEFAULT_SHARED_FSTYPES: frozenset[str] = frozenset(
    {
        "nfs",  # NFSv2/v3
        "nfs4",  # NFSv4.x (named "nfs" in locations, so v3 and v4 clients agree)
        "lustre",
        "ceph",  # the kernel CephFS client (ceph-fuse is fuse.ceph-fuse)
        "gpfs",  # IBM Storage Scale
        "beegfs",
        "cifs",  # SMB
        "smb3",  # SMB3-only alias of cifs (named "cifs" in locations)
        "glusterfs",  # its native client mounts as fuse.glusterfs, also covered
        "9p",  # a host directory shared into VMs (the source is the mount tag)
        "virtiofs",  # likewise
        FUSE_ANY,  # s3fs, gcsfuse, rclone, sshfs, juicefs...; not fuseblk: a local disk
    }
)

# Filesystems that are one protocol under two names: hosts may mount either.
_FSTYPE_ALIASES: Mapping[str, str] = MappingProxyType({"nfs4": "nfs", "smb3": "cifs"})

# Sources that name nothing: two such mounts on two hosts need not hold the same files.
_ANONYMOUS_SOURCES = frozenset({"", "none", "fuse"})


def clean_path(path: str) -> str:
    """`path` normalised by string work; "" unless it is absolute."""
    if not path.startswith("/"):
        return ""
    # normpath keeps a leading "//" (POSIX leaves its meaning open); Linux does not.
    return posixpath.normpath("/" + path.lstrip("/"))


def _ancestors(path: str) -> Iterator[str]:
    """`path` (clean and absolute), then each directory above it, up to "/"."""
    while True:
        yield path
        if path == "/":
            return
        path = posixpath.dirname(path)


def relative_path(path: str, directory: str) -> str | None:
    """`path` below `directory` (both clean): "" for the directory itself, None when it
    is not inside it. Component-wise: /mnt/ab is not inside /mnt/a."""
    if path == directory:
        return ""
    if directory == "/":
        return path[1:]
    if path.startswith(directory) and path[len(directory)] == "/":
        return path[len(directory) + 1 :]
    return None


@dataclass(frozen=True)
class SharedRules:
    """Which files count as shared between hosts (config may extend the defaults).

    `paths` declares extra shared trees: a directory -> a name that is the same on every
    host (e.g. {"/mnt/data": "datalake"}), for what the mount table cannot tell (an NFS
    export bind-mounted into a container shows as the container's ext4 or overlay; a test
    directory). Such an entry is checked first and the longest directory wins.
    """

    fstypes: frozenset[str] = DEFAULT_SHARED_FSTYPES
    paths: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        cleaned = {}
        for directory, name in self.paths.items():
            key = clean_path(directory)
            if not key or not name:
                raise ConfigError(
                    f"shared path {directory!r} = {name!r}: give an absolute directory "
                    'and a non-empty name, e.g. "/mnt/data" = "datalake"'
                )
            cleaned[key] = name
        # Frozen in fact, not only in name: the rules are shared between threads.
        object.__setattr__(self, "paths", MappingProxyType(cleaned))

    def shares(self, fstype: str) -> bool:
        """Whether a mount of this type holds the same files on every host mounting it."""
        return fstype in self.fstypes or (
            FUSE_ANY in self.fstypes and fstype.startswith("fuse.") and len(fstype) > 5
        )


class MountTable:
    """A process's mounts, indexed by mount point and by device (immutable once built)."""

    def __init__(self, mounts: list[Mount]) -> None:
        self.mounts: tuple[Mount, ...] = tuple(mounts)
        by_point: dict[str, list[Mount]] = {}
        for mount in self.mounts:
            point = clean_path(mount.point)
            if point:
                by_point.setdefault(point, []).append(mount)
        # Last first: a later mount on the same point hides the earlier ones.
        self._by_point = {p: tuple(reversed(ms)) for p, ms in by_point.items()}
        self.devs: frozenset[int] = frozenset(m.dev for m in self.mounts)

    @classmethod
    def parse(cls, text: str) -> MountTable:
        """The table of /proc/PID/mountinfo text; malformed lines are skipped."""
        return cls(procfs.parse_mountinfo(text))

    @classmethod
    def load(cls, pid: str = "self") -> MountTable:
        """The table of /proc/PID/mountinfo; raises PrerequisiteError when unreadable."""
        try:
            text = procfs.read_mountinfo(pid)
        except OSError as e:
            raise PrerequisiteError(
                f"cannot read /proc/{pid}/mountinfo ({e.strerror or e}): mount /proc "
                "(roard names files on shared filesystems from it), or check that the "
                "process exists"
            ) from None
        return cls.parse(text)

    def find(self, path: str, dev: int | None = None) -> Mount | None:
        """The mount holding absolute `path`: the one on its deepest ancestor directory
        (later mounts on one point hiding earlier ones). With `dev`, a mount with that dev
        wins over a deeper one without (bind mounts share a dev; a path read in another
        mount namespace may name another mount); without any, the path alone decides."""
        path = clean_path(path)
        if not path:
            return None
        if dev is not None and dev in self.devs:
            for directory in _ancestors(path):
                for mount in self._by_point.get(directory, ()):
                    if mount.dev == dev:
                        return mount
        for directory in _ancestors(path):
            mounts = self._by_point.get(directory)
            if mounts:
                return mounts[0]
        return None


def location(path: str, dev: int | None, table: MountTable, rules: SharedRules) -> str:
    """A name for the file at absolute `path` (with st_dev `dev`, when known) that every
    host mounting the same export gives it, wherever mounted; "" when it is not on a
    shared filesystem. Pure string work: it never touches the file.

    - under a rules.paths directory: "shared:NAME/RELATIVE" ("shared:NAME" for the
      directory itself);
    - on a shared fstype: "FSTYPE://SOURCE/PATH-IN-EXPORT", e.g.
      "nfs://server:/export/run1/ckpt.pt" (nfs4 is named nfs and smb3 cifs, so hosts
      mounting either agree).
    """
    path = clean_path(path)
    if not path:
        return ""
    for directory in _ancestors(path):
        name = rules.paths.get(directory)
        if name is not None:
            relative = relative_path(path, directory)
            return f"shared:{name}/{relative}" if relative else f"shared:{name}"
    mount = table.find(path, dev)
    if mount is None or not rules.shares(mount.fstype):
        return ""
    source = mount.source.rstrip("/")
    subtype = mount.fstype.partition(".")[2]
    if source in _ANONYMOUS_SOURCES or source == subtype:
        # s3fs shows "s3fs" whatever bucket it mounts: one name for many buckets would
        # join unrelated files. Declare such a mount in SharedRules.paths instead.
        return ""
    relative = relative_path(path, clean_path(mount.point))
    if relative is None:  # cannot be: find() returns a mount on one of path's ancestors
        return ""
    # The mount's root is its directory within the filesystem the source names (a bind
    # mount of a subdirectory); NFS instead puts that directory in the source.
    inside = posixpath.normpath(posixpath.join("/" + mount.root.lstrip("/"), relative))
    fstype = _FSTYPE_ALIASES.get(mount.fstype, mount.fstype)
    # The mounted directory itself: "fs1:/export" whether a host mounts fs1:/ or fs1:/export.
    return f"{fstype}://{source}{inside if inside != '/' else ''}"


class Locator:
    """location() against this process's mount table, kept fresh: safe to share between
    threads. The table is reloaded when a file's dev is not in it (a mount made since) or
    it is older than `max_age` seconds, but at most once a second (a dev no mount has,
    such as a btrfs subvolume's, must not reread mountinfo for every file)."""

    MIN_INTERVAL = 1.0  # seconds between two reloads, whatever prompts them

    def __init__(
        self,
        rules: SharedRules,
        max_age: float = 30.0,
        loader: Callable[[], MountTable] = MountTable.load,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._rules = rules
        self._max_age = max_age
        self._loader = loader
        self._clock = clock
        self._lock = threading.Lock()
        self._table = MountTable([])
        self._shares_any = False  # whether any mount of the table is of a shared type
        self._loaded_at: float | None = None  # when last loaded (or tried): None never

    def locate(self, path: str, dev: int | None) -> str:
        """location() of the file at `path` with st_dev `dev` (None when unknown)."""
        table, shares_any = self._current(dev)
        if not shares_any and not self._rules.paths:
            # Nothing on this host can be named (the usual single host): no path walk, for
            # each of a run's thousands of files.
            return ""
        return location(path, dev, table, self._rules)

    def _current(self, dev: int | None) -> tuple[MountTable, bool]:
        with self._lock:
            now = self._clock()
            last = self._loaded_at
            stale = (
                last is None
                or now - last >= self._max_age
                or (dev is not None and dev not in self._table.devs)
            )
            if stale and (last is None or now - last >= self.MIN_INTERVAL):
                self._loaded_at = now  # a failed load waits too: no retry storm
                try:
                    self._table = self._loader()
                    self._shares_any = any(self._rules.shares(m.fstype) for m in self._table.mounts)
                except RoardError as e:
                    # Imported here: roarctl loads this module (through roard.config) and
                    # would otherwise pay for structlog, ~30 ms of every command's start.
                    import structlog

                    # Keep the last table: names may go stale, but lineage keeps flowing.
                    structlog.get_logger("roard.filesystems").warning(
                        "mount table not reloaded", error=str(e)
                    )
            return self._table, self._shares_any

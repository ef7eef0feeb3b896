"""Cgroups named by their directory: how the kernel identifies them, and their processes.

The kernel side knows a cgroup by (hierarchy id, kernfs node id). The hierarchy id is 0 for
cgroup v2 and, for a v1 hierarchy, the number /proc/self/cgroup shows beside its controllers
(or name=); the node id is the directory's inode number on 64-bit kernels.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from roard import procfs
from roard.errors import NotFound, UsageError

_PROCS = "cgroup.procs"


@dataclass(frozen=True)
class Cgroup:
    """A cgroup directory, as resolved when it was tagged."""

    path: str  # absolute, symlinks resolved
    hierarchy_id: int  # 0: cgroup v2
    kn_id: int  # the directory's inode number = the kernel's kernfs node id
    owner: int  # uid owning the directory (a delegated cgroup is its user's)

    @property
    def version(self) -> int:
        """1 or 2: which cgroup interface its hierarchy has."""
        return 2 if self.hierarchy_id == 0 else 1


@dataclass(frozen=True)
class CgroupMount:
    """A cgroup or cgroup2 mount, from /proc/self/mountinfo."""

    mount_point: str
    dev: tuple[int, int]  # (major, minor): every mount of one hierarchy shares it
    fstype: str  # "cgroup" (v1) or "cgroup2"
    options: frozenset[str]  # super options: a v1 hierarchy's controllers and name=


def parse_mountinfo(text: str) -> list[CgroupMount]:
    """The cgroup mounts in /proc/<pid>/mountinfo text."""
    return [
        CgroupMount(
            mount_point=m.point,
            dev=(os.major(m.dev), os.minor(m.dev)),
            fstype=m.fstype,
            options=m.super_options,
        )
        for m in procfs.parse_mountinfo(text)
        if m.fstype in ("cgroup", "cgroup2")
    ]


def parse_proc_cgroup(text: str) -> dict[int, frozenset[str]]:
    """Hierarchy id -> its controllers (and name=) from /proc/<pid>/cgroup text
    ("hierarchy-ID:controller-list:path"); v2's id is 0, with no controllers."""
    hierarchies = {}
    for line in text.splitlines():
        hid, sep, rest = line.partition(":")
        controllers, sep2, _path = rest.partition(":")
        if sep and sep2 and hid.isdigit():
            hierarchies[int(hid)] = frozenset(filter(None, controllers.split(",")))
    return hierarchies


def hierarchy_id(mount: CgroupMount, hierarchies: dict[int, frozenset[str]], path: str) -> int:
    """The id of the hierarchy mounted at `mount`: 0 for v2; for v1, the hierarchy whose
    controllers (or name=) are all among the mount's options. Raises UsageError when no
    single v1 hierarchy fits."""
    if mount.fstype == "cgroup2":
        return 0
    fits = [hid for hid, ctl in hierarchies.items() if hid and ctl and ctl <= mount.options]
    if len(fits) != 1:
        raise UsageError(
            f"{path}: cannot tell which cgroup v1 hierarchy is mounted at {mount.mount_point} "
            f"(options {','.join(sorted(mount.options))}; roard's /proc/self/cgroup lists "
            f"{len(fits)} matching hierarchies): tag a cgroup of a hierarchy with its own "
            "controllers or name=, or the same cgroup in the v2 hierarchy"
        )
    return fits[0]


def resolve(path: str, proc: Path = Path("/proc")) -> Cgroup:
    """The cgroup whose directory is `path`. Raises NotFound when it does not exist and
    UsageError when it is not a cgroup directory or its hierarchy cannot be identified."""
    real = os.path.realpath(path)
    try:
        st = os.stat(real)
    except FileNotFoundError:
        raise NotFound(
            f"{path}: no such cgroup directory; give a cgroup's directory, e.g. "
            "/sys/fs/cgroup/system.slice/job.scope (create it first, or check the path)"
        ) from None
    dev = (os.major(st.st_dev), os.minor(st.st_dev))
    mounts = [m for m in parse_mountinfo((proc / "self/mountinfo").read_text()) if m.dev == dev]
    if not stat.S_ISDIR(st.st_mode) or not mounts or not os.path.exists(f"{real}/{_PROCS}"):
        raise UsageError(
            f"{path} is not a cgroup directory: give a directory under a cgroup mount "
            "(one with a cgroup.procs file, e.g. under /sys/fs/cgroup; see `findmnt -t "
            "cgroup,cgroup2`)"
        )
    hid = hierarchy_id(mounts[0], parse_proc_cgroup((proc / "self/cgroup").read_text()), path)
    return Cgroup(path=real, hierarchy_id=hid, kn_id=st.st_ino, owner=st.st_uid)


def pids(cgroup: Cgroup) -> set[int]:
    """Processes in the cgroup and in every cgroup below it, as listed right now."""
    found: set[int] = set()
    for directory, _dirs, files in os.walk(cgroup.path):
        if _PROCS not in files:
            continue
        try:
            text = Path(directory, _PROCS).read_text()
        except OSError:  # removed meanwhile
            continue
        found.update(int(line) for line in text.split())
    return found


def present(cgroup: Cgroup) -> bool:
    """Whether the cgroup still exists (not merely one re-created under the same path)."""
    try:
        return os.stat(cgroup.path).st_ino == cgroup.kn_id
    except OSError:
        return False


def proc_cgroup_path(text: str) -> str:
    """The cgroup path a process's /proc/<pid>/cgroup text names: the v2 ("0::") line's,
    else the v1 name=systemd hierarchy's (the one that follows services and containers);
    "" when neither is there."""
    v1 = ""
    for line in text.splitlines():
        hid, sep, rest = line.partition(":")
        controllers, sep2, path = rest.partition(":")
        if not (sep and sep2):
            continue
        if hid == "0" and not controllers:
            return path
        if "name=systemd" in controllers.split(","):
            v1 = path
    return v1

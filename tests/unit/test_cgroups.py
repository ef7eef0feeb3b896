"""Tests for roard.tracking.cgroups: naming a cgroup as the kernel knows it, from its path."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from roard.errors import NotFound, UsageError
from roard.tracking.cgroups import (
    Cgroup,
    CgroupMount,
    hierarchy_id,
    parse_mountinfo,
    parse_proc_cgroup,
    pids,
    present,
    resolve,
)

# A hybrid host (v1 controllers, a named v1 hierarchy, v2 at unified) and a blank in a path.
MOUNTINFO = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime shared:9 - cgroup cgroup rw,cpu,cpuacct
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw,nsdelegate
42 31 0:36 /job /mnt/pids\\040job rw - cgroup cgroup rw,pids
"""
PROC_CGROUP = """\
9:name=systemd:/
8:pids:/
2:cpu,cpuacct:/
0::/
"""


def test_mountinfo_lists_cgroup_mounts_only() -> None:
    """tmpfs is skipped; optional fields and escaped blanks are handled."""
    mounts = parse_mountinfo(MOUNTINFO)
    assert [m.mount_point for m in mounts] == [
        "/sys/fs/cgroup/cpu,cpuacct",
        "/sys/fs/cgroup/pids",
        "/sys/fs/cgroup/systemd",
        "/sys/fs/cgroup/unified",
        "/mnt/pids job",
    ]
    assert mounts[0] == CgroupMount(
        "/sys/fs/cgroup/cpu,cpuacct", (0, 29), "cgroup", frozenset({"rw", "cpu", "cpuacct"})
    )
    assert mounts[3].fstype == "cgroup2"


def test_hierarchy_ids_of_v1_by_controllers_or_name_and_v2_is_zero() -> None:
    """Each mount maps to the /proc/self/cgroup line whose controllers it carries."""
    hierarchies = parse_proc_cgroup(PROC_CGROUP)
    assert hierarchies[2] == frozenset({"cpu", "cpuacct"})
    ids = [hierarchy_id(m, hierarchies, m.mount_point) for m in parse_mountinfo(MOUNTINFO)]
    assert ids == [2, 8, 9, 0, 8]


def test_unidentifiable_v1_hierarchy_is_a_clear_error() -> None:
    """A v1 mount no hierarchy line matches (e.g. roard in another cgroup namespace's view)
    is refused, saying what to tag instead."""
    net = CgroupMount("/sys/fs/cgroup/net_cls", (0, 40), "cgroup", frozenset({"rw", "net_cls"}))
    with pytest.raises(UsageError, match="cannot tell which cgroup v1 hierarchy"):
        hierarchy_id(net, parse_proc_cgroup(PROC_CGROUP), "/sys/fs/cgroup/net_cls/job")


def fake_proc(tmp_path: Path, mountinfo: str) -> Path:
    """A /proc with only self/mountinfo and self/cgroup."""
    proc = tmp_path / "proc"
    (proc / "self").mkdir(parents=True)
    (proc / "self" / "mountinfo").write_text(mountinfo)
    (proc / "self" / "cgroup").write_text(PROC_CGROUP)
    return proc


def test_resolve_a_directory_on_a_cgroup_mount(tmp_path: Path) -> None:
    """A directory with cgroup.procs on a device that a cgroup2 mount has: hierarchy 0, its
    inode as node id, its owner."""
    job = tmp_path / "job"
    job.mkdir()
    (job / "cgroup.procs").write_text("")
    st = job.stat()
    dev = f"{os.major(st.st_dev)}:{os.minor(st.st_dev)}"
    proc = fake_proc(tmp_path, f"41 31 {dev} / {tmp_path} rw - cgroup2 cgroup2 rw\n")
    link = tmp_path / "link"
    link.symlink_to(job)
    assert resolve(str(link), proc) == Cgroup(str(job), 0, st.st_ino, st.st_uid)


def test_resolve_refuses_missing_paths_and_non_cgroup_directories(tmp_path: Path) -> None:
    """Missing: NotFound; off a cgroup mount, a file, no cgroup.procs: UsageError."""
    proc = fake_proc(tmp_path, MOUNTINFO)
    with pytest.raises(NotFound, match="no such cgroup directory"):
        resolve(str(tmp_path / "missing"), proc)
    with pytest.raises(UsageError, match="is not a cgroup directory"):
        resolve(str(tmp_path), proc)  # a directory, but on no cgroup mount
    st = tmp_path.stat()
    dev = f"{os.major(st.st_dev)}:{os.minor(st.st_dev)}"
    proc = fake_proc(tmp_path / "p2", f"41 31 {dev} / {tmp_path} rw - cgroup2 cgroup2 rw\n")
    (tmp_path / "cgroup.procs").write_text("")
    with pytest.raises(UsageError, match="is not a cgroup directory"):
        resolve(str(tmp_path / "cgroup.procs"), proc)  # a file
    (tmp_path / "plain").mkdir()
    with pytest.raises(UsageError, match="is not a cgroup directory"):
        resolve(str(tmp_path / "plain"), proc)  # no cgroup.procs


def test_pids_of_a_cgroup_and_below_and_presence(tmp_path: Path) -> None:
    """Processes of the whole subtree; a removed cgroup is no longer present."""
    job = tmp_path / "job"
    (job / "step" / "task").mkdir(parents=True)
    (job / "cgroup.procs").write_text("10\n11\n")
    (job / "step" / "cgroup.procs").write_text("")
    (job / "step" / "task" / "cgroup.procs").write_text("12\n")
    cgroup = Cgroup(str(job), 0, job.stat().st_ino, 0)
    assert pids(cgroup) == {10, 11, 12}
    assert present(cgroup)
    for path in (job / "step" / "task" / "cgroup.procs", job / "step" / "cgroup.procs"):
        path.unlink()
    (job / "cgroup.procs").unlink()
    for path in (job / "step" / "task", job / "step", job):
        path.rmdir()
    assert not present(cgroup)

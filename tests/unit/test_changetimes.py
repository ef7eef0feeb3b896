"""When a file's stamp can be trusted to show its next change (the hash cache's guard)."""

from __future__ import annotations

import os

import pytest

from roard.artifacts.changetimes import (
    LOCAL_WINDOW_NS,
    SHARED_WINDOW_NS,
    ChangeTimes,
    multigrain_kernel,
    window_ns,
)
from roard.artifacts.filesystems import MountTable
from roard.errors import PrerequisiteError


@pytest.mark.parametrize(
    ("release", "multigrain"),
    [
        ("6.13.0", True),
        ("6.18.44-fc-v769", True),
        ("7.0.1", True),
        ("6.12.9-amd64", False),
        ("6.8.0-45-generic", False),
        ("5.15.0-119-generic", False),
        ("unknown", False),
    ],
)
def test_multigrain_timestamps_come_with_linux_6_13(release: str, multigrain: bool) -> None:
    assert multigrain_kernel(release) is multigrain


@pytest.mark.parametrize(
    ("fstype", "multigrain", "window"),
    [
        ("ext4", True, 0),
        ("tmpfs", True, 0),
        ("xfs", True, 0),
        ("btrfs", True, 0),
        ("ext4", False, LOCAL_WINDOW_NS),  # an Ubuntu 22.04 or 24.04 kernel
        ("ramfs", True, LOCAL_WINDOW_NS),  # no multigrain times on any kernel
        ("overlay", True, LOCAL_WINDOW_NS),
        ("nfs4", True, SHARED_WINDOW_NS),
        ("fuse.sshfs", True, SHARED_WINDOW_NS),
        (None, True, LOCAL_WINDOW_NS),
    ],
)
def test_the_window_by_filesystem(fstype: str | None, multigrain: bool, window: int) -> None:
    assert window_ns(fstype, multigrain) == window


MOUNTINFO = """\
22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
30 22 0:25 / /dev/shm rw shared:2 - tmpfs tmpfs rw
41 22 0:52 / /mnt/data rw shared:3 - nfs4 server:/export rw,vers=4.2
"""


def test_devices_are_looked_up_in_a_mount_table_reloaded_for_new_devs_and_when_old() -> None:
    loads: list[float] = []
    now = [100.0]

    def load() -> MountTable:
        loads.append(now[0])
        return MountTable.parse(MOUNTINFO)

    times = ChangeTimes(release="6.8.0-45-generic", loader=load, clock=lambda: now[0])
    assert times.window_ns(os.makedev(254, 0)) == LOCAL_WINDOW_NS
    assert times.window_ns(os.makedev(0, 52)) == SHARED_WINDOW_NS
    assert loads == [100.0]  # one load for every mount
    assert times.window_ns(os.makedev(0, 99)) == LOCAL_WINDOW_NS  # in no mount: a subvolume?
    assert times.window_ns(os.makedev(0, 99)) == LOCAL_WINDOW_NS
    assert loads == [100.0]
    now[0] += 1.5
    times.window_ns(os.makedev(0, 99))
    assert loads == [100.0, 101.5]
    times.window_ns(os.makedev(254, 0))
    assert loads == [100.0, 101.5]
    now[0] += 30  # a dev number may have come back with another filesystem since
    times.window_ns(os.makedev(254, 0))
    assert loads == [100.0, 101.5, 131.5]
    assert ChangeTimes(release="6.18.0", loader=load).window_ns(os.makedev(0, 25)) == 0


def test_an_unreadable_mount_table_leaves_every_device_at_the_local_window() -> None:
    def unreadable() -> MountTable:
        raise PrerequisiteError("cannot read /proc/self/mountinfo")

    assert ChangeTimes(release="6.18.0", loader=unreadable).window_ns(1) == LOCAL_WINDOW_NS

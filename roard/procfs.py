"""What /proc says about a process's descriptors, read without touching the files: a
stat(2) of a file on a hung network mount would block the caller for ever."""

from __future__ import annotations

import os


def describe_fd(pid: int, fd: int) -> tuple[str, dict[str, str]] | None:
    """The path a live process's descriptor reaches and its /proc fdinfo fields; None when
    it is not open on a named file that still exists."""
    try:
        path = os.readlink(f"/proc/{pid}/fd/{fd}")
        with open(f"/proc/{pid}/fdinfo/{fd}") as info:
            fields = {k: v.strip() for k, _, v in (line.partition(":") for line in info)}
    except OSError:
        return None
    if not path.startswith("/") or path.endswith(" (deleted)"):
        return None
    return path, fields


def mount_devices(pid: int) -> dict[str, int]:
    """mount id -> device number, from /proc/PID/mountinfo."""
    devices = {}
    try:
        with open(f"/proc/{pid}/mountinfo") as mounts:
            for line in mounts:
                mnt_id, _parent, majmin = line.split()[:3]
                major, _, minor = majmin.partition(":")
                devices[mnt_id] = os.makedev(int(major), int(minor))
    except (OSError, ValueError):
        return {}
    return devices

"""What /proc says about a process's descriptors, read without touching the files: a
stat(2) of a file on a hung network mount would block the caller for ever."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

# mountinfo writes a blank, tab, newline or backslash in a path as a 3-digit octal escape.
_OCTAL_ESCAPE = re.compile(r"\\([0-7]{3})")


@dataclass(frozen=True)
class Mount:
    """One line of /proc/PID/mountinfo (see proc(5))."""

    mount_id: int
    dev: int  # os.makedev(major, minor): the st_dev of files under it (bind mounts share it)
    root: str  # the directory of its filesystem mounted here ("/" unless a bind or subdir)
    point: str  # where it is mounted, escapes decoded
    fstype: str  # e.g. "nfs4", "fuse.s3fs"
    source: str  # e.g. "server:/export", "10.0.0.1@tcp:/scratch"
    super_options: frozenset[str] = frozenset()  # the per-superblock options, last field


def _unescape(field: str) -> str:
    return _OCTAL_ESCAPE.sub(lambda m: chr(int(m[1], 8)), field)


def parse_mountinfo(text: str) -> list[Mount]:
    """The mounts in /proc/PID/mountinfo text, in its order; malformed lines are skipped.

    A line is "ID PARENT MAJ:MIN ROOT POINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER";
    the optional fields ("shared:1 master:2") vary in number, so the fields after them are
    found from the "-" separator.
    """
    mounts = []
    for line in text.splitlines():
        fields = line.split(" ")
        try:
            sep = fields.index("-", 6)
            major, colon, minor = fields[2].partition(":")
            if not colon or len(fields) < sep + 3:
                continue
            mounts.append(
                Mount(
                    mount_id=int(fields[0]),
                    dev=os.makedev(int(major), int(minor)),
                    root=_unescape(fields[3]),
                    point=_unescape(fields[4]),
                    fstype=fields[sep + 1],
                    source=_unescape(fields[sep + 2]),
                    super_options=frozenset(fields[sep + 3].split(","))
                    if len(fields) > sep + 3
                    else frozenset(),
                )
            )
        except ValueError:  # no separator, or a number that is not one
            continue
    return mounts


def read_mountinfo(pid: int | str) -> str:
    """The text of /proc/PID/mountinfo (PID may be "self"); raises OSError."""
    # Paths are bytes to the kernel: undecodable ones survive as surrogates, like readlink's.
    with open(f"/proc/{pid}/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
        return f.read()


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
    try:
        text = read_mountinfo(pid)
    except OSError:
        return {}
    return {str(m.mount_id): m.dev for m in parse_mountinfo(text)}

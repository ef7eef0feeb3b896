"""A job that reads what a framework probes at import: CPU and NUMA topology, meminfo and
its own /proc entries (files of the kernel's own filesystems). Timed by bench/ab.py
--command; prints how many files it read."""

from __future__ import annotations

import os

TREES = ("/sys/devices/system/cpu", "/sys/devices/system/node")
PROC = ("/proc/self/status", "/proc/self/stat", "/proc/self/maps", "/proc/self/limits")
PROC += ("/proc/self/cgroup", "/proc/self/mountinfo", "/proc/meminfo", "/proc/cpuinfo")
PROC += ("/proc/stat", "/proc/loadavg")


def main() -> None:
    """Read every readable file under TREES and each of PROC."""
    paths = [os.path.join(d, n) for tree in TREES for d, _, names in os.walk(tree) for n in names]
    read = 0
    for path in [*paths, *PROC]:
        try:
            with open(path, "rb") as f:
                f.read()
            read += 1
        except OSError:
            pass  # write-only attributes
    print(f"{read} files read")


if __name__ == "__main__":
    main()

"""Give back the memory bcc's in-process compile leaves behind once the programs are loaded.

bcc compiles the BPF C with clang/LLVM inside the daemon. Afterwards two things stay
resident although the daemon never uses them again: the free heap the compiler left
(glibc keeps freed memory in its arenas) and the compiler's code pages (libLLVM and
libclang-cpp text, about 80 MiB, counted in the daemon's RSS while they stay mapped).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import re
from dataclasses import dataclass
from pathlib import Path

_MADV_DONTNEED = 4
_COMPILER_LIBRARIES = ("libLLVM", "libclang")
# start-end perms offset dev inode path
_MAPS_LINE = re.compile(r"^([0-9a-f]+)-([0-9a-f]+) (\S{4}) \S+ \S+ \S+\s+(\S.*)$")


@dataclass(frozen=True)
class Released:
    """What release_compiler_memory() did, for the start-up log."""

    rss_before: int  # bytes
    rss_after: int
    code_bytes: int  # size of the compiler code mappings dropped


def _rss() -> int:
    resident_pages = int(Path("/proc/self/statm").read_text().split()[1])
    return resident_pages * os.sysconf("SC_PAGE_SIZE")


def compiler_code_ranges(
    maps: str, libraries: tuple[str, ...] = _COMPILER_LIBRARIES
) -> list[tuple[int, int]]:
    """(start, end) of the executable, never-written mappings of `libraries` in a
    /proc/PID/maps text. Only r-xp: dropping those pages is always safe (they fault back in
    from the file), whereas writable or relocated (RELRO) pages hold private changes."""
    ranges = []
    for line in maps.splitlines():
        found = _MAPS_LINE.match(line)
        if found is None or found.group(3) != "r-xp":
            continue
        if any(os.path.basename(found.group(4)).startswith(lib) for lib in libraries):
            ranges.append((int(found.group(1), 16), int(found.group(2), 16)))
    return ranges


def release_compiler_memory() -> Released:
    """Return the compiler's free heap to the kernel (malloc_trim) and unmap its resident
    code pages (MADV_DONTNEED; they come back from the page cache if LLVM ever runs
    again). Call once, after the BPF programs are loaded; a no-op outside glibc."""
    before = _rss()
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    trim = getattr(libc, "malloc_trim", None)  # glibc only
    if trim is not None:
        trim(0)
    libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    dropped = 0
    for start, end in compiler_code_ranges(Path("/proc/self/maps").read_text()):
        if libc.madvise(start, end - start, _MADV_DONTNEED) == 0:
            dropped += end - start
    return Released(before, _rss(), dropped)

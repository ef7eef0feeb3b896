"""Kernel headers for bcc's compile step, prepared when no matching ones are installed.

bcc compiles the BPF C at start and wants a kernel build tree. Distribution kernels that
ship no matching headers still work with the generic header packages merged into one tree
(the `-common` package and the arch-specific one side by side), handed to bcc through
BCC_KERNEL_SOURCE. Struct layouts are never taken from these headers (see btf.py), so a
version mismatch is harmless. System directories are never modified: the merged tree is a
forest of symlinks under roard's state directory.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from roard.errors import PrerequisiteError

_SRC = Path("/usr/src")


@dataclass(frozen=True)
class HeaderTree:
    """Where bcc will find kernel headers, and how they were found."""

    path: Path
    how: str  # "installed", "environment" or "merged"


def find_headers(state_dir: Path, release: str | None = None, src: Path = _SRC) -> HeaderTree:
    """Return a header tree for this kernel, merging generic headers if needed."""
    release = release or os.uname().release
    env = os.environ.get("BCC_KERNEL_SOURCE")
    if env:
        return HeaderTree(Path(env), "environment")
    build = Path("/lib/modules") / release / "build"
    if (build / "include" / "generated").is_dir():
        return HeaderTree(build, "installed")
    arch_dir, common_dir = _pick_generic(src)
    merged = state_dir / "kernel-headers" / arch_dir.name
    stamp = merged / ".roard-merged"
    wanted = f"{common_dir}\n{arch_dir}\n"
    if not (stamp.is_file() and stamp.read_text() == wanted):
        shutil.rmtree(merged, ignore_errors=True)
        _merge([common_dir, arch_dir], merged)
        stamp.write_text(wanted)
    return HeaderTree(merged, "merged")


def _pick_generic(src: Path) -> tuple[Path, Path]:
    """The newest arch-specific header package and the common one it builds on."""
    candidates = sorted(
        (d for d in src.glob("linux-headers-*") if (d / "include" / "generated").is_dir()),
        key=lambda d: [int(n) for n in re.findall(r"\d+", d.name)],
        reverse=True,
    )
    for arch_dir in candidates:
        stem = arch_dir.name.rsplit("-", 1)[0]
        for common in (src / f"{stem}-common", src / stem):
            if common.is_dir() and common != arch_dir and (common / "include").is_dir():
                return arch_dir, common
    raise PrerequisiteError(
        "no kernel headers for bcc: install them (Debian/Ubuntu: "
        "apt-get install linux-headers-$(dpkg --print-architecture)) or set BCC_KERNEL_SOURCE"
    )


def _merge(sources: list[Path], dest: Path) -> None:
    """Overlay `sources` (later ones win) into `dest` as links: an entry only one source has
    is linked whole, file or directory; a directory several have becomes a real directory
    merged recursively. Nothing is ever written through a link into a system directory."""
    dest.mkdir(parents=True, exist_ok=True)
    names = sorted({p.name for src in sources for p in src.iterdir()})
    for name in names:
        having = [src / name for src in sources if (src / name).exists()]
        dirs = [p for p in having if p.is_dir()]
        if len(dirs) > 1 and len(dirs) == len(having):
            _merge(dirs, dest / name)
        elif having:
            (dest / name).symlink_to(os.path.realpath(having[-1]))

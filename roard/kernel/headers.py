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
        _symlink_tree(common_dir, merged)
        _symlink_tree(arch_dir, merged)
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


def _symlink_tree(source: Path, dest: Path) -> None:
    """Mirror `source` into `dest` as symlinks to files; later calls override earlier ones.

    Directory symlinks are followed and expanded, so `dest` holds only real directories and
    file links: a later tree can then add files beside an earlier tree's linked directory
    without ever writing through a link into a system directory.
    """
    for root, _dirs, files in os.walk(source, followlinks=True):
        rel = Path(root).relative_to(source)
        (dest / rel).mkdir(parents=True, exist_ok=True)
        for name in files:
            target = dest / rel / name
            if target.is_symlink() or target.exists():
                target.unlink()
            target.symlink_to(os.path.realpath(Path(root) / name))

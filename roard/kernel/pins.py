"""Maps pinned on bpffs: what the kernel tracked and aggregated outlives a roard restart.

The `tracked` filter, the `fdagg` aggregates and the ROARD_RUN key counters are pinned
under a directory named after the state dir, so a restarted roard (SIGTERM or SIGKILL)
finds the processes of the runs it was tracking and the I/O they did on descriptors still
open, and re-adopts them. The
pins are dropped when the daemon stops with no run open, and whenever the map layout or
sizes change (a new roard, another config): reusing a map of another shape would be wrong.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import structlog

from roard.config import KernelSizing

log = structlog.get_logger("roard.pins")

BPFFS = Path("/sys/fs/bpf")
_SIGNATURE_FILE = "pins.json"  # in the state dir: bpffs holds only pins and directories


def pin_dir(state_dir: Path, bpffs: Path = BPFFS) -> Path:
    """Where the maps of the roard using `state_dir` are pinned."""
    digest = hashlib.sha256(str(state_dir.resolve()).encode()).hexdigest()[:16]
    return bpffs / "roard" / digest


def _bpffs_mounted(bpffs: Path) -> bool:
    try:
        mounts = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return False
    return any(
        len(fields) > 2 and fields[1] == str(bpffs) and fields[2] == "bpf"
        for fields in (line.split() for line in mounts)
    )


def _ensure_bpffs(bpffs: Path) -> bool:
    """Mount bpffs where systemd would have; False (logged) when that is impossible."""
    if _bpffs_mounted(bpffs):
        return True
    result = subprocess.run(
        ["mount", "-t", "bpf", "bpf", str(bpffs)], capture_output=True, text=True, check=False
    )
    if result.returncode == 0 and _bpffs_mounted(bpffs):
        return True
    log.warning(
        "bpffs is not mounted and could not be mounted: runs cannot be re-adopted after a "
        f"restart; mount it with `mount -t bpf bpf {bpffs}`",
        error=result.stderr.strip(),
    )
    return False


def signature(sizing: KernelSizing, abi_header: Path) -> str:
    """What the pinned maps' shape depends on: their sizes and the ABI's structs."""
    digest = hashlib.sha256(abi_header.read_bytes()).hexdigest()[:16]
    return json.dumps(
        {"abi": digest, "tracked_max": sizing.tracked_max, "fdagg_max": sizing.fdagg_max},
        sort_keys=True,
    )


def prepare(
    state_dir: Path, sizing: KernelSizing, abi_header: Path, bpffs: Path = BPFFS
) -> Path | None:
    """The directory to pin this daemon's maps in (pins of another shape removed first),
    or None when bpffs is unavailable and the maps must be private."""
    if not _ensure_bpffs(bpffs):
        return None
    where = pin_dir(state_dir, bpffs)
    wanted = signature(sizing, abi_header)
    record = state_dir / _SIGNATURE_FILE
    try:
        previous = record.read_text()
    except OSError:
        previous = ""
    if previous != wanted and where.exists():
        log.warning("pinned maps of another layout or size dropped", pins=str(where))
        shutil.rmtree(where, ignore_errors=True)
    where.mkdir(parents=True, exist_ok=True)
    os.chmod(where, 0o700)
    record.write_text(wanted)
    return where


def remove(state_dir: Path, bpffs: Path = BPFFS) -> None:
    """Drop the pins of the roard using `state_dir` (nothing left to re-adopt)."""
    shutil.rmtree(pin_dir(state_dir, bpffs), ignore_errors=True)

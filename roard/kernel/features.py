"""What this host offers, and which tracing tier roard runs: probed, never assumed."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from roard.errors import PrerequisiteError

TRACEFS = Path("/sys/kernel/tracing")
BTF_PATH = Path("/sys/kernel/btf/vmlinux")

# Capabilities roard needs: CAP_SYS_ADMIN(21) or CAP_BPF(39) + CAP_PERFMON(38).
_CAP_SYS_ADMIN, _CAP_PERFMON, _CAP_BPF = 21, 38, 39


@dataclass
class Features:
    """Facts about the running kernel, gathered before anything is loaded."""

    kernel: str
    btf: bool
    tracefs: bool
    kprobes: bool
    bcc: bool
    privileged: bool

    @property
    def tier(self) -> str:
        """The tier roard runs. Only the tracepoint tier is implemented so far."""
        return "tracepoint"

    def tier_reason(self) -> str:
        """Why that tier was chosen, for doctor and status."""
        kp = "available" if self.kprobes else "unavailable (no kprobe_events in tracefs)"
        return f"syscall and sched tracepoints; kprobes {kp}; kprobe/fentry tiers not built yet"


def effective_caps() -> int:
    """The effective capability mask of this process."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("CapEff:"):
            return int(line.split()[1], 16)
    return 0


def privileged(caps: int | None = None) -> bool:
    """Whether this process may load BPF programs and read kernel memory."""
    mask = effective_caps() if caps is None else caps

    def has(bit: int) -> bool:
        return bool(mask >> bit & 1)

    return has(_CAP_SYS_ADMIN) or (has(_CAP_BPF) and has(_CAP_PERFMON))


def ensure_tracefs() -> None:
    """Mount tracefs when it is not mounted; bcc reads tracepoint formats from it."""
    if (TRACEFS / "events").is_dir():
        return
    result = subprocess.run(
        ["mount", "-t", "tracefs", "nodev", str(TRACEFS)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0 or not (TRACEFS / "events").is_dir():
        raise PrerequisiteError(
            f"tracefs is not available at {TRACEFS} and mounting it failed "
            f"({result.stderr.strip() or 'no events directory'}): "
            f"run `mount -t tracefs nodev {TRACEFS}` as root"
        )


def _present(path: Path) -> bool:
    """Whether a path exists, treating "permission denied" as absent (unprivileged doctor)."""
    try:
        return path.exists()
    except OSError:
        return False


def probe() -> Features:
    """Gather host facts without changing anything."""
    try:
        import bcc  # noqa: F401

        has_bcc = True
    except ImportError:
        has_bcc = False
    return Features(
        kernel=os.uname().release,
        btf=_present(BTF_PATH),
        tracefs=_present(TRACEFS / "events"),
        kprobes=_present(TRACEFS / "kprobe_events"),
        bcc=has_bcc,
        privileged=privileged(),
    )


def require(features: Features) -> None:
    """Raise the first missing prerequisite as an error that says how to fix it."""
    if not features.privileged:
        raise PrerequisiteError("roard needs root (or CAP_BPF + CAP_PERFMON): run it with sudo")
    if not features.btf:
        raise PrerequisiteError(
            f"the kernel has no BTF at {BTF_PATH}: roard needs a kernel built with "
            "CONFIG_DEBUG_INFO_BTF=y"
        )
    if not features.bcc:
        raise PrerequisiteError(
            "the bcc Python module is not importable: install python3-bpfcc and run "
            "deploy/setup.sh (it links the distribution's bcc into .venv)"
        )

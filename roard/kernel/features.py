"""What this host offers, and which tracing tier roard runs: probed, never assumed."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from roard.errors import PrerequisiteError
from roard.kernel import bpfsys
from roard.kernel.btf import Btf

TRACEFS = Path("/sys/kernel/tracing")
BTF_PATH = Path("/sys/kernel/btf/vmlinux")

# Capabilities roard needs: CAP_SYS_ADMIN(21) or CAP_BPF(39) + CAP_PERFMON(38).
_CAP_SYS_ADMIN, _CAP_PERFMON, _CAP_BPF = 21, 38, 39

# The kernel function every file read and write passes (io_uring's and aio's too), and the
# fields the VFS hook (bpf/vfs.c) reads beyond the loader's KERNEL_FIELDS: the task's
# flags (io_uring threads) and the syscall number its saved registers hold (x86_64).
VFS_FUNCTION = "security_file_permission"
VFS_FIELDS: tuple[tuple[str, str], ...] = (("task_struct", "flags"), ("pt_regs", "orig_ax"))


@dataclass
class Features:
    """Facts about the running kernel, gathered before anything is loaded."""

    kernel: str
    btf: bool
    tracefs: bool
    kprobes: bool
    bcc: bool
    privileged: bool


@dataclass(frozen=True)
class VfsPlan:
    """Tiers the VFS hook may attach with here, best first (none: io_uring and aio file
    I/O stay invisible), and why the others cannot."""

    tiers: tuple[str, ...]
    notes: tuple[str, ...]

    def describe(self) -> str:
        """One line for doctor: what the VFS hook will use, and why not better."""
        use = f"VFS hook by {self.tiers[0]}" if self.tiers else "no VFS hook"
        return "; ".join((use, *self.notes))


def vfs_plan(btf: Btf, kprobes: bool, wanted: str = "auto") -> VfsPlan:
    """Probe which tiers can attach the VFS hook to VFS_FUNCTION (`wanted`: the config's
    [kernel] tier). fentry is tried with a no-op program, in microseconds."""
    if wanted == "tracepoint":
        return VfsPlan((), ("[kernel] tier = tracepoint",))
    missing = [f"{s}.{m}" for s, m in VFS_FIELDS if not btf.has_member(s, m)]
    if missing:
        return VfsPlan((), (f"BTF lacks {', '.join(missing)} (the VFS hook is x86_64 only)",))
    tiers, notes = [], []
    if wanted in ("auto", "fentry"):  # only the tiers the config allows are probed
        func = btf.function_id(VFS_FUNCTION)
        refusal = "not in BTF" if func is None else bpfsys.fentry_refusal(func)
        if refusal is None:
            tiers.append("fentry")
        else:
            notes.append(f"fentry unavailable ({VFS_FUNCTION}: {refusal})")
    if wanted in ("auto", "kprobe"):
        if not kprobes:
            notes.append("kprobes unavailable (no kprobe_events in tracefs)")
        elif not _kernel_symbol(VFS_FUNCTION):
            notes.append(f"kprobes unavailable ({VFS_FUNCTION} not in /proc/kallsyms)")
        else:
            tiers.append("kprobe")
    return VfsPlan(tuple(tiers), tuple(notes))


def _kernel_symbol(name: str) -> bool:
    """Whether the kernel has a function `name` a kprobe can find."""
    try:
        with open("/proc/kallsyms") as symbols:
            return any(line.rstrip("\n").split(" ")[2:3] == [name] for line in symbols)
    except OSError:
        return False


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


def kprobes_available() -> bool:
    """Whether the kernel offers kprobes (CONFIG_KPROBE_EVENTS)."""
    return _present(TRACEFS / "kprobe_events")


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
        kprobes=kprobes_available(),
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

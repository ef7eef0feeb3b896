"""The state dir's health: why a write failed there, and what the administrator should do.

The spool, the hash cache and the embedded registry all live in the state dir. When one of
them cannot write, the daemon keeps running; this module turns the low-level error (an
OSError, or SQLite's "database or disk is full") into one message that names the dir, the
cause and the fix, for the log, `roarctl status`, /healthz and roarctl's warnings.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from roard.errors import StateDirError

# Less free space than this at start is "full": the spool could not take one batch.
_MIN_FREE_BYTES = 1 << 20


@dataclass(frozen=True)
class StateDirProblem:
    """Why the state dir cannot be written, and the fix."""

    state_dir: Path
    cause: str  # "read-only", "full" or "error"
    error: str  # the OS or SQLite error, as reported
    fix: str
    since: float = field(default_factory=time.time)

    @property
    def message(self) -> str:
        """One line for the log and the user."""
        return f"cannot write to the state dir {self.state_dir} ({self.error}): {self.fix}"

    def as_dict(self) -> dict[str, object]:
        """For the status document."""
        return {
            "state_dir": str(self.state_dir),
            "cause": self.cause,
            "error": self.error,
            "fix": self.fix,
            "since": round(self.since, 3),
            "message": self.message,
        }


def diagnose(state_dir: Path, exc: BaseException) -> StateDirProblem:
    """What a failed write in `state_dir` means: the file system is read-only, full, or
    something else (then the error speaks for itself)."""
    error = str(exc) or type(exc).__name__
    try:
        fs = os.statvfs(state_dir)
    except OSError:
        fs = None
    if fs is not None and fs.f_flag & os.ST_RDONLY:
        fix = f"make {state_dir} writable again (remount it read-write)"
        return StateDirProblem(state_dir, "read-only", error, fix)
    if fs is not None and fs.f_bavail * fs.f_frsize < _MIN_FREE_BYTES:
        return StateDirProblem(state_dir, "full", error, f"free space in {state_dir}")
    fix = f"check that {state_dir} is writable, has free space and a healthy disk"
    return StateDirProblem(state_dir, "error", error, fix)


def require_writable(state_dir: Path) -> None:
    """At start: raise StateDirError, with the fix, if the state dir is read-only, full,
    or refuses a small write."""
    probe = state_dir / ".roard-write-test"
    try:
        fs = os.statvfs(state_dir)
        if fs.f_flag & os.ST_RDONLY:
            raise OSError(30, "Read-only file system")
        if fs.f_bavail * fs.f_frsize < _MIN_FREE_BYTES:
            raise OSError(28, f"No space left on device (under {_MIN_FREE_BYTES >> 20} MiB free)")
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, b"\0" * 4096)
            os.fsync(fd)
        finally:
            os.close(fd)
        probe.unlink()
    except OSError as exc:
        problem = diagnose(state_dir, exc)
        raise StateDirError(f"{problem.message}; then start roard again") from None

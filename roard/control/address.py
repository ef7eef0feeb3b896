"""Where the control socket is, and what to tell a user when nothing answers there: a
module of its own so that roarctl finds it without loading the daemon's configuration."""

from __future__ import annotations

import os
from pathlib import Path

from roard.errors import DaemonUnavailable

DEFAULT_SOCKET = Path("/run/roard/roard.sock")


def socket_path(flag: str | None = None, environ: dict[str, str] | None = None) -> Path:
    """The control socket roarctl talks to: flag, then ROARD_SOCKET, then the default."""
    env = os.environ if environ is None else environ
    return Path(flag or env.get("ROARD_SOCKET") or DEFAULT_SOCKET)


def not_running(socket: Path) -> DaemonUnavailable:
    """The error for a socket nothing answers on."""
    return DaemonUnavailable(
        f"roard is not running (nothing answers on {socket}): start it with "
        "`sudo roard run --embedded`, or point ROARD_SOCKET at its socket"
    )


def check_present(socket: Path) -> None:
    """Raise DaemonUnavailable, saying what to do, when the socket is not there to call."""
    try:
        present = socket.exists()
    except PermissionError:
        raise DaemonUnavailable(
            f"cannot reach {socket}: permission denied on a directory above it; "
            "ask an administrator to make it searchable, or use another ROARD_SOCKET"
        ) from None
    if not present:
        raise not_running(socket)

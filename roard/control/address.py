"""Where the control socket is, and what to tell a user when nothing answers there: a
module of its own so that roarctl finds it without loading the daemon's configuration (nor
pathlib: roarctl's tag form starts without it)."""

from __future__ import annotations

import os

from roard.errors import DaemonUnavailable

DEFAULT_SOCKET = "/run/roard/roard.sock"


def socket_path(flag: str | None = None, environ: dict[str, str] | None = None) -> str:
    """The control socket roarctl talks to: flag, then ROARD_SOCKET, then the default."""
    env = os.environ if environ is None else environ
    return flag or env.get("ROARD_SOCKET") or DEFAULT_SOCKET


def not_running(socket: str | os.PathLike[str]) -> DaemonUnavailable:
    """The error for a socket nothing answers on."""
    return DaemonUnavailable(
        f"roard is not running (nothing answers on {os.fspath(socket)}): start it with "
        "`sudo roard run --embedded`, or point ROARD_SOCKET at its socket"
    )


def check_present(socket: str | os.PathLike[str]) -> None:
    """Raise DaemonUnavailable, saying what to do, when the socket is not there to call."""
    try:
        os.stat(socket)
    except PermissionError:
        raise DaemonUnavailable(
            f"cannot reach {os.fspath(socket)}: permission denied on a directory above it; "
            "ask an administrator to make it searchable, or use another ROARD_SOCKET"
        ) from None
    except OSError:
        raise not_running(socket) from None

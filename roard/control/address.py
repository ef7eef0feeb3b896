"""Where the control socket is: a module of its own so that roarctl finds it without
loading the daemon's configuration."""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_SOCKET = Path("/run/roard/roard.sock")


def socket_path(flag: str | None = None, environ: dict[str, str] | None = None) -> Path:
    """The control socket roarctl talks to: flag, then ROARD_SOCKET, then the default."""
    env = os.environ if environ is None else environ
    return Path(flag or env.get("ROARD_SOCKET") or DEFAULT_SOCKET)

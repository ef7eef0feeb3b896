"""systemd's notify protocol (sd_notify): readiness, watchdog pings, stopping.

A datagram to the socket named by $NOTIFY_SOCKET ("@name" is an abstract socket). Without
that variable (not under systemd, or Type=simple) every call does nothing.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable

import structlog

log = structlog.get_logger("roard.notify")


class Notifier:
    """Tells systemd how the daemon is doing; pings the watchdog from a thread."""

    def __init__(self, environ: dict[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET", "")
        self._address = "\0" + address[1:] if address.startswith("@") else address
        # WATCHDOG_USEC applies to this process only (WATCHDOG_PID, when set, says which).
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        owned = not pid or pid == str(os.getpid())
        self.watchdog_seconds = int(usec) / 1e6 if usec.isdigit() and owned else 0.0
        self._stop = threading.Event()

    @property
    def enabled(self) -> bool:
        """Whether a service manager listens."""
        return bool(self._address)

    def send(self, *fields: str) -> None:
        """Send `KEY=VALUE` fields; failures are logged, never raised (systemd going away
        must not take the daemon down)."""
        if not self._address:
            return
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
                s.sendto("\n".join(fields).encode(), self._address)
        except OSError as exc:
            log.warning("cannot notify the service manager", error=str(exc))

    def ready(self, status: str) -> None:
        """Startup is complete: systemd may start what depends on roard."""
        self.send("READY=1", f"STATUS={status}", f"MAINPID={os.getpid()}")

    def stopping(self) -> None:
        """Shutdown has begun."""
        self._stop.set()
        self.send("STOPPING=1", "STATUS=stopping")

    def start_watchdog(self, healthy: Callable[[], bool]) -> None:
        """Ping the watchdog at half its interval while `healthy()` holds, so a wedged
        daemon (a stuck ring reader) is restarted by systemd."""
        if not self.enabled or not self.watchdog_seconds:
            return

        def loop() -> None:
            while not self._stop.wait(self.watchdog_seconds / 2):
                if healthy():
                    self.send("WATCHDOG=1")
                else:
                    log.error("health check failed: not pinging the watchdog")

        threading.Thread(target=loop, name="roard-watchdog", daemon=True).start()

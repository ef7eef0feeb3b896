"""SIGTERM and SIGINT, as systemd and a terminal stop roard: caught from `catch()` on and
waited for by the main thread."""

from __future__ import annotations

import signal
import time

# How soon the main thread notices a signal that reached another thread.
_POLL_SECONDS = 0.2


class StopSignal:
    """A stop request by signal. The handler only sets a flag: it runs between two
    bytecodes of the main thread, which may then hold the very lock that an Event.set()
    would take (a deadlock). `wait()` polls: the kernel may deliver the signal to any
    thread, and a main thread blocked on a lock without a timeout would never run the
    handler."""

    def __init__(self) -> None:
        self._caught = False

    def catch(self) -> None:
        """Install the handlers (from now on, a SIGTERM is a stop request)."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)

    def _on_signal(self, signum: int, frame: object) -> None:
        self._caught = True

    def wait(self) -> None:
        """Block until SIGTERM or SIGINT arrived (since `catch()`)."""
        while not self._caught:
            time.sleep(_POLL_SECONDS)

"""The observer: polls the ring buffer, decodes records and hands events to the tracker.

It never blocks on hashing, storage or the network: the tracker only updates memory and
queues work for other threads.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Protocol

import structlog

from roard.errors import KernelError
from roard.kernel.decode import Decoder, Event

log = structlog.get_logger("roard.observer")


class Ring(Protocol):
    """The ring buffer side of the loaded programs."""

    def on_event(self, callback: Callable[[bytes], None]) -> None: ...
    def poll(self, timeout_ms: int) -> None: ...


class EventHandler(Protocol):
    """The tracker's event side."""

    def handle(self, event: Event) -> None: ...
    def note_lost(self, count: int, reason: str) -> None: ...


class Observer:
    """A thread that drains the ring buffer into the tracker."""

    def __init__(self, ring: Ring, decoder: Decoder, handler: EventHandler) -> None:
        self._ring = ring
        self._decoder = decoder
        self._handler = handler
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="roard-observer", daemon=True)
        self.counts: Counter[str] = Counter()
        self.last_poll = time.monotonic()  # the health check's sign of life
        ring.on_event(self._on_record)

    def _on_record(self, data: bytes) -> None:
        try:
            event = self._decoder.decode(data)
        except KernelError as exc:
            self.counts["undecodable"] += 1
            self._handler.note_lost(1, str(exc))
            return
        self.counts[type(event).__name__] += 1
        try:
            self._handler.handle(event)
        except Exception:
            # One bad event must not stop observation of every other run; but the runs it
            # may have belonged to are no longer known to be complete.
            self.counts["handler_errors"] += 1
            log.exception("event handling failed", event=repr(event))
            self._handler.note_lost(1, "internal error while recording an event")

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._ring.poll(100)
            self.last_poll = time.monotonic()

    def alive(self, within: float = 30.0) -> bool:
        """Whether the reader thread runs and polled the ring in the last `within` s."""
        return self._thread.is_alive() and time.monotonic() - self.last_poll < within

    def start(self) -> None:
        """Start polling."""
        self._thread.start()

    def stop(self) -> None:
        """Stop after the current poll, draining what is buffered."""
        self._stop.set()
        self._thread.join()
        self._ring.poll(0)

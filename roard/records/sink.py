"""Where records go: a sequence number each, then the registry (in-process for now)."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Sequence
from typing import Protocol

from roard.v1 import records_pb2 as pb


class RecordStore(Protocol):
    """What a sink delivers to (the embedded registry's storage)."""

    def ingest(self, records: Sequence[pb.Record]) -> int: ...


class EmbeddedSink:
    """Numbers records and stores them in the in-process registry."""

    def __init__(self, store: RecordStore) -> None:
        self._store = store
        # Seeded from the clock so numbers keep growing across daemon restarts.
        self._seq = itertools.count(time.time_ns() // 1000)
        self._lock = threading.Lock()
        self.delivered = 0

    def emit(self, records: Sequence[pb.Record]) -> None:
        """Deliver records, in order, durably."""
        with self._lock:
            for record in records:
                record.seq = next(self._seq)
            self._store.ingest(records)
            self.delivered += len(records)

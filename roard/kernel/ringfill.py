"""How full the events ring buffer is, read from its producer and consumer positions.

The kernel exposes both positions on the first two pages of a ring buffer map's mmap
(consumer, then producer); bytes in use = producer - consumer. This is read in userspace
rather than with bpf_ringbuf_query() in the BPF programs because bcc 0.26 cannot pass a
ring buffer map to that helper (it rewrites only map.ringbuf_output/reserve/submit/discard).
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass

_POS = struct.Struct("=Q")  # unsigned long, host byte order


@dataclass(frozen=True)
class RingFill:
    """Ring buffer occupancy: now, and the most seen at the start of any drain."""

    used_bytes: int
    size_bytes: int
    max_used_bytes: int

    @property
    def ratio(self) -> float:
        """Fraction of the ring in use now."""
        return self.used_bytes / self.size_bytes

    @property
    def max_ratio(self) -> float:
        """Highest fraction in use since the daemon started."""
        return self.max_used_bytes / self.size_bytes


class RingGauge:
    """Samples a ring buffer map's fill; sample() at the start of each drain, when the
    ring holds the most it will hold until the reader catches up, keeps the high-water
    mark."""

    def __init__(self, map_fd: int, size_bytes: int) -> None:
        page = mmap.PAGESIZE
        self._consumer = mmap.mmap(map_fd, page, mmap.MAP_SHARED, mmap.PROT_READ, offset=0)
        self._producer = mmap.mmap(map_fd, page, mmap.MAP_SHARED, mmap.PROT_READ, offset=page)
        self._size = size_bytes
        self._max = 0

    def used(self) -> int:
        """Bytes written by the kernel and not yet consumed."""
        consumer: int = _POS.unpack_from(self._consumer)[0]
        producer: int = _POS.unpack_from(self._producer)[0]
        return max(0, min(producer - consumer, self._size))

    def sample(self) -> None:
        """Fold the current fill into the high-water mark."""
        self._max = max(self._max, self.used())

    def fill(self) -> RingFill:
        """The fill now and its high-water mark."""
        used = self.used()
        self._max = max(self._max, used)
        return RingFill(used, self._size, self._max)

    def close(self) -> None:
        """Unmap the position pages."""
        self._consumer.close()
        self._producer.close()

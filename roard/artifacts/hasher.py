"""BLAKE3 hashing off the event path: a worker pool, multi-threaded for large files."""

from __future__ import annotations

import os
import stat
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

import blake3

from roard.artifacts.hashcache import FileStamp, HashCache

# Below this size one thread is fastest; above it blake3 spreads each chunk over all cores.
_MULTITHREAD_BYTES = 16 << 20
_CHUNK = 16 << 20
# Never follow a final symlink, never block on a FIFO or device: the daemon runs as root
# and the paths come from users' programs.
_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC


class NotRegularFile(OSError):
    """The path no longer names a regular file (replaced by a FIFO, device, symlink...)."""


class FileKeptChanging(OSError):
    """The file changed during each of three reads: no hash can be trusted."""


@dataclass(frozen=True)
class Digest:
    """A file's content hash together with the identity it was computed for."""

    path: str
    hash: str  # "blake3:<64 hex>"
    stamp: FileStamp


class Progress(Protocol):
    """Where a hash reports how far it got (roard.tracking.runs.HashProgress)."""

    def expect(self, size: int) -> None: ...
    def advance(self, count: int) -> None: ...
    def file_done(self) -> None: ...


def hash_file(path: str, progress: Progress | None = None) -> tuple[str, FileStamp]:
    """Hash a regular file as it is now, through one descriptor (reads, never mmap: a file
    truncated under a mapping would kill the daemon with SIGBUS). Raises FileKeptChanging
    when it changed during each of three reads, NotRegularFile, or the OSError of open."""
    fd = os.open(path, _OPEN_FLAGS)
    try:
        with os.fdopen(fd, "rb", buffering=0, closefd=False) as f:
            for _attempt in range(3):
                st = os.fstat(fd)
                if not stat.S_ISREG(st.st_mode):
                    raise NotRegularFile(f"{path} is not a regular file")
                before = FileStamp.of(st)
                threads = blake3.blake3.AUTO if before.size >= _MULTITHREAD_BYTES else 1
                hasher = blake3.blake3(max_threads=threads)
                f.seek(0)
                while chunk := f.read(_CHUNK):
                    hasher.update(chunk)
                    if progress is not None:
                        progress.advance(len(chunk))
                if FileStamp.of(os.fstat(fd)) == before:
                    return f"blake3:{hasher.hexdigest()}", before
    finally:
        os.close(fd)
    raise FileKeptChanging(f"{path} kept changing while it was hashed")


class Hasher:
    """Hashes files in a thread pool, answering from the cache when the file is unchanged."""

    def __init__(self, cache: HashCache, workers: int) -> None:
        self._cache = cache
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="roard-hash")
        self._lock = threading.Lock()
        self.pending = 0  # queued or running: the hash queue's depth
        self.bytes_hashed = 0
        self.files_hashed = 0
        self.seconds_hashing = 0.0  # summed over workers: bytes_hashed / this = throughput

    def submit(self, path: str, progress: Progress | None = None) -> Future[Digest]:
        """Hash `path` in the background; the future raises OSError if it is unreadable."""
        with self._lock:
            self.pending += 1
        future = self._pool.submit(self.digest, path, progress)
        future.add_done_callback(self._done)
        return future

    def _done(self, _future: Future[Digest]) -> None:
        with self._lock:
            self.pending -= 1

    def cached(self, path: str) -> Digest | None:
        """The hash of `path` if the cache holds it for the file as it is now (a stat, no
        read); None when it must be hashed. Raises OSError if the file is gone."""
        st = os.lstat(path)
        if not stat.S_ISREG(st.st_mode):
            raise NotRegularFile(f"{path} is not a regular file")
        stamp = FileStamp.of(st)
        found = self._cache.get(stamp)
        return Digest(path, found, stamp) if found is not None else None

    def submit_uncached(self, path: str, progress: Progress | None = None) -> Future[Digest]:
        """A future for the hash of `path`: already resolved from the cache when it can be,
        which saves the pool's round trip for files hashed ahead. Bytes that must be read
        are reported to `progress`."""
        done: Future[Digest] = Future()
        try:
            hit = self.cached(path)
            if hit is None and progress is not None:
                progress.expect(os.lstat(path).st_size)
        except OSError as exc:
            done.set_exception(exc)
            return done
        if hit is None:
            return self.submit(path, progress)
        done.set_result(hit)
        return done

    def digest(self, path: str, progress: Progress | None = None) -> Digest:
        """Hash `path` now (in the caller's thread)."""
        try:
            hit = self.cached(path)
            if hit is not None:
                return hit
            started = time.monotonic()
            digest, stamp = hash_file(path, progress)
            spent = time.monotonic() - started
        finally:
            if progress is not None:
                progress.file_done()
        self._cache.put(stamp, digest)
        with self._lock:  # workers finish concurrently
            self.bytes_hashed += stamp.size
            self.files_hashed += 1
            self.seconds_hashing += spent
        return Digest(path, digest, stamp)

    def flush(self) -> None:
        """Persist the hashes computed so far."""
        self._cache.flush()

    def close(self) -> None:
        """Finish queued work and stop the pool."""
        self._pool.shutdown(wait=True)

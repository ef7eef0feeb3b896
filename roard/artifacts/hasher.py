"""BLAKE3 hashing off the event path: a worker pool with a deadline on every file.

A file on a hung mount (NFS, FUSE) can block open(2), stat(2) or read(2) for ever, and a
Python thread cannot be interrupted. So every hash runs in a pool thread under a deadline,
pushed on while its read brings bytes: past it, a watchdog settles the file as unhashed,
writes the blocked thread off and starts a replacement, so the pool keeps its capacity and
nobody waiting on the hash waits longer.
"""

from __future__ import annotations

import contextlib
import math
import os
import queue
import stat
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

import blake3
import structlog

from roard.artifacts.changetimes import ChangeTimes
from roard.artifacts.hashcache import FileStamp, HashCache
from roard.config import HashLimits

log = structlog.get_logger("roard.hasher")

# Below this size one thread is fastest; above it blake3 spreads each chunk over all cores.
_MULTITHREAD_BYTES = 16 << 20
# Read into one buffer per file: 4 MiB stays in cache while blake3 hashes it (3.8 GiB/s
# from tmpfs here, against 3.2 with 16 MiB, and 2.9 with a new bytes object per read).
_CHUNK = 4 << 20
# A worker hashing a file this large steps aside: queued files wake another worker
# rather than wait for it (an input must be hashed soon after it was read).
_LONG_HASH_BYTES = 1 << 20
# A queue longer than this per busy worker wakes one more.
_QUEUE_PER_WORKER = 32
# A worker this long on one file (a slow or hung mount) leaves the queue to another.
_NUDGE_SECONDS = 0.05
# Files smaller than that are read in pieces of their own size; files that report size 0
# (/proc, /sys) in pieces of this: a sysctl read larger than the kernel can kmalloc fails
# with ENOMEM.
_SMALL_CHUNK = 64 << 10
# Never follow a final symlink, never block on a FIFO or device: the daemon runs as root
# and the paths come from users' programs.
_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC


class Unhashed(OSError):
    """No hash could be taken for a file that exists; the message says why (without the
    path) and `reason` names the kind of why, as counted in the daemon's status."""

    reason = "unreadable"

    def __init__(self, message: str, size: int = 0) -> None:
        super().__init__(message)
        self.size = size  # from stat, when it got that far


class NotRegularFile(Unhashed):
    """The path no longer names a regular file (replaced by a FIFO, device, symlink...)."""

    reason = "not_regular"


class FileKeptChanging(Unhashed):
    """The file changed during each of three reads: no hash can be trusted."""

    reason = "changing"


class FileTooLarge(Unhashed):
    """The file is larger than hash_max_bytes: decided from stat, never read."""

    reason = "size"


class HashTimedOut(Unhashed):
    """Hashing took longer than hash_timeout_seconds (a hung or very slow mount)."""

    reason = "timeout"


class HashersStuck(Unhashed):
    """Too many hash threads are blocked on unresponsive files to start another; or the
    daemon is stopping."""

    reason = "stuck"


class KernelGenerated(Unhashed):
    """On a filesystem whose content the kernel makes when it is read (proc, sysfs,
    tracefs...): never read to be hashed, as a later read is not what the run saw."""

    reason = "generated"


class Reading(Protocol):
    """Where a file's read reports the bytes it got through."""

    def advance(self, count: int) -> None: ...


class Progress(Reading, Protocol):
    """Where a hash reports how far it got (roard.tracking.runs.HashProgress)."""

    def expect(self, size: int) -> None: ...
    def file_done(self) -> None: ...


class _SharedRead:
    """A large file one thread is reading for its hash: its bytes also go to the progress
    of each caller waiting for that hash (`roarctl tag` shows how far it got), and push on
    the deadline of each pool worker reading or waiting for it."""

    __slots__ = ("_done", "_followers", "_keep_alive", "_lock")

    def __init__(self, own: Progress | None, keep_alive: Callable[[], None] | None) -> None:
        self._lock = threading.Lock()  # a follower gets each chunk once: so far, or as read
        self._done = 0
        self._followers = [own] if own is not None else []
        self._keep_alive = [keep_alive] if keep_alive is not None else []

    def follow(
        self, progress: Progress | None, size: int, keep_alive: Callable[[], None] | None
    ) -> None:
        """Report this read to `progress` too, from here on and what it has read so far,
        and have it push on the deadline `keep_alive` pushes."""
        if progress is not None:
            progress.expect(size)
        with self._lock:
            if progress is not None:
                self._followers.append(progress)
            if keep_alive is not None:
                self._keep_alive.append(keep_alive)
            done = self._done
        if progress is not None:
            progress.advance(done)

    def advance(self, count: int) -> None:
        """`count` more bytes read, for every follower too."""
        with self._lock:
            self._done += count
            followers = tuple(self._followers)
            keep_alive = tuple(self._keep_alive)
        for progress in followers:
            progress.advance(count)
        for push in keep_alive:
            push()


# Every kind of why a file is recorded unhashed (the keys of the status counts).
UNHASHED_REASONS = tuple(
    cls.reason
    for cls in (
        Unhashed,
        NotRegularFile,
        FileKeptChanging,
        FileTooLarge,
        HashTimedOut,
        HashersStuck,
        KernelGenerated,
    )
)


@dataclass(frozen=True)
class Digest:
    """A file's content hash together with the identity it was computed for."""

    path: str
    hash: str  # "blake3:<64 hex>"
    stamp: FileStamp


def _file_type(mode: int) -> str:
    """A human name for a non-regular file type."""
    for test, name in (
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISLNK, "a symlink"),
        (stat.S_ISDIR, "a directory"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def _checked(st: os.stat_result, max_bytes: int) -> FileStamp:
    """The stamp of a stat that may be hashed; raises NotRegularFile or FileTooLarge."""
    if not stat.S_ISREG(st.st_mode):
        raise NotRegularFile(f"not a regular file: {_file_type(st.st_mode)}")
    if st.st_size > max_bytes:
        raise FileTooLarge(
            f"{st.st_size} bytes, over hash_max_bytes ({max_bytes}): not read; raise "
            "hash_max_bytes in roard.toml to hash files this large",
            st.st_size,
        )
    return FileStamp.of(st)


def hash_file(
    path: str, progress: Reading | None = None, max_bytes: int = HashLimits.max_bytes
) -> tuple[str, FileStamp]:
    """Hash a regular file as it is now, through one descriptor (reads, never mmap: a file
    truncated under a mapping would kill the daemon with SIGBUS). Raises FileKeptChanging
    when it changed during each of three reads, NotRegularFile, FileTooLarge, or the
    OSError of open."""
    fd = os.open(path, _OPEN_FLAGS)
    try:
        for _attempt in range(3):
            before = _checked(os.fstat(fd), max_bytes)
            hasher = _read_small(fd, before.size, progress) or _read_stream(
                fd, before.size, progress
            )
            if FileStamp.of(os.fstat(fd)) == before:
                return f"blake3:{hasher.hexdigest()}", before
    finally:
        os.close(fd)
    raise FileKeptChanging("kept changing while it was hashed (three tries)")


def _read_small(fd: int, size: int, progress: Reading | None) -> blake3.blake3 | None:
    """A file of at most _SMALL_CHUNK bytes hashed from one read (a job's thousands of
    small outputs took twice as long through a file object and a buffer); None when the
    read did not return exactly `size` bytes (a file that grew, or a short read)."""
    if not 0 < size <= _SMALL_CHUNK:
        return None
    data = os.pread(fd, size + 1, 0)
    if len(data) != size:
        return None
    if progress is not None:
        progress.advance(size)
    return blake3.blake3(data)


def _read_stream(fd: int, size: int, progress: Reading | None) -> blake3.blake3:
    """A file hashed from its start to its end in chunks, reporting to `progress` (files
    that report size 0, as /proc's do, in pieces of _SMALL_CHUNK)."""
    hasher = blake3.blake3(max_threads=blake3.blake3.AUTO if size >= _MULTITHREAD_BYTES else 1)
    if size >= _MULTITHREAD_BYTES and _read_overlapped(fd, hasher, progress):
        return hasher
    with os.fdopen(fd, "rb", buffering=0, closefd=False) as f:
        f.seek(0)  # an earlier try read to the end
        buffer = memoryview(bytearray(min(_CHUNK, size or _SMALL_CHUNK)))
        while n := f.readinto(buffer):
            hasher.update(buffer[:n])
            if progress is not None:
                progress.advance(n)
    return hasher


def _read_overlapped(fd: int, hasher: blake3.blake3, progress: Reading | None) -> bool:
    """Hash a large file while a thread of its own reads the next chunk: copying a file
    out of the page cache took as long as hashing it on every core (512 MiB on 2 vCPUs:
    153 ms one after the other, 94 ms overlapped). Both sides release the GIL. False,
    with nothing read, when no thread could be started."""
    buffers = [memoryview(bytearray(_CHUNK)) for _ in range(2)]
    free: queue.SimpleQueue[int] = queue.SimpleQueue()  # buffers to read into; -1: stop
    filled: queue.SimpleQueue[tuple[int, int] | OSError] = queue.SimpleQueue()
    free.put(0)
    free.put(1)

    def read() -> None:
        offset = 0
        try:
            while (i := free.get()) >= 0:
                n = os.preadv(fd, [buffers[i]], offset)
                offset += n
                filled.put((i, n))
                if not n:
                    return
        except OSError as exc:
            filled.put(exc)

    reader = threading.Thread(target=read, name="roard-hash-read", daemon=True)
    try:
        reader.start()
    except RuntimeError:  # out of threads: the caller reads it in turn
        return False
    try:
        while True:
            got = filled.get()
            if isinstance(got, OSError):
                raise got
            i, n = got
            if not n:
                return True
            hasher.update(buffers[i][:n])
            if progress is not None:
                progress.advance(n)
            free.put(i)
    finally:
        free.put(-1)
        reader.join()  # before the caller closes the descriptor it reads


T = TypeVar("T")


class Pending(Generic[T]):
    """A result the pool has yet to give: what the tracker needs of a Future (done,
    running, result), lighter. A job that reads 2,000 shards makes 2,000 of these; a
    concurrent.futures.Future each, with its own Condition and done callback, was a tenth
    of the daemon's Python time. Waiters share one condition on the pool's lock."""

    __slots__ = ("_error", "_settled", "_state", "_value")

    def __init__(self, settled: threading.Condition) -> None:
        self._settled = settled  # notified whenever a result of the pool is settled
        self._state = "queued"  # then "running", then "done"
        self._value: T | None = None
        self._error: BaseException | None = None

    def done(self) -> bool:
        """Whether the result (or its error) is there."""
        return self._state == "done"

    def running(self) -> bool:
        """Whether a worker has taken it up (a later read of the file is not in it)."""
        return self._state == "running"

    def result(self, timeout: float | None = None) -> T:
        """The result, waiting up to `timeout` seconds (None: as long as it takes); raises
        its error, or TimeoutError."""
        if self._state != "done":
            with self._settled:
                if not self._settled.wait_for(self.done, timeout):
                    raise TimeoutError(f"no result within {timeout} s")
        if self._error is not None:
            raise self._error
        return self._value  # type: ignore[return-value]  # set before the state

    def start(self) -> None:
        """A worker took it up (the pool's, with its lock held)."""
        self._state = "running"

    def give(self, outcome: T | BaseException) -> None:
        """Settle it with a result or an error and wake its waiters (the pool's)."""
        with self._settled:
            if isinstance(outcome, BaseException):
                self._error = outcome
            else:
                self._value = outcome
            self._state = "done"
            self._settled.notify_all()


def _regular_stamps(paths: Sequence[str]) -> dict[str, FileStamp]:
    """lstat each path; those that are regular files now, by path."""
    found = {}
    for path in paths:
        try:
            st = os.lstat(path)
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode):
            found[path] = FileStamp.of(st)
    return found


@dataclass(slots=True)
class _Job:
    what: str  # the file (or files) it is about, for the log
    work: Callable[[_Worker], object]  # run by a pool thread under the deadline
    result: Pending[Any]
    progress: Progress | None = None


@dataclass
class _Worker:
    """A pool thread and the file it is on (None: idle)."""

    thread: threading.Thread | None = None
    job: _Job | None = None
    deadline: float = 0.0
    written_off: bool = False
    idle: bool = False  # waiting for a job
    aside: bool = False  # on a long hash: the queue should not wait for it


class Hasher:
    """Hashes files in a thread pool, answering from the cache when the file is unchanged.

    Every file gets `limits.timeout_seconds` from its first stat to its digest, and again
    from each chunk a large file's read brings. A thread still blocked then is written off
    (it exits whenever its system call returns) and replaced; while `limits.stuck_max`
    written-off threads are still blocked, new files are settled as unhashed at once
    instead of feeding more threads to a dead mount.
    """

    def __init__(
        self,
        cache: HashCache,
        workers: int,
        limits: HashLimits | None = None,
        change_window_ns: Callable[[int], int] | None = None,
    ) -> None:
        """`change_window_ns(dev)`: how long after a change to a file on that device a later
        change may keep its stamp (ChangeTimes, from the mount table, by default)."""
        self._cache = cache
        self.limits = limits or HashLimits()
        self._change_window_ns = change_window_ns or ChangeTimes().window_ns
        # One lock, two wait queues: a queued file wakes one worker, not every worker and
        # the watchdog (a herd per file starved the pool when thousands of small files
        # were queued).
        lock = threading.RLock()
        self._cond = threading.Condition(lock)  # workers wait here for files
        self._watch_cond = threading.Condition(lock)  # the watchdog waits here
        self._settled = threading.Condition(lock)  # waiters on results wait here
        self._watch_until = math.inf  # when the watchdog wakes next (inf: when notified)
        self._queue: deque[_Job] = deque()
        self._woken = 0  # workers notified that have not taken up the queue yet
        # Outputs to hash ahead, in order (a dict as an ordered set), and the one job that
        # takes them (None: none queued or running).
        self._ahead: dict[str, None] = {}
        self._ahead_job: _Job | None = None
        # Files being read now, by (dev, ino): a second ask for one waits for the first
        # (an output hashed ahead as its job ends, asked for again by its run's end).
        self._reading: dict[tuple[int, int], _SharedRead] = {}
        self._reading_waiters = 0
        self._workers: list[_Worker] = []
        self._closing = False
        self.pending = 0  # queued or running: the hash queue's depth
        self.bytes_hashed = 0
        self.files_hashed = 0
        self.seconds_hashing = 0.0  # summed over workers: bytes_hashed / this = throughput
        self.stuck = 0  # written-off threads still blocked in a system call
        self.timeouts = 0  # files abandoned at their deadline
        for _ in range(workers):
            self._spawn()
        self._watchdog = threading.Thread(target=self._watch, name="roard-hash-watch", daemon=True)
        self._watchdog.start()

    @property
    def refusing(self) -> bool:
        """Whether new files are settled unhashed at once (too many threads stuck)."""
        return self.stuck >= self.limits.stuck_max

    def submit(self, path: str, progress: Progress | None = None) -> Pending[Digest]:
        """Hash `path` in the background; the result raises Unhashed (with the reason) or
        the OSError of a file that cannot be opened, never later than the deadline after
        a worker takes it up. Bytes that must be read are reported to `progress`."""
        return self._enqueue(self._job(path, lambda me: self.digest(path, progress, me), progress))

    @property
    def backlog(self) -> int:
        """Files and jobs waiting or being hashed (the status's hash queue)."""
        return self.pending + len(self._ahead)

    def ahead(self, path: str) -> None:
        """Hash `path` when a worker is free, for the cache only: an output a running job
        closed, which the cache then answers for at run end if it is unchanged. One job
        takes all such files in turn, without a future or a wakeup each (a job's thousands
        of small outputs, queued one job each, kept the pool busy waking up)."""
        with self._cond:
            if self._closing:
                return
            self._ahead[path] = None
            job = self._take_ahead()
        if job is not None:
            self._enqueue(job)

    def _take_ahead(self) -> _Job | None:
        """A new job for the outputs queued ahead, if there are some and no job is taking
        them (called with the lock held; the caller enqueues it)."""
        if not self._ahead or self._closing:
            return None
        if self._ahead_job is not None and not self._ahead_job.result.done():
            return None
        self._ahead_job = job = self._job("outputs hashed ahead", self._hash_ahead)
        return job

    def _hash_ahead(self, me: _Worker) -> None:
        """The ahead job: hash the queued outputs one by one, each under its own deadline.
        A file that cannot be hashed now is hashed (or found unhashable) again at run end."""
        while True:
            with self._cond:
                if me.written_off or me.job is None:
                    return  # abandoned at a deadline: the watchdog queued a new job
                if not self._ahead or self._closing:
                    self._ahead_job = None
                    return
                path = next(iter(self._ahead))
                del self._ahead[path]
                me.job.what = path
                me.deadline = time.monotonic() + self.limits.timeout_seconds
            with contextlib.suppress(OSError):
                self.digest(path, worker=me)

    def cached(self, stamp: FileStamp) -> str | None:
        """The hash the cache holds for exactly this stamp, if any."""
        return self._cache.get(stamp)

    def stamps(self, paths: Sequence[str]) -> Pending[dict[str, FileStamp]]:
        """The stamps of those of `paths` that are regular files now: one lstat each, all in
        one pool job under one deadline (a finalization checks thousands of outputs hashed
        ahead this way, instead of queueing a job per file)."""
        what = f"{len(paths)} files from {paths[0]}" if paths else "no files"
        return self._enqueue(self._job(what, lambda _me: _regular_stamps(paths)))

    def _job(
        self, what: str, work: Callable[[_Worker], object], progress: Progress | None = None
    ) -> _Job:
        """A job whose result waiters wait on the pool's condition."""
        return _Job(what, work, Pending(self._settled), progress)

    def _enqueue(self, job: _Job) -> Pending[Any]:
        with self._cond:
            self.pending += 1
            if not self._closing:
                self._queue.append(job)
                if not self._wake():
                    # Nobody was woken for it: the watchdog wakes someone if the workers on
                    # the queue stay on their files (a hung mount) past _NUDGE_SECONDS.
                    self._watch_by(time.monotonic() + _NUDGE_SECONDS)
                return job.result
        self._settle(job, HashersStuck("not hashed: the daemon is stopping"))
        return job.result

    def digest(
        self, path: str, progress: Progress | None = None, worker: _Worker | None = None
    ) -> Digest:
        """Hash `path` now, in the caller's thread and without a deadline (the pool's
        workers call this under theirs, naming themselves). The cache answers for an
        unchanged file; a file another thread is reading is waited for, then taken from
        the cache if that read saw it as it is now."""
        stamp, cached = self._looked_up(path)
        if cached is not None:
            return cached
        if stamp.size < _LONG_HASH_BYTES:  # costs less read twice than waited for
            return self._read(path, stamp, progress, progress)
        # The queue does not wait for a worker on a long hash, nor on one it waits for.
        with self._aside(worker) if worker is not None else contextlib.nullcontext():
            return self._read_once(path, stamp, progress, worker)

    def _looked_up(self, path: str) -> tuple[FileStamp, Digest | None]:
        """`path`'s stamp now (raises as _checked does), and its digest if the cache holds
        one for exactly that stamp."""
        stamp = _checked(os.lstat(path), self.limits.max_bytes)
        found = self._cache.get(stamp)
        return stamp, None if found is None else Digest(path, found, stamp)

    def _read_once(
        self, path: str, stamp: FileStamp, progress: Progress | None, worker: _Worker | None
    ) -> Digest:
        """The hash of a large file, read by one thread at a time: a caller asking while
        another thread reads it waits for that read, then takes the cached hash if that
        read saw the file as it is now (an output hashed ahead as its job ends, asked for
        again by its run's end)."""
        key = (stamp.dev, stamp.ino)
        waited, reading = self._claim(key, stamp.size, progress, self._keep_alive(worker))
        try:
            if waited:
                stamp, cached = self._looked_up(path)
                if cached is not None:
                    return cached
            return self._read(path, stamp, progress, reading)
        finally:
            with self._cond:
                del self._reading[key]
                if self._reading_waiters:
                    self._settled.notify_all()

    def _read(
        self, path: str, last: FileStamp, progress: Progress | None, reading: Reading | None
    ) -> Digest:
        """Read and hash `path` (`last`: its last stat) into the cache; its bytes are
        reported to `reading`. On a filesystem whose stamps may hide a change made soon
        after another, a file changed within that window is read once it has passed, and
        a hash read within it anyway (the file changed again meanwhile) is not cached."""
        if progress is not None:
            progress.expect(last.size)
        window = self._change_window_ns(last.dev)
        if window:
            # Never more than the window: a file dated ahead (a server's clock) waits no more.
            wait = min(window, last.ctime_ns + window - time.time_ns())
            if wait > 0:
                time.sleep(wait / 1e9)
        read_at = time.time_ns()
        started = time.monotonic()
        digest, stamp = hash_file(path, reading, self.limits.max_bytes)
        spent = time.monotonic() - started
        if not window or stamp.ctime_ns + window <= read_at:
            self._cache.put(stamp, digest)
        with self._cond:  # workers finish concurrently
            self.bytes_hashed += stamp.size
            self.files_hashed += 1
            self.seconds_hashing += spent
        return Digest(path, digest, stamp)

    def _claim(
        self,
        key: tuple[int, int],
        size: int,
        progress: Progress | None,
        keep_alive: Callable[[], None] | None,
    ) -> tuple[bool, _SharedRead]:
        """Take the large file `key` (of `size` bytes) for this thread's read, first
        waiting while another thread reads it, its bytes reported to `progress` and pushing
        on this thread's deadline (`keep_alive`) meanwhile; True when it waited (the cache
        may have the file's hash now), and the read to report this thread's bytes to."""
        with self._cond:
            waited = False
            while (other := self._reading.get(key)) is not None:
                if not waited:
                    other.follow(progress, size, keep_alive)
                self._reading_waiters += 1
                try:
                    self._settled.wait()
                finally:
                    self._reading_waiters -= 1
                waited = True
            shared = self._reading[key] = _SharedRead(progress, keep_alive)
            return waited, shared

    def _keep_alive(self, worker: _Worker | None) -> Callable[[], None] | None:
        """What pushes `worker`'s deadline on while the file it is on is being read: a
        large file on slow storage (or read while the host is busy) is abandoned only when
        its read stalls for hash_timeout_seconds, not when it takes longer in all. None for
        a caller outside the pool (no deadline)."""
        if worker is None:
            return None
        timeout = self.limits.timeout_seconds

        def push() -> None:
            # Only later: the watchdog, woken at the earlier deadline, finds this one.
            worker.deadline = time.monotonic() + timeout

        return push

    @contextlib.contextmanager
    def _aside(self, worker: _Worker) -> Iterator[None]:
        """While `worker` is on a long hash, queued files do not wait for it."""
        with self._cond:
            worker.aside = True
            self._wake()
        try:
            yield
        finally:
            with self._cond:
                worker.aside = False

    def _wake(self) -> bool:
        """Wake an idle worker if the queue needs one (called with the lock held): when no
        worker is taking it, or it is longer than the ones taking it clear in a moment. A
        worker on a long hash, or on one file for _NUDGE_SECONDS, is not taking it. One
        worker takes a stream of small files best: more would only contend for the GIL.
        True when one was woken."""
        if not self._queue:
            return False
        recent = time.monotonic() - _NUDGE_SECONDS + self.limits.timeout_seconds
        idle = sum(1 for w in self._workers if w.idle)
        active = self._woken + sum(
            1
            for w in self._workers
            if not w.idle and not w.aside and (w.job is None or w.deadline > recent)
        )
        if idle > self._woken and (active == 0 or len(self._queue) > active * _QUEUE_PER_WORKER):
            self._woken += 1
            self._cond.notify()
            return True
        return False

    def _watch_by(self, when: float) -> None:
        """Have the watchdog wake by `when` (called with the lock held): notified only if it
        would sleep past it (a new deadline is never earlier than those it watches)."""
        if self._watch_until > when:
            self._watch_until = when
            self._watch_cond.notify()

    def _spawn(self) -> None:
        """Start one pool thread (called with the lock held, or before any thread runs)."""
        worker = _Worker()
        worker.thread = threading.Thread(
            target=self._work, args=(worker,), name="roard-hash", daemon=True
        )
        self._workers.append(worker)
        worker.thread.start()

    def _work(self, me: _Worker) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closing:
                    me.idle = True
                    self._cond.wait()
                    me.idle = False
                    self._woken = max(0, self._woken - 1)
                if not self._queue:
                    self._workers.remove(me)
                    self._watch_cond.notify()  # the watchdog exits after the last one
                    return
                job = self._queue.popleft()
                job.result.start()  # no longer takes later reads
                refused = self.refusing
                if not refused:
                    me.job, me.deadline = job, time.monotonic() + self.limits.timeout_seconds
                    self._watch_by(me.deadline)
            if refused:
                self._settle(job, self._stuck_error())
                continue
            outcome: object
            try:
                outcome = job.work(me)
            except Exception as exc:
                outcome = exc
            with self._cond:
                me.job = None
                abandoned = me.written_off
                if abandoned:
                    self.stuck -= 1
            if abandoned:  # its file was settled at the deadline; a replacement runs
                log.info("a written-off hash thread returned", path=job.what)
                return
            self._settle(job, outcome)

    def _stuck_error(self) -> HashersStuck:
        return HashersStuck(
            f"not hashed: {self.stuck} hash threads are blocked on unresponsive files "
            f"(hash_stuck_max {self.limits.stuck_max}); files are recorded unhashed until "
            "they return: check the mounts named in the daemon's log"
        )

    def _settle(self, job: _Job, outcome: object) -> None:
        """Give a job's result (called without the lock: progress takes its own)."""
        if job.progress is not None:
            job.progress.file_done()
        with self._cond:
            self.pending -= 1
            job.result.give(outcome)

    def _watch(self) -> None:
        """Settle files past their deadline, write their threads off and replace them."""
        while True:
            expired: list[_Job] = []
            ahead: _Job | None = None
            with self._cond:
                if self._closing and not self._workers:
                    return
                now = time.monotonic()
                for worker in list(self._workers):
                    if worker.job is not None and worker.deadline <= now:
                        if worker.job is self._ahead_job:
                            # The outputs queued behind the hung one, and those queued
                            # before its result is settled, need a job of their own.
                            self._ahead_job = None
                        expired.append(worker.job)
                        worker.job, worker.written_off = None, True
                        self._workers.remove(worker)
                        self.stuck += 1
                        self.timeouts += 1
                        if not self._closing:
                            self._spawn()
                if expired:
                    ahead = self._take_ahead()
                else:
                    self._wake()  # workers long on one file no longer count as taking the queue
                    deadlines = [w.deadline for w in self._workers if w.job is not None]
                    wait = min(deadlines) - now if deadlines else None
                    if self._queue and any(w.idle for w in self._workers):
                        wait = _NUDGE_SECONDS if wait is None else min(wait, _NUDGE_SECONDS)
                    self._watch_until = math.inf if wait is None else now + wait
                    self._watch_cond.wait(wait)
            if ahead is not None:
                self._enqueue(ahead)
            for job in expired:
                log.warning(
                    "hash abandoned at its deadline; its thread is written off",
                    path=job.what,
                    timeout_seconds=self.limits.timeout_seconds,
                    stuck_threads=self.stuck,
                )
                self._settle(job, self._timeout_error())

    def _timeout_error(self) -> HashTimedOut:
        return HashTimedOut(
            f"abandoned after hash_timeout_seconds ({self.limits.timeout_seconds:g} s): a "
            "hung or very slow mount? raise hash_timeout_seconds in roard.toml if the "
            "storage is only slow"
        )

    def flush(self) -> None:
        """Persist the hashes computed so far."""
        self._cache.flush()

    def close(self) -> None:
        """Stop the pool: queued files are settled unhashed, files being hashed get until
        their deadline; threads blocked past it are left behind (daemon threads)."""
        with self._cond:
            self._closing = True
            dropped = list(self._queue)
            self._queue.clear()
            self._ahead.clear()
            self._cond.notify_all()
            self._watch_cond.notify_all()
        for job in dropped:
            self._settle(job, HashersStuck("not hashed: the daemon is stopping"))
        self._watchdog.join()

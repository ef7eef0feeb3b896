"""Tests for roard.artifacts.hasher and hashcache: blake3 content hashes, cached by file stamp."""

from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import blake3
import pytest

from roard.artifacts import hasher as hasher_mod
from roard.artifacts.hashcache import FileStamp, HashCache
from roard.artifacts.hasher import (
    FileTooLarge,
    Hasher,
    HashersStuck,
    HashTimedOut,
    NotRegularFile,
    Pending,
    Reading,
)
from roard.config import HashLimits
from roard.tracking.runs import HashProgress


def b3(data: bytes) -> str:
    """The expected digest string for `data`."""
    return "blake3:" + blake3.blake3(data).hexdigest()


@pytest.fixture
def cache(tmp_path: Path) -> Iterator[HashCache]:
    """A hash cache in a fresh state directory."""
    c = HashCache(tmp_path / "state" / "hashes.db")
    yield c
    c.close()


@pytest.fixture
def hasher(cache: HashCache) -> Iterator[Hasher]:
    """A hasher over the cache."""
    h = Hasher(cache, workers=2)
    yield h
    h.close()


@pytest.mark.parametrize("size", [0, 6, (17 << 20) + 3], ids=["empty", "small", "over-16MiB"])
def test_digest_is_blake3_of_the_content(hasher: Hasher, tmp_path: Path, size: int) -> None:
    """The digest is "blake3:" + the hex BLAKE3 of the bytes, with size and identity."""
    data = os.urandom(size)
    path = tmp_path / "f"
    path.write_bytes(data)
    digest = hasher.digest(str(path))
    st = path.stat()
    assert digest.hash == b3(data)
    assert (digest.path, digest.stamp) == (str(path), FileStamp.of(st))
    assert digest.stamp.size == len(data)
    assert hasher.files_hashed == 1
    assert hasher.bytes_hashed == len(data)


def test_a_large_file_is_hashed_whole_without_a_reader_thread(
    hasher: Hasher, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A large file is read by a thread of its own while hashed; where none can be started
    (the process is out of threads) it is read in turn, to the same hash."""
    data = os.urandom(hasher_mod._MULTITHREAD_BYTES + 7)
    path = tmp_path / "big"
    path.write_bytes(data)

    def refuse(self: threading.Thread) -> None:
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(threading.Thread, "start", refuse)
    assert hasher.digest(str(path)).hash == b3(data)


def test_submit_hashes_in_the_background(hasher: Hasher, tmp_path: Path) -> None:
    """submit() returns a future of the same digest."""
    path = tmp_path / "f"
    path.write_bytes(b"abc")
    assert hasher.submit(str(path)).result(5).hash == b3(b"abc")


def test_a_pending_result_waits_for_the_pool_and_says_where_it_is() -> None:
    """A waiter gets the result the moment it is given, or TimeoutError; the state runs
    queued -> running -> done (the tracker re-submits a consumed input only once its
    hash is under way: a later read must be in it)."""
    settled = threading.Condition(threading.RLock())
    pending: Pending[str] = Pending(settled)
    with pytest.raises(TimeoutError):
        pending.result(0.01)
    assert not pending.running() and not pending.done()
    pending.start()
    assert pending.running()
    threading.Timer(0.05, pending.give, ["digest"]).start()
    assert pending.result(5) == "digest"
    assert pending.done() and not pending.running()
    failed: Pending[str] = Pending(settled)
    failed.give(FileNotFoundError(2, "gone"))
    for _ in range(2):  # an error is raised to every caller
        with pytest.raises(FileNotFoundError):
            failed.result()


def test_submit_of_missing_file_raises_oserror(hasher: Hasher, tmp_path: Path) -> None:
    """A file that cannot be read surfaces as OSError from the future."""
    with pytest.raises(OSError):
        hasher.submit(str(tmp_path / "missing")).result(5)


def test_unchanged_file_is_a_cache_hit_without_reading(
    hasher: Hasher, cache: HashCache, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Hashing an unchanged file again answers from the cache and does not read it."""
    path = tmp_path / "f"
    path.write_bytes(b"data" * 1000)
    first = hasher.digest(str(path))

    def no_read(_path: str) -> None:
        raise AssertionError("file was read again")

    monkeypatch.setattr(hasher_mod, "hash_file", no_read)
    hits = cache.hits
    again = hasher.digest(str(path))
    assert again.hash == first.hash
    assert cache.hits == hits + 1
    assert hasher.files_hashed == 1


def test_modified_file_is_rehashed(hasher: Hasher, tmp_path: Path) -> None:
    """A new size or mtime invalidates the cached hash."""
    path = tmp_path / "f"
    path.write_bytes(b"one")
    hasher.digest(str(path))
    path.write_bytes(b"three")
    assert hasher.digest(str(path)).hash == b3(b"three")
    st = path.stat()
    path.write_bytes(b"four!")  # same size; restore the old mtime, only ctime changes
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    assert hasher.digest(str(path)).hash == b3(b"four!")
    assert hasher.files_hashed == 3


def test_same_size_same_mtime_rewrite_is_rehashed(hasher: Hasher, tmp_path: Path) -> None:
    """Content rewritten with size and mtime forged back is still re-hashed (ctime differs)."""
    path = tmp_path / "f"
    path.write_bytes(b"aaaa")
    st = path.stat()
    hasher.digest(str(path))
    path.write_bytes(b"bbbb")
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    if path.stat().st_ctime_ns == st.st_ctime_ns:
        pytest.skip("filesystem ctime too coarse to tell the writes apart")
    assert hasher.digest(str(path)).hash == b3(b"bbbb")


def test_cache_persists_across_instances(tmp_path: Path) -> None:
    """A hash stored by one HashCache is found by a later one on the same database."""
    db = tmp_path / "state" / "hashes.db"
    path = tmp_path / "f"
    path.write_bytes(b"persist me")
    first = HashCache(db)
    h1 = Hasher(first, workers=1)
    expected = h1.digest(str(path)).hash
    h1.close()
    first.close()

    second = HashCache(db)
    h2 = Hasher(second, workers=1)
    try:
        assert h2.digest(str(path)).hash == expected
        assert (second.hits, h2.files_hashed) == (1, 0)
    finally:
        h2.close()
        second.close()


def test_a_cache_from_before_the_change_windows_is_emptied(tmp_path: Path) -> None:
    """Hashes cached by a roard that did not wait out a filesystem's change window may
    answer for a rewrite their stamp hid: the first start after the upgrade drops them
    (one more read of each file); later starts keep the cache."""
    db = tmp_path / "hashes.db"
    stamp = FileStamp(1, 2, 3, 4, 5)
    old = HashCache(db)
    old.put(stamp, "blake3:cached-before")
    old.close()
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA user_version = 0")  # as every cache written before
    upgraded = HashCache(db)
    assert upgraded.get(stamp) is None
    upgraded.put(stamp, "blake3:cached-after")
    upgraded.close()
    again = HashCache(db)
    try:
        assert again.get(stamp) == "blake3:cached-after"
    finally:
        again.close()


def test_cache_keeps_only_the_latest_stamp_per_inode(tmp_path: Path) -> None:
    """Storing a new hash for an inode drops the inode's older entry from the database."""
    db = tmp_path / "hashes.db"
    writer = HashCache(db)
    old, new = FileStamp(1, 2, 3, 4, 5), FileStamp(1, 2, 9, 10, 11)
    writer.put(old, "blake3:old")
    writer.put(new, "blake3:new")
    writer.close()
    reader = HashCache(db)
    try:
        assert (reader.get(new), reader.get(old)) == ("blake3:new", None)
        assert (reader.hits, reader.misses) == (1, 1)
    finally:
        reader.close()


def test_only_files_changed_before_the_cache_opened_are_looked_up_on_disk(
    tmp_path: Path,
) -> None:
    """An entry on disk can only be for a file that changed before this cache opened (an
    earlier daemon hashed it then): later stamps are answered from memory alone, and a
    stamp from before is found on disk."""
    db = tmp_path / "hashes.db"
    writer = HashCache(db)
    now = time.time_ns()
    before, after = FileStamp(1, 2, 3, 4, now - 10**9), FileStamp(1, 5, 3, 4, now + 10**12)
    writer.put(before, "blake3:before")
    writer.put(after, "blake3:after")  # as if the clock had gone back since
    writer.close()
    reader = HashCache(db)
    try:
        assert (reader.get(before), reader.get(after)) == ("blake3:before", None)
        reader.put(after, "blake3:after")
        assert reader.get(after) == "blake3:after"
    finally:
        reader.close()


def test_the_memory_front_is_bounded_and_what_it_forgets_is_found_on_disk(
    tmp_path: Path,
) -> None:
    """A daemon's life of files does not grow the memory front past its size: the older
    half is forgotten, and found on disk afterwards, also for files changed after the cache
    opened (whose lookups otherwise stay in memory)."""
    cache = HashCache(tmp_path / "hashes.db", memory_max=4)
    try:
        now = time.time_ns()
        stamps = [FileStamp(1, ino, 3, 4, now + ino) for ino in range(10)]
        for stamp in stamps:
            cache.put(stamp, f"blake3:{stamp.ino}")
            assert len(cache._memory) <= 4
        assert [cache.get(s) for s in stamps] == [f"blake3:{s.ino}" for s in stamps]
    finally:
        cache.close()


def test_hash_survives_a_flush_and_reopen(tmp_path: Path) -> None:
    """A computed hash is on disk once the hasher is flushed, even before the cache closes."""
    db = tmp_path / "hashes.db"
    path = tmp_path / "f"
    path.write_bytes(b"flushed")
    cache = HashCache(db)
    hasher = Hasher(cache, workers=1)
    try:
        expected = hasher.digest(str(path)).hash
        hasher.flush()
        reader = HashCache(db)
        try:
            assert reader.get(FileStamp.of(path.stat())) == expected
        finally:
            reader.close()
    finally:
        hasher.close()
        cache.close()


def test_fifo_without_a_writer_is_refused_without_blocking(hasher: Hasher, tmp_path: Path) -> None:
    """A path swapped for a FIFO nobody writes is unhashed, not a regular file; neither
    the pool nor a direct open (the race after lstat) waits for a writer."""
    fifo = tmp_path / "out"
    os.mkfifo(fifo)
    with pytest.raises(NotRegularFile, match="FIFO"):
        hasher.submit(str(fifo)).result(60)
    with pytest.raises(NotRegularFile):
        hasher_mod.hash_file(str(fifo))


def test_fifo_with_a_writer_is_refused_without_reading(hasher: Hasher, tmp_path: Path) -> None:
    """A FIFO with a writer and data waiting: unhashed, and its data is left unread."""
    fifo = tmp_path / "out"
    os.mkfifo(fifo)
    writer = os.open(fifo, os.O_RDWR | os.O_NONBLOCK)  # a writer (and reader) of our own
    try:
        os.write(writer, b"stream")
        with pytest.raises(NotRegularFile, match="FIFO"):
            hasher.submit(str(fifo)).result(60)
        with pytest.raises(NotRegularFile):
            hasher_mod.hash_file(str(fifo))
        assert os.read(writer, 100) == b"stream"
    finally:
        os.close(writer)


def test_device_node_is_refused_without_opening_it(
    hasher: Hasher, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A character device (a copy of /dev/zero: endless) is unhashed from its lstat: the
    pool never opens it (a device's open may block or act); a direct open refuses it."""
    node = tmp_path / "zero"
    os.mknod(node, 0o600 | stat.S_IFCHR, os.makedev(1, 5))
    with pytest.raises(NotRegularFile, match="character device"):
        hasher_mod.hash_file(str(node))

    def no_open(*_args: object) -> int:
        raise AssertionError("the device was opened")

    monkeypatch.setattr(hasher_mod.os, "open", no_open)
    with pytest.raises(NotRegularFile, match="character device"):
        hasher.submit(str(node)).result(60)


def test_file_over_the_size_limit_is_refused_from_stat(
    cache: HashCache, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file larger than hash_max_bytes is unhashed without being read; the reason names
    the limit and the key to raise; files up to the limit are hashed."""
    hasher = Hasher(cache, workers=1, limits=HashLimits(max_bytes=1000))
    try:
        small = tmp_path / "small"
        small.write_bytes(b"x" * 1000)
        assert hasher.submit(str(small)).result(60).hash == b3(b"x" * 1000)
        big = tmp_path / "big"
        big.touch()
        os.truncate(big, 50 << 30)  # sparse: 50 GiB, no blocks

        def no_read(*_args: object) -> None:
            raise AssertionError("a file over the limit was read")

        monkeypatch.setattr(hasher_mod, "hash_file", no_read)
        with pytest.raises(FileTooLarge, match=r"over hash_max_bytes \(1000\)") as caught:
            hasher.submit(str(big)).result(60)
        assert "raise hash_max_bytes in roard.toml" in str(caught.value)
        assert caught.value.size == 50 << 30
    finally:
        hasher.close()


@pytest.fixture
def hang(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[Path], None]]:
    """Make reads of chosen paths block until the test ends, as on a hung mount (a
    blocked system call cannot be interrupted from Python either)."""
    hung: set[str] = set()
    release = threading.Event()
    real = hasher_mod.hash_file

    def blocking(path: str, *args: object, **kwargs: object) -> tuple[str, FileStamp]:
        if path in hung:
            release.wait()
        return real(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(hasher_mod, "hash_file", blocking)
    yield lambda path: hung.add(str(path))
    release.set()


def hung_and_fine(tmp_path: Path, hang: Callable[[Path], None]) -> tuple[Path, Path]:
    """A file whose reads hang ("on a dead mount") and one that reads fine ("local")."""
    stuck, fine = tmp_path / "stuck", tmp_path / "fine"
    stuck.write_bytes(b"on a dead mount")
    fine.write_bytes(b"local")
    hang(stuck)
    return stuck, fine


def wait_for(condition: Callable[[], bool]) -> bool:
    """Poll generously (a loaded CI machine) until `condition` holds."""
    done = threading.Event()
    for _ in range(600):
        if condition():
            return True
        done.wait(0.1)
    return condition()


def test_hung_file_is_abandoned_at_the_deadline_and_its_worker_replaced(
    cache: HashCache, tmp_path: Path, hang: Callable[[Path], None]
) -> None:
    """A hash that blocks past hash_timeout_seconds settles as unhashed with the reason;
    the blocked thread is written off and a new one hashes the next file (one worker)."""
    hasher = Hasher(cache, workers=1, limits=HashLimits(timeout_seconds=0.5))
    try:
        stuck, fine = hung_and_fine(tmp_path, hang)
        progress = HashProgress()
        with pytest.raises(HashTimedOut, match=r"hash_timeout_seconds \(0.5 s\)"):
            hasher.submit(str(stuck), progress).result(60)
        assert (hasher.stuck, hasher.timeouts, progress.files_done) == (1, 1, 1)
        assert hasher.submit(str(fine)).result(60).hash == b3(b"local")
        assert hasher.pending == 0
    finally:
        hasher.close()


def test_a_file_that_hangs_after_the_pool_was_idle_still_meets_its_deadline(
    cache: HashCache, tmp_path: Path, hang: Callable[[Path], None]
) -> None:
    """A queued file wakes one worker, not the watchdog: the watchdog, asleep with nothing
    to watch, must still learn the deadline of the next file that hangs; and files queued
    behind busy workers are all hashed (no lost wakeup)."""
    hasher = Hasher(cache, workers=2, limits=HashLimits(timeout_seconds=0.5))
    try:
        files = []
        for i in range(200):
            files.append(tmp_path / f"f{i}")
            files[-1].write_bytes(b"%d" % i)
        digests = [hasher.submit(str(f)) for f in files]
        assert [d.result(60).hash for d in digests] == [b3(b"%d" % i) for i in range(200)]
        assert wait_for(lambda: hasher.pending == 0)
        stuck = tmp_path / "stuck"
        stuck.write_bytes(b"on a dead mount")
        hang(stuck)
        started = time.monotonic()
        with pytest.raises(HashTimedOut):
            hasher.submit(str(stuck)).result(60)
        assert time.monotonic() - started < 30
        assert hasher.submit(str(files[0])).result(60).hash == b3(b"0")
    finally:
        hasher.close()


def test_outputs_hashed_ahead_are_answered_by_the_cache(
    cache: HashCache, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Files queued with ahead() are hashed in turn by one job (not a job each), into the
    cache: cached() answers for each as it is; a file changed since is not answered for."""
    hasher = Hasher(cache, workers=2)
    jobs = []
    real_enqueue = hasher._enqueue

    def counting(job: object) -> object:
        jobs.append(job)
        return real_enqueue(job)  # type: ignore[arg-type]

    monkeypatch.setattr(hasher, "_enqueue", counting)
    try:
        files = [tmp_path / f"out{i}" for i in range(300)]
        for i, f in enumerate(files):
            f.write_bytes(b"output %d" % i)
        with hasher._cond:  # no worker takes the job before all are queued
            for f in files:
                hasher.ahead(str(f))
        assert wait_for(lambda: hasher.backlog == 0)
        assert len(jobs) == 1
        stamps = hasher.stamps([str(f) for f in files]).result(60)
        assert [hasher.cached(stamps[str(f)]) for f in files] == [
            b3(b"output %d" % i) for i in range(300)
        ]
        files[0].write_bytes(b"changed after")
        assert hasher.cached(FileStamp.of(os.lstat(files[0]))) is None
    finally:
        hasher.close()


def test_a_file_asked_for_while_it_is_read_is_read_once(hasher: Hasher, tmp_path: Path) -> None:
    """An output hashed ahead as its job ends, asked for again by the run's end while that
    hash reads it: the second ask waits for the first and takes its hash (a 512 MiB
    checkpoint was read twice at once), its progress following the first read."""
    data = os.urandom(hasher_mod._CHUNK * 2 + 5)
    path = tmp_path / "checkpoint.pt"
    path.write_bytes(data)

    class SecondAskWaits(HashProgress):
        def advance(self, count: int) -> None:
            if not self.bytes_done:  # mid-read: hold it until the second ask waits
                assert wait_for(lambda: hasher._reading_waiters == 1)
            super().advance(count)

    first = threading.Thread(target=hasher.digest, args=(str(path), SecondAskWaits()))
    first.start()
    assert wait_for(lambda: bool(hasher._reading))
    followed = HashProgress()
    second = hasher.digest(str(path), followed)
    first.join(10)
    assert second.hash == b3(data)
    assert (hasher.files_hashed, hasher.bytes_hashed) == (1, len(data))
    assert (followed.bytes, followed.bytes_done) == (len(data), len(data))


def test_stamps_are_those_of_regular_files_now(hasher: Hasher, tmp_path: Path) -> None:
    """stamps() lstats in the pool: gone paths, directories and symlinks have none."""
    (tmp_path / "file").write_bytes(b"x")
    (tmp_path / "dir").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "file")
    names = ["file", "dir", "link", "gone"]
    stamps = hasher.stamps([str(tmp_path / n) for n in names]).result(60)
    assert stamps == {str(tmp_path / "file"): FileStamp.of(os.lstat(tmp_path / "file"))}


class SettledLate:
    """The watchdog's log of an abandoned hash, held until the test has queued its next
    output: that output arrives between the deadline and the settled result."""

    def __init__(self) -> None:
        self.queued = threading.Event()

    def warning(self, *_args: object, **_fields: object) -> None:
        self.queued.wait(60)

    def info(self, *_args: object, **_fields: object) -> None:
        pass


@pytest.mark.parametrize("queued", ["behind it", "after its deadline", "while it is settled"])
def test_a_hung_output_hashed_ahead_leaves_the_others_hashed(
    cache: HashCache,
    tmp_path: Path,
    hang: Callable[[Path], None],
    monkeypatch: pytest.MonkeyPatch,
    queued: str,
) -> None:
    """The ahead job gives each file its own deadline: one that hangs is abandoned (its
    thread written off), and the outputs queued behind it, or after, are still hashed by a
    new job (CI once lost one queued while the abandoned hash was being settled)."""
    late = SettledLate()
    if queued == "while it is settled":
        monkeypatch.setattr(hasher_mod, "log", late)
    hasher = Hasher(cache, workers=1, limits=HashLimits(timeout_seconds=0.5))
    try:
        stuck, after = hung_and_fine(tmp_path, hang)
        hasher.ahead(str(stuck))
        if queued == "behind it":
            hasher.ahead(str(after))
        assert wait_for(lambda: hasher.timeouts == 1)
        if queued != "behind it":
            hasher.ahead(str(after))
        late.queued.set()
        assert wait_for(lambda: hasher.cached(FileStamp.of(os.lstat(after))) is not None)
        assert hasher.cached(FileStamp.of(os.lstat(after))) == b3(b"local")
        assert hasher.cached(FileStamp.of(os.lstat(stuck))) is None
    finally:
        hasher.close()


def test_a_slow_read_that_keeps_going_outlasts_the_deadline(
    cache: HashCache, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Slow storage (or a busy host) is not a hung mount: a large file whose read keeps
    bringing bytes is hashed however long it takes in all, and so is a second ask for it
    waiting on that read; only a read that stalls for hash_timeout_seconds is abandoned."""
    data = os.urandom(2 << 20)
    path = tmp_path / "checkpoint.pt"
    path.write_bytes(data)
    real = hasher_mod.hash_file
    pause = threading.Event()

    def trickling(name: str, reading: Reading | None, max_bytes: int) -> tuple[str, FileStamp]:
        for _ in range(12):  # 3 s of reading, a chunk every 0.25 s, against a 2 s deadline
            pause.wait(0.25)
            if reading is not None:
                reading.advance(0)
        return real(name, reading, max_bytes)

    monkeypatch.setattr(hasher_mod, "hash_file", trickling)
    hasher = Hasher(cache, workers=2, limits=HashLimits(timeout_seconds=2))
    try:
        first = hasher.submit(str(path))
        assert wait_for(lambda: bool(hasher._reading))
        second = hasher.submit(str(path))
        assert first.result(60).hash == second.result(60).hash == b3(data)
        assert (hasher.timeouts, hasher.files_hashed) == (0, 1)
    finally:
        hasher.close()


def test_a_file_queued_behind_a_hung_one_is_hashed_long_before_the_deadline(
    cache: HashCache, tmp_path: Path, hang: Callable[[Path], None]
) -> None:
    """A queued file wakes a second worker only when needed; a worker that stays on one file
    (a hung mount) does not count, so the next file is not held until the deadline."""
    # A deadline far off even on a loaded machine (close() waits it out, so not further).
    hasher = Hasher(cache, workers=2, limits=HashLimits(timeout_seconds=20))
    try:
        stuck, fine = hung_and_fine(tmp_path, hang)
        blocked = hasher.submit(str(stuck))
        assert wait_for(blocked.running)
        assert hasher.submit(str(fine)).result(10).hash == b3(b"local")
        assert not blocked.done()
    finally:
        hasher.close()


def test_abandoned_thread_that_returns_leaves_the_pool_whole(
    cache: HashCache, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the hung call returns at last, its result is dropped and the thread exits:
    the stuck count goes back to zero and hashing goes on."""
    release = threading.Event()
    real = hasher_mod.hash_file

    def slow_once(path: str, *args: object, **kwargs: object) -> tuple[str, FileStamp]:
        if path.endswith("slow"):
            release.wait()
        return real(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(hasher_mod, "hash_file", slow_once)
    hasher = Hasher(cache, workers=1, limits=HashLimits(timeout_seconds=0.5))
    try:
        slow = tmp_path / "slow"
        slow.write_bytes(b"late")
        with pytest.raises(HashTimedOut):
            hasher.submit(str(slow)).result(60)
        assert hasher.stuck == 1
        release.set()
        assert wait_for(lambda: hasher.stuck == 0)
        other = tmp_path / "other"
        other.write_bytes(b"next")
        assert hasher.submit(str(other)).result(60).hash == b3(b"next")
    finally:
        hasher.close()


def test_past_the_stuck_bound_new_files_are_unhashed_at_once(
    cache: HashCache, tmp_path: Path, hang: Callable[[Path], None]
) -> None:
    """With hash_stuck_max threads blocked, new files are settled unhashed immediately
    (the reason says why) instead of feeding the dead mount more threads."""
    hasher = Hasher(cache, workers=2, limits=HashLimits(timeout_seconds=0.5, stuck_max=2))
    try:
        hung = [tmp_path / f"hung{i}" for i in range(2)]
        for path in hung:
            path.write_bytes(b"x")
            hang(path)
        futures = [hasher.submit(str(path)) for path in hung]
        for future in futures:
            with pytest.raises(HashTimedOut):
                future.result(60)
        assert (hasher.stuck, hasher.refusing) == (2, True)
        fine = tmp_path / "fine"
        fine.write_bytes(b"fine")
        with pytest.raises(HashersStuck, match="2 hash threads are blocked"):
            hasher.submit(str(fine)).result(60)
        assert hasher.timeouts == 2  # refused at once, not after another deadline
    finally:
        hasher.close()


def test_close_does_not_wait_for_a_blocked_thread(
    cache: HashCache, tmp_path: Path, hang: Callable[[Path], None]
) -> None:
    """Stopping the daemon is not held up by a thread blocked on a dead mount."""
    hasher = Hasher(cache, workers=1, limits=HashLimits(timeout_seconds=0.5))
    stuck = tmp_path / "stuck"
    stuck.write_bytes(b"x")
    hang(stuck)
    progress = HashProgress()
    future = hasher.submit(str(stuck), progress)
    assert wait_for(lambda: progress.files == 1)  # a worker is on it (past its lstat)
    closer = threading.Thread(target=hasher.close)
    closer.start()
    closer.join(60)
    assert not closer.is_alive()
    with pytest.raises(HashTimedOut):
        future.result(0)


@pytest.fixture
def coarse_times(tmp_path: Path) -> Iterator[Path]:
    """A ramfs mount: its files are stamped from the clock's last tick, as ext4's and
    tmpfs's are on kernels before 6.13 (a same-size rewrite within a tick keeps the stamp)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a ramfs needs root")
    mounted = tmp_path / "ramfs"
    mounted.mkdir()
    subprocess.run(["mount", "-t", "ramfs", "roard-test", str(mounted)], check=True)
    yield mounted
    subprocess.run(["umount", "--lazy", str(mounted)], check=True)


def test_a_rewrite_the_stamp_cannot_show_is_never_answered_from_the_cache(
    cache: HashCache, coarse_times: Path
) -> None:
    """A job rewriting a small file at the same size (a step counter) right after it was
    hashed: without the window the hash cache answered the old content for the new (the
    stamps were equal), and the run's output was recorded with a hash it never had."""
    hasher = Hasher(cache, workers=1)
    path = coarse_times / "step.txt"
    try:
        for step in range(20):
            path.write_bytes(b"step %02d" % step)
            assert hasher.digest(str(path)).hash == b3(b"step %02d" % step)
    finally:
        hasher.close()


def test_symlink_is_not_followed(hasher: Hasher, tmp_path: Path) -> None:
    """A path swapped for a symlink (to a file the user could not read) is never hashed."""
    secret = tmp_path / "secret"
    secret.write_bytes(b"root only")
    link = tmp_path / "out"
    link.symlink_to(secret)
    with pytest.raises(OSError):
        hasher.digest(str(link))


def test_file_that_keeps_changing_has_no_hash(
    hasher: Hasher, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the content changes during every read, no hash is returned or cached."""
    path = tmp_path / "busy.log"
    path.write_bytes(b"a")
    ticks = iter(range(1000))

    def drifting(_cls: type[FileStamp], st: os.stat_result) -> FileStamp:
        n = next(ticks)
        return FileStamp(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns + n, st.st_ctime_ns)

    monkeypatch.setattr(hasher_mod.FileStamp, "of", classmethod(drifting))
    with pytest.raises(hasher_mod.FileKeptChanging):
        hasher.digest(str(path))
    assert hasher.files_hashed == 0


@pytest.mark.parametrize("size", [1000, 200_000], ids=["one-read", "chunked"])
def test_a_file_that_changed_once_is_hashed_whole_on_the_next_try(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, size: int
) -> None:
    """The second try hashes the file from its start, whichever way it is read (small
    files in one read, others in chunks from the same descriptor)."""
    data = os.urandom(size)
    path = tmp_path / "f"
    path.write_bytes(data)
    ticks = iter(range(1000))

    def changed_once(_cls: type[FileStamp], st: os.stat_result) -> FileStamp:
        drift = 1 if next(ticks) == 1 else 0  # the first try's second stat differs
        return FileStamp(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns + drift, st.st_ctime_ns)

    monkeypatch.setattr(hasher_mod.FileStamp, "of", classmethod(changed_once))
    progress = HashProgress()
    digest, _stamp = hasher_mod.hash_file(str(path), progress)
    assert next(ticks) == 4  # two tries
    assert digest == b3(data)
    assert progress.bytes_done == 2 * size  # both tries' reads reported


def test_a_sysctl_file_of_reported_size_zero_hashes() -> None:
    """/proc/sys files say size 0 and refuse reads larger than the kernel can allocate:
    a run that reads one must not be marked incomplete for it."""
    digest, stamp = hasher_mod.hash_file("/proc/sys/kernel/ostype")
    assert stamp.size == 0
    assert (
        digest
        == "blake3:" + blake3.blake3(Path("/proc/sys/kernel/ostype").read_bytes()).hexdigest()
    )

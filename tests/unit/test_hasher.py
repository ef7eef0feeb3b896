"""Tests for roard.artifacts.hasher and hashcache: blake3 content hashes, cached by file stamp."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import blake3
import pytest

from roard.artifacts import hasher as hasher_mod
from roard.artifacts.hashcache import FileStamp, HashCache
from roard.artifacts.hasher import Hasher


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


def test_submit_hashes_in_the_background(hasher: Hasher, tmp_path: Path) -> None:
    """submit() returns a future of the same digest."""
    path = tmp_path / "f"
    path.write_bytes(b"abc")
    assert hasher.submit(str(path)).result(5).hash == b3(b"abc")


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


def test_fifo_is_refused_without_blocking(hasher: Hasher, tmp_path: Path) -> None:
    """A path swapped for a FIFO is reported as not a regular file; the daemon never hangs."""
    fifo = tmp_path / "out"
    os.mkfifo(fifo)
    with pytest.raises(hasher_mod.NotRegularFile):
        hasher.digest(str(fifo))


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

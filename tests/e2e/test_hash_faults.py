"""Hashing never blocks a run's finalization: a huge output, a FIFO, a device node and a
file on a hung mount are recorded (unhashed with the reason, or not at all, per design.md
section 4), the run finishes, and the daemon stays healthy."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import blake3
import pytest

from tests.e2e.conftest import Roard, python3, start_roard, stop_roard
from tests.e2e.test_metrics import scrape

GIB = 1 << 30
HUNGFS = Path(__file__).with_name("hungfs.py")

CONFIG = """
hash_max_bytes = 1073741824
hash_timeout_seconds = 3.0
[metrics]
listen = "127.0.0.1:0"
"""

# Reads each argument's first bytes and prints how many it got.
READER = """
import sys
for path in sys.argv[1:]:
    with open(path, "rb") as f:
        print(path, len(f.read(4096)))
"""


@pytest.fixture(scope="module")
def daemon(_bpf_available: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Roard]:
    """A private daemon with a 1 GiB size cap and a 3 s hash deadline."""
    daemon = start_roard(tmp_path_factory.mktemp("hashfaults"), CONFIG)
    try:
        yield daemon
    finally:
        stop_roard(daemon)


def b3(data: bytes) -> str:
    """The hash roard reports for content `data`."""
    return "blake3:" + blake3.blake3(data).hexdigest()


def tag(daemon: Roard, workdir: Path, name: str, *args: str) -> dict[str, Any]:
    """Run a program as a tagged run (roarctl returns once it is finalized); its show doc."""
    result = daemon.roarctl("tag", "--name", name, "--", python3(), *args, cwd=workdir)
    assert "finished" in result.stderr, result.stderr
    return daemon.show(name)


def status(daemon: Roard) -> dict[str, Any]:
    """`roarctl status --json`."""
    doc: dict[str, Any] = json.loads(daemon.roarctl("status", "--json").stdout)
    return doc


def eventually(condition: Callable[[], bool]) -> bool:
    """Poll generously (a loaded CI machine) until `condition` holds."""
    for _ in range(600):
        if condition():
            return True
        time.sleep(0.2)
    return condition()


def by_path(files: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {f["path"]: f for f in files}


def test_output_over_the_size_limit_is_recorded_unhashed(daemon: Roard, workdir: Path) -> None:
    """A 50 GiB (sparse) output is an output without a hash, the reason naming the limit
    and the key to raise; the run finalizes without reading it; a small output is hashed."""
    (workdir / "write.py").write_text(
        "with open('huge.ckpt', 'wb') as f:\n"
        f"    f.truncate({50 * GIB})\n"
        "with open('small.txt', 'wb') as f:\n"
        "    f.write(b'small output')\n"
    )
    doc = tag(daemon, workdir, "huge", "write.py")
    assert (doc["status"], doc["exit_code"], doc["complete"]) == ("finished", 0, True)
    huge, small = str(workdir / "huge.ckpt"), str(workdir / "small.txt")
    assert by_path(doc["outputs"])[small]["hash"] == b3(b"small output")
    assert huge not in by_path(doc["outputs"])
    unhashed = by_path(doc["unhashed"])[huge]
    assert (unhashed["role"], unhashed["size"], unhashed["kind"]) == (
        "output",
        50 * GIB,
        "artifact",
    )
    assert "over hash_max_bytes (1073741824)" in unhashed["reason"]
    assert "raise hash_max_bytes in roard.toml" in unhashed["reason"]
    assert status(daemon)["hash"]["unhashed"]["size"] >= 1
    port = re.search(r'"port": (\d+)', daemon.log.read_text())
    assert port, daemon.log.read_text()[-3000:]
    metrics = scrape(f"http://127.0.0.1:{port.group(1)}")
    assert metrics["roard_unhashed_files_total"][(("reason", "size"),)] >= 1
    assert metrics["roard_hash_refusing"][()] == 0
    human = daemon.roarctl("show", "huge").stdout
    assert f"{huge}: " in human and "hash_max_bytes" in human


def test_fifo_and_device_node_are_not_artifacts(daemon: Roard, workdir: Path) -> None:
    """A run reading a FIFO (fed by a writer) and a device node made with mknod finishes;
    neither is an input (design.md section 4: only regular files carry content), while a
    regular file it read is."""
    fifo, device, plain = workdir / "pipe", workdir / "zero", workdir / "plain.txt"
    os.mkfifo(fifo)
    os.mknod(device, 0o600 | stat.S_IFCHR, os.makedev(1, 5))  # like /dev/zero
    plain.write_bytes(b"plain input")
    (workdir / "read.py").write_text(READER)

    def feed() -> None:
        with fifo.open("wb") as out:  # blocks until the run opens it for reading
            out.write(b"through the pipe")

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    doc = tag(daemon, workdir, "pipes", "read.py", str(fifo), str(device), str(plain))
    writer.join(60)
    assert (doc["status"], doc["exit_code"]) == ("finished", 0)
    inputs = by_path(doc["inputs"])
    assert inputs[str(plain)]["hash"] == b3(b"plain input")
    recorded = {f["path"] for f in doc["inputs"] + doc["outputs"] + doc["unhashed"]}
    assert str(fifo) not in recorded and str(device) not in recorded


@pytest.fixture
def hung_mount(daemon: Roard, workdir: Path) -> Iterator[tuple[Path, Path]]:
    """A FUSE mount whose every request from the daemon hangs until the release file
    exists: (the file on it, the release file). Released and unmounted even on failure."""
    mountpoint, release = workdir / "mnt", workdir / "release"
    mountpoint.mkdir()
    server = subprocess.Popen(
        [sys.executable, str(HUNGFS), str(mountpoint), str(daemon.proc.pid), str(release)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        assert eventually(lambda: os.path.ismount(mountpoint) or server.poll() is not None)
        assert server.poll() is None, server.communicate()[1].decode()
        yield mountpoint / "data.bin", release
    finally:
        release.touch()  # let the daemon's blocked threads return first
        subprocess.run(["umount", str(mountpoint)], check=False, capture_output=True)
        if os.path.ismount(mountpoint):
            subprocess.run(["umount", "-l", str(mountpoint)], check=False, capture_output=True)
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def test_file_on_a_hung_mount_is_abandoned_at_the_deadline(
    daemon: Roard, workdir: Path, hung_mount: tuple[Path, Path]
) -> None:
    """The run reads a file on a mount that hangs for the daemon and a normal file: it
    finishes, the hung file unhashed with the reason, the normal one hashed. Once the mount
    answers again the daemon's threads come back and a new run hashes normally."""
    hung, release = hung_mount
    content = hung.read_bytes()  # the mount answers the test (and the run) at once
    plain = workdir / "plain.txt"
    plain.write_bytes(b"local input")
    (workdir / "read.py").write_text(READER)

    doc = tag(daemon, workdir, "hung", "read.py", str(hung), str(plain))
    assert (doc["status"], doc["exit_code"]) == ("finished", 0)
    assert by_path(doc["inputs"])[str(plain)]["hash"] == b3(b"local input")
    assert str(hung) not in by_path(doc["inputs"])
    unhashed = by_path(doc["unhashed"])[str(hung)]
    assert unhashed["role"] == "input"
    assert "hash_timeout_seconds (3 s)" in unhashed["reason"]
    hashing = status(daemon)["hash"]
    assert hashing["unhashed"]["timeout"] >= 1 and hashing["stuck_threads"] >= 1

    release.touch()
    assert eventually(lambda: status(daemon)["hash"]["stuck_threads"] == 0)
    after = tag(daemon, workdir, "after", "read.py", str(hung), str(plain))
    assert by_path(after["inputs"])[str(hung)]["hash"] == b3(content)
    assert by_path(after["inputs"])[str(plain)]["hash"] == b3(b"local input")
    assert after["unhashed"] == []

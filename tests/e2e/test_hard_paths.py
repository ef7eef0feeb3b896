"""End to end: what real jobs do that is hard to observe: paths longer or deeper than the
in-kernel walk, names that are not text, files that vanish, change or cannot be read when
hashed, processes in another mount namespace or chroot, process storms and a DataLoader
style worker pool. Each is checked through `roarctl show --json`, as a user would."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import blake3
import pytest

from tests.e2e.conftest import Roard, python3
from tests.e2e.test_io_paths import artifacts, checked, run_job
from tests.e2e.test_observe import b3, by_path

DENYFS = Path(__file__).with_name("denyfs.py")


def descend(base: Path, parts: list[str]) -> Path:
    """Make base/parts[0]/parts[1]/... one level at a time (relative to a dir fd: the whole
    path may be longer than open(2) takes) and return it."""
    fd = os.open(base, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for part in parts:
            os.mkdir(part, dir_fd=fd)
            inner = os.open(part, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = inner
    finally:
        os.close(fd)
    return base.joinpath(*parts)


def write_at(path: Path, content: bytes) -> None:
    """Write a file whose path may be longer than PATH_MAX: through its directory's fd."""
    fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        out = os.open(path.name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644, dir_fd=fd)
        os.write(out, content)
        os.close(out)
    finally:
        os.close(fd)


def read_at(path: Path) -> bytes:
    """Read a file whose path may be longer than PATH_MAX."""
    fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        inner = os.open(path.name, os.O_RDONLY, dir_fd=fd)
        with os.fdopen(inner, "rb") as f:
            return f.read()
    finally:
        os.close(fd)


def blake(data: bytes) -> str:
    """The hash roard reports for content `data`."""
    return "blake3:" + blake3.blake3(data).hexdigest()


# -- 1. paths beyond the in-kernel walk ---------------------------------------------------


def test_paths_deeper_and_longer_than_the_kernel_walk(roard: Roard, workdir: Path) -> None:
    """A path 4000 bytes long is recorded whole with its hash. A file 90 directories down
    (deeper than the walk's 64 components) is completed through the directory the process
    holds, when roard reads /proc before the process exits; otherwise the run says it lost
    the path. It is never recorded under a truncated path."""
    deep = descend(workdir, ["d"] * 90)
    long = descend(workdir, ["L" * 200] * ((4000 - len(str(workdir))) // 201))
    assert 3700 < len(str(long)) < 4096 - 20
    write_at(deep / "in.txt", b"deep input\n")
    write_at(long / "in.txt", b"long input\n")
    roard.roarctl("tag", "--name", "hard-deep", "--", python3(), "-c", textwrap.dedent(f"""
        import os, time
        for rel in ({str(long.relative_to(workdir))!r}, {str(deep.relative_to(workdir))!r}):
            d = os.open(rel, os.O_RDONLY | os.O_DIRECTORY)
            fd = os.open("in.txt", os.O_RDONLY, dir_fd=d)
            data = os.read(fd, 100)
            os.close(fd)
            fd = os.open("out.txt", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644, dir_fd=d)
            os.write(fd, data.upper())
            os.close(fd)
        time.sleep(1)  # holds the deep directory open: roard completes the path from it
        """), cwd=workdir)  # fmt: skip
    doc = roard.show("hard-deep")
    inputs, outputs = by_path(doc["inputs"]), by_path(doc["outputs"])
    assert inputs[str(long / "in.txt")]["hash"] == blake(b"long input\n")
    assert outputs[str(long / "out.txt")]["hash"] == blake(b"LONG INPUT\n")
    assert all(len(p.split("/")) > 90 or str(long) in p for p in artifacts(doc["outputs"]))
    if doc["complete"]:
        assert inputs[str(deep / "in.txt")]["hash"] == blake(b"deep input\n")
        assert outputs[str(deep / "out.txt")]["hash"] == blake(b"DEEP INPUT\n")
    else:
        assert set(doc["loss_reasons"]) == {"path too deep for the in-kernel walk"}


# -- 2. bad input --------------------------------------------------------------------------


def test_names_with_newlines_invalid_utf8_and_255_bytes(roard: Roard, workdir: Path) -> None:
    """Names are bytes: a newline, bytes that are not UTF-8 and a 255-byte name are
    recorded with the right hashes, and the run is complete. `show --json` writes a name
    as it is when it is UTF-8, else with each undecodable byte as the text `\\xHH`."""
    names = [b"new\nline.txt", b"bad-\xff\xfe.bin", b"n" * 251 + b".txt"]
    for i, name in enumerate(names):
        (workdir / os.fsdecode(b"in-" + name[:252])).write_bytes(b"input %d\n" % i)
    (workdir / "job.py").write_text(
        textwrap.dedent(f"""
        import os
        for name in {names!r}:
            src = b"in-" + name[:252]
            with open(src, "rb") as f:
                data = f.read()
            with open(name, "wb") as f:
                f.write(data * 2)
        """)
    )
    roard.roarctl("tag", "--name", "hard-names", "--", python3(), "job.py", cwd=workdir)
    doc = roard.show("hard-names")
    assert doc["complete"], doc["loss_reasons"]
    inputs, outputs = by_path(doc["inputs"]), by_path(doc["outputs"])
    base = os.fsencode(workdir)
    for i, name in enumerate(names):
        shown_in = (base + b"/in-" + name[:252]).decode("utf-8", "backslashreplace")
        shown_out = (base + b"/" + name).decode("utf-8", "backslashreplace")
        assert inputs[shown_in]["hash"] == blake(b"input %d\n" % i)
        assert outputs[shown_out]["hash"] == blake(b"input %d\n" % i * 2)
    assert str(workdir) + "/bad-\\xff\\xfe.bin" in outputs


def test_inputs_deleted_right_after_reading(roard: Roard, workdir: Path) -> None:
    """Files read and deleted at once: each is deleted, and either an input with the hash
    it had, or named in the run's loss reasons as deleted before it could be hashed (the
    run then incomplete); never silently missing."""
    for i in range(50):
        (workdir / f"gone{i}.bin").write_bytes(b"gone %d\n" % i * 1000)
    doc = run_job(
        roard,
        workdir,
        "hard-gone",
        """
        import os
        for i in range(50):
            with open(f"gone{i}.bin", "rb") as f:
                f.read()
            os.unlink(f"gone{i}.bin")
        """,
    )
    inputs = by_path(doc["inputs"])
    deleted = {d["path"] for d in doc["deleted"]}
    reasons = " ".join(doc["loss_reasons"])
    for i in range(50):
        path = str(workdir / f"gone{i}.bin")
        assert path in deleted
        if path in inputs:
            assert inputs[path]["hash"] == blake(b"gone %d\n" % i * 1000)
        else:
            assert f"{path}: deleted before it could be hashed" in reasons
            assert not doc["complete"]


def test_input_that_keeps_changing_is_unstable_not_a_wrong_hash(
    roard: Roard, workdir: Path
) -> None:
    """A log another process keeps appending to while the run reads it: the hasher sees it
    change under every read (re-stat after each), records it unhashed as `changing`, and
    the run says it is incomplete."""
    log = workdir / "growing.log"
    log.write_bytes(b"x" * (64 << 20))
    writer = subprocess.Popen(
        [
            python3(),
            "-c",
            "import sys, time\n"
            "with open(sys.argv[1], 'ab', buffering=0) as f:\n"
            "    while True:\n"
            "        f.write(b'more\\n'); time.sleep(0.001)\n",
            str(log),
        ]
    )
    try:
        doc = run_job(
            roard,
            workdir,
            "hard-changing",
            """
            with open("growing.log", "rb") as f:
                f.read(4096)
            """,
        )
    finally:
        writer.kill()
        writer.wait()
    unhashed = by_path(doc["unhashed"])
    assert str(log) not in by_path(doc["inputs"])
    assert "changing" in unhashed[str(log)]["reason"] or "kept changing" in str(unhashed[str(log)])
    assert not doc["complete"]
    assert any(str(log) in r for r in doc["loss_reasons"])


@pytest.fixture
def denied_mount(roard: Roard, workdir: Path) -> Iterator[Path]:
    """A FUSE mount serving data.bin that refuses the daemon (only) with EACCES."""
    mnt = workdir / "denied"
    mnt.mkdir()
    fs = subprocess.Popen([sys.executable, str(DENYFS), str(mnt), str(roard.proc.pid)])
    try:
        while not (mnt / "data.bin").exists():
            assert fs.poll() is None, "denyfs exited"
            time.sleep(0.05)
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)
        fs.wait(10)


def test_unreadable_input_is_recorded_with_its_error(
    roard: Roard, workdir: Path, denied_mount: Path
) -> None:
    """A file the job can read but the daemon cannot (a FUSE mount refusing it): recorded
    with its path and the error, the run kept (marked incomplete), the daemon alive."""
    doc = run_job(
        roard,
        workdir,
        "hard-denied",
        f"""
        with open({str(denied_mount / "data.bin")!r}, "rb") as f:
            f.read()
        with open("ok.txt", "w") as f:
            f.write("still recorded")
        """,
    )
    unhashed = by_path(doc["unhashed"])[str(denied_mount / "data.bin")]
    assert unhashed["role"] == "input" and "Permission denied" in unhashed["reason"]
    assert not doc["complete"]
    assert artifacts(doc["outputs"]) == {str(workdir / "ok.txt")}
    assert roard.proc.poll() is None


# -- 3. containers: mount namespaces and chroot ---------------------------------------------


def test_chroot(roard: Roard, workdir: Path) -> None:
    """A process that chroots into a tree: its files are recorded under their host paths
    (what roard hashes), with the paths it saw inside the chroot beside them; also the file
    it renamed, linked and truncated by absolute names, and though it is gone before roard
    could look at /proc."""
    root = workdir / "jail"
    (root / "data").mkdir(parents=True)
    (root / "data" / "in.txt").write_text("jailed input\n")
    (root / "data" / "log.txt").write_text("an old log, cut short by name\n")
    doc = run_job(
        roard,
        workdir,
        "hard-chroot",
        f"""
        import os
        os.chroot({str(root)!r})
        os.chdir("/")
        with open("/data/in.txt", "rb") as f:
            data = f.read()
        with open("/data/out.txt.part", "wb") as f:
            f.write(data[::-1])
        os.rename("/data/out.txt.part", "/data/out.txt")
        os.link("/data/out.txt", "/data/latest.txt")
        os.truncate("/data/log.txt", 6)
        """,
    )
    assert doc["complete"], doc["loss_reasons"]
    inputs, outputs = by_path(doc["inputs"]), by_path(doc["outputs"])
    assert inputs[str(root / "data" / "in.txt")]["hash"] == b3(root / "data" / "in.txt")
    assert outputs[str(root / "data" / "out.txt")]["hash"] == b3(root / "data" / "out.txt")
    assert "/data/in.txt" not in inputs
    written = {str(root / "data" / n) for n in ("out.txt", "latest.txt", "log.txt")}
    assert artifacts(doc["outputs"]) == written
    assert inputs[str(root / "data" / "in.txt")]["seen_path"] == "/data/in.txt"
    for name in ("out.txt", "latest.txt", "log.txt"):
        output = outputs[str(root / "data" / name)]
        assert (output["hash"], output["seen_path"]) == (b3(root / "data" / name), f"/data/{name}")


def test_private_mount_namespace(roard: Roard, workdir: Path) -> None:
    """A job in its own mount namespace (as in a container) that bind-mounts a directory
    only it sees, reads and writes through it, and is gone before roard could read its
    /proc: its files are recorded under the host paths roard hashes (the bind mount's
    source), found from the filesystem the kernel names, with the paths it saw beside them."""
    data, view = workdir / "data", workdir / "view"
    data.mkdir()
    view.mkdir()
    (data / "in.txt").write_text("namespaced input\n")
    shutil.copy2("/bin/cat", data / "tool")
    roard.roarctl(
        "tag", "--name", "hard-mntns", "--", "unshare", "--mount", "--propagation", "private",
        "sh", "-c", f"mount --bind {data} {view} && cd {view} && ./tool in.txt > out.txt",
        cwd=workdir,
    )  # fmt: skip
    doc = checked(roard.show("hard-mntns"))
    assert doc["complete"], doc["loss_reasons"]
    inputs, outputs = by_path(doc["inputs"]), by_path(doc["outputs"])
    assert inputs[str(data / "in.txt")]["hash"] == b3(data / "in.txt")
    assert outputs[str(data / "out.txt")]["hash"] == b3(data / "out.txt")
    # ... and the paths it used beside them
    assert inputs[str(data / "in.txt")]["seen_path"] == str(view / "in.txt")
    assert outputs[str(data / "out.txt")]["seen_path"] == str(view / "out.txt")
    assert (data / "out.txt").read_text() == "namespaced input\n"
    assert not [p for p in [*inputs, *outputs] if p.startswith(str(view))]
    # The program it ran from the bind mount: an input by its host path, and so is the
    # process's exe and cwd.
    assert inputs[str(data / "tool")]["hash"] == b3(data / "tool")
    assert inputs[str(data / "tool")]["seen_path"] == str(view / "tool")
    (tool,) = [p for p in doc["processes"] if p["argv"][:1] == ["./tool"]]
    assert (tool["exe"], tool["cwd"]) == (str(data / "tool"), str(data))


# -- 4. process storms ----------------------------------------------------------------------


def test_ten_thousand_short_lived_processes(roard: Roard, workdir: Path) -> None:
    """A shell loop running /bin/true 10,000 times: every process is recorded, or the run
    says honestly that it is incomplete and how many events it lost."""
    roard.roarctl(
        "tag", "--name", "hard-storm", "--", "sh", "-c",
        "i=0; while [ $i -lt 10000 ]; do /bin/true; i=$((i+1)); done", cwd=workdir,
        timeout=600,
    )  # fmt: skip
    doc = roard.show("hard-storm")
    trues = [p for p in doc["processes"] if p["exe"].endswith("/true")]
    if doc["complete"]:
        assert len(trues) == 10000
        assert len(doc["processes"]) == 10001
    else:
        assert doc["lost_events"] > 0
        assert len(trues) < 10000


# -- 5. a DataLoader-style worker pool -------------------------------------------------------


def test_dataloader_worker_pool(roard: Roard, workdir: Path) -> None:
    """8 forked multiprocessing workers read shards and send results back through pipes;
    the parent writes a checkpoint to a temporary and renames it into place: every shard
    is an input with its hash, the checkpoint is the only output."""
    shards = workdir / "shards"
    shards.mkdir()
    for i in range(32):
        (shards / f"shard-{i:02d}.bin").write_bytes(os.urandom(4096 + i))
    doc = run_job(
        roard,
        workdir,
        "hard-loader",
        """
        import multiprocessing as mp, os, hashlib, json

        def load(path):
            with open(path, "rb") as f:
                return hashlib.sha256(f.read()).hexdigest()

        if __name__ == "__main__":
            paths = sorted(os.path.join("shards", n) for n in os.listdir("shards"))
            with mp.get_context("fork").Pool(8) as pool:
                digests = pool.map(load, paths, chunksize=1)
            with open("ckpt.json.tmp", "w") as f:
                json.dump(digests, f)
            os.rename("ckpt.json.tmp", "ckpt.json")
        """,
    )
    assert doc["complete"], doc["loss_reasons"]
    inputs = by_path(doc["inputs"])
    for shard in shards.iterdir():
        assert inputs[str(shard)]["hash"] == b3(shard)
    assert artifacts(doc["outputs"]) == {str(workdir / "ckpt.json")}
    assert len(json.loads((workdir / "ckpt.json").read_text())) == 32
    assert len([p for p in doc["processes"] if p["pid"] != doc["processes"][0]["pid"]]) >= 8

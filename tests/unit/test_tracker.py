"""Tests for roard.tracking.tracker: kernel events in, lineage records out (fakes at the edges).

Runs are tagged on real `sleep` processes (tag() inspects them with psutil); everything after
that is fed as decoded events, as the observer thread would.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import Future
from dataclasses import replace
from pathlib import Path

import blake3
import psutil
import pytest

from roard.artifacts.hashcache import HashCache
from roard.artifacts.hasher import Digest, Hasher
from roard.config import ClassifyRules
from roard.context.probe import ContextProbe
from roard.errors import PermissionDenied, UsageError
from roard.kernel.decode import (
    CgroupJoinEvent,
    CloseEvent,
    EnvRunEvent,
    ExecEvent,
    ExitEvent,
    ForkEvent,
    OpenEvent,
    RenameEvent,
)
from roard.records import summary
from roard.tracking.cgroups import Cgroup
from roard.tracking.processes import CLK_TCK, start_ticks
from roard.tracking.runs import Run
from roard.tracking.tracker import Caller, Tracker
from roard.v1 import records_pb2 as pb

ROOT = Caller(uid=0, pid=1)
FAKE_PID = 4_190_001  # a child pid that only exists in fed events


class FakeKernel:
    """Records track/untrack calls; flush_fds and take_run_losses return preset values."""

    lazy_fds = 16

    def __init__(self) -> None:
        self.tracked: dict[int, int] = {}
        self.untracked: list[int] = []
        self.pending: dict[int, list[CloseEvent]] = {}
        self.losses: dict[int, dict[str, int]] = {}
        self.cgroups: dict[tuple[int, int], tuple[int, int | None]] = {}

    def track(self, tgid: int, run_key: int) -> None:
        self.tracked[tgid] = run_key

    def untrack(self, tgid: int, run_key: int | None = None) -> None:
        self.untracked.append(tgid)
        if run_key is None or self.tracked.get(tgid) == run_key:
            self.tracked.pop(tgid, None)

    def flush_fds(self, tgid: int, fds: set[int], run_key: int) -> list[CloseEvent]:
        return [c for c in self.pending.pop(tgid, []) if c.fd in fds and c.run_key == run_key]

    def take_run_losses(self, run_key: int) -> dict[str, int]:
        return self.losses.pop(run_key, {})

    def tag_cgroup(self, hierarchy_id: int, kn_id: int, run_key: int, uid: int | None) -> None:
        self.cgroups[hierarchy_id, kn_id] = (run_key, uid)

    def untag_cgroup(self, hierarchy_id: int, kn_id: int) -> None:
        del self.cgroups[hierarchy_id, kn_id]


class FakeSink:
    """Collects every emitted record."""

    def __init__(self) -> None:
        self.records: list[pb.Record] = []
        self._lock = threading.Lock()

    def emit(self, records: list[pb.Record]) -> None:
        with self._lock:
            self.records.extend(records)

    def flush(self, timeout: float | None = None) -> bool:
        return True

    def of(self, run: Run, body: str) -> list[pb.Record]:
        """The records of one run with the given body type."""
        with self._lock:
            return [
                r for r in self.records if r.run_id == run.run_id and r.WhichOneof("body") == body
            ]


class Env:
    """A tracker over fakes, plus helpers that feed it events."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp = tmp_path
        self.kernel = FakeKernel()
        self.sink = FakeSink()
        self.cache = HashCache(tmp_path / "state" / "hashes.db")
        self.hasher = Hasher(self.cache, workers=2)
        self.tracker = Tracker(
            self.kernel, self.hasher, self.sink, ClassifyRules(), exit_grace_seconds=0.2
        )
        self.sleepers: list[subprocess.Popen[bytes]] = []

    def sleeper(self) -> int:
        """A live process to tag."""
        proc = subprocess.Popen(["sleep", "30"])
        self.sleepers.append(proc)
        # Popen returns once exec began; /proc shows the new argv only once it completed.
        deadline = time.monotonic() + 5
        while psutil.Process(proc.pid).cmdline() != ["sleep", "30"]:
            assert time.monotonic() < deadline, "sleep did not start"
            time.sleep(0.001)
        return proc.pid

    def tag(self, spawned: bool = True) -> tuple[Run, int]:
        """A new run rooted at a fresh sleeper; returns the run and its root pid."""
        pid = self.sleeper()
        return self.tracker.tag(ROOT, pid, "job", {"k": "v"}, spawned=spawned), pid

    def file(self, name: str, data: bytes) -> Path:
        path = self.tmp / name
        path.write_bytes(data)
        return path

    def open(
        self, run: Run, pid: int, fd: int, path: Path, flags: int, created: bool = False
    ) -> None:
        st = path.stat()
        self.tracker.handle(
            OpenEvent(
                run.key, pid, fd, str(path), st.st_dev, st.st_ino, flags, created, False, False
            )
        )

    def close(
        self, run: Run, pid: int, fd: int, path: Path, rbytes: int = 0, wbytes: int = 0
    ) -> None:
        self.tracker.handle(self.close_event(run, pid, fd, path, rbytes, wbytes))

    @staticmethod
    def close_event(
        run: Run, pid: int, fd: int, path: Path, rbytes: int = 0, wbytes: int = 0
    ) -> CloseEvent:
        st = path.stat()
        return CloseEvent(
            run_key=run.key,
            tgid=pid,
            fd=fd,
            dev=st.st_dev,
            ino=st.st_ino,
            rbytes=rbytes,
            wbytes=wbytes,
            nreads=int(rbytes > 0),
            nwrites=int(wbytes > 0),
            mmap_read=False,
            mmap_shared_write=False,
            resized=False,
            open_flags=0,
            created=False,
        )

    def exit(self, run: Run, pid: int, code: int = 0, start_ns: int | None = None) -> None:
        """The kernel's exit event for `pid` (a tagged sleeper unless start_ns is given)."""
        if start_ns is None:
            start_ns = start_ticks(psutil.Process(pid)) * 1_000_000_000 // CLK_TCK
        self.tracker.handle(ExitEvent(run.key, pid, start_ns, code))

    def finish(self, run: Run) -> tuple[dict[str, pb.FileAccess], pb.RunFinished]:
        """Wait for finalization; the run's file accesses by path, and its RunFinished."""
        assert run.finalized.wait(5), "run was not finalized"
        files = {r.file_access.path: r.file_access for r in self.sink.of(run, "file_access")}
        (finished,) = self.sink.of(run, "run_finished")
        return files, finished.run_finished

    def close_all(self) -> None:
        for proc in self.sleepers:
            proc.kill()
            proc.wait()
        self.hasher.close()
        self.cache.close()


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    """A tracker over fakes; kills the sleepers afterwards."""
    e = Env(tmp_path)
    yield e
    e.close_all()


def b3(data: bytes) -> str:
    """The hash roard reports for content `data`."""
    return "blake3:" + blake3.blake3(data).hexdigest()


def test_tag_tracks_the_root_and_announces_the_run(env: Env) -> None:
    """tag() puts the root in the kernel filter and emits RunTagged then ProcessStarted."""
    run, pid = env.tag()
    assert env.kernel.tracked == {pid: run.key}
    (tagged,) = env.sink.of(run, "run_tagged")
    assert (tagged.run_tagged.name, tagged.run_tagged.root_pid) == ("job", pid)
    assert dict(tagged.run_tagged.labels) == {"k": "v"}
    (started,) = env.sink.of(run, "process_started")
    assert started.process_started.argv == ["sleep", "30"]


def test_read_only_file_is_an_input(env: Env) -> None:
    """A file read and not written is an input, hashed with blake3 of its content."""
    run, pid = env.tag()
    data = b"col\n1\n2\n"
    path = env.file("in.csv", data)
    env.open(run, pid, 3, path, os.O_RDONLY)
    env.close(run, pid, 3, path, rbytes=len(data))
    env.exit(run, pid)
    files, _ = env.finish(run)
    access = files[str(path)]
    assert (access.role, access.hash, access.size) == (pb.ROLE_INPUT, b3(data), len(data))
    assert (access.kind, access.bytes_read, access.read_too) == ("artifact", len(data), False)


def test_input_is_hashed_as_consumed(env: Env) -> None:
    """An input's hash is of the content the run read, even if it changes afterwards."""
    run, pid = env.tag()
    path = env.file("in.bin", b"before")
    env.open(run, pid, 3, path, os.O_RDONLY)
    env.close(run, pid, 3, path, rbytes=6)
    consumed = run.files[str(path)].consumed
    assert consumed is not None
    consumed.result(5)
    path.write_bytes(b"after, longer")
    env.exit(run, pid)
    files, _ = env.finish(run)
    assert files[str(path)].hash == b3(b"before")


@pytest.mark.parametrize("fails", [False, True])
def test_the_context_describes_the_files_read_and_a_failing_one_costs_nothing(
    env: Env, tmp_path: Path, fails: bool
) -> None:
    """The run's context is probed over the files it read (and that were hashed), not
    those it wrote, even read back (its own product); a probe that fails leaves the run
    complete, without a context."""
    described: list[list[str]] = []

    class Probe(ContextProbe):
        def describe(self, paths: Iterable[str]) -> pb.RunContext:
            described.append(sorted(paths))
            if fails:
                raise OSError("the probe broke")
            return pb.RunContext(git=[pb.GitTree(root=str(tmp_path))])

    env.tracker = Tracker(
        env.kernel, env.hasher, env.sink, ClassifyRules(), exit_grace_seconds=0.2, context=Probe()
    )
    run, pid = env.tag()
    read, written = env.file("in.csv", b"x,y\n"), env.file("out.bin", b"")
    env.open(run, pid, 3, read, os.O_RDONLY)
    env.close(run, pid, 3, read, rbytes=4)
    env.open(run, pid, 4, written, os.O_WRONLY)
    written.write_bytes(b"model")
    env.close(run, pid, 4, written, wbytes=5)
    both = env.file("scratch.txt", b"")
    env.open(run, pid, 5, both, os.O_RDWR)
    both.write_bytes(b"note")
    env.close(run, pid, 5, both, wbytes=4, rbytes=4)
    env.exit(run, pid)
    files, finished = env.finish(run)
    assert set(files) == {str(read), str(written), str(both)} and finished.complete
    ((paths,),) = (described,)
    assert paths == [str(read)]
    contexts = [r.run_context for r in env.sink.of(run, "run_context")]
    assert [c.git[0].root for c in contexts] == ([] if fails else [str(tmp_path)])


def test_mmap_read_is_an_input(env: Env) -> None:
    """A PROT_READ mapping (no read bytes) makes the file an input."""
    run, pid = env.tag()
    path = env.file("weights.bin", b"w" * 100)
    env.open(run, pid, 3, path, os.O_RDONLY)
    env.tracker.handle(replace(env.close_event(run, pid, 3, path), mmap_read=True))
    env.exit(run, pid)
    files, _ = env.finish(run)
    assert files[str(path)].role == pb.ROLE_INPUT


def test_a_library_mapped_executable_is_code_and_a_mapped_file_data(env: Env) -> None:
    """The loader maps a shared library PROT_EXEC: an input of kind code wherever it lies
    (LD_LIBRARY_PATH, a build directory), not data; a file mapped PROT_READ alone is data."""
    run, pid = env.tag()
    lib = env.file("libkernels.so.1", b"\x7fELF library")
    weights = env.file("weights.bin", b"w" * 100)
    env.open(run, pid, 3, lib, os.O_RDONLY)
    env.tracker.handle(replace(env.close_event(run, pid, 3, lib), mmap_read=True, mmap_exec=True))
    env.open(run, pid, 4, weights, os.O_RDONLY)
    env.tracker.handle(replace(env.close_event(run, pid, 4, weights), mmap_read=True))
    env.exit(run, pid)
    files, _ = env.finish(run)
    assert (files[str(lib)].role, files[str(lib)].kind) == (pb.ROLE_INPUT, "code")
    assert files[str(lib)].hash == b3(b"\x7fELF library")
    assert (files[str(weights)].role, files[str(weights)].kind) == (pb.ROLE_INPUT, "artifact")


def test_files_used_through_io_uring_are_inputs_and_outputs(env: Env) -> None:
    """The VFS hook reports io_uring/aio use without a descriptor or byte counts, with the
    path: read means an input with its hash, written an output."""
    run, pid = env.tag()
    src = env.file("shard.bin", b"s" * 100)
    dst = env.file("out.bin", b"o" * 10)
    for path, how in ((src, "vfs_read"), (dst, "vfs_write")):
        ev = replace(env.close_event(run, pid, -1, path), path=str(path), **{how: True})
        env.tracker.handle(ev)
    env.exit(run, pid)
    files, _ = env.finish(run)
    assert (files[str(src)].role, files[str(src)].hash) == (pb.ROLE_INPUT, b3(b"s" * 100))
    assert (files[str(dst)].role, files[str(dst)].hash) == (pb.ROLE_OUTPUT, b3(b"o" * 10))


def test_written_file_is_an_output_hashed_at_run_end(env: Env) -> None:
    """A written file is an output hashed as the run left it."""
    run, pid = env.tag()
    path = env.file("model.pt", b"")
    env.open(run, pid, 4, path, os.O_WRONLY)
    path.write_bytes(b"weights v1")
    env.close(run, pid, 4, path, wbytes=10)
    path.write_bytes(b"weights v2!")  # still the run's doing: the hash is taken at the end
    env.exit(run, pid)
    files, _ = env.finish(run)
    access = files[str(path)]
    assert (access.role, access.hash, access.bytes_written) == (
        pb.ROLE_OUTPUT,
        b3(b"weights v2!"),
        10,
    )
    assert access.read_too is False


def test_finalization_leaves_the_runs_summary(env: Env) -> None:
    """The account roarctl prints once the run is spooled: its outputs by kind, exit code
    and completeness, from the records spooled."""
    run, pid = env.tag()
    path = env.file("model.pt", b"weights")
    env.open(run, pid, 4, path, os.O_WRONLY)
    env.close(run, pid, 4, path, wbytes=7)
    env.exit(run, pid, code=0)
    env.finish(run)
    assert run.summary is not None
    assert (run.summary["outputs"], run.summary["exit_code"]) == ({"artifact": 1}, 0)
    assert run.summary["complete"] is True and run.summary["name"] == "job"


def test_a_summary_that_fails_leaves_the_run_complete(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Should the summary fail, the records are spooled already: the run stays complete,
    closed once, and roarctl asks the collector instead (no summary)."""

    def broken(*_args: object) -> dict[str, object]:
        raise ValueError("a bug")

    monkeypatch.setattr(summary, "finalized", broken)
    run, pid = env.tag()
    path = env.file("model.pt", b"weights")
    env.open(run, pid, 4, path, os.O_WRONLY)
    env.close(run, pid, 4, path, wbytes=7)
    env.exit(run, pid)
    files, finished = env.finish(run)  # exactly one RunFinished
    assert finished.complete and str(path) in files
    assert run.summary is None


def test_output_over_the_size_limit_is_recorded_unhashed_with_the_reason(env: Env) -> None:
    """An output larger than hash_max_bytes (default 64 GiB; sparse here) is recorded as an
    output without a hash, saying why; the run stays complete, the status counts it."""
    run, pid = env.tag()
    path = env.file("huge.ckpt", b"")
    env.open(run, pid, 4, path, os.O_WRONLY)
    os.truncate(path, 65 << 30)
    env.close(run, pid, 4, path, wbytes=1)
    env.exit(run, pid)
    files, finished = env.finish(run)
    access = files[str(path)]
    assert (access.role, access.hash, access.size) == (pb.ROLE_OUTPUT, "", 65 << 30)
    assert "over hash_max_bytes" in access.unhashed
    assert finished.complete
    assert env.tracker.unhashed_counts()["size"] == 1


@pytest.mark.parametrize(
    ("flags", "created"),
    [
        (os.O_WRONLY | os.O_TRUNC, False),
        (os.O_WRONLY | os.O_CREAT, True),
    ],
    ids=["truncated", "created"],
)
def test_truncated_or_created_file_is_an_output(env: Env, flags: int, created: bool) -> None:
    """O_TRUNC or a created file that is never written is still an output (left empty)."""
    run, pid = env.tag()
    path = env.file("empty.out", b"")
    env.open(run, pid, 5, path, flags, created)
    env.close(run, pid, 5, path)
    env.exit(run, pid)
    files, _ = env.finish(run)
    assert (files[str(path)].role, files[str(path)].hash) == (pb.ROLE_OUTPUT, b3(b""))


def test_read_only_open_with_trunc_flag_is_not_an_output(env: Env) -> None:
    """O_RDONLY|O_TRUNC does not truncate, so an untouched file is neither input nor output."""
    run, pid = env.tag()
    path = env.file("ro.txt", b"keep")
    env.open(run, pid, 3, path, os.O_RDONLY | os.O_TRUNC)
    env.close(run, pid, 3, path)
    env.exit(run, pid)
    files, _ = env.finish(run)
    assert files == {}


def test_opened_but_untouched_file_is_neither(env: Env) -> None:
    """A file opened and closed without I/O is neither input nor output."""
    run, pid = env.tag()
    path = env.file("peek.txt", b"data")
    env.open(run, pid, 3, path, os.O_RDWR)
    env.close(run, pid, 3, path)
    env.exit(run, pid)
    files, finished = env.finish(run)
    assert files == {}
    assert finished.complete


def test_read_then_written_is_an_output_read_too(env: Env) -> None:
    """A file both read and written is one output that records it was read."""
    run, pid = env.tag()
    path = env.file("db.sqlite", b"v1")
    env.open(run, pid, 3, path, os.O_RDWR)
    env.close(run, pid, 3, path, rbytes=2)
    env.open(run, pid, 3, path, os.O_RDWR)
    path.write_bytes(b"v2")
    env.close(run, pid, 3, path, wbytes=2)
    env.exit(run, pid)
    files, _ = env.finish(run)
    assert list(files) == [str(path)]
    access = files[str(path)]
    assert (access.role, access.read_too, access.hash) == (pb.ROLE_OUTPUT, True, b3(b"v2"))
    assert (access.bytes_read, access.bytes_written) == (2, 2)


def test_deleted_file_is_not_an_output(env: Env) -> None:
    """A temporary written and deleted before the run ends is recorded as deleted, without
    a hash, not as an output; the run stays complete."""
    run, pid = env.tag()
    tmp = env.file("scratch.tmp", b"x")
    kept = env.file("kept.out", b"y")
    for fd, path in ((3, tmp), (4, kept)):
        env.open(run, pid, fd, path, os.O_WRONLY)
        env.close(run, pid, fd, path, wbytes=1)
    tmp.unlink()
    env.exit(run, pid)
    files, finished = env.finish(run)
    assert files[str(kept)].role == pb.ROLE_OUTPUT
    assert (files[str(tmp)].role, files[str(tmp)].hash) == (pb.ROLE_DELETED, "")
    assert finished.complete


def test_proc_file_of_an_exited_process_is_gone_not_lost(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A /proc file the run read, of a process that exited before the pool hashed it (the
    kernel answers ESRCH), is gone like a deleted file: the run stays complete and lists
    nothing unhashed. Other read errors still make the run incomplete."""
    run, pid = env.tag()
    proc_file = Path(f"/proc/{pid}/status")
    unreadable = env.file("in.bin", b"data")
    errors = {
        str(proc_file): ProcessLookupError(errno.ESRCH, "No such process"),
        str(unreadable): PermissionError(errno.EACCES, "Permission denied"),
    }

    def failing(path: str, progress: object = None) -> Future[Digest]:
        failed: Future[Digest] = Future()
        failed.set_exception(errors[path])
        return failed

    monkeypatch.setattr(env.hasher, "submit", failing)
    env.open(run, pid, 3, proc_file, os.O_RDONLY)
    env.close(run, pid, 3, proc_file, rbytes=100)
    env.exit(run, pid)
    files, finished = env.finish(run)
    assert str(proc_file) not in files
    assert finished.complete, run.lost_reasons

    run, pid = env.tag()
    env.open(run, pid, 3, unreadable, os.O_RDONLY)
    env.close(run, pid, 3, unreadable, rbytes=4)
    env.exit(run, pid)
    files, finished = env.finish(run)
    assert files[str(unreadable)].unhashed == "could not be read: Permission denied"
    assert not finished.complete


def test_files_the_kernel_generates_are_never_read_to_be_hashed(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file on proc, sysfs, tracefs... (the kernel flags it) is listed unhashed, of kind
    system whatever its path, read or written, and never handed to the hasher: reading
    /proc/kmsg or trace_pipe again would take data from their readers, and a later read is
    not what the run saw. The run stays complete."""
    run, pid = env.tag()
    meminfo = Path("/proc/meminfo")
    knob = env.file("mounted-sysfs-knob", b"0\n")  # sysfs mounted where a data file could be
    submitted: list[str] = []
    real_submit, real_ahead = env.hasher.submit, env.hasher.ahead
    monkeypatch.setattr(env.hasher, "submit", lambda p, *a: submitted.append(p) or real_submit(p))
    monkeypatch.setattr(env.hasher, "ahead", lambda p: submitted.append(p) or real_ahead(p))
    env.open(run, pid, 3, meminfo, os.O_RDONLY)
    env.tracker.handle(
        dataclasses.replace(env.close_event(run, pid, 3, meminfo, 1400), generated=True)
    )
    env.open(run, pid, 4, knob, os.O_WRONLY)
    env.tracker.handle(
        dataclasses.replace(env.close_event(run, pid, 4, knob, wbytes=2), generated=True)
    )
    env.exit(run, pid)
    files, finished = env.finish(run)
    assert submitted == []
    for path, role in ((meminfo, pb.ROLE_INPUT), (knob, pb.ROLE_OUTPUT)):
        access = files[str(path)]
        assert (access.role, access.kind, access.hash) == (role, "system", "")
        assert "made by the kernel" in access.unhashed
    assert finished.complete, run.lost_reasons
    assert env.tracker.unhashed_counts()["generated"] == 2


def test_exit_flushes_open_descriptors(env: Env) -> None:
    """I/O on descriptors still open at exit (taken from the kernel map) is counted."""
    run, pid = env.tag()
    path = env.file("log.txt", b"abc")
    env.open(run, pid, 7, path, os.O_WRONLY)
    env.kernel.pending[pid] = [env.close_event(run, pid, 7, path, wbytes=3)]
    env.exit(run, pid)
    files, finished = env.finish(run)
    assert files[str(path)].role == pb.ROLE_OUTPUT
    assert finished.complete


def _exec(
    key: int, pid: int, start_ns: int, exe: str, argv: tuple[str, ...], env: bytes, cut: bool
) -> ExecEvent:
    """An exec event of `pid` under run key `key` (ppid 1, uid 0, cwd /work) with its
    environment block."""
    return ExecEvent(
        run_key=key,
        tgid=pid,
        ppid=1,
        start_ns=start_ns,
        uid=0,
        exe=exe,
        cwd="/work",
        argv=argv,
        truncated=False,
        argv_truncated=False,
        env=env,
        env_truncated=cut,
    )


def test_exec_updates_exe_argv_cwd(env: Env) -> None:
    """An exec replaces the process's exe/argv/cwd, re-announces it, and the exe is an input
    of kind code (not data), wherever it lies."""
    run, pid = env.tag()
    exe = env.file("tool", b"#!/bin/sh\n")
    start_ns = start_ticks(psutil.Process(pid)) * 1_000_000_000 // CLK_TCK
    env.tracker.handle(
        _exec(run.key, pid, start_ns, str(exe), ("tool", "-v"), b"HOME=/root\0", cut=False)
    )
    latest = env.sink.of(run, "process_started")[-1].process_started
    assert (latest.pid, latest.exe, list(latest.argv), latest.cwd) == (
        pid,
        str(exe),
        ["tool", "-v"],
        "/work",
    )
    env.exit(run, pid)
    files, finished = env.finish(run)
    access = files[str(exe)]
    assert (access.role, access.kind, access.hash) == (pb.ROLE_INPUT, "code", b3(b"#!/bin/sh\n"))
    assert finished.complete


def _exec_env(env: Env, run: Run, pid: int, block: bytes, cut: bool) -> pb.Environment:
    """Feed an exec of `pid` whose kernel copy of the environment is `block`; the
    environment recorded for it (the process's env_hash names it)."""
    env.tracker.handle(_exec(run.key, pid, 0, "/bin/true", ("true",), block, cut))
    started = env.sink.of(run, "process_started")[-1].process_started
    recorded = {r.environment.hash: r.environment for r in env.sink.of(run, "environment")}
    return recorded[started.env_hash]


def test_exec_records_the_kernels_copy_of_the_environment(env: Env) -> None:
    """A whole environment read by the kernel at exec is recorded as is (not /proc's, which
    the sleeper has too), secrets redacted."""
    run, pid = env.tag()
    recorded = _exec_env(env, run, pid, b"FOO=1\0API_TOKEN=abc\0", cut=False)
    assert dict(recorded.vars) == {"FOO": "1", "API_TOKEN": "<redacted>"}
    assert not recorded.truncated


def test_a_cut_environment_is_completed_from_proc_while_the_process_lives(env: Env) -> None:
    """The kernel's copy was cut: /proc has the whole block, and it is this exec's (it
    starts with the kernel's copy), so the environment is recorded whole."""
    run, pid = env.tag()
    block = Path(f"/proc/{pid}/environ").read_bytes()
    first = block[: block.index(b"\0") + 1]
    recorded = _exec_env(env, run, pid, first, cut=True)
    assert not recorded.truncated
    assert len(recorded.vars) == block.count(b"\0") > 1


def test_a_cut_environment_is_recorded_as_cut_when_proc_cannot_complete_it(env: Env) -> None:
    """The process is gone, or /proc holds another block (a later exec's, a reused pid's):
    the kernel's start of the environment is recorded, marked truncated, under a hash no
    whole environment with the same variables has."""
    run, pid = env.tag()
    gone = _exec_env(env, run, FAKE_PID, b"FOO=1\0API_TOKEN=abc\0", cut=True)
    assert (dict(gone.vars), gone.truncated) == ({"FOO": "1", "API_TOKEN": "<redacted>"}, True)
    whole = _exec_env(env, run, pid, b"FOO=1\0API_TOKEN=abc\0", cut=False)
    assert whole.hash != gone.hash
    other = _exec_env(env, run, pid, b"NOT_THE_SLEEPERS=1\0", cut=True)
    assert (dict(other.vars), other.truncated) == ({"NOT_THE_SLEEPERS": "1"}, True)


def test_fork_adds_a_process_that_inherits_the_parent(env: Env) -> None:
    """A forked child joins the run with its parent's exe/argv/cwd."""
    run, pid = env.tag()
    env.tracker.handle(ForkEvent(run.key, FAKE_PID, pid, 123_000_000_000, 0))
    child = env.sink.of(run, "process_started")[-1].process_started
    assert (child.pid, child.ppid, list(child.argv)) == (FAKE_PID, pid, ["sleep", "30"])
    assert child.start_ticks == 123 * CLK_TCK
    assert FAKE_PID in run.live


def test_child_exits_before_parent(env: Env) -> None:
    """The run stays open while its root lives and finalizes when the last process exits."""
    run, pid = env.tag()
    env.tracker.handle(ForkEvent(run.key, FAKE_PID, pid, 5_000_000_000, 0))
    env.exit(run, FAKE_PID, 0x100, start_ns=5_000_000_000)
    assert not run.finalized.wait(0.1)
    exited = env.sink.of(run, "process_exited")
    assert [(r.process_exited.pid, r.process_exited.exit_code) for r in exited] == [(FAKE_PID, 1)]
    env.exit(run, pid, 0)
    _, finished = env.finish(run)
    assert (finished.has_exit_code, finished.exit_code, finished.complete) == (True, 0, True)


def test_duplicate_exit_is_ignored(env: Env) -> None:
    """A second exit report for the same process emits nothing and does not end the run."""
    run, pid = env.tag()
    env.tracker.handle(ForkEvent(run.key, FAKE_PID, pid, 5_000_000_000, 0))
    env.exit(run, FAKE_PID, start_ns=5_000_000_000)
    env.exit(run, FAKE_PID, start_ns=5_000_000_000)
    assert len(env.sink.of(run, "process_exited")) == 1
    assert not run.finalized.wait(0.1)
    env.exit(run, pid)
    _, finished = env.finish(run)
    assert finished.complete


@pytest.mark.parametrize(("code", "status"), [(0, 0), (0x300, 3), (9, 137), (0x80 | 11, 139)])
def test_run_exit_code_from_root_exit_status(env: Env, code: int, status: int) -> None:
    """A spawned run's exit code is the root's status: exit(n) -> n, killed by signal s -> 128+s."""
    run, pid = env.tag()
    env.exit(run, pid, code)
    _, finished = env.finish(run)
    assert (finished.has_exit_code, finished.exit_code) == (True, status)


def test_pid_tagged_run_has_no_exit_code(env: Env) -> None:
    """A run adopted by pid reports no exit code of its own."""
    run, pid = env.tag(spawned=False)
    env.exit(run, pid, 0x300)
    _, finished = env.finish(run)
    assert finished.has_exit_code is False


def test_close_without_open_counts_a_loss(env: Env) -> None:
    """A close for a descriptor never announced makes the run incomplete."""
    run, pid = env.tag()
    path = env.file("mystery", b"?")
    env.close(run, pid, 9, path, rbytes=1)
    env.exit(run, pid)
    files, finished = env.finish(run)
    assert (finished.complete, finished.lost_events) == (False, 1)
    assert str(path) not in files
    (notice,) = env.sink.of(run, "loss_notice")
    assert notice.loss_notice.lost_events == 1


def test_kernel_drops_make_the_run_incomplete(env: Env) -> None:
    """Events the kernel dropped for the run are counted in RunFinished."""
    run, pid = env.tag()
    env.kernel.losses[run.key] = {"ringbuf_file": 3, "io_uring": 1}
    env.exit(run, pid)
    _, finished = env.finish(run)
    assert (finished.complete, finished.lost_events) == (False, 4)
    (notice,) = env.sink.of(run, "loss_notice")
    assert "io_uring (1)" in notice.loss_notice.reason  # the user learns why
    assert "ringbuf_file (3)" in notice.loss_notice.reason


def test_events_for_unknown_runs_are_unattributed(env: Env) -> None:
    """Events whose run key is not held are counted and otherwise ignored."""
    run, pid = env.tag()
    env.tracker.handle(ForkEvent(run.key + 1000, FAKE_PID, pid, 1, 0))
    env.tracker.handle(ExitEvent(run.key + 1000, pid, 0, 0))
    assert env.tracker.counts()["unattributed_events"] == 2
    assert FAKE_PID not in run.live
    assert not run.finalized.is_set()


def test_events_after_finalization_are_unattributed(env: Env) -> None:
    """Once a run is finalized, late events for its key are not applied to it."""
    run, pid = env.tag()
    env.exit(run, pid)
    env.finish(run)
    env.tracker.handle(ForkEvent(run.key, FAKE_PID, pid, 1, 0))
    assert env.tracker.counts() == {
        "processes": 0,
        "open_files": 0,
        "runs": 0,
        "unattributed_events": 1,
        "env_runs_started": 0,
        "env_runs_rejected": 0,
        "env_runs_elsewhere": 0,
    }


def _beside_another_roard(env: Env, tmp_path: Path) -> tuple[Tracker, contextlib.ExitStack]:
    """A tracker whose control socket is own.sock, with another roard's other.sock beside
    it (both listening sockets, closed with the stack)."""
    sockets = contextlib.ExitStack()
    for name in ("own.sock", "other.sock"):
        listening = sockets.enter_context(socket.socket(socket.AF_UNIX))
        listening.bind(str(tmp_path / name))
    tracker = Tracker(
        env.kernel, env.hasher, env.sink, ClassifyRules(), socket_path=str(tmp_path / "own.sock")
    )
    return tracker, sockets


def _assert_env_run(env: Env, tracker: Tracker, pid: int, records: list[str] | None) -> None:
    """The ROARD_RUN job `pid` started a run here with these records, or (None) was left to
    the other roard: counted, no longer tracked, nothing recorded."""
    here = records is not None
    counts = tracker.counts()
    assert (counts["runs"], counts["env_runs_started"]) == ((1, 1) if here else (0, 0))
    assert counts["env_runs_elsewhere"] == (0 if here else 1)
    assert (pid in env.kernel.tracked) is here
    assert [r.WhichOneof("body") for r in env.sink.records] == (records or [])


@pytest.mark.parametrize("meant_here", [True, False])
def test_an_env_run_meant_for_another_roard_is_left_to_it(
    env: Env, tmp_path: Path, meant_here: bool
) -> None:
    """A ROARD_RUN job whose ROARD_SOCKET names another listening socket starts no run
    here and is no longer tracked; one naming this daemon's socket starts its run."""
    tracker, sockets = _beside_another_roard(env, tmp_path)
    named = tmp_path / ("own.sock" if meant_here else "other.sock")
    proc = subprocess.Popen(["sleep", "30"], env={**os.environ, "ROARD_SOCKET": str(named)})
    env.sleepers.append(proc)
    while psutil.Process(proc.pid).cmdline() != ["sleep", "30"]:
        time.sleep(0.001)
    key = 1 << 62 | 7
    env.kernel.track(proc.pid, key)
    try:
        tracker.handle(EnvRunEvent(key, proc.pid, os.getpid(), 0, 0, "train", False))
    finally:
        sockets.close()
    _assert_env_run(env, tracker, proc.pid, ["run_tagged"] if meant_here else None)


@pytest.mark.parametrize("meant_here", [True, False])
def test_an_env_run_gone_before_it_is_looked_at_is_judged_at_its_exec(
    env: Env, tmp_path: Path, meant_here: bool
) -> None:
    """A short ROARD_RUN job whose events are read after it exited: /proc no longer shows
    its ROARD_SOCKET, so the exec event's copy of its environment decides (CI once saw a
    second roard take a `cp` meant for the first)."""
    tracker, sockets = _beside_another_roard(env, tmp_path)
    gone = subprocess.run(["sh", "-c", "echo $$"], capture_output=True, check=True)
    pid = int(gone.stdout)
    named = tmp_path / ("own.sock" if meant_here else "other.sock")
    block = f"ROARD_RUN=train\0ROARD_SOCKET={named}\0".encode()
    key = 1 << 62 | 8
    env.kernel.track(pid, key)
    try:
        tracker.handle(EnvRunEvent(key, pid, os.getpid(), 0, 0, "train", False))
        assert tracker.counts()["runs"] == 0  # not decided before the exec event
        tracker.handle(_exec(key, pid, 0, "/bin/cp", ("cp",), block, cut=False))
    finally:
        sockets.close()
    started = ["run_tagged", "environment", "process_started"]
    _assert_env_run(env, tracker, pid, started if meant_here else None)


def test_pid_reuse_drops_the_old_process(env: Env) -> None:
    """A fork reusing a live tracked pid replaces the old process and marks its run lossy."""
    old_run, old_pid = env.tag(spawned=False)
    keeper = env.sleeper()  # keeps the old run alive after its process is dropped
    env.tracker.handle(ForkEvent(old_run.key, keeper, old_pid, 1_000_000_000, 0))
    new_run, new_root = env.tag()
    env.tracker.handle(ForkEvent(new_run.key, old_pid, new_root, 9_000_000_000, 0))
    assert old_pid not in old_run.live
    assert old_pid in new_run.live
    env.exit(old_run, keeper, start_ns=1_000_000_000)
    _, finished = env.finish(old_run)
    assert (finished.complete, finished.lost_events) == (False, 1)
    env.exit(new_run, old_pid, start_ns=9_000_000_000)
    env.exit(new_run, new_root)
    _, finished = env.finish(new_run)
    assert finished.complete


def test_pid_reuse_of_a_runs_last_process_finalizes_that_run(env: Env) -> None:
    """When pid reuse drops a run's last process, that run is finalized (incomplete)."""
    old_run, old_pid = env.tag(spawned=False)
    new_run, new_root = env.tag()
    env.tracker.handle(ForkEvent(new_run.key, old_pid, new_root, 9_000_000_000, 0))
    assert old_run.finalized.wait(30)


def test_lazily_announced_file_comes_with_its_path_at_close(env: Env) -> None:
    """Low descriptors are announced once, at close, with the path: no open event needed."""
    run, pid = env.tag()
    data = env.file("lazy.csv", b"x,y\n")
    out = env.file("lazy.out", b"")
    env.tracker.handle(replace(env.close_event(run, pid, 3, data, rbytes=4), path=str(data)))
    created = env.close_event(run, pid, 4, out)
    env.tracker.handle(replace(created, path=str(out), open_flags=os.O_WRONLY, created=True))
    out.write_bytes(b"result")
    env.exit(run, pid)
    files, _ = env.finish(run)
    assert (files[str(data)].role, files[str(data)].hash) == (pb.ROLE_INPUT, b3(b"x,y\n"))
    assert (files[str(out)].role, files[str(out)].hash) == (pb.ROLE_OUTPUT, b3(b"result"))


def test_close_whose_path_the_kernel_lost_counts_a_loss(env: Env) -> None:
    """A lazily announced file whose path could not be walked marks the run incomplete."""
    run, pid = env.tag()
    data = env.file("gone.csv", b"1")
    env.tracker.handle(replace(env.close_event(run, pid, 3, data, rbytes=1), path_lost=True))
    env.exit(run, pid)
    files, finished = env.finish(run)
    assert str(data) not in files
    assert not finished.complete and finished.lost_events == 1


def test_lost_root_exit_still_finalizes_the_spawned_run_as_incomplete(env: Env) -> None:
    """If the root's exit event is dropped, `roarctl tag` (finish with the exit code roarctl
    saw) does not hang: the run is finalized, with that exit code, and marked incomplete."""
    run, _pid = env.tag()
    assert env.tracker.finish(run, 7, timeout=10)
    _files, finished = env.finish(run)
    assert finished.exit_code == 7
    assert not finished.complete and finished.lost_events >= 1


def test_reaper_finishes_a_run_whose_exit_event_was_lost(env: Env) -> None:
    """A tagged process that died without an exit event is caught on the second reap pass:
    the run is finalized and says it is incomplete."""
    run, pid = env.tag(spawned=False)
    env.tracker.reap()
    assert not run.finalizing  # alive: nothing to do
    proc = next(p for p in env.sleepers if p.pid == pid)
    proc.kill()
    proc.wait()
    env.tracker.reap()
    assert not run.finalizing  # dead once: maybe its exit event is still in the ring
    env.tracker.reap()
    _files, finished = env.finish(run)
    assert not finished.complete and finished.lost_events == 1


def test_write_to_temporary_then_rename_records_the_final_name(env: Env) -> None:
    """The atomic-write pattern: the final name is the output, the temporary is not."""
    run, pid = env.tag()
    tmp = env.file("model.pt.tmp", b"weights")
    env.open(run, pid, 20, tmp, os.O_WRONLY | os.O_CREAT, created=True)
    env.close(run, pid, 20, tmp, wbytes=7)
    final = tmp.with_name("model.pt")
    tmp.rename(final)
    env.tracker.handle(RenameEvent(run.key, pid, str(tmp), str(final), False, False))
    env.exit(run, pid)
    files, finished = env.finish(run)
    assert str(tmp) not in files
    assert (files[str(final)].role, files[str(final)].hash) == (pb.ROLE_OUTPUT, b3(b"weights"))
    assert finished.complete


def test_renamed_directory_moves_the_files_written_in_it(env: Env) -> None:
    """A checkpoint directory written under a temporary name, then renamed."""
    run, pid = env.tag()
    (env.tmp / "ckpt.tmp").mkdir()
    shard = env.file("ckpt.tmp/shard0.bin", b"s0")
    env.open(run, pid, 20, shard, os.O_WRONLY | os.O_CREAT, created=True)
    env.close(run, pid, 20, shard, wbytes=2)
    (env.tmp / "ckpt.tmp").rename(env.tmp / "ckpt")
    env.tracker.handle(
        RenameEvent(run.key, pid, str(env.tmp / "ckpt.tmp"), str(env.tmp / "ckpt"), False, False)
    )
    env.exit(run, pid)
    files, _ = env.finish(run)
    assert files[str(env.tmp / "ckpt" / "shard0.bin")].hash == b3(b"s0")
    assert str(shard) not in files


def test_unreadable_rename_counts_a_loss(env: Env) -> None:
    """A rename whose names the kernel could not read leaves the run incomplete."""
    run, pid = env.tag()
    env.tracker.handle(RenameEvent(run.key, pid, "/a", "/b", False, True))
    env.exit(run, pid)
    _files, finished = env.finish(run)
    assert not finished.complete


def start_ns(pid: int) -> int:
    """A live process's start time as the kernel reports it."""
    return start_ticks(psutil.Process(pid)) * 1_000_000_000 // CLK_TCK


def fake_cgroup(tmp_path: Path, pids: list[int], below: list[int], owner: int = 0) -> Cgroup:
    """A directory tree shaped like a cgroup with a child cgroup, listing these pids."""
    job = tmp_path / "job"
    (job / "step").mkdir(parents=True)
    (job / "cgroup.procs").write_text("".join(f"{pid}\n" for pid in pids))
    (job / "step" / "cgroup.procs").write_text("".join(f"{pid}\n" for pid in below))
    return Cgroup(str(job), 3, job.stat().st_ino, owner)


def remove_tree(path: Path) -> None:
    """rmdir a fake cgroup tree, as the scheduler does at job end."""
    for directory, _dirs, files in sorted(os.walk(path), key=lambda w: -len(w[0])):
        for name in files:
            Path(directory, name).unlink()
        Path(directory).rmdir()


def test_cgroup_run_adopts_the_tree_and_outlives_its_processes(env: Env) -> None:
    """tag_cgroup registers the cgroup with the kernel before scanning, adopts processes of
    the cgroup and its children, stays open when they all exit and ends when the cgroup is
    removed, unregistering it."""
    top, below = env.sleeper(), env.sleeper()
    cgroup = fake_cgroup(env.tmp, [top], [below])
    run = env.tracker.tag_cgroup(ROOT, cgroup, "slurm-1", {})
    assert env.kernel.cgroups == {(3, cgroup.kn_id): (run.key, None)}
    assert env.kernel.tracked == {top: run.key, below: run.key}
    (tagged,) = env.sink.of(run, "run_tagged")
    assert (tagged.run_tagged.how, tagged.run_tagged.cgroup) == ("cgroup", cgroup.path)
    assert {r.process_started.pid for r in env.sink.of(run, "process_started")} == {top, below}
    for pid in (top, below):
        env.exit(run, pid)
    env.tracker.reap()
    assert not run.finalized.wait(0.1)  # empty, but its cgroup is still there
    remove_tree(Path(cgroup.path))
    env.tracker.reap()
    _files, finished = env.finish(run)
    assert finished.complete
    assert env.kernel.cgroups == {}


def test_process_moved_into_the_cgroup_joins_its_run(env: Env) -> None:
    """A join event adopts the process with its argv from /proc; one already gone when the
    event is handled (a short job step) is still a process of the run, described by the
    event, until its exit event (which follows in the ring) ends it."""
    cgroup = fake_cgroup(env.tmp, [], [])
    run = env.tracker.tag_cgroup(ROOT, cgroup, None, {})
    assert not run.live  # an empty cgroup is a valid run: the job arrives later
    pid = env.sleeper()
    env.tracker.handle(CgroupJoinEvent(run.key, pid, start_ns(pid), os.getpid(), 0))
    (started,) = env.sink.of(run, "process_started")
    assert (started.process_started.pid, list(started.process_started.argv)) == (
        pid,
        ["sleep", "30"],
    )
    assert pid in run.live
    env.kernel.tracked[FAKE_PID] = run.key  # what the kernel did at the move
    env.tracker.handle(CgroupJoinEvent(run.key, FAKE_PID, 5_000_000_000, pid, 4242))
    gone = [r.process_started for r in env.sink.of(run, "process_started")][-1]
    assert (gone.pid, gone.ppid, gone.uid) == (FAKE_PID, pid, 4242)
    assert env.kernel.tracked[FAKE_PID] == run.key and FAKE_PID in run.live
    env.exit(run, FAKE_PID, start_ns=5_000_000_000)
    assert FAKE_PID not in run.live
    (exited,) = env.sink.of(run, "process_exited")
    assert exited.process_exited.pid == FAKE_PID


def test_cgroup_tagging_permissions_and_one_run_per_cgroup(env: Env) -> None:
    """Only root or the cgroup's owner may tag it; an owner's run admits only their own
    processes in the kernel; a cgroup already tagged is refused."""
    uid = os.getuid() + 4242
    cgroup = fake_cgroup(env.tmp, [], [], owner=uid)
    with pytest.raises(PermissionDenied, match="only root, or the user"):
        env.tracker.tag_cgroup(Caller(uid=uid + 1, pid=1), cgroup, None, {})
    run = env.tracker.tag_cgroup(Caller(uid=uid, pid=1), cgroup, None, {})
    assert env.kernel.cgroups[3, cgroup.kn_id] == (run.key, uid)
    assert run.uid == uid
    with pytest.raises(UsageError, match="already tagged"):
        env.tracker.tag_cgroup(ROOT, cgroup, None, {})


def test_directories_of_many_files_become_datasets(env: Env) -> None:
    """Inputs and outputs are grouped apart; a deleted file is in no dataset; each file
    keeps its own record."""
    run, pid = env.tag()
    (env.tmp / "shards").mkdir()
    (env.tmp / "ckpt").mkdir()
    shards = [env.file(f"shards/{i}.bin", bytes([i])) for i in range(8)]
    outs = [env.file(f"ckpt/{i}.pt", b"") for i in range(9)]
    for path in shards:
        env.open(run, pid, 3, path, os.O_RDONLY)
        env.close(run, pid, 3, path, rbytes=1)
    for path in outs:
        env.open(run, pid, 4, path, os.O_WRONLY)
        path.write_bytes(path.name.encode())
        env.close(run, pid, 4, path, wbytes=4)
    outs[0].unlink()
    env.exit(run, pid)
    files, _ = env.finish(run)
    assert len(files) == 8 + 9
    found = {r.dataset.role: r.dataset for r in env.sink.of(run, "dataset")}
    inputs, outputs = found[pb.ROLE_INPUT], found[pb.ROLE_OUTPUT]
    assert (inputs.path, len(inputs.files), inputs.size) == (str(env.tmp / "shards"), 8, 8)
    lines = sorted(f"{i}.bin\0{b3(bytes([i]))}\n".encode() for i in range(8))
    assert inputs.hash == "blake3:" + blake3.blake3(b"".join(lines)).hexdigest()
    assert outputs.path == str(env.tmp / "ckpt")
    assert sorted(f.path for f in outputs.files) == sorted(p.name for p in outs[1:])

"""End to end: every way a real program reads, writes, names and hands on files, each
checked through `roarctl show --json` for the inputs/outputs a user would expect (paths
and hashes), on the tracepoint tier alone. Cases Python's os module cannot make (clone
with CLONE_FILES, vfork) run as tiny C programs compiled in the test's directory."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Roard, python3, start_roard, stop_roard
from tests.e2e.test_observe import b3, by_path


def run_job(roard: Roard, workdir: Path, name: str, source: str) -> dict[str, Any]:
    """Run `source` as a Python job tagged `name` in `workdir`; its `show --json`, after
    checking that every output's hash is the file's content as left."""
    (workdir / "job.py").write_text(textwrap.dedent(source))
    roard.roarctl("tag", "--name", name, "--", python3(), "job.py", cwd=workdir)
    return checked(roard.show(name))


def checked(doc: dict[str, Any]) -> dict[str, Any]:
    """`doc`, once every output it lists is shown with the content it has now."""
    for out in doc["outputs"]:
        assert out["hash"] == b3(Path(out["path"])), out
    return doc


def artifacts(files: list[dict[str, Any]]) -> set[str]:
    """The paths of the artifacts among show's files (not the job's own script)."""
    return {f["path"] for f in files if f["kind"] == "artifact"}


def compile_c(workdir: Path, name: str, source: str) -> Path:
    """A C helper built with the system's gcc (installed by deploy/setup.sh)."""
    (workdir / f"{name}.c").write_text(textwrap.dedent(source))
    binary = workdir / name
    subprocess.run(["gcc", "-O1", "-o", str(binary), str(workdir / f"{name}.c")], check=True)
    return binary


# -- 1. namespace changes ----------------------------------------------------------------


def test_temporaries_deleted_in_the_run_are_deleted_not_outputs(
    roard: Roard, workdir: Path
) -> None:
    """Files written then removed (unlink, unlinkat, a scratch tree removed with rmdir)
    are listed under `deleted`, never as outputs; what survives is an output."""
    doc = run_job(
        roard,
        workdir,
        "io-temporaries",
        """
        import os, shutil
        with open("scratch.tmp", "w") as f:
            f.write("scratch")
        os.unlink("scratch.tmp")
        d = os.open(".", os.O_RDONLY)
        fd = os.open("at.tmp", os.O_WRONLY | os.O_CREAT, dir_fd=d)
        os.write(fd, b"relative to a dir fd")
        os.close(fd)
        os.unlink("at.tmp", dir_fd=d)
        os.mkdir("tree")
        with open("tree/part.bin", "wb") as f:
            f.write(b"part")
        shutil.rmtree("tree")
        with open("kept.txt", "w") as f:
            f.write("kept")
        """,
    )
    assert doc["complete"], doc["loss_reasons"]
    assert artifacts(doc["outputs"]) == {str(workdir / "kept.txt")}
    deleted = {d["path"] for d in doc["deleted"]}
    assert deleted == {str(workdir / n) for n in ("scratch.tmp", "at.tmp", "tree/part.bin")}


def test_deleting_a_file_the_run_did_not_make_is_recorded(roard: Roard, workdir: Path) -> None:
    """A file that existed before the run and that the run removed is `deleted`; one it
    read first stays an input (as consumed) too."""
    (workdir / "stale.out").write_text("an old result")
    (workdir / "consumed.csv").write_text("1,2,3\n")
    want = b3(workdir / "consumed.csv")
    doc = run_job(
        roard,
        workdir,
        "io-delete-existing",
        """
        import os
        os.unlink("stale.out")
        data = open("consumed.csv").read()
        os.remove("consumed.csv")
        """,
    )
    deleted = {d["path"] for d in doc["deleted"]}
    assert deleted == {str(workdir / "stale.out"), str(workdir / "consumed.csv")}
    # Inputs are hashed as consumed, off the event path: a file deleted at once may be
    # gone first. Then the run says so, rather than pass it over.
    consumed = by_path(doc["inputs"]).get(str(workdir / "consumed.csv"))
    if consumed is not None:
        assert consumed["hash"] == want
        assert doc["complete"], doc["loss_reasons"]
    else:
        assert not doc["complete"]
        assert doc["loss_reasons"] == [
            f"{workdir / 'consumed.csv'}: deleted before it could be hashed"
        ]
    assert not artifacts(doc["outputs"])


def test_hard_links_name_outputs(roard: Roard, workdir: Path) -> None:
    """link(2)/linkat(2): the new name is an output, also when the old name was a
    temporary removed afterwards (write, link to the final name, unlink the temporary)."""
    (workdir / "source.csv").write_text("a,b\n")
    doc = run_job(
        roard,
        workdir,
        "io-links",
        """
        import os
        with open("result.tmp", "w") as f:
            f.write("the result")
        os.link("result.tmp", "result.txt")
        os.unlink("result.tmp")
        d = os.open(".", os.O_RDONLY)
        os.link("source.csv", "source-link.csv", src_dir_fd=d, dst_dir_fd=d)
        """,
    )
    assert doc["complete"], doc["loss_reasons"]
    outputs = by_path(doc["outputs"])
    assert outputs[str(workdir / "result.txt")]["hash"] == b3(workdir / "result.txt")
    assert outputs[str(workdir / "source-link.csv")]["hash"] == b3(workdir / "source.csv")
    assert str(workdir / "result.tmp") not in outputs
    # The temporary's content lives on under its new name: nothing was lost.
    assert not doc["deleted"]


def test_o_tmpfile_linked_into_place_is_the_output(roard: Roard, workdir: Path) -> None:
    """Anonymous O_TMPFILE files given a name with linkat (through /proc/self/fd, and by
    descriptor with AT_EMPTY_PATH): the names are the outputs, and no made-up name of an
    anonymous file shows anywhere, not even for the one never named."""
    doc = run_job(
        roard,
        workdir,
        "io-tmpfile",
        """
        import ctypes, os
        AT_FDCWD, AT_SYMLINK_FOLLOW, AT_EMPTY_PATH = -100, 0x400, 0x1000
        libc = ctypes.CDLL(None, use_errno=True)
        fd = os.open(".", os.O_TMPFILE | os.O_WRONLY, 0o644)
        os.write(fd, b"born anonymous")
        proc = f"/proc/self/fd/{fd}".encode()
        if libc.linkat(AT_FDCWD, proc, AT_FDCWD, b"named.bin", AT_SYMLINK_FOLLOW):
            raise OSError(ctypes.get_errno(), "linkat")
        os.write(fd, b", written after it was named")
        os.close(fd)
        unnamed = os.open(".", os.O_TMPFILE | os.O_WRONLY, 0o644)
        os.write(unnamed, b"never named")
        os.close(unnamed)
        empty = os.open(".", os.O_TMPFILE | os.O_WRONLY, 0o644)
        os.write(empty, b"named through its descriptor")
        if libc.linkat(empty, b"", AT_FDCWD, b"by-fd.bin", AT_EMPTY_PATH):
            raise OSError(ctypes.get_errno(), "linkat")
        """,
    )
    assert doc["complete"], doc["loss_reasons"]
    assert artifacts(doc["outputs"]) == {str(workdir / "named.bin"), str(workdir / "by-fd.bin")}
    assert (workdir / "named.bin").read_bytes() == b"born anonymous, written after it was named"
    assert all("#" not in d["path"] for d in doc["deleted"]), doc["deleted"]


def test_truncate_by_path_and_o_trunc_alone_are_outputs(roard: Roard, workdir: Path) -> None:
    """truncate(2) by name, and an O_TRUNC open with no write, changed the file: outputs."""
    (workdir / "cut.bin").write_bytes(b"x" * 100)
    (workdir / "emptied.log").write_text("old log")
    doc = run_job(
        roard,
        workdir,
        "io-truncate",
        """
        import os
        os.truncate("cut.bin", 7)
        os.close(os.open("emptied.log", os.O_WRONLY | os.O_TRUNC))
        """,
    )
    outputs = by_path(doc["outputs"])
    assert outputs[str(workdir / "cut.bin")]["size"] == 7
    assert outputs[str(workdir / "emptied.log")]["size"] == 0


def test_rename_over_a_file_and_rename_exchange(roard: Roard, workdir: Path) -> None:
    """rename over an existing file: the final name is the output. renameat2 with
    RENAME_EXCHANGE: what the run wrote is the output under the name it now has."""
    (workdir / "current.ckpt").write_text("old checkpoint")
    (workdir / "live.cfg").write_text("live config")
    doc = run_job(
        roard,
        workdir,
        "io-rename-exchange",
        """
        import ctypes, os
        with open("next.ckpt", "w") as f:
            f.write("new checkpoint")
        os.rename("next.ckpt", "current.ckpt")
        with open("staged.cfg", "w") as f:
            f.write("staged config")
        libc = ctypes.CDLL(None, use_errno=True)
        AT_FDCWD, RENAME_EXCHANGE = -100, 2
        if libc.renameat2(AT_FDCWD, b"staged.cfg", AT_FDCWD, b"live.cfg", RENAME_EXCHANGE):
            raise OSError(ctypes.get_errno(), "renameat2")
        """,
    )
    assert doc["complete"], doc["loss_reasons"]
    outputs = by_path(doc["outputs"])
    assert (workdir / "live.cfg").read_text() == "staged config"
    assert outputs[str(workdir / "live.cfg")]["hash"] == b3(workdir / "live.cfg")
    assert outputs[str(workdir / "current.ckpt")]["hash"] == b3(workdir / "current.ckpt")
    assert str(workdir / "next.ckpt") not in outputs
    assert str(workdir / "staged.cfg") not in outputs  # it holds the old config: not written


# -- 2. descriptors ----------------------------------------------------------------------


def test_writes_through_duplicated_descriptors(roard: Roard, workdir: Path) -> None:
    """dup, dup2, dup3 and fcntl F_DUPFD/F_DUPFD_CLOEXEC: bytes written through the copy,
    after the original is closed, belong to the original's file."""
    doc = run_job(
        roard,
        workdir,
        "io-dup",
        """
        import fcntl, os
        def opened(name):
            return os.open(name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        copies = {}
        fd = opened("dup.out"); copies["dup.out"] = os.dup(fd); os.close(fd)
        fd = opened("dup2.out"); copies["dup2.out"] = os.dup2(fd, 40); os.close(fd)
        fd = opened("dup3.out")
        copies["dup3.out"] = os.dup2(fd, 41, inheritable=False); os.close(fd)
        fd = opened("dupfd.out"); copies["dupfd.out"] = fcntl.fcntl(fd, fcntl.F_DUPFD, 50)
        os.close(fd)
        fd = opened("cloexec.out")
        copies["cloexec.out"] = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 9); os.close(fd)
        for name, copy in copies.items():
            os.write(copy, f"through a copy of {name}".encode())
        for copy in copies.values():
            os.close(copy)
        """,
    )
    assert doc["complete"], doc["loss_reasons"]
    names = ("dup.out", "dup2.out", "dup3.out", "dupfd.out", "cloexec.out")
    assert artifacts(doc["outputs"]) == {str(workdir / n) for n in names}
    for name in names:
        assert (workdir / name).read_text() == f"through a copy of {name}"


def test_descriptors_across_fork_vfork_and_a_shared_table(roard: Roard, workdir: Path) -> None:
    """A descriptor written by a forked child, by a vfork child, and through a table
    shared with clone(CLONE_FILES), where the other process closes it for both."""
    helper = compile_c(
        workdir,
        "share",
        r"""
        #define _GNU_SOURCE
        #include <fcntl.h>
        #include <sched.h>
        #include <signal.h>
        #include <stdlib.h>
        #include <string.h>
        #include <sys/wait.h>
        #include <unistd.h>

        static int shared_fd;
        static int closer(void *arg) { close(shared_fd); return 0; }

        static void put(int fd, const char *s) { if (write(fd, s, strlen(s)) < 0) _exit(9); }

        int main(void) {
            int f = open("forked.out", O_WRONLY | O_CREAT | O_TRUNC, 0644);
            pid_t p = fork();
            if (p == 0) { put(f, "from the fork child"); _exit(0); }
            waitpid(p, 0, 0);
            close(f);
            int v = open("vforked.out", O_WRONLY | O_CREAT | O_TRUNC, 0644);
            p = vfork();
            if (p == 0) { put(v, "from the vfork child"); _exit(0); }
            waitpid(p, 0, 0);
            shared_fd = open("shared.out", O_WRONLY | O_CREAT | O_TRUNC, 0644);
            put(shared_fd, "written by the parent, closed by the clone");
            char *stack = malloc(65536);
            p = clone(closer, stack + 65536, CLONE_FILES | SIGCHLD, 0);
            waitpid(p, 0, 0);
            if (fcntl(shared_fd, F_GETFD) != -1) return 2; /* the shared table lost it */
            return 0;
        }
        """,
    )
    roard.roarctl("tag", "--name", "io-share", "--", str(helper), cwd=workdir)
    doc = checked(roard.show("io-share"))
    assert doc["complete"], doc["loss_reasons"]
    names = ("forked.out", "vforked.out", "shared.out")
    assert artifacts(doc["outputs"]) == {str(workdir / n) for n in names}
    assert len(doc["processes"]) == 4


def test_close_on_exec_and_descriptors_kept_across_exec(roard: Roard, workdir: Path) -> None:
    """A close-on-exec file written before exec, and an inheritable one the new program
    writes through: both outputs."""
    doc = run_job(
        roard,
        workdir,
        "io-exec-fds",
        """
        import os
        gone = os.open("cloexec.out", os.O_WRONLY | os.O_CREAT, 0o644)  # not inheritable
        os.write(gone, b"before exec")
        kept = os.open("inherited.out", os.O_WRONLY | os.O_CREAT, 0o644)
        os.set_inheritable(kept, True)
        os.write(kept, b"before exec, ")
        os.execv("/bin/sh", ["sh", "-c", f"echo after exec >&{kept}"])
        """,
    )
    assert doc["complete"], doc["loss_reasons"]
    assert (workdir / "inherited.out").read_text() == "before exec, after exec\n"
    assert artifacts(doc["outputs"]) == {
        str(workdir / "cloexec.out"),
        str(workdir / "inherited.out"),
    }


def test_descriptors_held_before_tag_pid(roard: Roard, workdir: Path) -> None:
    """A process adopted with `tag --pid`: files it opened before, and read or wrote only
    after, are its inputs and outputs; its child inherits one and writes it too."""
    (workdir / "early.csv").write_text("opened before the tag\n")
    (workdir / "job.py").write_text(
        textwrap.dedent("""
        import os, time
        src = open("early.csv")
        out = open("early.out", "w")
        low = os.open("low.out", os.O_WRONLY | os.O_CREAT, 0o644)
        high = os.dup2(os.open("high.out", os.O_WRONLY | os.O_CREAT, 0o644), 30)
        open("ready", "w").close()
        while not os.path.exists("go"):
            time.sleep(0.02)
        out.write(src.read() * 2)
        out.flush()
        os.write(high, b"on a high descriptor")
        if os.fork() == 0:
            os.write(low, b"from a child, through an inherited descriptor")
            os._exit(0)
        os.wait()
        """)
    )
    job = subprocess.Popen([python3(), "job.py"], cwd=workdir)
    try:
        deadline = time.monotonic() + 30
        while not (workdir / "ready").exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        run_id = roard.roarctl("tag", "--pid", str(job.pid), "--name", "io-adopted").stdout
        (workdir / "go").touch()
        assert job.wait(30) == 0
    finally:
        job.kill()
    doc = checked(roard.finished(run_id.strip()))
    assert doc["complete"], doc["loss_reasons"]
    assert artifacts(doc["inputs"]) == {str(workdir / "early.csv")}
    names = ("early.out", "low.out", "high.out")
    assert artifacts(doc["outputs"]) == {str(workdir / n) for n in names}


# -- 3. data movement --------------------------------------------------------------------


@pytest.fixture(scope="module")
def entry_exit_roard(
    _bpf_available: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Roard]:
    """A private daemon that hooks byte movers at entry and exit ([kernel] io_hooks), as on
    kernels where the exit alone cannot see the arguments."""
    daemon = start_roard(
        tmp_path_factory.mktemp("roard-entry-exit"), '[kernel]\nio_hooks = "entry+exit"\n'
    )
    yield daemon
    stop_roard(daemon)


@pytest.mark.parametrize("io_hooks", ["exit", "entry+exit"])
def test_positional_vectored_and_zero_copy_io(
    request: pytest.FixtureRequest, workdir: Path, io_hooks: str
) -> None:
    """pread/pwrite, readv/writev, preadv2/pwritev2, sendfile (shutil.copyfile),
    copy_file_range and splice through a pipe: each source an input (with the bytes read),
    each destination an output; the same whether the kernel hooks each call once (at exit,
    the default on x86_64) or at entry and exit."""
    roard: Roard = request.getfixturevalue("roard" if io_hooks == "exit" else "entry_exit_roard")
    status = json.loads(roard.roarctl("status", "--json").stdout)
    assert status["io_hooks"] == io_hooks
    for name in ("p.in", "v.in", "v2.in", "sendfile.in", "splice.in", "cfr.in"):
        (workdir / name).write_bytes(name.encode() * 1000)
    doc = run_job(
        roard,
        workdir,
        f"io-movers-{io_hooks}",
        """
        import os, shutil
        def rd(name):
            return os.open(name, os.O_RDONLY)
        def wr(name):
            return os.open(name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        fd, out = rd("p.in"), wr("p.out")
        os.pwrite(out, os.pread(fd, 100, 10), 5)
        fd, out = rd("v.in"), wr("v.out")
        a, b = bytearray(10), bytearray(20)
        os.readv(fd, [a, b])
        os.writev(out, [a, b])
        fd, out = rd("v2.in"), wr("v2.out")
        os.preadv(fd, [a], 0, os.RWF_HIPRI)
        os.pwritev(out, [a], 0, os.RWF_DSYNC)
        shutil.copyfile("sendfile.in", "sendfile.out")
        fd, out = rd("splice.in"), wr("splice.out")
        r, w = os.pipe()
        moved = os.splice(fd, w, 4096)
        os.splice(r, out, moved)
        fd, out = rd("cfr.in"), wr("cfr.out")
        os.copy_file_range(fd, out, 3000)
        """,
    )
    assert doc["complete"], doc["loss_reasons"]
    names = ("p", "v", "v2", "sendfile", "splice", "cfr")
    assert artifacts(doc["inputs"]) == {str(workdir / f"{n}.in") for n in names}
    assert artifacts(doc["outputs"]) == {str(workdir / f"{n}.out") for n in names}
    read = {f["path"]: f["bytes_read"] for f in doc["inputs"]}
    assert read[str(workdir / "p.in")] == 100
    assert read[str(workdir / "v.in")] == 30
    assert read[str(workdir / "cfr.in")] == 3000


def test_mmap_and_fallocate(roard: Roard, workdir: Path) -> None:
    """A PROT_READ mapping is an input, a MAP_SHARED writable one an output (written
    after its descriptor was closed), fallocate an output."""
    (workdir / "weights.bin").write_bytes(os.urandom(1 << 16))
    (workdir / "table.bin").write_bytes(bytes(4096))
    doc = run_job(
        roard,
        workdir,
        "io-mmap",
        """
        import mmap, os
        with open("weights.bin", "rb") as f:
            view = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)
        total = sum(view[::4096])
        fd = os.open("table.bin", os.O_RDWR)
        table = mmap.mmap(fd, 4096, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ | mmap.PROT_WRITE)
        os.close(fd)
        table[:5] = b"hello"
        table.flush()
        fd = os.open("reserved.bin", os.O_WRONLY | os.O_CREAT, 0o644)
        os.posix_fallocate(fd, 0, 8192)
        os.close(fd)
        """,
    )
    assert doc["complete"], doc["loss_reasons"]
    assert by_path(doc["inputs"])[str(workdir / "weights.bin")]["hash"] == b3(
        workdir / "weights.bin"
    )
    assert str(workdir / "table.bin") not in by_path(doc["inputs"])  # mapped, written: output
    outputs = by_path(doc["outputs"])
    assert (workdir / "table.bin").read_bytes()[:5] == b"hello"
    assert set(outputs) >= {str(workdir / "table.bin"), str(workdir / "reserved.bin")}
    assert outputs[str(workdir / "reserved.bin")]["size"] == 8192


# -- 4. opens ----------------------------------------------------------------------------


def test_open_variants_and_resolved_paths(roard: Roard, workdir: Path) -> None:
    """openat2, creat, dir-fd-relative names, fchdir and a symlinked directory: each file
    is recorded under its absolute, resolved path."""
    (workdir / "real").mkdir()
    (workdir / "alias").symlink_to("real")
    (workdir / "real" / "through-link.txt").write_text("read through a symlinked dir")
    (workdir / "sub").mkdir()
    doc = run_job(
        roard,
        workdir,
        "io-opens",
        """
        import ctypes, os
        libc = ctypes.CDLL(None, use_errno=True)
        class OpenHow(ctypes.Structure):
            _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64),
                        ("resolve", ctypes.c_uint64)]
        how = OpenHow(os.O_WRONLY | os.O_CREAT, 0o644, 0)
        fd = libc.syscall(437, -100, b"openat2.out", ctypes.byref(how), ctypes.sizeof(how))
        if fd < 0:
            raise OSError(ctypes.get_errno(), "openat2")
        os.write(fd, b"openat2")
        fd = libc.creat(b"creat.out", 0o644)
        os.write(fd, b"creat")
        d = os.open("sub", os.O_RDONLY)
        fd = os.open("dirfd.out", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=d)
        os.write(fd, b"relative to a dir fd")
        print(open("alias/through-link.txt").read())
        os.chdir(d)
        with open("fchdir.out", "w") as f:
            f.write("after fchdir")
        """,
    )
    assert doc["complete"], doc["loss_reasons"]
    assert artifacts(doc["inputs"]) == {str(workdir / "real" / "through-link.txt")}
    want = {"openat2.out", "creat.out", "sub/dirfd.out", "sub/fchdir.out"}
    assert artifacts(doc["outputs"]) == {str(workdir / n) for n in want}


def test_files_on_tmpfs_and_bind_mounts(roard: Roard, workdir: Path) -> None:
    """A tmpfs mounted in the work dir, a bind mount of a directory and /dev/shm: files are
    recorded under the path the program used, across the mount; those in /dev/shm (a
    dataset staged in memory, a checkpoint) are the run's artifacts, not system files."""
    (workdir / "scratch").mkdir()
    (workdir / "origin").mkdir()
    (workdir / "bound").mkdir()
    (workdir / "origin" / "shared.txt").write_text("through a bind mount")
    shm = Path(tempfile.mkdtemp(dir="/dev/shm"))
    (shm / "staged.bin").write_bytes(b"staged in memory")
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(workdir / "scratch")], check=True)
    try:
        subprocess.run(
            ["mount", "--bind", str(workdir / "origin"), str(workdir / "bound")], check=True
        )
        try:
            doc = run_job(
                roard,
                workdir,
                "io-mounts",
                f"""
                with open("scratch/on-tmpfs.bin", "wb") as f:
                    f.write(b"in memory")
                data = open("bound/shared.txt").read()
                with open("bound/bound.out", "w") as f:
                    f.write(data.upper())
                staged = open("{shm}/staged.bin", "rb").read()
                with open("{shm}/checkpoint.bin", "wb") as f:
                    f.write(staged[::-1])
                """,
            )
        finally:
            subprocess.run(["umount", str(workdir / "bound")], check=True)
        assert doc["complete"], doc["loss_reasons"]
        assert artifacts(doc["inputs"]) == {
            str(workdir / "bound" / "shared.txt"),
            str(shm / "staged.bin"),
        }
        assert by_path(doc["inputs"])[str(shm / "staged.bin")]["hash"] == b3(shm / "staged.bin")
        outputs = by_path(doc["outputs"])
        assert set(outputs) >= {str(workdir / "scratch/on-tmpfs.bin")}
        assert str(workdir / "bound" / "bound.out") in outputs
        assert outputs[str(shm / "checkpoint.bin")]["kind"] == "artifact"
        assert (workdir / "origin" / "bound.out").read_text() == "THROUGH A BIND MOUNT"
    finally:
        subprocess.run(["umount", str(workdir / "scratch")], check=True)
        shutil.rmtree(shm)


# -- 5. false positives ------------------------------------------------------------------


def test_files_merely_opened_or_stat_are_neither(roard: Roard, workdir: Path) -> None:
    """Opened but never read or written, O_RDWR only read, stat, zero-byte writes and a
    directory listed: nothing is an output; only the file read is an input."""
    for name in ("untouched.txt", "rdwr-read.txt", "rdwr-idle.txt", "zero.txt", "stat.txt"):
        (workdir / name).write_text(f"content of {name}")
    (workdir / "listed").mkdir()
    (workdir / "listed" / "entry.txt").write_text("listed, not read")
    doc = run_job(
        roard,
        workdir,
        "io-false-positives",
        """
        import os
        os.close(os.open("untouched.txt", os.O_RDONLY))
        fd = os.open("rdwr-read.txt", os.O_RDWR)
        os.read(fd, 100)
        os.close(os.open("rdwr-idle.txt", os.O_RDWR))
        fd = os.open("zero.txt", os.O_WRONLY)
        os.write(fd, b"")
        os.close(fd)
        os.stat("stat.txt")
        os.listdir("listed")
        d = os.open("listed", os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.read(d, 10)
        except IsADirectoryError:
            pass
        """,
    )
    assert doc["complete"], doc["loss_reasons"]
    assert artifacts(doc["inputs"]) == {str(workdir / "rdwr-read.txt")}
    assert not artifacts(doc["outputs"])
    assert not doc["deleted"]


def test_proc_sys_and_dev_traffic_is_never_an_artifact(roard: Roard, workdir: Path) -> None:
    """Reading /proc, /sys (also sysfs mounted in the work dir) and /dev, writing /dev/null
    and /proc/self/comm: no artifact. The kernel's generated files are listed unhashed
    (reason `generated`, kind system) and never read by roard; devices are not files; the
    run stays complete."""
    (workdir / "sysfs").mkdir()
    subprocess.run(["mount", "-t", "sysfs", "sysfs", str(workdir / "sysfs")], check=True)
    try:
        doc = run_job(
            roard,
            workdir,
            "io-pseudo",
            """
            import os
            open("/proc/self/status").read()
            open("/proc/meminfo").read()
            open("/sys/kernel/mm/transparent_hugepage/enabled").read()
            open("sysfs/kernel/mm/transparent_hugepage/defrag").read()
            with open("/proc/self/comm", "w") as f:
                f.write("io-pseudo")
            with open("/dev/urandom", "rb") as f:
                f.read(64)
            with open("/dev/null", "w") as f:
                f.write("discarded")
            with open("result.txt", "w") as f:
                f.write("real output")
            """,
        )
    finally:
        subprocess.run(["umount", str(workdir / "sysfs")], check=True)
    assert doc["complete"], doc["loss_reasons"]
    assert not artifacts(doc["inputs"])
    assert artifacts(doc["outputs"]) == {str(workdir / "result.txt")}
    pseudo = ("/proc/", "/sys/", "/dev/", str(workdir / "sysfs"))
    assert not [f for f in doc["inputs"] + doc["outputs"] if f["path"].startswith(pseudo)]
    assert {(f["role"], f["kind"]) for f in doc["unhashed"]} == {
        ("input", "system"),
        ("output", "system"),
    }
    assert all("made by the kernel" in f["reason"] for f in doc["unhashed"])
    paths = {f["path"] for f in doc["unhashed"]}
    assert {
        "/proc/meminfo",
        "/sys/kernel/mm/transparent_hugepage/enabled",
        str(workdir / "sysfs/kernel/mm/transparent_hugepage/defrag"),
    } <= paths
    assert not [p for p in paths if p.startswith("/dev/")]
    assert any(re.fullmatch(r"/proc/\d+/comm", p) for p in paths), paths
    status = json.loads(roard.roarctl("status", "--json").stdout)
    assert status["hash"]["unhashed"]["generated"] >= 4

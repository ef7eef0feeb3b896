"""Tests for roard.kernel.decode: raw ring-buffer records (built from the ABI) to events."""

from __future__ import annotations

import ctypes
import os
from typing import Any

import pytest

from roard.errors import KernelError
from roard.kernel.abi import Abi
from roard.kernel.decode import (
    CgroupJoinEvent,
    CloseEvent,
    Decoder,
    EnvRunEvent,
    ExecEvent,
    ExitEvent,
    ForkEvent,
    NameEvent,
    OpenEvent,
    RenameEvent,
    join_components,
    userspace_dev,
)

ABI = Abi.load()


HDR_FIELDS = {"tgid", "pid", "flags", "ktime_ns", "run_key"}


def record(kind: str, tail: bytes = b"", **fields: Any) -> bytes:
    """A raw record: struct roard_ev_<kind> (header fields given flat, type filled in)
    followed by its data tail."""
    struct = ABI.structs[f"roard_ev_{kind}"]
    # As the kernel sends them: no chroot unless a test says so.
    for name, *_ in struct._fields_:
        if name.endswith("seen_len"):
            fields.setdefault(name, ABI.const("SEEN_NONE"))
    hdr = ABI.structs["roard_hdr"](
        type=ABI.const(f"EV_{kind.upper()}"),
        **{k: v for k, v in fields.items() if k in HDR_FIELDS},
    )
    body = {k: v for k, v in fields.items() if k not in HDR_FIELDS}
    return bytes(struct(hdr=hdr, **body)) + tail


def kdev(major: int, minor: int) -> int:
    """A kernel-encoded dev_t."""
    return major << 20 | minor


@pytest.fixture
def decoder() -> Decoder:
    return Decoder(ABI)


def test_fork(decoder: Decoder) -> None:
    """A fork record decodes to a ForkEvent with both start times."""
    raw = record(
        "fork", run_key=7, tgid=100, ppid=99, start_boottime_ns=5, parent_start_boottime_ns=3
    )
    assert decoder.decode(raw) == ForkEvent(
        run_key=7, tgid=100, ppid=99, start_ns=5, parent_start_ns=3
    )


def test_cgroup_join(decoder: Decoder) -> None:
    """A cgroup-join record names the process that moved in, with its start time, parent
    and real uid."""
    raw = record(
        "cgroup_join", run_key=4, tgid=321, pid=321, start_boottime_ns=77, ppid=9, uid=1000
    )
    assert decoder.decode(raw) == CgroupJoinEvent(
        run_key=4, tgid=321, start_ns=77, ppid=9, uid=1000
    )


def test_exit_keeps_negative_and_raw_status(decoder: Decoder) -> None:
    """An exit record carries the kernel's raw exit code (signed) unchanged."""
    raw = record("exit", run_key=2, tgid=50, start_boottime_ns=11, exit_code=0x300)
    assert decoder.decode(raw) == ExitEvent(run_key=2, tgid=50, start_ns=11, exit_code=0x300)
    assert decoder.decode(record("exit", exit_code=-1)).exit_code == -1  # type: ignore[union-attr]


def test_open_path_and_device(decoder: Decoder) -> None:
    """An open record's leaf-first components become an absolute path; dev is converted."""
    tail = b"x.csv\0data\0tmp\0"
    raw = record(
        "open",
        tail,
        run_key=3,
        tgid=10,
        fd=4,
        ino=1234,
        dev=kdev(8, 300),
        open_flags=os.O_WRONLY | os.O_CREAT,
        fmode=ABI.const("FMODE_CREATED") | 0x1,
        origin=ABI.const("ORIGIN_OPEN"),
        path_len=len(tail),
    )
    assert decoder.decode(raw) == OpenEvent(
        run_key=3,
        tgid=10,
        fd=4,
        path="/tmp/data/x.csv",
        dev=os.makedev(8, 300),
        ino=1234,
        open_flags=os.O_WRONLY | os.O_CREAT,
        created=True,
        inherited=False,
        truncated=False,
    )


def test_open_inherited_and_truncated(decoder: Decoder) -> None:
    """The origin and the path-truncated header flag are reported."""
    tail = b"f\0"
    raw = record(
        "open",
        tail,
        origin=ABI.const("ORIGIN_INHERITED"),
        flags=ABI.const("HDR_PATH_TRUNCATED"),
        path_len=len(tail),
    )
    ev = decoder.decode(raw)
    assert isinstance(ev, OpenEvent)
    assert (ev.inherited, ev.truncated, ev.path) == (True, True, "/f")


def test_open_path_ignores_bytes_beyond_path_len(decoder: Decoder) -> None:
    """Only path_len bytes of the tail belong to the path."""
    raw = record("open", b"a\0b\0garbage\0", path_len=4)
    assert decoder.decode(raw).path == "/b/a"  # type: ignore[union-attr]


def test_close(decoder: Decoder) -> None:
    """A close record decodes the aggregated I/O counters, flags and converts dev."""
    raw = record(
        "close",
        run_key=1,
        tgid=2,
        fd=3,
        ino=4,
        dev=kdev(259, 1),
        rbytes=1 << 40,
        wbytes=6,
        nreads=7,
        nwrites=8,
        agg_flags=ABI.const("AGG_MMAP_READ") | ABI.const("AGG_MMAP_EXEC"),
        open_flags=os.O_RDWR,
        fmode=5,
    )
    assert decoder.decode(raw) == CloseEvent(
        run_key=1,
        tgid=2,
        fd=3,
        dev=os.makedev(259, 1),
        ino=4,
        rbytes=1 << 40,
        wbytes=6,
        nreads=7,
        nwrites=8,
        mmap_read=True,
        mmap_shared_write=False,
        mmap_exec=True,
        resized=False,
        open_flags=os.O_RDWR,
        created=False,
    )


def test_close_of_a_lazily_announced_file_carries_its_path(decoder: Decoder) -> None:
    """A close record with a data tail names the file; header flags say truncated/lost."""
    tail = b"x.csv\0data\0"
    raw = record("close", tail, run_key=1, tgid=2, fd=3, path_len=len(tail))
    event = decoder.decode(raw)
    assert isinstance(event, CloseEvent)
    assert (event.path, event.truncated, event.path_lost) == ("/data/x.csv", False, False)
    lost = record("close", flags=ABI.const("HDR_PATH_UNKNOWN"))
    assert decoder.decode(lost).path_lost is True  # type: ignore[union-attr]
    cut = record("close", tail, path_len=len(tail), flags=ABI.const("HDR_PATH_TRUNCATED"))
    assert decoder.decode(cut).truncated is True  # type: ignore[union-attr]


def _exec_tail(exe: bytes, cwd: bytes, argv: bytes, env: bytes = b"") -> dict[str, Any]:
    return {
        "tail": exe + cwd + argv + env,
        "exe_len": len(exe),
        "cwd_len": len(cwd),
        "argv_len": len(argv),
        "env_len": len(env),
    }


def test_exec_splits_exe_cwd_and_argv(decoder: Decoder) -> None:
    """An exec record's data is the exe path, the cwd path and NUL-separated argv."""
    parts = _exec_tail(
        b"python3\0bin\0usr\0", b"proj\0home\0", b"python3\0train.py\0--lr\0", b"A=1\0B=\0"
    )
    raw = record("exec", run_key=9, tgid=20, ppid=19, start_boottime_ns=77, uid=1000, **parts)
    assert decoder.decode(raw) == ExecEvent(
        run_key=9,
        tgid=20,
        ppid=19,
        start_ns=77,
        uid=1000,
        exe="/usr/bin/python3",
        cwd="/home/proj",
        argv=("python3", "train.py", "--lr"),
        truncated=False,
        argv_truncated=False,
        env=b"A=1\0B=\0",
        env_truncated=False,
    )


def test_exec_in_a_container_names_its_paths_every_way(decoder: Decoder) -> None:
    """In another mount namespace, the exe's and the cwd's paths within their filesystems
    (with their devices) follow the cwd, before argv; a chrooted exec says which part of
    the exe's walk it saw."""
    exe, cwd, exe_fs, cwd_fs = b"tool\0view\0", b"view\0", b"tool\0data\0", b"data\0"
    raw = record(
        "exec",
        exe + cwd + exe_fs + cwd_fs + b"./tool\0",
        flags=ABI.const("HDR_OTHER_MNTNS"),
        exe_len=len(exe),
        cwd_len=len(cwd),
        exe_fs_len=len(exe_fs),
        cwd_fs_len=len(cwd_fs),
        argv_len=len(b"./tool\0"),
        exe_dev=kdev(0, 42),
        cwd_dev=kdev(0, 43),
    )
    ev = decoder.decode(raw)
    assert isinstance(ev, ExecEvent) and ev.other_ns
    assert (ev.exe, ev.cwd, ev.argv) == ("/view/tool", "/view", ("./tool",))
    assert (ev.exe_dev, ev.exe_fs_path) == (os.makedev(0, 42), "/data/tool")
    assert (ev.cwd_dev, ev.cwd_fs_path) == (os.makedev(0, 43), "/data")
    assert ev.seen_exe == ""
    jailed = b"cat\0bin\0jail\0srv\0"
    ev = decoder.decode(
        record("exec", **_exec_tail(jailed, b"", b""), exe_seen_len=len(b"cat\0bin\0"))
    )
    assert isinstance(ev, ExecEvent) and not ev.other_ns and ev.exe_fs_path is None
    assert (ev.exe, ev.seen_exe) == ("/srv/jail/bin/cat", "/bin/cat")


def test_exec_without_argv(decoder: Decoder) -> None:
    """An empty argv blob decodes to an empty tuple, not ('',)."""
    raw = record("exec", **_exec_tail(b"sh\0bin\0", b"", b""))
    ev = decoder.decode(raw)
    assert isinstance(ev, ExecEvent)
    assert (ev.exe, ev.cwd, ev.argv) == ("/bin/sh", "/", ())


def test_exec_keeps_empty_arguments_in_the_middle(decoder: Decoder) -> None:
    """An empty argument between others survives the split."""
    raw = record("exec", **_exec_tail(b"e\0", b"", b"prog\0\0last\0"))
    assert decoder.decode(raw).argv == ("prog", "", "last")  # type: ignore[union-attr]


def test_exec_keeps_trailing_empty_argument(decoder: Decoder) -> None:
    """argv ["echo", ""] is reported as two arguments."""
    raw = record("exec", **_exec_tail(b"e\0", b"", b"echo\0\0"))
    assert decoder.decode(raw).argv == ("echo", "")  # type: ignore[union-attr]


def test_exec_truncated_flags(decoder: Decoder) -> None:
    """A cut path and a cut argv are reported apart (only the first loses information)."""
    for flag, expected in (
        ("HDR_ARGV_TRUNCATED", (False, True)),
        ("HDR_PATH_TRUNCATED", (True, False)),
    ):
        raw = record("exec", flags=ABI.const(flag), **_exec_tail(b"a\0", b"", b"a\0"))
        ev = decoder.decode(raw)
        assert (ev.truncated, ev.argv_truncated) == expected  # type: ignore[union-attr]


def test_exec_truncated_environment_keeps_whole_entries_only(decoder: Decoder) -> None:
    """A cut environment block is flagged apart from the rest, and its last, cut entry is
    dropped: what is left of a secret could escape the patterns that redact it whole."""
    parts = _exec_tail(b"a\0", b"", b"a\0", b"A=1\0HF=hf_abc")
    whole = decoder.decode(record("exec", **parts))
    assert isinstance(whole, ExecEvent)
    assert (whole.env, whole.env_truncated, whole.truncated) == (b"A=1\0HF=hf_abc", False, False)
    cut = decoder.decode(record("exec", flags=ABI.const("HDR_ENV_TRUNCATED"), **parts))
    assert isinstance(cut, ExecEvent)
    assert (cut.env, cut.env_truncated, cut.argv_truncated) == (b"A=1\0", True, False)
    unread = record("exec", flags=ABI.const("HDR_ENV_TRUNCATED"), **_exec_tail(b"a\0", b"", b""))
    assert decoder.decode(unread).env == b""  # type: ignore[union-attr]


def test_non_utf8_path_round_trips(decoder: Decoder) -> None:
    """Undecodable path bytes survive as surrogate escapes (os.fsencode gives them back)."""
    tail = b"\xff\xfe.bin\0tmp\0"
    ev = decoder.decode(record("open", tail, path_len=len(tail)))
    assert os.fsencode(ev.path) == b"/tmp/\xff\xfe.bin"  # type: ignore[union-attr]


@pytest.mark.parametrize("size", [0, 3])
def test_short_record_is_rejected(decoder: Decoder, size: int) -> None:
    """A record too short to hold a type raises KernelError."""
    with pytest.raises(KernelError, match="short"):
        decoder.decode(b"\x01" * size)


def test_truncated_struct_is_rejected(decoder: Decoder) -> None:
    """A record shorter than its event struct raises KernelError."""
    raw = record("close")
    with pytest.raises(KernelError):
        decoder.decode(raw[: ctypes.sizeof(ABI.structs["roard_ev_close"]) - 1])


def test_unknown_type_is_rejected(decoder: Decoder) -> None:
    """A record whose type is no ROARD_EV_* code raises KernelError."""
    with pytest.raises(KernelError, match="type 99"):
        decoder.decode((99).to_bytes(4, "little") + bytes(60))


def test_userspace_dev() -> None:
    """Kernel dev_t (major<<20|minor) converts to os.makedev(major, minor)."""
    assert userspace_dev(kdev(8, 1)) == os.makedev(8, 1)
    assert userspace_dev(kdev(0, 0x12345)) == os.makedev(0, 0x12345)
    assert os.major(userspace_dev(kdev(4095, 7))) == 4095


def test_join_components_root() -> None:
    """No components is the root directory."""
    assert join_components(b"") == "/"


def test_rename_names_are_resolved_against_their_base_dirs(decoder: Decoder) -> None:
    """Relative names join their base dir (cwd or dir fd); absolute ones the process's
    root, here a chroot's (/srv/jail): the names become host paths."""
    olddir, old, newdir, new = b"work\0home\0", b"../tmp/x.part\0", b"jail\0srv\0", b"/out/x\0"
    raw = record(
        "rename",
        olddir + old + newdir + new,
        run_key=1,
        tgid=2,
        rename_flags=ABI.const("RENAME_EXCHANGE"),
        olddir_len=len(olddir),
        old_len=len(old),
        newdir_len=len(newdir),
        new_len=len(new),
    )
    event = decoder.decode(raw)
    assert isinstance(event, RenameEvent)
    assert (event.old, event.new) == ("/home/tmp/x.part", "/srv/jail/out/x")
    assert event.exchange and not event.truncated


def test_a_chrooted_process_s_names_come_with_the_paths_it_saw(decoder: Decoder) -> None:
    """Walks past a chrooted process's root (/srv/jail) say where they passed it: the
    components below it are the path the process saw; the whole walk is the host path.
    A rename's (or a link's) absolute name resolves from its root, a relative one from its
    cwd."""
    path = b"in.txt\0data\0jail\0srv\0"
    below_root = len(b"in.txt\0data\0")
    opened = decoder.decode(
        record("open", path, run_key=1, tgid=2, fd=3, path_len=len(path), seen_len=below_root)
    )
    assert isinstance(opened, OpenEvent)
    assert (opened.path, opened.seen) == ("/srv/jail/data/in.txt", "/data/in.txt")
    closed = decoder.decode(
        record("close", path, run_key=1, tgid=2, fd=3, path_len=len(path), seen_len=below_root)
    )
    assert isinstance(closed, CloseEvent)
    assert (closed.path, closed.seen) == ("/srv/jail/data/in.txt", "/data/in.txt")
    # Not chrooted: the kernel says SEEN_NONE, or passed the root at the walk's very end.
    for seen_len in (ABI.const("SEEN_NONE"), len(path)):
        plain = decoder.decode(
            record("open", path, run_key=1, tgid=2, fd=3, path_len=len(path), seen_len=seen_len)
        )
        assert isinstance(plain, OpenEvent) and plain.seen == ""
    root, cwd = b"jail\0srv\0", b"data\0jail\0srv\0"
    old, new = b"/data/x.part\0", b"x\0"
    renamed, linked = (
        decoder.decode(
            record(
                "rename",
                root + old + cwd + new,
                op=ABI.const(op),
                olddir_len=len(root),
                old_len=len(old),
                newdir_len=len(cwd),
                new_len=len(new),
                olddir_seen_len=0,
                newdir_seen_len=len(b"data\0"),
            )
        )
        for op in ("NAME_RENAME", "NAME_LINK")
    )
    assert isinstance(renamed, RenameEvent)
    assert (renamed.old, renamed.new) == ("/srv/jail/data/x.part", "/srv/jail/data/x")
    assert (renamed.seen_old, renamed.seen_new) == ("/data/x.part", "/data/x")
    assert isinstance(linked, NameEvent)
    assert (linked.path, linked.new) == ("/srv/jail/data/x.part", "/srv/jail/data/x")
    assert (linked.seen_path, linked.seen_new) == ("/data/x.part", "/data/x")


def test_links_unlinks_and_truncates_by_name_share_the_rename_record(decoder: Decoder) -> None:
    """A link keeps its new name (its old one may be "", linkat with AT_EMPTY_PATH); an
    unlink or a truncate names one file."""
    cwd, new = b"job\0", b"final.bin\0"
    link = decoder.decode(
        record(
            "rename",
            cwd + b"\0" + cwd + new,
            op=ABI.const("NAME_LINK"),
            olddir_len=len(cwd),
            old_len=1,
            newdir_len=len(cwd),
            new_len=len(new),
        )
    )
    assert isinstance(link, NameEvent)
    assert (link.op, link.new, link.truncated) == ("link", "/job/final.bin", False)
    name = b"stale.out\0"
    unlink = decoder.decode(
        record(
            "rename",
            cwd + name,
            op=ABI.const("NAME_UNLINK"),
            olddir_len=len(cwd),
            old_len=len(name),
        )
    )
    assert isinstance(unlink, NameEvent)
    assert (unlink.op, unlink.path, unlink.new) == ("unlink", "/job/stale.out", "")
    cut = decoder.decode(record("rename", cwd, op=ABI.const("NAME_TRUNCATE"), olddir_len=len(cwd)))
    assert isinstance(cut, NameEvent) and cut.truncated


def test_env_run_carries_the_value_after_the_variable_name(decoder: Decoder) -> None:
    """The kernel sends the whole entry, ROARD_RUN=<value>; the event keeps only the value
    (an '=' inside the value stays), and the truncation flag."""
    entry = b"ROARD_RUN=train=x"
    raw = record(
        "env_run",
        entry + b"\0",
        run_key=1 << 63 | 5,
        tgid=30,
        ppid=29,
        start_boottime_ns=88,
        uid=1000,
        entry_len=len(entry),
    )
    assert decoder.decode(raw) == EnvRunEvent(
        run_key=1 << 63 | 5, tgid=30, ppid=29, start_ns=88, uid=1000, value="train=x",
        truncated=False,
    )  # fmt: skip
    cut = record("env_run", entry, flags=ABI.const("HDR_VALUE_TRUNCATED"), entry_len=len(entry))
    ev = decoder.decode(cut)
    assert isinstance(ev, EnvRunEvent) and ev.truncated

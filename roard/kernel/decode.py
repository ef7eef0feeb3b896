"""Decode ring-buffer records into plain event values."""

from __future__ import annotations

import ctypes
import os
from dataclasses import dataclass
from typing import Any

from roard.errors import KernelError
from roard.kernel.abi import Abi


@dataclass(frozen=True)
class ForkEvent:
    """A tracked process forked a new process (which inherits the run)."""

    run_key: int
    tgid: int
    ppid: int
    start_ns: int
    parent_start_ns: int


@dataclass(frozen=True)
class ExecEvent:
    """A tracked process replaced its program."""

    run_key: int
    tgid: int
    ppid: int
    start_ns: int
    uid: int
    exe: str
    cwd: str
    argv: tuple[str, ...]
    truncated: bool  # the exe or cwd path was cut short by the in-kernel walk
    argv_truncated: bool  # argv longer than ROARD_ARGV_MAX: only its start is known
    # The environment block the program got (NUL-terminated NAME=value entries), read by
    # the kernel at exec; whole entries only.
    env: bytes
    env_truncated: bool  # longer than ROARD_ENV_MAX, or unreadable: `env` is its start
    other_ns: bool = False  # `exe` and `cwd` are named in another mount namespace
    # With other_ns: each path from its filesystem's root and that filesystem's device, as
    # OpenEvent's fs_path and dev (None: the kernel could not walk it).
    exe_dev: int = 0
    exe_fs_path: str | None = None
    cwd_dev: int = 0
    cwd_fs_path: str | None = None
    seen_exe: str = ""  # a chrooted process's name for `exe` (which is past its root)


@dataclass(frozen=True)
class ExitEvent:
    """The last thread of a tracked process exited."""

    run_key: int
    tgid: int
    start_ns: int
    exit_code: int


@dataclass(slots=True)  # not frozen: one per file, and frozen doubles __init__'s cost
class OpenEvent:
    """A regular file became reachable through (tgid, fd)."""

    run_key: int
    tgid: int
    fd: int
    path: str
    dev: int
    ino: int
    open_flags: int
    created: bool  # this open created the file
    inherited: bool
    truncated: bool
    other_ns: bool = False  # named in another mount namespace than roard's
    fs_path: str | None = None  # with other_ns: the path from its filesystem's root
    seen: str = ""  # a chrooted process's name for `path` (which is past its root)


@dataclass(slots=True)  # not frozen: one per file, and frozen doubles __init__'s cost
class CloseEvent:
    """I/O aggregated in the kernel on (tgid, fd) until it was closed, reused, or its
    process exec'd or exited. `path` is None when an OpenEvent announced the file earlier
    (or, with path_lost, when the kernel could no longer see it)."""

    run_key: int
    tgid: int
    fd: int
    dev: int
    ino: int
    rbytes: int
    wbytes: int
    nreads: int
    nwrites: int
    mmap_read: bool
    mmap_shared_write: bool
    resized: bool  # ftruncate/fallocate through this descriptor
    open_flags: int
    created: bool
    path: str | None = None
    truncated: bool = False
    path_lost: bool = False
    other_ns: bool = False  # `path` is named in another mount namespace than roard's
    fs_path: str | None = None  # with other_ns: the path from its filesystem's root
    seen: str = ""  # as in OpenEvent
    # Read / written by io_uring or aio, seen by the VFS hook (fd ROARD_FD_NONE, no bytes).
    vfs_read: bool = False
    vfs_write: bool = False
    mmap_exec: bool = False  # mapped executable: code it ran (a shared library), not data
    # On proc, sysfs, tracefs...: content the kernel makes when read, never hashed.
    generated: bool = False


@dataclass(frozen=True)
class RenameEvent:
    """A tracked process renamed `old` to `new` (absolute, as the process sees them)."""

    run_key: int
    tgid: int
    old: str
    new: str
    exchange: bool  # RENAME_EXCHANGE: the two names swapped files
    truncated: bool  # a name or base dir could not be read whole
    other_ns: bool = False  # named in another mount namespace than roard's
    # A chrooted process's names for `old` and `new` (which resolve past its root).
    seen_old: str = ""
    seen_new: str = ""


@dataclass(frozen=True)
class NameEvent:
    """A tracked process linked `path` to `new` (op "link"), unlinked `path` ("unlink"), or
    truncated it by name ("truncate"); names absolute, as the process sees them."""

    run_key: int
    tgid: int
    op: str
    path: str
    new: str  # "" unless op is "link"
    truncated: bool  # a name or base dir could not be read whole
    other_ns: bool = False  # named in another mount namespace than roard's
    # A chrooted process's names for `path` and `new` (which resolve past its root).
    seen_path: str = ""
    seen_new: str = ""


@dataclass(frozen=True)
class CgroupJoinEvent:
    """A process moved into a tagged cgroup (or one below it): it is now tracked under
    that cgroup's run, and its children follow by fork."""

    run_key: int
    tgid: int
    start_ns: int
    ppid: int
    uid: int  # real uid


@dataclass(frozen=True)
class EnvRunEvent:
    """An untracked process exec'd with ROARD_RUN=`value` in its environment; the kernel
    now tracks it under the new `run_key` (its exec event follows)."""

    run_key: int
    tgid: int
    ppid: int
    start_ns: int
    uid: int  # real uid
    value: str
    truncated: bool  # the entry was longer than the kernel reads: `value` is its start


Event = (
    ForkEvent
    | ExecEvent
    | ExitEvent
    | OpenEvent
    | CloseEvent
    | RenameEvent
    | NameEvent
    | CgroupJoinEvent
    | EnvRunEvent
)


def _resolve(base: bytes, name: bytes) -> str:
    """A name passed to a syscall, made absolute against its base dir (for an absolute
    name, the process's root: "/" unless it is chrooted), normalized."""
    text = name.decode("utf-8", "surrogateescape")
    # "//x" would survive normpath (POSIX keeps two leading slashes): join on one.
    return os.path.normpath(join_components(base).rstrip("/") + "/" + text.lstrip("/"))


def userspace_dev(kernel_dev: int) -> int:
    """Kernel dev_t (major << 20 | minor) to the encoding stat(2) returns."""
    return os.makedev(kernel_dev >> 20, kernel_dev & 0xFFFFF)


def join_components(blob: bytes) -> str:
    """Leaf-first, NUL-terminated path components to an absolute path."""
    parts = [p.decode("utf-8", "surrogateescape") for p in blob.split(b"\0") if p]
    return "/" + "/".join(reversed(parts))


class Decoder:
    """Turns raw ring-buffer records into events, using the layouts of roard_abi.h."""

    def __init__(self, abi: Abi) -> None:
        self._abi = abi
        self._structs = abi.event_structs
        self._ev = {
            name: abi.const(f"EV_{name}")
            for name in ("FORK", "EXEC", "EXIT", "OPEN", "RENAME", "CGROUP_JOIN", "ENV_RUN")
        }
        self._path_truncated = abi.const("HDR_PATH_TRUNCATED")
        self._path_unknown = abi.const("HDR_PATH_UNKNOWN")
        self._other_ns = abi.const("HDR_OTHER_MNTNS")
        self._value_truncated = abi.const("HDR_VALUE_TRUNCATED")
        self._mmap_read = abi.const("AGG_MMAP_READ")
        self._vfs_read = abi.const("AGG_VFS_READ")
        self._vfs_write = abi.const("AGG_VFS_WRITE")
        self._mmap_shared_write = abi.const("AGG_MMAP_SHARED_WRITE")
        self._mmap_exec = abi.const("AGG_MMAP_EXEC")
        self._resized = abi.const("AGG_RESIZED")
        self._generated = abi.const("AGG_GENERATED")
        self._fmode_created = abi.const("FMODE_CREATED")
        self._rename_exchange = abi.const("RENAME_EXCHANGE")
        self._name_rename = abi.const("NAME_RENAME")
        self._name_ops = {
            abi.const(f"NAME_{op.upper()}"): op for op in ("link", "unlink", "truncate")
        }
        self._argv_truncated = abi.const("HDR_ARGV_TRUNCATED")
        self._env_truncated = abi.const("HDR_ENV_TRUNCATED")
        self._inherited = abi.const("ORIGIN_INHERITED")

    def decode(self, data: bytes) -> Event:
        """Decode one record; raise KernelError for a record that does not match the ABI."""
        if len(data) < 4:
            raise KernelError(f"short ring-buffer record ({len(data)} bytes)")
        etype = int.from_bytes(data[:4], "little")
        struct = self._structs.get(etype)
        if struct is None or len(data) < ctypes.sizeof(struct):
            raise KernelError(f"undecodable ring-buffer record: type {etype}, {len(data)} bytes")
        ev = struct.from_buffer_copy(data[: ctypes.sizeof(struct)])
        hdr = ev.hdr
        tail = data[ctypes.sizeof(struct) :]
        if etype == self._ev["FORK"]:
            return ForkEvent(
                hdr.run_key, hdr.tgid, ev.ppid, ev.start_boottime_ns, ev.parent_start_boottime_ns
            )
        if etype == self._ev["EXEC"]:
            exe = tail[: ev.exe_len]
            cwd = tail[ev.exe_len : ev.exe_len + ev.cwd_len]
            start = ev.exe_len + ev.cwd_len
            exe_fs = tail[start : start + ev.exe_fs_len]
            start += ev.exe_fs_len
            cwd_fs = tail[start : start + ev.cwd_fs_len]
            start += ev.cwd_fs_len
            blob = tail[start : start + ev.argv_len]
            # Each argument ends in one NUL; strip only the last so "" arguments survive.
            argv = blob.removesuffix(b"\0").split(b"\0")
            start += ev.argv_len
            env = tail[start : start + ev.env_len]
            env_truncated = bool(hdr.flags & self._env_truncated)
            if env_truncated:
                # A cut entry could be a secret cut short of what its pattern recognizes.
                env = env[: env.rfind(b"\0") + 1]
            return ExecEvent(
                run_key=hdr.run_key,
                tgid=hdr.tgid,
                ppid=ev.ppid,
                start_ns=ev.start_boottime_ns,
                uid=ev.uid,
                exe=join_components(exe),
                cwd=join_components(cwd),
                argv=tuple(a.decode("utf-8", "surrogateescape") for a in argv if ev.argv_len),
                truncated=bool(hdr.flags & self._path_truncated),
                argv_truncated=bool(hdr.flags & self._argv_truncated),
                env=env,
                env_truncated=env_truncated,
                other_ns=bool(hdr.flags & self._other_ns),
                exe_dev=userspace_dev(ev.exe_dev),
                exe_fs_path=join_components(exe_fs) if exe_fs else None,
                cwd_dev=userspace_dev(ev.cwd_dev),
                cwd_fs_path=join_components(cwd_fs) if cwd_fs else None,
                seen_exe=self._seen(exe, ev.exe_seen_len, ev.exe_len, hdr.flags),
            )
        if etype == self._ev["CGROUP_JOIN"]:
            return CgroupJoinEvent(hdr.run_key, hdr.tgid, ev.start_boottime_ns, ev.ppid, ev.uid)
        if etype == self._ev["EXIT"]:
            return ExitEvent(hdr.run_key, hdr.tgid, ev.start_boottime_ns, ev.exit_code)
        if etype == self._ev["ENV_RUN"]:
            _name, _eq, value = tail[: ev.entry_len].partition(b"=")  # ROARD_RUN=<value>
            return EnvRunEvent(
                run_key=hdr.run_key,
                tgid=hdr.tgid,
                ppid=ev.ppid,
                start_ns=ev.start_boottime_ns,
                uid=ev.uid,
                value=value.decode("utf-8", "surrogateescape"),
                truncated=bool(hdr.flags & self._value_truncated),
            )
        if etype == self._ev["RENAME"]:
            return self._name_change(ev, tail)
        if etype == self._ev["OPEN"]:
            return OpenEvent(
                run_key=hdr.run_key,
                tgid=hdr.tgid,
                fd=ev.fd,
                path=join_components(tail[: ev.path_len]),
                dev=userspace_dev(ev.dev),
                ino=ev.ino,
                open_flags=ev.open_flags,
                created=bool(ev.fmode & self._fmode_created),
                inherited=ev.origin == self._inherited,
                truncated=bool(hdr.flags & self._path_truncated),
                other_ns=bool(hdr.flags & self._other_ns),
                fs_path=_fs_path(ev, tail),
                seen=self._seen(tail, ev.seen_len, ev.path_len, hdr.flags),
            )
        path = join_components(tail[: ev.path_len]) if ev.path_len else None
        return self.close_from(
            hdr.tgid,
            ev.fd,
            hdr.run_key,
            ev,
            ev.agg_flags,
            path,
            hdr.flags,
            _fs_path(ev, tail),
            self._seen(tail, ev.seen_len, ev.path_len, hdr.flags),
        )

    def _seen(self, tail: bytes, seen_len: int, path_len: int, hdr_flags: int) -> str:
        """The path a chrooted process saw: the components of a walked path (at the start
        of `tail`, `path_len` bytes) below its root. "" when not chrooted (SEEN_NONE, or its
        root is its namespace's: the whole path) or when the walk was cut short."""
        if seen_len >= path_len or hdr_flags & self._path_truncated:
            return ""
        return join_components(tail[:seen_len])

    def _name_change(self, ev: Any, tail: bytes) -> RenameEvent | NameEvent:
        """A roard_ev_rename record: a rename, or the one- or two-name op it says."""
        cut = [ev.olddir_len, ev.old_len, ev.newdir_len, ev.new_len]
        parts, pos = [], 0
        for n in cut:
            parts.append(tail[pos : pos + n])
            pos += n
        olddir, old, newdir, new = (p.removesuffix(b"\0") for p in parts)
        hdr = ev.hdr
        cut_short = bool(hdr.flags & self._path_truncated)
        if ev.op == self._name_rename:
            return RenameEvent(
                run_key=hdr.run_key,
                tgid=hdr.tgid,
                old=_resolve(olddir, old),
                new=_resolve(newdir, new),
                exchange=bool(ev.rename_flags & self._rename_exchange),
                truncated=cut_short or not old or not new,
                other_ns=bool(hdr.flags & self._other_ns),
                seen_old=_seen_name(olddir, ev.olddir_seen_len, old),
                seen_new=_seen_name(newdir, ev.newdir_seen_len, new),
            )
        op = self._name_ops.get(ev.op)
        if op is None:
            raise KernelError(f"undecodable name change: op {ev.op}")
        # A link's old name may be "" (linkat with AT_EMPTY_PATH): only its new name counts.
        named = new if op == "link" else old
        return NameEvent(
            run_key=hdr.run_key,
            tgid=hdr.tgid,
            op=op,
            path=_resolve(olddir, old),
            new=_resolve(newdir, new) if op == "link" else "",
            truncated=cut_short or not named,
            other_ns=bool(hdr.flags & self._other_ns),
            seen_path=_seen_name(olddir, ev.olddir_seen_len, old),
            seen_new=_seen_name(newdir, ev.newdir_seen_len, new) if op == "link" else "",
        )

    def close_from(
        self,
        tgid: int,
        fd: int,
        run_key: int,
        agg: Any,
        agg_flags: int,
        path: str | None = None,
        hdr_flags: int = 0,
        fs_path: str | None = None,
        seen: str = "",
    ) -> CloseEvent:
        """A CloseEvent from anything with the aggregate's fields: a roard_ev_close record,
        or a roard_fdagg map value that userspace reads when a process exits."""
        return CloseEvent(
            run_key=run_key,
            tgid=tgid,
            fd=fd,
            dev=userspace_dev(agg.dev),
            ino=agg.ino,
            rbytes=agg.rbytes,
            wbytes=agg.wbytes,
            nreads=agg.nreads,
            nwrites=agg.nwrites,
            mmap_read=bool(agg_flags & self._mmap_read),
            mmap_shared_write=bool(agg_flags & self._mmap_shared_write),
            mmap_exec=bool(agg_flags & self._mmap_exec),
            resized=bool(agg_flags & self._resized),
            vfs_read=bool(agg_flags & self._vfs_read),
            vfs_write=bool(agg_flags & self._vfs_write),
            generated=bool(agg_flags & self._generated),
            open_flags=agg.open_flags,
            created=bool(agg.fmode & self._fmode_created),
            path=path,
            truncated=bool(hdr_flags & self._path_truncated),
            path_lost=bool(hdr_flags & self._path_unknown),
            other_ns=bool(hdr_flags & self._other_ns),
            fs_path=fs_path,
            seen=seen,
        )


def _seen_name(base: bytes, seen_len: int, name: bytes) -> str:
    """A syscall's name as a chrooted process saw it: resolved against the part of its
    walked base dir below its root; "" when that walk did not pass its root."""
    if seen_len >= len(base):
        return ""
    return _resolve(base[:seen_len], name)


def _fs_path(ev: Any, tail: bytes) -> str | None:
    """The path from its filesystem's root that follows an open or close record's path."""
    if not ev.fs_path_len:
        return None
    return join_components(tail[ev.path_len : ev.path_len + ev.fs_path_len])

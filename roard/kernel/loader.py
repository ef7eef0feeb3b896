"""Compile the BPF programs with bcc, with struct offsets from BTF, and attach them."""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from roard import procfs
from roard.config import KernelSizing
from roard.errors import KernelError
from roard.kernel import pins
from roard.kernel.abi import Abi, bpf_source_dir
from roard.kernel.btf import Btf
from roard.kernel.decode import CloseEvent, Decoder, userspace_dev
from roard.kernel.features import (
    TRACEFS,
    VFS_FIELDS,
    VFS_FUNCTION,
    VfsPlan,
    ensure_tracefs,
    kprobes_available,
    vfs_plan,
)
from roard.kernel.headers import HeaderTree, find_headers
from roard.kernel.ringfill import RingFill, RingGauge

# Every kernel field the BPF code dereferences; each becomes -DOFF_<STRUCT>_<FIELD>.
KERNEL_FIELDS: tuple[tuple[str, str], ...] = (
    ("task_struct", "files"),
    ("task_struct", "fs"),
    ("task_struct", "tgid"),
    ("task_struct", "mm"),
    ("task_struct", "group_leader"),
    ("task_struct", "start_boottime"),
    ("task_struct", "real_parent"),
    ("task_struct", "signal"),
    ("task_struct", "exit_code"),
    ("signal_struct", "live"),
    ("signal_struct", "nr_threads"),
    ("files_struct", "fdt"),
    ("files_struct", "count"),
    ("fdtable", "max_fds"),
    ("fdtable", "fd"),
    ("file", "f_path"),
    ("file", "f_inode"),
    ("file", "f_flags"),
    ("file", "f_mode"),
    ("path", "mnt"),
    ("path", "dentry"),
    ("dentry", "d_parent"),
    ("dentry", "d_name"),
    ("dentry", "d_sb"),
    ("qstr", "name"),
    ("mount", "mnt_parent"),
    ("mount", "mnt_mountpoint"),
    ("mount", "mnt"),
    ("vfsmount", "mnt_root"),
    ("inode", "i_ino"),
    ("inode", "i_sb"),
    ("inode", "i_mode"),
    ("super_block", "s_dev"),
    ("super_block", "s_magic"),
    ("fs_struct", "pwd"),
    ("fs_struct", "root"),
    ("mm_struct", "exe_file"),
    ("mm_struct", "arg_start"),
    ("mm_struct", "arg_end"),
    ("task_struct", "real_cred"),
    ("cred", "uid"),
    ("cgroup", "self"),
    ("cgroup", "kn"),
    ("cgroup", "root"),
    ("cgroup_subsys_state", "parent"),
    ("cgroup_subsys_state", "cgroup"),
    ("cgroup_root", "hierarchy_id"),
    ("kernfs_node", "id"),
    ("task_struct", "cgroups"),
    ("css_set", "dfl_cgrp"),
    ("mm_struct", "env_start"),
    ("mm_struct", "env_end"),
    ("task_struct", "nsproxy"),
    ("nsproxy", "mnt_ns"),
    ("mnt_namespace", "ns"),
    ("ns_common", "inum"),
)

# The saved user registers that hold syscall arguments 0-2 at exit (x86_64 only): with
# them, byte movers need one handler per call instead of two (-DROARD_EXIT_ARGS).
EXIT_ARG_FIELDS: tuple[tuple[str, str], ...] = (
    ("pt_regs", "di"),
    ("pt_regs", "si"),
    ("pt_regs", "dx"),
)

HOOK_FILES = ("process.c", "file.c", "rename.c", "cgroup.c", "vfs.c")
# The VFS hook's handler in bpf/vfs.c per tier, and the -DROARD_VFS_IO value selecting it.
_VFS_HANDLER = f"kp__{VFS_FUNCTION}"
_VFS_VARIANT = {"kprobe": 1, "fentry": 2}

# Hook macros in the BPF sources and the syscall tracepoints each one defines a handler for.
_HOOK_MACROS = {
    "OPEN_HOOK": ("sys_exit_{}",),
    "FLUSH_LAZY_HOOK": ("sys_enter_{}",),
    "RESIZE_HOOK": ("sys_enter_{}",),
    "NAME_EXIT_HOOK": ("sys_exit_{}",),
    "IO_HOOK": ("sys_enter_{}", "sys_exit_{}"),
    "SYSCALL_ENTER": ("{}",),
    "SYSCALL_EXIT": ("{}",),
}
_HOOK_USE = re.compile(
    r"^(OPEN_HOOK|IO_HOOK|FLUSH_LAZY_HOOK|RESIZE_HOOK|NAME_EXIT_HOOK|SYSCALL_ENTER|SYSCALL_EXIT)"
    r"\((\w+)",
    re.MULTILINE,
)
_FORMAT_FIELD = re.compile(r"field:(.+?)\s+\**(\w+);\s+offset:(\d+);\s+size:(\d+);")


def offset_cflags(btf: Btf, fields: Iterable[tuple[str, str]] = KERNEL_FIELDS) -> list[str]:
    """-D flags with each field's byte offset, read from the running kernel's BTF."""
    return [
        f"-DOFF_{struct.upper()}_{member.upper()}={btf.offset(struct, member)}"
        for struct, member in fields
    ]


def syscall_hooks(src: Path, exit_args: bool = False) -> list[str]:
    """Syscall tracepoints the hook files handle, e.g. "sys_enter_read" (handler tp__<name>);
    `exit_args`: as compiled with ROARD_EXIT_ARGS (byte movers hook only their exit)."""
    events: list[str] = []
    for name in HOOK_FILES:
        for macro, arg in _HOOK_USE.findall((src / name).read_text()):
            patterns = ("sys_exit_{}",) if exit_args and macro == "IO_HOOK" else _HOOK_MACROS[macro]
            events.extend(pattern.format(arg) for pattern in patterns)
    return events


def exit_args_available(btf: Btf) -> bool:
    """Whether this kernel's saved registers are the ones EXIT_ARG_FIELDS names (x86_64)."""
    return all(btf.has_member(struct, member) for struct, member in EXIT_ARG_FIELDS)


def check_syscall_formats(events: Iterable[str], tracefs: Path = TRACEFS) -> list[str]:
    """Verify the record layout the hooks assume (args at 16 + 8i, ret at 16) against the
    live formats; return the events this kernel lacks (e.g. openat2 before 5.6)."""
    missing = []
    for event in events:
        fmt = tracefs / "events" / "syscalls" / event / "format"
        if not fmt.is_file():
            missing.append(event)
            continue
        fields = [
            (name, int(off), int(size))
            for _type, name, off, size in _FORMAT_FIELD.findall(fmt.read_text())
            if not name.startswith("common_") and name != "__syscall_nr"
        ]
        expected = (
            [("ret", 16, 8)]
            if event.startswith("sys_exit_")
            else [(name, 16 + 8 * i, 8) for i, (name, _o, _s) in enumerate(fields)]
        )
        if fields != expected:
            raise KernelError(
                f"tracepoint syscalls:{event} has an unexpected layout {fields}; "
                "this kernel needs a roard update"
            )
    return missing


_LOCAL_INCLUDE = re.compile(r'^#include "([^"]+)"\s*$', re.MULTILINE)


def program_text(src: Path) -> str:
    """The single translation unit bcc compiles: every hook file, with roard's own headers
    inlined, because bcc rewrites map calls (map.lookup(), ...) only in its main file."""
    seen: set[str] = set()

    def inline(match: re.Match[str]) -> str:
        name = match.group(1)
        if name in seen:
            return ""
        seen.add(name)
        return _LOCAL_INCLUDE.sub(inline, (src / name).read_text())

    return "\n".join(_LOCAL_INCLUDE.sub(inline, f'#include "{name}"') for name in HOOK_FILES)


@dataclass(frozen=True)
class Variant:
    """Which variant of the programs runs, and why not a better one."""

    exit_args: bool  # byte movers hooked at exit only (ROARD_EXIT_ARGS)
    vfs_tier: str | None  # "fentry" or "kprobe": the VFS hook (bpf/vfs.c) attached by it
    # Why better variants are not running: the VFS plan's notes and load/attach failures.
    notes: tuple[str, ...] = ()
    exit_args_fallback: str | None = None  # why the exit-only byte movers failed to load

    @property
    def tier(self) -> str:
        """The tier, named by the best kind of program attached."""
        return self.vfs_tier or "tracepoint"

    def hooks(self) -> dict[str, str]:
        """Per hook, how it is attached (doctor and status)."""
        return {
            "processes": "tracepoint (sched, raw)",
            "files": "tracepoint (syscalls)",
            "io_uring_aio": self.vfs_tier or "none (runs using io_uring or aio are incomplete)",
        }


class Probes:
    """The loaded programs and the maps userspace shares with them."""

    def __init__(
        self,
        bpf: Any,
        abi: Abi,
        headers: HeaderTree,
        load_seconds: float,
        skipped: list[str],
        pinned: Path | None = None,
        variant: Variant = Variant(exit_args=False, vfs_tier=None),
    ) -> None:
        self._bpf = bpf
        self.variant = variant
        self.pinned = pinned  # where `tracked` and `fdagg` outlive this daemon, if anywhere
        self._decoder = Decoder(abi)
        self.lazy_fds = abi.const("LAZY_FDS")  # descriptors the kernel flushes itself at exit
        self.skipped = skipped
        self._abi = abi
        self.headers = headers
        self.load_seconds = load_seconds
        self._tracked = bpf["tracked"]
        self._fdagg = bpf["fdagg"]
        self._run_losses = bpf["run_losses"]
        self._tagged_cgroups = bpf["tagged_cgroups"]
        self._cgroups_tagged = bpf["cgroups_tagged"]
        self._any_uid = abi.const("CGTAG_ANY_UID")
        self._losses = bpf["losses"]
        events = bpf["events"]
        self._ring = RingGauge(events.map_fd, events.max_entries)
        self._drain_started = False
        self._loss_names = {
            value: name[len("ROARD_LOSS_") :].lower()
            for name, value in abi.consts.items()
            if name.startswith("ROARD_LOSS_") and name != "ROARD_LOSS_NR"
        }

    @property
    def attached(self) -> list[str]:
        """Names of the attached tracepoints."""
        tps = [name.decode() for name in self._bpf.tracepoint_fds]
        raws = [f"raw:{name.decode()}" for name in self._bpf.raw_tracepoint_fds]
        vfs = [f"{self.variant.vfs_tier}:{VFS_FUNCTION}"] if self.variant.vfs_tier else []
        return sorted(tps + raws + vfs)

    def on_event(self, callback: Callable[[bytes], None]) -> None:
        """Deliver every ring-buffer record, as bytes, to `callback` during poll()."""

        def _cb(_ctx: Any, data: Any, size: int) -> int:
            if self._drain_started:  # first record of this poll: the ring is at its fullest
                self._drain_started = False
                self._ring.sample()
            callback(ctypes.string_at(data, size))
            return 0

        self._bpf["events"].open_ring_buffer(_cb)

    def poll(self, timeout_ms: int) -> None:
        """Wait up to timeout_ms for records and hand all available ones to the callback,
        including those submitted without a wakeup (file events wake the reader only every
        ROARD_WAKEUP_EVERY events: epoll alone would leave the rest waiting for the next)."""
        self._drain_started = True
        self._bpf.ring_buffer_poll(timeout_ms)
        self._drain_started = True
        self._bpf.ring_buffer_consume()

    def ring_fill(self) -> RingFill:
        """How full the events ring is now, and the most it has been."""
        return self._ring.fill()

    def track(self, tgid: int, run_key: int) -> None:
        """Attribute `tgid` (and its future children) to a run."""
        self._tracked[ctypes.c_uint32(tgid)] = ctypes.c_uint64(run_key)

    def untrack(self, tgid: int, run_key: int | None = None) -> None:
        """Stop attributing `tgid` (only if it is attributed to `run_key`, when given: the
        pid may have been reused by another run's process meanwhile)."""
        key = ctypes.c_uint32(tgid)
        with contextlib.suppress(KeyError):
            if run_key is None or self._tracked[key].value == run_key:
                del self._tracked[key]

    def tag_cgroup(self, hierarchy_id: int, kn_id: int, run_key: int, uid: int | None) -> None:
        """Make processes that move into this cgroup (or below it) join run `run_key`; only
        those of real uid `uid`, unless None."""
        key = self._tagged_cgroups.Key(kn_id, hierarchy_id)
        flags = self._any_uid if uid is None else 0
        self._tagged_cgroups[key] = self._tagged_cgroups.Leaf(run_key, uid or 0, flags)
        self._count_tagged_cgroups()

    def untag_cgroup(self, hierarchy_id: int, kn_id: int) -> None:
        """Processes moving into this cgroup no longer join a run."""
        with contextlib.suppress(KeyError):
            del self._tagged_cgroups[self._tagged_cgroups.Key(kn_id, hierarchy_id)]
        self._count_tagged_cgroups()

    def _count_tagged_cgroups(self) -> None:
        # The hook skips its walk while no cgroup is tagged.
        count = sum(1 for _ in self._tagged_cgroups)
        self._cgroups_tagged[ctypes.c_int(0)] = ctypes.c_uint32(count)

    def tracked_count(self) -> int:
        """How many processes the kernel filter currently lets through."""
        return sum(1 for _ in self._tracked)

    def flush_fds(self, tgid: int, fds: Iterable[int], run_key: int) -> list[CloseEvent]:
        """Take the aggregates the kernel left for a process of run `run_key`: those of
        descriptors it announced with an open event (the exit hook flushes the others
        itself). Aggregates of another run (the pid was reused) are left alone."""
        flushed = []
        ignore = self._abi.const("AGG_IGNORE")
        key_type = self._fdagg.Key
        for fd in fds:
            key = key_type(tgid, fd)
            try:
                agg = self._fdagg[key]
                if agg.run_key != run_key:
                    continue
                del self._fdagg[key]
            except KeyError:
                continue
            if agg.flags & ignore:
                continue
            flushed.append(self._decoder.close_from(tgid, fd, agg.run_key, agg, agg.flags))
        return flushed

    def tracked_entries(self) -> dict[int, int]:
        """tgid -> run key of every process in the kernel filter (after a restart: what
        the previous roard tracked, and the children they forked until it stopped)."""
        return {int(k.value): int(v.value) for k, v in self._tracked.items()}

    def settle(self, kept: dict[int, int]) -> list[CloseEvent]:
        """After a restart, keep in the kernel only the processes re-adopted (`kept`: tgid
        -> run key). Aggregates of descriptors that were closed while no roard ran, or of
        processes gone since, are taken out and returned as closes to apply to their runs."""
        for tgid, run_key in self.tracked_entries().items():
            if kept.get(tgid) != run_key:
                self.untrack(tgid, run_key)
        ignore = self._abi.const("AGG_IGNORE")
        closes = []
        mounts: dict[int, dict[str, int]] = {}  # tgid -> its mount devices, read once
        for key, agg in list(self._fdagg.items()):
            tgid, fd = int(key.tgid), int(key.fd)
            if kept.get(tgid) == agg.run_key and _still_open(tgid, fd, agg.dev, agg.ino, mounts):
                continue
            with contextlib.suppress(KeyError):
                del self._fdagg[key]
            if not agg.flags & ignore and agg.run_key:
                closes.append(self._decoder.close_from(tgid, fd, agg.run_key, agg, agg.flags))
        return closes

    def losses(self) -> dict[str, int]:
        """Dropped events by category, summed over CPUs."""
        return {
            name: sum(self._losses[ctypes.c_int(idx)])  # per-CPU values
            for idx, name in sorted(self._loss_names.items())
        }

    def take_run_losses(self, run_key: int) -> dict[str, int]:
        """Events dropped for one run, by category; forgets the counters."""
        taken = {}
        for idx, name in self._loss_names.items():
            key = self._run_losses.Key(run_key, idx)
            try:
                taken[name] = int(self._run_losses[key].value)
                del self._run_losses[key]
            except KeyError:
                continue
        return taken

    def close(self) -> None:
        """Detach everything. Each tracepoint's detach waits for the kernel's RCU grace
        period: one by one, the tier's fifty took 3.9 s of a stopping daemon on this VM; they
        are closed at once, each on a thread (the calls let go of the GIL), which then
        share grace periods; bcc's cleanup does the rest and finds them gone."""
        from bcc import lib

        self._ring.close()
        perf = self._bpf.tracepoint_fds
        links = self._bpf.raw_tracepoint_fds
        closes = [partial(lib.bpf_close_perf_event_fd, fd) for fd in perf.values()]
        closes += [partial(os.close, fd) for fd in links.values()]
        with ThreadPoolExecutor(max_workers=max(1, len(closes))) as pool:
            list(pool.map(lambda close: close(), closes))
        perf.clear()
        links.clear()
        self._bpf.cleanup()


def _still_open(tgid: int, fd: int, dev: int, ino: int, mounts: dict[int, dict[str, int]]) -> bool:
    """Whether (tgid, fd) still reaches the file with this kernel dev and inode (`mounts`
    caches each process's mount devices across calls)."""
    described = procfs.describe_fd(tgid, fd)
    if described is None or described[1].get("ino") != str(ino):
        return False
    if tgid not in mounts:
        mounts[tgid] = procfs.mount_devices(tgid)
    return mounts[tgid].get(described[1].get("mnt_id", "")) == userspace_dev(dev)


def load(
    state_dir: Path, sizing: KernelSizing, btf: Btf | None = None, env_runs: bool = True
) -> Probes:
    """Compile and attach the programs, with the best variant this host loads (VFS hook by
    fentry, else kprobe, else none; byte movers at exit only, else at entry and exit);
    raise KernelError with the compiler's words.
    `env_runs`: compile in the exec hook's ROARD_RUN scan (bpf/lib/envrun.h)."""
    from bcc import BPF

    ensure_tracefs()
    headers = find_headers(state_dir)
    if headers.how == "merged":
        os.environ["BCC_KERNEL_SOURCE"] = str(headers.path)
    btf = btf or Btf.load()
    plan = _vfs_plan(btf, sizing.tier)  # before pinning: a refused tier leaves nothing
    src = bpf_source_dir()
    pinned = pins.prepare(state_dir, sizing, src / "include" / "roard_abi.h")
    text = program_text(src)
    start = time.monotonic()
    vfs_tiers = list(plan.tiers)
    notes = list(plan.notes)
    exit_args = sizing.io_hooks == "auto" and exit_args_available(btf)
    fallback = None
    while True:
        tier = vfs_tiers[0] if vfs_tiers else None
        events = syscall_hooks(src, exit_args)
        missing = check_syscall_formats(events)
        try:
            bpf = BPF(
                text=text, cflags=program_cflags(btf, sizing, env_runs, exit_args, tier, pinned)
            )
            _attach(bpf, [e for e in events if e not in missing], tier)
            break
        except Exception as exc:  # bcc raises bare Exception, the compiler output on stderr
            if tier is not None and sizing.tier == "auto":  # the next tier, or none
                notes.append(f"{tier} failed to load or attach ({exc})")
                vfs_tiers.pop(0)
                continue
            if exit_args:  # e.g. a kernel before 5.15 (no bpf_task_pt_regs): two handlers
                exit_args, fallback = False, str(exc)
                continue
            if tier is not None:  # the tier [kernel] tier requires
                raise KernelError(
                    f"[kernel] tier = {tier!r}: the BPF programs with its VFS hook failed to "
                    f"load or attach ({exc}); the compiler's or verifier's messages are "
                    'above; set tier = "auto" to fall back to the best tier that loads'
                ) from exc
            raise KernelError(
                f"compiling/attaching the BPF programs failed ({exc}); the compiler's "
                f"messages are above; headers used: {headers.path} ({headers.how})"
            ) from exc
    variant = Variant(exit_args, tier, tuple(notes), fallback)
    return Probes(bpf, Abi.load(), headers, time.monotonic() - start, missing, pinned, variant)


def program_cflags(
    btf: Btf,
    sizing: KernelSizing,
    env_runs: bool,
    exit_args: bool,
    vfs_tier: str | None,
    pinned: Path | None = None,
) -> list[str]:
    """The compiler flags of one variant of the programs: offsets, sizes, and which hooks."""
    flags = [
        *offset_cflags(btf),
        *([f'-DROARD_PIN_DIR="{pinned}"'] if pinned else []),
        f"-DROARD_RING_PAGES={sizing.ring_pages}",
        f"-DROARD_TRACKED_MAX={sizing.tracked_max}",
        f"-DROARD_FDAGG_MAX={sizing.fdagg_max}",
        f"-DROARD_RUNS_MAX={sizing.runs_max}",
        f"-DROARD_WAKEUP_EVERY={sizing.wakeup_every}",
        f"-DROARD_OWN_MNTNS={os.stat('/proc/self/ns/mnt').st_ino}",
        "-Wno-macro-redefined",
        *(["-DROARD_ENV_RUNS"] if env_runs else []),
    ]
    if exit_args:
        flags += [*offset_cflags(btf, EXIT_ARG_FIELDS), "-DROARD_EXIT_ARGS"]
    if vfs_tier is not None:
        flags += [*offset_cflags(btf, VFS_FIELDS), f"-DROARD_VFS_IO={_VFS_VARIANT[vfs_tier]}"]
    return flags


def _vfs_plan(btf: Btf, wanted: str) -> VfsPlan:
    """The VFS hook's tiers to try; raise when the config insists on one this host lacks."""
    plan = vfs_plan(btf, kprobes_available(), wanted)
    if wanted in _VFS_VARIANT and not plan.tiers:
        raise KernelError(
            f"[kernel] tier = {wanted!r}, but this host cannot attach it ({plan.describe()}): "
            'set tier = "auto" to use the best tier available'
        )
    return plan


def _attach(bpf: Any, events: list[str], vfs_tier: str | None) -> None:
    """Attach tp__<event> to each syscall tracepoint, and the VFS hook's kprobe (bcc
    attached an fentry one when it loaded the program); on failure detach what was attached."""
    try:
        for event in events:
            bpf.attach_tracepoint(tp=f"syscalls:{event}", fn_name=f"tp__{event}")
        if vfs_tier == "kprobe":
            bpf.attach_kprobe(event=VFS_FUNCTION, fn_name=_VFS_HANDLER)
    except Exception:
        bpf.cleanup()
        raise

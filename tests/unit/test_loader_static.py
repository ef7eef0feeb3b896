"""Tests for the parts of roard.kernel.loader that need neither root nor bcc (a refusing bcc
is faked where loading itself is the subject)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from roard.config import KernelSizing
from roard.errors import KernelError
from roard.kernel import loader
from roard.kernel.abi import bpf_source_dir
from roard.kernel.features import TRACEFS, VFS_FIELDS, VfsPlan
from roard.kernel.headers import HeaderTree
from roard.kernel.loader import (
    EXIT_ARG_FIELDS,
    KERNEL_FIELDS,
    check_syscall_formats,
    offset_cflags,
    program_text,
    syscall_hooks,
)

SRC = bpf_source_dir()
_COMMON = """\
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:int __syscall_nr;\toffset:8;\tsize:4;\tsigned:1;
"""


def write_format(tracefs: Path, event: str, fields: list[tuple[str, int, int]]) -> None:
    """A tracefs format file for syscalls:<event> with (decl, offset, size) fields."""
    body = "".join(
        f"\tfield:{decl};\toffset:{off};\tsize:{size};\tsigned:0;\n" for decl, off, size in fields
    )
    path = tracefs / "events" / "syscalls" / event / "format"
    path.parent.mkdir(parents=True)
    path.write_text(f'name: {event}\nID: 1\nformat:\n{_COMMON}{body}\nprint fmt: ""\n')


READ_ARGS = [("unsigned int fd", 16, 8), ("char * buf", 24, 8), ("size_t count", 32, 8)]


def test_syscall_hooks_lists_the_hooked_tracepoints() -> None:
    """Every hook macro in the BPF sources yields the tracepoints it defines handlers for."""
    hooks = syscall_hooks(SRC)
    for event in (
        "sys_enter_read",
        "sys_exit_read",
        "sys_exit_openat",
        "sys_exit_openat2",
        "sys_enter_write",
        "sys_exit_write",
        "sys_enter_close",
        "sys_enter_mmap",
    ):
        assert event in hooks
    assert len(hooks) == len(set(hooks))
    assert all(re.fullmatch(r"sys_(enter|exit)_\w+", h) for h in hooks)


@pytest.mark.parametrize("exit_args", [False, True])
def test_every_hook_has_exactly_one_handler(tmp_path: Path, exit_args: bool) -> None:
    """After the C preprocessor, the handlers tp__<event> are exactly the listed hooks,
    with byte movers hooked at entry and exit, or (ROARD_EXIT_ARGS) at exit only."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler")
    source = tmp_path / "prog.c"
    source.write_text(program_text(SRC).replace("#include <uapi/linux/ptrace.h>", ""))
    defines = ["-DROARD_EXIT_ARGS"] if exit_args else []
    out = subprocess.run(
        [cc, "-E", "-P", *defines, source], check=True, capture_output=True, text=True
    )
    handlers = re.findall(r"\bint tp__(\w+)\(", out.stdout)
    assert sorted(handlers) == sorted(syscall_hooks(SRC, exit_args))
    assert ("sys_enter_read" in handlers) is not exit_args


@pytest.mark.parametrize(("variant", "handler"), [(1, "int kp__"), (2, "KFUNC_PROBE(")])
def test_vfs_hook_is_compiled_only_for_its_tier(tmp_path: Path, variant: int, handler: str) -> None:
    """bpf/vfs.c adds one handler for security_file_permission, of the chosen tier's kind,
    and nothing at all without ROARD_VFS_IO (the tracepoint tier)."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler")
    source = tmp_path / "prog.c"
    source.write_text(program_text(SRC).replace("#include <uapi/linux/ptrace.h>", ""))

    def preprocessed(*defines: str) -> str:
        cmd = [cc, "-E", "-P", *defines, str(source)]
        return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout

    assert "security_file_permission" not in preprocessed()
    vfs = preprocessed(f"-DROARD_VFS_IO={variant}")
    assert vfs.count("security_file_permission") == 1
    assert f"{handler}security_file_permission" in vfs


def test_good_formats_pass(tmp_path: Path) -> None:
    """The standard layout (args at 16 + 8i, ret at 16) passes and nothing is missing."""
    write_format(tmp_path, "sys_enter_read", READ_ARGS)
    write_format(tmp_path, "sys_exit_read", [("long ret", 16, 8)])
    assert check_syscall_formats(["sys_enter_read", "sys_exit_read"], tmp_path) == []


def test_shifted_argument_is_rejected(tmp_path: Path) -> None:
    """An argument at an unexpected offset raises KernelError naming the tracepoint."""
    shifted = [READ_ARGS[0], ("char * buf", 28, 8), READ_ARGS[2]]
    write_format(tmp_path, "sys_enter_read", shifted)
    with pytest.raises(KernelError, match="syscalls:sys_enter_read"):
        check_syscall_formats(["sys_enter_read"], tmp_path)


def test_unexpected_return_layout_is_rejected(tmp_path: Path) -> None:
    """A sys_exit record whose ret is not a long at 16 is rejected."""
    write_format(tmp_path, "sys_exit_openat", [("int ret", 16, 4)])
    with pytest.raises(KernelError, match="sys_exit_openat"):
        check_syscall_formats(["sys_exit_openat"], tmp_path)


def test_missing_format_is_returned(tmp_path: Path) -> None:
    """A tracepoint this kernel lacks is returned as missing, not an error."""
    write_format(tmp_path, "sys_exit_read", [("long ret", 16, 8)])
    events = ["sys_exit_openat2", "sys_exit_read"]
    assert check_syscall_formats(events, tmp_path) == ["sys_exit_openat2"]


def test_live_formats_match_if_readable() -> None:
    """On this host's tracefs (when readable), every hooked tracepoint has the expected layout."""
    probe = TRACEFS / "events" / "syscalls" / "sys_enter_read" / "format"
    try:
        probe.read_text()
    except OSError:
        pytest.skip("tracefs not readable here")
    missing = check_syscall_formats(syscall_hooks(SRC), TRACEFS)
    assert "sys_enter_read" not in missing


class StubBtf:
    """Answers offset(struct, member) from a table."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, str]] = []

    def offset(self, struct: str, member: str) -> int:
        self.asked.append((struct, member))
        return len(struct) * 100 + len(member)


def test_offset_cflags_formats_each_field() -> None:
    """Each (struct, member) becomes -DOFF_<STRUCT>_<MEMBER>=<offset from BTF>."""
    stub = StubBtf()
    flags = offset_cflags(stub, [("task_struct", "files"), ("qstr", "name")])  # type: ignore[arg-type]
    assert flags == ["-DOFF_TASK_STRUCT_FILES=1105", "-DOFF_QSTR_NAME=404"]
    assert stub.asked == [("task_struct", "files"), ("qstr", "name")]


def test_offset_cflags_cover_every_offset_the_bpf_code_uses() -> None:
    """Every OFF_* macro the BPF sources use is passed by the loader (else compile fails)."""
    fields = KERNEL_FIELDS + EXIT_ARG_FIELDS + VFS_FIELDS
    passed = {f.split("=")[0][2:] for f in offset_cflags(StubBtf(), fields)}  # type: ignore[arg-type]
    assert len(passed) == len(fields)
    used = set(re.findall(r"\bOFF_[A-Z0-9_]*[A-Z0-9]\b", program_text(SRC)))
    assert used <= passed, sorted(used - passed)


def test_program_text_inlines_local_headers_once() -> None:
    """The program has no local #include left and each header's body exactly once."""
    text = program_text(SRC)
    assert not re.search(r'^#include "', text, re.MULTILINE)
    assert "#include <uapi/linux/ptrace.h>" in text
    headers = [*sorted((SRC / "lib").glob("*.h")), SRC / "include" / "roard_abi.h"]
    for header in headers:
        chunks = re.split(r'^#include "[^"]+"\s*$', header.read_text(), flags=re.MULTILINE)
        for chunk in filter(lambda c: len(c.strip()) > 40, chunks):
            assert text.count(chunk.strip()) == 1, header.name


def test_program_text_keeps_hook_files_in_order() -> None:
    """process.c comes before file.c, each with its hook code."""
    text = program_text(SRC)
    process_at = text.index("RAW_TRACEPOINT_PROBE(sched_process_fork)")
    file_at = text.index("IO_HOOK(read,")
    assert process_at < file_at


class _OffsetsBtf:
    """BTF that knows every field (at offset 8) and every function: the compile is faked."""

    def offset(self, struct: str, field: str) -> int:
        return 8


@pytest.fixture
def refusing_bcc(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> tuple[list[list[str]], list[Path]]:
    """loader.load against a bcc whose every program is refused (a verifier or attach
    failure), with the host probes stubbed: the cflags of each attempt, and each state dir
    pinned."""
    attempts: list[list[str]] = []
    pinned: list[Path] = []

    class RefusingBPF:
        def __init__(self, text: str, cflags: list[str]) -> None:
            attempts.append(cflags)
            raise Exception("Failed to attach BPF program kp__security_file_permission")

    bcc = type(sys)("bcc")
    bcc.BPF = RefusingBPF  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "bcc", bcc)
    monkeypatch.setattr(loader, "ensure_tracefs", lambda: None)
    monkeypatch.setattr(loader, "find_headers", lambda _d: HeaderTree(tmp_path, "system"))
    monkeypatch.setattr(loader, "check_syscall_formats", lambda _events: [])
    monkeypatch.setattr(loader, "exit_args_available", lambda _btf: True)
    monkeypatch.setattr(loader, "kprobes_available", lambda: "")
    monkeypatch.setattr(loader.pins, "prepare", lambda d, *_a: pinned.append(d))
    return attempts, pinned


def test_a_required_tier_that_fails_to_load_says_so(
    refusing_bcc: tuple[list[list[str]], list[Path]], tmp_path: Path
) -> None:
    """`[kernel] tier = "kprobe"` on a host that has kprobes but refuses the program: after
    the retry without exit-only byte movers, roard stops naming the tier and the way out,
    not a bare compile failure."""
    attempts, _pinned = refusing_bcc
    plan = VfsPlan(("kprobe",), ())
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(loader, "vfs_plan", lambda *_a: plan)
        with pytest.raises(KernelError) as caught:
            loader.load(tmp_path, KernelSizing(tier="kprobe"), _OffsetsBtf())  # type: ignore[arg-type]
    message = str(caught.value)
    assert "[kernel] tier = 'kprobe'" in message
    assert 'set tier = "auto"' in message
    assert "Failed to attach" in message
    assert len(attempts) == 2  # with and without exit-only byte movers, the hook in both
    assert all("-DROARD_VFS_IO=1" in flags for flags in attempts)
    assert "-DROARD_EXIT_ARGS" in attempts[0] and "-DROARD_EXIT_ARGS" not in attempts[1]


def test_a_required_tier_the_host_lacks_is_refused_before_anything_is_pinned(
    refusing_bcc: tuple[list[list[str]], list[Path]], tmp_path: Path
) -> None:
    """A tier the host cannot attach is refused before maps are pinned or anything
    compiled: a refused start leaves nothing on bpffs."""
    attempts, pinned = refusing_bcc
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(loader, "vfs_plan", lambda *_a: VfsPlan((), ("kprobes unavailable",)))
        with pytest.raises(KernelError, match="cannot attach it"):
            loader.load(tmp_path, KernelSizing(tier="kprobe"), _OffsetsBtf())  # type: ignore[arg-type]
    assert (attempts, pinned) == ([], [])

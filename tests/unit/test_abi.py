"""Tests for roard.kernel.abi: the ctypes layouts parsed from roard_abi.h match the C compiler."""

from __future__ import annotations

import ctypes
import shutil
import subprocess
from pathlib import Path

import pytest

from roard.errors import KernelError
from roard.kernel.abi import Abi, bpf_source_dir

HEADER = bpf_source_dir() / "include" / "roard_abi.h"

_PRELUDE = """\
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
typedef uint8_t __u8;
typedef uint16_t __u16;
typedef uint32_t __u32;
typedef uint64_t __u64;
typedef int32_t __s32;
typedef int64_t __s64;
"""


def _c_layouts(abi: Abi, tmp_path: Path) -> dict[str, int]:
    """Compile and run a C program printing sizeof/offsetof/constants as the compiler sees them."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler")
    lines = [_PRELUDE, f'#include "{HEADER}"', "int main(void) {"]
    for name, struct in abi.structs.items():
        lines.append(f'printf("{name} %zu\\n", sizeof(struct {name}));')
        for field, *_ in struct._fields_:
            lines.append(f'printf("{name}.{field} %zu\\n", offsetof(struct {name}, {field}));')
    for const in abi.consts:
        lines.append(f'printf("{const} %lld\\n", (long long)({const}));')
    lines += ["return 0;", "}"]
    source = tmp_path / "layout.c"
    source.write_text("\n".join(lines) + "\n")
    binary = tmp_path / "layout"
    subprocess.run([cc, "-Wall", "-Werror", "-o", binary, source], check=True)
    out = subprocess.run([binary], check=True, capture_output=True, text=True).stdout
    return {key: int(value) for key, value in (line.split() for line in out.splitlines())}


def _py_layouts(abi: Abi) -> dict[str, int]:
    """The same facts as ctypes sees them."""
    found: dict[str, int] = dict(abi.consts)
    for name, struct in abi.structs.items():
        found[name] = ctypes.sizeof(struct)
        for field, *_ in struct._fields_:
            found[f"{name}.{field}"] = getattr(struct, field).offset
    return found


def test_layouts_and_constants_match_the_c_compiler(tmp_path: Path) -> None:
    """Every struct size, field offset and constant agrees with what cc computes."""
    abi = Abi.load()
    assert _py_layouts(abi) == _c_layouts(abi, tmp_path)


def test_header_parses_the_structs_the_decoder_needs() -> None:
    """The shipped header yields the event structs and the aggregation map's key/value."""
    abi = Abi.load()
    for name in ("roard_hdr", "roard_ev_open", "roard_ev_close", "roard_fdkey", "roard_fdagg"):
        assert name in abi.structs
    assert ctypes.sizeof(abi.structs["roard_fdkey"]) == 8


def test_constants_are_parsed() -> None:
    """#define ROARD_* integers become constants, reachable with or without the prefix."""
    abi = Abi.load()
    assert abi.consts["ROARD_EV_OPEN"] == 4
    assert abi.const("EV_CLOSE") == 5
    assert abi.const("FMODE_CREATED") == 0x100000


def test_event_structs_cover_every_event_code() -> None:
    """Each ROARD_EV_* code maps to the struct named after it."""
    abi = Abi.load()
    codes = {v for k, v in abi.consts.items() if k.startswith("ROARD_EV_")}
    assert set(abi.event_structs) == codes
    assert abi.event_structs[abi.const("EV_FORK")] is abi.structs["roard_ev_fork"]
    assert abi.event_structs[abi.const("EV_EXIT")] is abi.structs["roard_ev_exit"]


def test_array_field_sized_by_a_constant() -> None:
    """An array field may be sized by a ROARD_ constant defined earlier."""
    abi = Abi.parse("#define ROARD_N 3\nstruct s {\n\t__u32 a;\n\t__u64 b[ROARD_N];\n};\n")
    assert ctypes.sizeof(abi.structs["s"]) == 32
    assert abi.structs["s"].b.offset == 8


def test_comments_are_ignored() -> None:
    """Block comments inside and around structs do not break parsing."""
    abi = Abi.parse("/* x */\nstruct s {\n\t/* the type */\n\t__u16 a; /* trailing */\n};\n")
    assert ctypes.sizeof(abi.structs["s"]) == 2


@pytest.mark.parametrize("field", ["int x;", "struct other o;", "__u64 *p;", "char name[16];"])
def test_unsupported_field_type_is_rejected(field: str) -> None:
    """A field the ABI format does not allow raises KernelError naming the struct."""
    with pytest.raises(KernelError, match="struct bad"):
        Abi.parse(f"struct bad {{\n\t__u32 ok;\n\t{field}\n}};\n")


def test_hex_define_is_not_silently_dropped() -> None:
    """A ROARD_ #define in hex is either parsed or rejected, never ignored."""
    try:
        abi = Abi.parse("#define ROARD_FLAG 0x10\n")
    except KernelError:
        return
    assert abi.consts.get("ROARD_FLAG") == 16


def test_event_code_without_struct_is_a_kernel_error() -> None:
    """An event code with no matching roard_ev_* struct is reported as a KernelError."""
    abi = Abi.parse("#define ROARD_EV_GHOST 9\n")
    with pytest.raises(KernelError):
        _ = abi.event_structs


def test_struct_field_of_an_earlier_struct_nests_it() -> None:
    """A field typed by a struct defined above it (the common event header) is nested."""
    abi = Abi.parse(
        "struct h {\n\t__u32 type;\n\t__u32 pad;\n};\n"
        "struct ev {\n\tstruct h hdr;\n\t__u64 x;\n};\n"
    )
    ev = abi.structs["ev"].from_buffer_copy(bytes([7, 0, 0, 0, 0, 0, 0, 0, 9] + [0] * 7))
    assert (ev.hdr.type, ev.x, ctypes.sizeof(abi.structs["ev"])) == (7, 9, 16)


def test_exec_lengths_fit_their_fields_and_header_flags_are_distinct_bits() -> None:
    """An exec's argv and environment lengths travel in __u16 fields; each header flag is a
    bit of its own (an environment cut must not read as a cut path)."""
    abi = Abi.load()
    exec_ = abi.structs["roard_ev_exec"]
    for field, limit in (("argv_len", "ARGV_MAX"), ("env_len", "ENV_MAX")):
        assert abi.const(limit) < 1 << (8 * getattr(exec_, field).size)
    flags = [v for k, v in abi.consts.items() if k.startswith("ROARD_HDR_")]
    assert all(f & (f - 1) == 0 for f in flags) and len(set(flags)) == len(flags)

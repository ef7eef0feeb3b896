"""Tests for roard.kernel.btf: synthetic BTF blobs everywhere, plus facts about the live kernel."""

from __future__ import annotations

import re
import struct
from collections.abc import Sequence
from pathlib import Path

import pytest

from roard.errors import BtfError, PrerequisiteError
from roard.kernel.btf import DEFAULT_BTF_PATH, Btf

# BTF_KIND_* values, repeated here so the tests do not lean on the module's private names.
INT, PTR, ARRAY, STRUCT, UNION, ENUM, FWD, TYPEDEF, VOLATILE, CONST = range(1, 11)
RESTRICT, FUNC, FUNC_PROTO, VAR, DATASEC, FLOAT, DECL_TAG, TYPE_TAG, ENUM64 = range(11, 20)

# A member is (name, type id, bit offset) or (name, type id, bit offset, bitfield size).
MemberSpec = tuple[str, int, int] | tuple[str, int, int, int]


class BtfBuilder:
    """Encodes a BTF blob (header + type section + string section) for tests."""

    def __init__(self, endian: str = "<") -> None:
        self.endian = endian
        self.strings = bytearray(b"\0")
        self.string_offsets: dict[str, int] = {"": 0}
        self.types: list[bytes] = []

    def _u32(self, *values: int) -> bytes:
        return struct.pack(f"{self.endian}{len(values)}I", *values)

    def string(self, name: str) -> int:
        if name not in self.string_offsets:
            self.string_offsets[name] = len(self.strings)
            self.strings += name.encode() + b"\0"
        return self.string_offsets[name]

    def add(
        self,
        kind: int,
        name: str = "",
        size_or_type: int = 0,
        *,
        vlen: int = 0,
        kind_flag: int = 0,
        extra: bytes = b"",
    ) -> int:
        """Append a raw type record; returns its type id (ids start at 1)."""
        info = (kind_flag << 31) | (kind << 24) | vlen
        self.types.append(self._u32(self.string(name), info, size_or_type) + extra)
        return len(self.types)

    def int_(self, name: str, size: int, bits: int | None = None, bit_offset: int = 0) -> int:
        encoding = (bit_offset << 16) | (size * 8 if bits is None else bits)
        return self.add(INT, name, size, extra=self._u32(encoding))

    def ref(self, kind: int, target: int, name: str = "") -> int:
        return self.add(kind, name, target)

    def aggregate(
        self,
        name: str,
        size: int,
        members: Sequence[MemberSpec],
        kind: int = STRUCT,
        kind_flag: int = 0,
    ) -> int:
        extra = b""
        for spec in members:
            member_name, type_id, bit_offset = spec[0], spec[1], spec[2]
            bitfield_size = spec[3] if len(spec) == 4 else 0
            offset = (bitfield_size << 24) | bit_offset if kind_flag else bit_offset
            extra += self._u32(self.string(member_name), type_id, offset)
        return self.add(kind, name, size, vlen=len(members), kind_flag=kind_flag, extra=extra)

    def build(self) -> bytes:
        types = b"".join(self.types)
        header = struct.pack(
            f"{self.endian}HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(types), len(types), len(self.strings)
        )
        return header + types + bytes(self.strings)


def kernel_like_blob(endian: str = "<") -> bytes:
    """A miniature of the kernel types roard reads, with every BTF kind present before them."""
    b = BtfBuilder(endian)
    u32 = b.int_("unsigned int", 4)
    u64 = b.int_("long long unsigned int", 8)
    char = b.int_("unsigned char", 1)
    # One of each remaining kind, so that skipping their trailing data is exercised.
    b.add(ARRAY, extra=b._u32(char, u32, 32))
    b.add(ENUM, "pid_type", 4, vlen=2, extra=b._u32(b.string("PIDTYPE_PID"), 0) + b._u32(0, 1))
    b.add(FWD, "undefined_thing")
    b.ref(VOLATILE, u32)
    restrict_ptr = b.ref(RESTRICT, b.ref(PTR, char))
    proto = b.add(FUNC_PROTO, "", u32, vlen=2, extra=b._u32(0, u32) + b._u32(0, restrict_ptr))
    b.add(FUNC, "do_thing", proto)
    var = b.add(VAR, "some_var", u32, extra=b._u32(1))
    b.add(DATASEC, ".data", 8, vlen=1, extra=b._u32(var, 0, 4))
    b.add(FLOAT, "double", 8)
    b.add(DECL_TAG, "a_tag", var, extra=b._u32(0xFFFFFFFF))
    b.add(TYPE_TAG, "rcu", u32)
    b.add(ENUM64, "big", 8, vlen=1, extra=b._u32(b.string("BIG"), 1, 2))

    u32_t = b.ref(TYPEDEF, u32, "u32")
    # struct qstr { union { struct { u32 hash; u32 len; }; u64 hash_len; }; const char *name; }
    hash_len = b.aggregate("", 8, [("hash", u32_t, 0), ("len", u32_t, 32)])
    anon = b.aggregate("", 8, [("", hash_len, 0), ("hash_len", u64, 0)], kind=UNION)
    name_ptr = b.ref(PTR, b.ref(CONST, char))
    qstr = b.aggregate("qstr", 16, [("", anon, 0), ("name", name_ptr, 64)])
    b.add(FWD, "dentry")  # a forward declaration before the real definition
    dentry_ptr = b.ref(PTR, b.add(FWD, "dentry"))
    dentry = b.aggregate(
        "dentry",
        48,
        [
            ("d_flags", u32, 0),
            ("d_parent", dentry_ptr, 64),
            ("d_name", b.ref(CONST, qstr), 128),  # const struct qstr, like recent kernels
            ("d_inode", name_ptr, 256),
            ("d_flag_a", u32, 320, 1),  # bitfields via kind_flag
            ("d_flag_b", u32, 321, 3),
        ],
        kind_flag=1,
    )
    path = b.aggregate("path", 16, [("mnt", name_ptr, 0), ("dentry", b.ref(PTR, dentry), 64)])
    path_t = b.ref(TYPEDEF, b.ref(VOLATILE, path), "path_t")
    bits3 = b.int_("unsigned int", 4, bits=3)  # old-style bitfield width, kind_flag 0
    b.aggregate(
        "file",
        64,
        [
            ("f_mode", u32, 0),
            ("f_path", path_t, 64),  # typedef'd and volatile-qualified member type
            ("f_inode", name_ptr, 192),
            ("f_old_bits", bits3, 256),
            ("f_pos", u64, 320),
        ],
    )
    b.aggregate("data_union", 8, [("as_int", u64, 0), ("as_ptr", name_ptr, 0)], kind=UNION)
    b.aggregate("empty", 0, [])
    return b.build()


@pytest.fixture(params=["<", ">"], ids=["little-endian", "big-endian"])
def btf(request: pytest.FixtureRequest) -> Btf:
    endian: str = request.param
    return Btf.from_bytes(kernel_like_blob(endian))


# -- synthetic blobs ------------------------------------------------------------------------------


def test_struct_sizes(btf: Btf) -> None:
    assert btf.struct_size("qstr") == 16
    assert btf.struct_size("dentry") == 48
    assert btf.struct_size("path") == 16
    assert btf.struct_size("file") == 64
    assert btf.struct_size("data_union") == 8  # unions are accepted too
    assert btf.struct_size("empty") == 0


def test_direct_members(btf: Btf) -> None:
    assert btf.offset("path", "mnt") == 0
    assert btf.offset("path", "dentry") == 8
    assert btf.offset("dentry", "d_parent") == 8
    assert btf.offset("file", "f_pos") == 40
    assert btf.offset("data_union", "as_ptr") == 0


def test_nested_member_paths(btf: Btf) -> None:
    assert btf.offset("file", "f_path.dentry") == btf.offset("file", "f_path") + 8 == 16
    assert btf.offset("dentry", "d_name.name") == 16 + 8


def test_anonymous_union_descent(btf: Btf) -> None:
    assert btf.offset("qstr", "hash") == 0
    assert btf.offset("qstr", "len") == 4
    assert btf.offset("qstr", "hash_len") == 0
    assert btf.offset("qstr", "name") == 8
    # Through a named (const-qualified) member, then into the anonymous union.
    assert btf.offset("dentry", "d_name.len") == 16 + 4
    assert btf.has_member("dentry", "d_name.hash_len")


def test_typedef_and_modifiers_are_followed(btf: Btf) -> None:
    # f_path's type is typedef -> volatile -> struct path.
    assert btf.offset("file", "f_path.mnt") == 8
    assert btf.has_member("file", "f_path.dentry")


def test_bitfields_are_rejected(btf: Btf) -> None:
    for struct_name, member in [("dentry", "d_flag_a"), ("dentry", "d_flag_b")]:
        with pytest.raises(BtfError, match=f"{member}.*bitfield"):
            btf.offset(struct_name, member)
        assert btf.has_member(struct_name, member)
    # kind_flag 0: the width comes from the INT type's encoding.
    with pytest.raises(BtfError, match="bitfield"):
        btf.offset("file", "f_old_bits")
    # A plain member of a kind_flag struct is still addressable.
    assert btf.offset("dentry", "d_inode") == 32


def test_missing_struct(btf: Btf) -> None:
    with pytest.raises(BtfError, match="no_such_struct"):
        btf.struct_size("no_such_struct")
    with pytest.raises(BtfError, match="no_such_struct"):
        btf.offset("no_such_struct", "x")
    assert not btf.has_member("no_such_struct", "x")


def test_missing_member(btf: Btf) -> None:
    with pytest.raises(BtfError, match=r"'file'.*'f_nope'"):
        btf.offset("file", "f_nope")
    with pytest.raises(BtfError, match=r"'file'.*'f_path\.nope'.*'nope' in struct 'path'"):
        btf.offset("file", "f_path.nope")
    assert not btf.has_member("file", "f_nope")
    assert not btf.has_member("file", "f_path.nope")


def test_cannot_descend_through_pointer_or_scalar(btf: Btf) -> None:
    with pytest.raises(BtfError, match="not a struct or union"):
        btf.offset("path", "dentry.d_parent")
    with pytest.raises(BtfError, match="not a struct or union"):
        btf.offset("file", "f_pos.x")
    assert not btf.has_member("path", "dentry.d_parent")


@pytest.mark.parametrize("bad_path", ["", ".", "f_path.", ".f_path", "f_path..dentry"])
def test_malformed_member_path(btf: Btf, bad_path: str) -> None:
    with pytest.raises(BtfError, match="bad member path"):
        btf.offset("file", bad_path)


def test_forward_declarations_are_not_structs(btf: Btf) -> None:
    # "dentry" is declared FWD twice before its definition; the definition wins.
    assert btf.struct_size("dentry") == 48
    assert not btf.has_member("undefined_thing", "x")


def test_first_complete_definition_wins() -> None:
    b = BtfBuilder()
    u32 = b.int_("unsigned int", 4)
    b.add(FWD, "dup")
    b.aggregate("dup", 0, [])  # size 0: not complete, skipped in favour of a sized one
    b.aggregate("dup", 8, [("first", u32, 32)])
    b.aggregate("dup", 16, [("second", u32, 64)])
    btf = Btf.from_bytes(b.build())
    assert btf.struct_size("dup") == 8
    assert btf.offset("dup", "first") == 4
    assert not btf.has_member("dup", "second")


def test_empty_type_section() -> None:
    btf = Btf.from_bytes(BtfBuilder().build())
    assert not btf.has_member("anything", "x")


# -- malformed data -------------------------------------------------------------------------------


def test_wrong_magic() -> None:
    data = bytearray(kernel_like_blob())
    data[0:2] = b"\x7fE"
    with pytest.raises(BtfError, match="magic"):
        Btf.from_bytes(bytes(data))


def test_too_short_for_header() -> None:
    with pytest.raises(BtfError, match="header"):
        Btf.from_bytes(kernel_like_blob()[:10])
    with pytest.raises(BtfError):
        Btf.from_bytes(b"")


def test_truncated_sections() -> None:
    data = kernel_like_blob()
    for cut in (len(data) - 1, len(data) // 2, 30):
        with pytest.raises(BtfError, match="truncated"):
            Btf.from_bytes(data[:cut])


def test_truncated_type_record() -> None:
    b = BtfBuilder()
    b.int_("int", 4)
    b.types[-1] = b.types[-1][:-4]  # INT without its trailing encoding word
    with pytest.raises(BtfError, match="type id 1"):
        Btf.from_bytes(b.build())


def test_unknown_kind() -> None:
    b = BtfBuilder()
    b.add(25, "future")
    with pytest.raises(BtfError, match="unknown kind 25"):
        Btf.from_bytes(b.build())


def test_unsupported_version() -> None:
    data = bytearray(kernel_like_blob())
    data[2] = 2
    with pytest.raises(BtfError, match="version 2"):
        Btf.from_bytes(bytes(data))


def test_dangling_type_reference() -> None:
    b = BtfBuilder()
    b.aggregate("s", 8, [("inner", 99, 0)])
    btf = Btf.from_bytes(b.build())
    with pytest.raises(BtfError, match="type id 99"):
        btf.offset("s", "inner.x")


# -- loading from a file --------------------------------------------------------------------------


def test_load_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "vmlinux"
    with pytest.raises(BtfError, match="CONFIG_DEBUG_INFO_BTF=y") as excinfo:
        Btf.load(missing)
    assert str(missing) in str(excinfo.value)
    assert isinstance(excinfo.value, PrerequisiteError)


def test_load_malformed_file(tmp_path: Path) -> None:
    bad = tmp_path / "vmlinux"
    bad.write_bytes(b"definitely not BTF data")
    with pytest.raises(BtfError, match=f"{re.escape(str(bad))}.*malformed"):
        Btf.load(bad)


def test_load_valid_file(tmp_path: Path) -> None:
    good = tmp_path / "vmlinux"
    good.write_bytes(kernel_like_blob())
    assert Btf.load(good).offset("file", "f_path.dentry") == 16


# -- the running kernel ---------------------------------------------------------------------------

live = pytest.mark.skipif(
    not DEFAULT_BTF_PATH.exists(), reason=f"{DEFAULT_BTF_PATH} absent (no CONFIG_DEBUG_INFO_BTF)"
)

LIVE_MEMBERS = {
    "task_struct": [
        "files", "fs", "tgid", "pid", "start_time", "mm", "real_parent", "signal", "exit_code",
    ],
    "files_struct": ["fdt"],
    "fdtable": ["fd"],
    "file": ["f_path", "f_inode", "f_mode"],
    "path": ["mnt", "dentry"],
    "dentry": ["d_parent", "d_name"],
    "qstr": ["name", "len"],
    "mount": ["mnt_parent", "mnt_mountpoint", "mnt"],
    "vfsmount": ["mnt_root"],
    "inode": ["i_ino", "i_sb", "i_mode"],
    "super_block": ["s_dev"],
    "fs_struct": ["pwd", "root"],
    "mm_struct": ["arg_start", "arg_end", "exe_file"],
    "signal_struct": ["live"],
}  # fmt: skip


@pytest.fixture(scope="module")
def kernel_btf() -> Btf:
    return Btf.load()


@live
def test_live_task_struct_size(kernel_btf: Btf) -> None:
    assert kernel_btf.struct_size("task_struct") > 1000


@live
@pytest.mark.parametrize(
    ("struct_name", "member"),
    [(s, m) for s, members in LIVE_MEMBERS.items() for m in members],
)
def test_live_member_offsets(kernel_btf: Btf, struct_name: str, member: str) -> None:
    assert kernel_btf.has_member(struct_name, member)
    offset = kernel_btf.offset(struct_name, member)
    assert 0 <= offset < kernel_btf.struct_size(struct_name)


@live
@pytest.mark.skipif(struct.calcsize("P") != 8, reason="pointer sizes below assume a 64-bit kernel")
def test_live_path_layout(kernel_btf: Btf) -> None:
    assert kernel_btf.offset("path", "mnt") == 0
    assert kernel_btf.offset("path", "dentry") == 8
    assert kernel_btf.struct_size("path") == 16


@live
def test_live_nested_paths(kernel_btf: Btf) -> None:
    assert kernel_btf.offset("file", "f_path.dentry") == kernel_btf.offset("file", "f_path") + 8
    d_name = kernel_btf.offset("dentry", "d_name")
    assert kernel_btf.offset("dentry", "d_name.len") == d_name + kernel_btf.offset("qstr", "len")
    assert kernel_btf.offset("dentry", "d_name.name") == d_name + kernel_btf.offset("qstr", "name")


@live
def test_live_missing_member(kernel_btf: Btf) -> None:
    assert not kernel_btf.has_member("task_struct", "no_such_member_anywhere")
    with pytest.raises(BtfError, match="task_struct"):
        kernel_btf.offset("task_struct", "no_such_member_anywhere")

"""A small pure-Python reader of the kernel's BTF, enough to find struct sizes and member offsets.

Format reference: the kernel's Documentation/bpf/btf.rst. Only the header, the type section and the
string section are read; .BTF.ext (line/func info) is never present in /sys/kernel/btf/vmlinux.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

from roard.errors import BtfError

__all__ = ["DEFAULT_BTF_PATH", "Btf"]

DEFAULT_BTF_PATH = Path("/sys/kernel/btf/vmlinux")

_MAGIC = 0xEB9F
_HEADER_LEN = 24  # struct btf_header as of version 1: magic, version, flags, hdr_len, 4 x u32
_TYPE_LEN = 12  # struct btf_type: name_off, info, size/type

# BTF_KIND_* values.
_INT = 1
_PTR = 2
_ARRAY = 3
_STRUCT = 4
_UNION = 5
_ENUM = 6
_FWD = 7
_TYPEDEF = 8
_VOLATILE = 9
_CONST = 10
_RESTRICT = 11
_FUNC = 12
_FUNC_PROTO = 13
_VAR = 14
_DATASEC = 15
_FLOAT = 16
_DECL_TAG = 17
_TYPE_TAG = 18
_ENUM64 = 19

_KIND_NAMES = (
    "UNKN", "INT", "PTR", "ARRAY", "STRUCT", "UNION", "ENUM", "FWD", "TYPEDEF", "VOLATILE",
    "CONST", "RESTRICT", "FUNC", "FUNC_PROTO", "VAR", "DATASEC", "FLOAT", "DECL_TAG", "TYPE_TAG",
    "ENUM64",
)  # fmt: skip

# Bytes that follow struct btf_type, per kind: a fixed part plus vlen * a per-entry part.
# Index 0 (UNKN) never appears in the type section; it is rejected before these are used.
_FIXED_EXTRA = (0, 4, 0, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 4, 0, 0)
_VLEN_EXTRA = (0, 0, 0, 0, 12, 12, 8, 0, 0, 0, 0, 0, 0, 8, 0, 12, 0, 0, 0, 12)

# Kinds that only qualify or rename another type; followed when looking through a member's type.
_TRANSPARENT = frozenset({_TYPEDEF, _VOLATILE, _CONST, _RESTRICT, _TYPE_TAG})

_MAX_CHAIN = 64  # guards against typedef/modifier cycles in malformed data


@dataclass(frozen=True, slots=True)
class _Header:
    """The fixed header at the start of a BTF blob (offsets are relative to its end)."""

    endian: str  # "<" or ">", as struct wants it
    version: int
    flags: int
    hdr_len: int
    type_off: int
    type_len: int
    str_off: int
    str_len: int


@dataclass(frozen=True, slots=True)
class _Member:
    """One member of a struct or union, with its position in bits from the enclosing type."""

    name: str  # "" for an anonymous struct/union member
    type_id: int
    bit_offset: int
    bitfield_size: int  # 0 unless the member is a bitfield


@dataclass(frozen=True, slots=True)
class _Found:
    """A resolved member path: where it starts and what the final member is."""

    bit_offset: int
    member: _Member


class Btf:
    """Parsed kernel BTF: answers struct sizes and member offsets by name.

    Types are indexed at load; struct members are decoded only when first asked for.
    """

    def __init__(self, data: bytes, header: _Header, type_offsets: list[int], source: str) -> None:
        """Use :meth:`load` or :meth:`from_bytes`; this only stores already-validated parts."""
        self._data = data
        self._header = header
        self._source = source
        # _type_offsets[i] is the byte position in data of type id i; id 0 is void (no entry).
        self._type_offsets = type_offsets
        self._str_start = header.hdr_len + header.str_off
        self._str_end = self._str_start + header.str_len
        self._u32x3 = struct.Struct(header.endian + "III")
        self._u32 = struct.Struct(header.endian + "I")
        self._by_name = self._index_aggregates()
        self._members: dict[int, tuple[_Member, ...]] = {}

    # -- construction ---------------------------------------------------------------------------

    @classmethod
    def load(cls, path: Path = DEFAULT_BTF_PATH) -> Btf:
        """Read and parse the BTF file at ``path`` (the running kernel's by default).

        Raises BtfError if the file is missing, unreadable or not valid BTF.
        """
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise BtfError(
                f"kernel has no BTF at {path}: roard needs CONFIG_DEBUG_INFO_BTF=y"
            ) from None
        except PermissionError:
            raise BtfError(f"cannot read kernel BTF at {path}: permission denied") from None
        except OSError as exc:
            raise BtfError(f"cannot read kernel BTF at {path}: {exc.strerror or exc}") from None
        try:
            return cls._parse(data, str(path))
        except BtfError as exc:
            raise BtfError(
                f"kernel BTF at {path} is malformed ({exc}): roard needs CONFIG_DEBUG_INFO_BTF=y "
                "with a BTF format it understands"
            ) from None

    @classmethod
    def from_bytes(cls, data: bytes) -> Btf:
        """Parse a BTF blob held in memory. Raises BtfError if it is not valid BTF."""
        return cls._parse(bytes(data), "<bytes>")

    @classmethod
    def _parse(cls, data: bytes, source: str) -> Btf:
        header = _parse_header(data)
        return cls(data, header, _scan_types(data, header), source)

    # -- public queries -------------------------------------------------------------------------

    def struct_size(self, struct_name: str) -> int:
        """Size in bytes of ``struct NAME`` (or ``union NAME``)."""
        return self._size_of(self._aggregate(struct_name))

    def offset(self, struct_name: str, member_path: str) -> int:
        """Byte offset of ``member_path`` from the start of ``struct NAME``.

        ``member_path`` may be dotted ("f_path.dentry") to descend into nested struct/union
        members; members of anonymous structs/unions are found as if they were direct ones.
        Raises BtfError if the struct or a member is absent, if the path goes through something
        that is not a struct/union (e.g. a pointer), or if the member is a bitfield.
        """
        found = self._resolve(struct_name, member_path)
        if found.member.bitfield_size or found.bit_offset % 8:
            raise BtfError(
                f"member {member_path!r} of struct {struct_name!r} is a bitfield "
                f"(bit offset {found.bit_offset}, {found.member.bitfield_size} bits) "
                "and has no byte offset"
            )
        return found.bit_offset // 8

    def has_member(self, struct_name: str, member_path: str) -> bool:
        """Whether ``struct NAME`` has ``member_path`` (same rules as :meth:`offset`).

        False when the struct or any path component is absent; a bitfield counts as present.
        """
        try:
            self._resolve(struct_name, member_path)
        except BtfError:
            return False
        return True

    def function_id(self, name: str) -> int | None:
        """The type id of kernel function ``name`` (what fentry programs attach to), or None."""
        unpack = self._u32x3.unpack_from
        for type_id, pos in enumerate(self._type_offsets):
            name_off, info, _ = unpack(self._data, pos)
            if name_off and (info >> 24) & 0x1F == _FUNC and self._string(name_off) == name:
                return type_id
        return None

    # -- internals ------------------------------------------------------------------------------

    def _index_aggregates(self) -> dict[str, int]:
        """Map each struct/union name to its first complete definition (size > 0 preferred)."""
        data = self._data
        unpack = self._u32x3.unpack_from
        complete: dict[int, int] = {}  # name_off -> first type id
        empty: dict[int, int] = {}
        for type_id, pos in enumerate(self._type_offsets):
            name_off, info, size = unpack(data, pos)
            if name_off and ((info >> 24) & 0x1F) in (_STRUCT, _UNION):
                (complete if size else empty).setdefault(name_off, type_id)
        by_name: dict[str, int] = {}
        # Sorting by id keeps "first wins" even if two name offsets hold the same string.
        for name_off, type_id in sorted(complete.items(), key=lambda item: item[1]):
            by_name.setdefault(self._string(name_off), type_id)
        for name_off, type_id in sorted(empty.items(), key=lambda item: item[1]):
            by_name.setdefault(self._string(name_off), type_id)
        return by_name

    def _string(self, offset: int) -> str:
        start = self._str_start + offset
        if offset < 0 or start >= self._str_end:
            raise BtfError(f"string offset {offset} is outside the string section")
        end = self._data.find(b"\0", start, self._str_end)
        if end < 0:
            raise BtfError(f"string at offset {offset} is not NUL-terminated")
        return self._data[start:end].decode("utf-8", errors="replace")

    def _type(self, type_id: int) -> tuple[int, int, int, int, int]:
        """Return (position, name_off, kind, kind_flag, vlen) of a type id (not its size/type)."""
        if type_id <= 0 or type_id >= len(self._type_offsets):
            raise BtfError(f"type id {type_id} does not exist in {self._source}")
        pos = self._type_offsets[type_id]
        name_off, info, _ = self._u32x3.unpack_from(self._data, pos)
        return pos, name_off, (info >> 24) & 0x1F, info >> 31, info & 0xFFFF

    def _size_or_type(self, pos: int) -> int:
        value: int = self._u32.unpack_from(self._data, pos + 8)[0]
        return value

    def _size_of(self, type_id: int) -> int:
        pos = self._type(type_id)[0]
        return self._size_or_type(pos)

    def _strip(self, type_id: int) -> int:
        """Follow typedef/const/volatile/restrict/type_tag to the underlying type id (0 = void)."""
        for _ in range(_MAX_CHAIN):
            if type_id == 0:
                return 0
            pos, _, kind, _, _ = self._type(type_id)
            if kind not in _TRANSPARENT:
                return type_id
            type_id = self._size_or_type(pos)
        raise BtfError(f"type chain too long at type id {type_id} in {self._source}")

    def _kind(self, type_id: int) -> int:
        return 0 if type_id == 0 else self._type(type_id)[2]

    def _aggregate(self, struct_name: str) -> int:
        type_id = self._by_name.get(struct_name)
        if type_id is None:
            raise BtfError(
                f"kernel BTF ({self._source}) has no struct or union named {struct_name!r}"
            )
        return type_id

    def _describe(self, type_id: int) -> str:
        _, name_off, kind, _, _ = self._type(type_id)
        word = "union" if kind == _UNION else "struct"
        return f"{word} {self._string(name_off)!r}" if name_off else f"anonymous {word}"

    def _members_of(self, type_id: int) -> tuple[_Member, ...]:
        cached = self._members.get(type_id)
        if cached is not None:
            return cached
        pos, _, kind, kind_flag, vlen = self._type(type_id)
        if kind not in (_STRUCT, _UNION):
            raise BtfError(f"type id {type_id} is {_KIND_NAMES[kind]}, not a struct or union")
        unpack = self._u32x3.unpack_from
        members = []
        for i in range(vlen):
            name_off, member_type, raw_offset = unpack(self._data, pos + _TYPE_LEN + i * 12)
            if kind_flag:
                # kind_flag: offset packs bitfield size (high 8 bits) and bit offset (low 24).
                bit_offset, bitfield_size = raw_offset & 0xFFFFFF, raw_offset >> 24
            else:
                # Without kind_flag a bitfield's width lives in the member's INT type encoding.
                bit_offset, bitfield_size = raw_offset, 0
                base = self._strip(member_type)
                if self._kind(base) == _INT:
                    base_pos = self._type_offsets[base]
                    size = self._size_or_type(base_pos)
                    encoding = self._u32.unpack_from(self._data, base_pos + _TYPE_LEN)[0]
                    nr_bits, int_offset = encoding & 0xFF, (encoding >> 16) & 0xFF
                    if int_offset or nr_bits != size * 8:
                        bit_offset, bitfield_size = bit_offset + int_offset, nr_bits
            name = self._string(name_off) if name_off else ""
            members.append(_Member(name, member_type, bit_offset, bitfield_size))
        result = tuple(members)
        self._members[type_id] = result
        return result

    def _find_member(self, type_id: int, name: str) -> _Found | None:
        """Find ``name`` among the members of a struct/union, looking inside anonymous ones."""
        for member in self._members_of(type_id):
            if member.name == name:
                return _Found(member.bit_offset, member)
        for member in self._members_of(type_id):
            if member.name:
                continue
            inner = self._strip(member.type_id)
            if self._kind(inner) in (_STRUCT, _UNION):
                found = self._find_member(inner, name)
                if found is not None:
                    return _Found(member.bit_offset + found.bit_offset, found.member)
        return None

    def _resolve(self, struct_name: str, member_path: str) -> _Found:
        parts = member_path.split(".")
        if not member_path or any(not part for part in parts):
            raise BtfError(f"bad member path {member_path!r} for struct {struct_name!r}")
        type_id = self._aggregate(struct_name)
        bit_offset = 0
        found: _Found | None = None
        for depth, part in enumerate(parts):
            if depth:
                assert found is not None
                type_id = self._strip(found.member.type_id)
                if self._kind(type_id) not in (_STRUCT, _UNION):
                    prefix = ".".join(parts[:depth])
                    raise BtfError(
                        f"member {prefix!r} of struct {struct_name!r} is not a struct or union "
                        f"({_KIND_NAMES[self._kind(type_id)]}), so {member_path!r} cannot be "
                        "reached through it"
                    )
            found = self._find_member(type_id, part)
            if found is None:
                where = "" if depth == 0 else f" (no {part!r} in {self._describe(type_id)})"
                raise BtfError(
                    f"struct {struct_name!r} has no member {member_path!r}{where} "
                    f"in kernel BTF ({self._source})"
                )
            bit_offset += found.bit_offset
        assert found is not None
        return _Found(bit_offset, found.member)


def _parse_header(data: bytes) -> _Header:
    if len(data) < _HEADER_LEN:
        raise BtfError(f"BTF data is {len(data)} bytes, shorter than its {_HEADER_LEN}-byte header")
    if struct.unpack_from("<H", data)[0] == _MAGIC:
        endian = "<"
    elif struct.unpack_from(">H", data)[0] == _MAGIC:
        endian = ">"
    else:
        raise BtfError(f"bad BTF magic 0x{data[0]:02x}{data[1]:02x} (expected 0xeb9f)")
    header = _Header(endian, *struct.unpack_from(endian + "BBIIIII", data, 2))
    if header.version != 1:
        raise BtfError(f"unsupported BTF version {header.version}")
    if header.hdr_len < _HEADER_LEN or header.hdr_len > len(data):
        raise BtfError(f"bad BTF header length {header.hdr_len}")
    body = len(data) - header.hdr_len
    for what, off, length in (
        ("type", header.type_off, header.type_len),
        ("string", header.str_off, header.str_len),
    ):
        if off + length > body:
            raise BtfError(
                f"BTF {what} section ({off}+{length}) runs past the end of the data "
                f"({body} bytes after the header); the data is truncated"
            )
    if header.type_off % 4 or header.type_len % 4:
        raise BtfError("BTF type section is not 4-byte aligned")
    if header.str_len and data[header.hdr_len + header.str_off + header.str_len - 1] != 0:
        raise BtfError("BTF string section does not end with NUL")
    return header


def _scan_types(data: bytes, header: _Header) -> list[int]:
    """Walk the type section once, returning each type's byte position (index = type id)."""
    unpack = struct.Struct(header.endian + "II").unpack_from
    fixed, per_entry = _FIXED_EXTRA, _VLEN_EXTRA
    pos = header.hdr_len + header.type_off
    end = pos + header.type_len
    offsets = [0]  # type id 0 is void and has no record
    append = offsets.append
    while pos < end:
        if pos + _TYPE_LEN > end:
            raise BtfError(f"BTF type id {len(offsets)} is truncated")
        _, info = unpack(data, pos)
        kind = (info >> 24) & 0x1F
        if not 0 < kind <= _ENUM64:
            raise BtfError(f"BTF type id {len(offsets)} has unknown kind {kind}")
        append(pos)
        pos += _TYPE_LEN + fixed[kind] + per_entry[kind] * (info & 0xFFFF)
    if pos != end:
        raise BtfError(f"BTF type id {len(offsets) - 1} runs past the end of the type section")
    return offsets

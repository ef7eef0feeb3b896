"""The kernel/userspace ABI, read from bpf/include/roard_abi.h at run time.

The header is the single definition: this module parses its integer #defines and flat
structs into ctypes structures, so decoders can never drift from the BPF programs.
"""

from __future__ import annotations

import ctypes
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from roard.errors import KernelError

_CTYPES: dict[str, type[ctypes._SimpleCData]] = {  # type: ignore[type-arg]
    "__u8": ctypes.c_uint8,
    "__u16": ctypes.c_uint16,
    "__u32": ctypes.c_uint32,
    "__u64": ctypes.c_uint64,
    "__s32": ctypes.c_int32,
    "__s64": ctypes.c_int64,
}
_DEFINE = re.compile(r"^#define[ \t]+(ROARD_\w+)[ \t]+(\S+)[ \t]*$", re.MULTILINE)
_STRUCT = re.compile(r"struct\s+(\w+)\s*\{([^}]*)\};")
_FIELD = re.compile(r"^\s*((?:struct\s+)?\w+)\s+(\w+)(?:\[(\w+)\])?\s*;")


def bpf_source_dir() -> Path:
    """Where the BPF sources live: inside an installed package, or the checkout's bpf/."""
    here = Path(__file__).resolve().parent.parent
    for candidate in (here / "_bpf", here.parent / "bpf"):
        if (candidate / "include" / "roard_abi.h").is_file():
            return candidate
    raise KernelError(f"BPF sources not found next to {here}: reinstall roard")


@dataclass(frozen=True)
class Abi:
    """Constants and struct layouts of roard_abi.h."""

    consts: dict[str, int]
    structs: dict[str, type[ctypes.Structure]]

    @classmethod
    def load(cls, header: Path | None = None) -> Abi:
        """Parse the ABI header (the package's own by default)."""
        path = header or bpf_source_dir() / "include" / "roard_abi.h"
        return cls.parse(path.read_text())

    @classmethod
    def parse(cls, text: str) -> Abi:
        """Parse header text; raise KernelError on anything the format does not allow."""
        text = re.sub(r"/\*.*?\*/", "", text, flags=re.DOTALL)
        consts = {}
        for name, value in _DEFINE.findall(text):
            try:
                consts[name] = int(value, 0)
            except ValueError:
                raise KernelError(f"roard_abi.h: {name} is not an integer: {value!r}") from None
        structs: dict[str, type[ctypes.Structure]] = {}
        for name, body in _STRUCT.findall(text):
            fields: list[tuple[str, Any]] = []
            for line in filter(str.strip, body.splitlines()):
                match = _FIELD.match(line)
                ctype = match.group(1) if match else ""
                nested = structs.get(ctype.removeprefix("struct").strip())
                if not match or (ctype not in _CTYPES and nested is None):
                    raise KernelError(f"roard_abi.h: struct {name}: cannot decode {line.strip()!r}")
                _ctype, field, count = match.groups()
                base: Any = nested if nested is not None else _CTYPES[ctype]
                if count is None:
                    fields.append((field, base))
                else:
                    n = int(count) if count.isdigit() else consts[count]
                    fields.append((field, base * n))
            structs[name] = type(name, (ctypes.Structure,), {"_fields_": fields})
        return cls(consts=consts, structs=structs)

    def const(self, name: str) -> int:
        """The value of ROARD_<name>."""
        return self.consts[f"ROARD_{name}"]

    @cached_property
    def event_structs(self) -> dict[int, type[ctypes.Structure]]:
        """Event type code -> its struct, by the naming rule ROARD_EV_X <-> roard_ev_x."""
        found = {}
        for name, value in self.consts.items():
            if not name.startswith("ROARD_EV_"):
                continue
            struct = f"roard_ev_{name.removeprefix('ROARD_EV_').lower()}"
            if struct not in self.structs:
                raise KernelError(f"roard_abi.h: {name} has no struct {struct}")
            found[value] = self.structs[struct]
        return found

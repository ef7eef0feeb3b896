"""Feature probes through bpf(2) itself: a no-op program loaded (and attached) in
microseconds, where asking bcc would cost a compile of the whole program."""

from __future__ import annotations

import ctypes
import os
import platform
import struct

# bpf(2) commands, program types and attach types (include/uapi/linux/bpf.h).
_BPF_PROG_LOAD = 5
_BPF_PROG_GET_NEXT_ID = 11
_BPF_PROG_GET_FD_BY_ID = 13
_BPF_OBJ_GET_INFO_BY_FD = 15
_BPF_RAW_TRACEPOINT_OPEN = 17
PROG_TYPE_TRACEPOINT = 5
PROG_TYPE_TRACING = 26
ATTACH_TRACE_FENTRY = 24

# The bpf(2) syscall number per machine (it has no libc wrapper).
_NR_BPF = {"x86_64": 321, "aarch64": 280, "ppc64le": 361, "s390x": 351}

# r0 = 0; exit.
_NOOP = bytes([0xB7, 0, 0, 0, 0, 0, 0, 0, 0x95, 0, 0, 0, 0, 0, 0, 0])
_LICENSE = ctypes.create_string_buffer(b"GPL")
_ATTR_SIZE = 128  # larger than every field used here; the kernel wants the rest zeroed
# struct bpf_prog_info: where its name and its run counters are, and a size that holds them.
_INFO_NAME, _INFO_RUN_TIME_NS, _INFO_SIZE = 64, 192, 256


def _bpf(cmd: int, attr: bytearray) -> int:
    """Call bpf(2); return its result or raise OSError with the kernel's errno."""
    nr = _NR_BPF.get(platform.machine())
    if nr is None:
        raise OSError(0, f"bpf(2) number unknown on {platform.machine()}")
    libc = ctypes.CDLL(None, use_errno=True)
    buf = (ctypes.c_char * len(attr)).from_buffer(attr)
    result = int(libc.syscall(nr, cmd, buf, len(attr)))
    if result < 0:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno))
    return result


def load_noop(prog_type: int, attach_type: int = 0, attach_btf_id: int = 0) -> int:
    """Load a program that does nothing; return its descriptor (the caller closes it).
    Raises OSError with the kernel's refusal."""
    insns = ctypes.create_string_buffer(_NOOP, len(_NOOP))
    attr = bytearray(_ATTR_SIZE)
    code, license_ = ctypes.addressof(insns), ctypes.addressof(_LICENSE)
    struct.pack_into("=IIQQ", attr, 0, prog_type, len(_NOOP) // 8, code, license_)
    struct.pack_into("=I", attr, 68, attach_type)  # expected_attach_type
    struct.pack_into("=I", attr, 108, attach_btf_id)  # attach_btf_id
    return _bpf(_BPF_PROG_LOAD, attr)


def fentry_refusal(btf_id: int) -> str | None:
    """None when a no-op fentry program loads and attaches to the kernel function with
    BTF id `btf_id` (it is detached at once); else the kernel's refusal, in words."""
    try:
        prog = load_noop(PROG_TYPE_TRACING, ATTACH_TRACE_FENTRY, btf_id)
    except OSError as exc:
        return f"loading an fentry program: {exc.strerror}"
    try:
        attr = bytearray(_ATTR_SIZE)
        struct.pack_into("=QI", attr, 0, 0, prog)  # no name: the program's own attach target
        os.close(_bpf(_BPF_RAW_TRACEPOINT_OPEN, attr))
    except OSError as exc:
        return f"attaching an fentry program: {exc.strerror}"
    finally:
        os.close(prog)
    return None


def program_run_stats() -> dict[tuple[int, str], tuple[int, int]]:
    """(id, name) -> (nanoseconds run, runs) of every BPF program loaded on this host. The
    kernel counts only while the sysctl kernel.bpf_stats_enabled is 1 (benchmarks set it);
    names are cut at 15 characters."""
    stats: dict[tuple[int, str], tuple[int, int]] = {}
    prog_id = 0
    while True:
        attr = bytearray(_ATTR_SIZE)
        struct.pack_into("=I", attr, 0, prog_id)
        try:
            _bpf(_BPF_PROG_GET_NEXT_ID, attr)
        except OSError:  # ENOENT: no more
            return stats
        prog_id = struct.unpack_from("=I", attr, 4)[0]
        attr = bytearray(_ATTR_SIZE)  # the kernel refuses next_id set here
        struct.pack_into("=I", attr, 0, prog_id)
        try:
            prog = _bpf(_BPF_PROG_GET_FD_BY_ID, attr)
        except OSError:  # unloaded since
            continue
        info = ctypes.create_string_buffer(_INFO_SIZE)
        attr = bytearray(_ATTR_SIZE)
        struct.pack_into("=IIQ", attr, 0, prog, _INFO_SIZE, ctypes.addressof(info))
        try:
            _bpf(_BPF_OBJ_GET_INFO_BY_FD, attr)
        finally:
            os.close(prog)
        name = info.raw[_INFO_NAME : _INFO_NAME + 16].split(b"\0")[0].decode(errors="replace")
        run_ns, runs = struct.unpack_from("=QQ", info.raw, _INFO_RUN_TIME_NS)
        stats[(prog_id, name)] = (run_ns, runs)

"""Copy a file without read/write syscalls: `async_io.py uring|aio SRC DST`.

uring: SRC is opened (IORING_OP_OPENAT) and read (IORING_OP_READ) through an io_uring;
DST is created with open(2) and written through the ring (IORING_OP_WRITE).
aio: both are opened with open(2), and read and written with io_submit (Linux AIO).
Raw syscalls over ctypes and mmap (x86_64): no liburing or libaio needed.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import struct
import sys

NR_SETUP, NR_ENTER = 425, 426  # x86_64
NR_IO_SETUP, NR_IO_GETEVENTS, NR_IO_SUBMIT = 206, 208, 209
IOCB_CMD_PREAD, IOCB_CMD_PWRITE = 0, 1
OP_OPENAT, OP_READ, OP_WRITE = 18, 22, 23
ENTER_GETEVENTS = 1
OFF_SQ_RING, OFF_CQ_RING, OFF_SQES = 0, 0x8000000, 0x10000000
AT_FDCWD = -100
LIBC = ctypes.CDLL(None, use_errno=True)


def syscall(*args: object) -> int:
    result = int(LIBC.syscall(*args))
    if result < 0:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno))
    return result


class Ring:
    """One submission at a time, waited for: enough for a test program."""

    def __init__(self, entries: int = 4) -> None:
        params = ctypes.create_string_buffer(120)
        self.fd = syscall(NR_SETUP, entries, params)
        sq_entries, cq_entries = struct.unpack_from("=II", params, 0)
        self.sq_head, self.sq_tail, self.sq_mask, _, _, _, sq_array = struct.unpack_from(
            "=7I", params, 40
        )
        self.cq_head, self.cq_tail, self.cq_mask, _, _, cqes = struct.unpack_from("=6I", params, 80)
        self.sq_array, self.cqes = sq_array, cqes
        self.sq = mmap.mmap(self.fd, sq_array + 4 * sq_entries, offset=OFF_SQ_RING)
        self.cq = mmap.mmap(self.fd, cqes + 16 * cq_entries, offset=OFF_CQ_RING)
        self.sqes = mmap.mmap(self.fd, 64 * sq_entries, offset=OFF_SQES)

    def run(
        self, opcode: int, fd: int, addr: int, length: int, off: int = 0, flags: int = 0
    ) -> int:
        """Submit one request, wait for its completion, return its result."""
        tail = struct.unpack_from("=I", self.sq, self.sq_tail)[0]
        index = tail & struct.unpack_from("=I", self.sq, self.sq_mask)[0]
        sqe = struct.pack("=BBHiQQIIQ", opcode, 0, 0, fd, off, addr, length, flags, index)
        self.sqes[64 * index : 64 * index + 64] = sqe.ljust(64, b"\0")
        struct.pack_into("=I", self.sq, self.sq_array + 4 * index, index)
        struct.pack_into("=I", self.sq, self.sq_tail, tail + 1)
        syscall(NR_ENTER, self.fd, 1, 1, ENTER_GETEVENTS, 0, 0)
        head = struct.unpack_from("=I", self.cq, self.cq_head)[0]
        slot = head & struct.unpack_from("=I", self.cq, self.cq_mask)[0]
        _user_data, res, _flags = struct.unpack_from("=QiI", self.cq, self.cqes + 16 * slot)
        struct.pack_into("=I", self.cq, self.cq_head, head + 1)
        if res < 0:
            raise OSError(-res, os.strerror(-res))
        return res


class Aio:
    """Linux AIO: one request at a time, waited for."""

    def __init__(self) -> None:
        ctx = ctypes.c_ulong(0)
        syscall(NR_IO_SETUP, 4, ctypes.byref(ctx))
        self.ctx = ctx  # passed as a C long: a Python int would be cut to 32 bits

    def run(self, opcode: int, fd: int, addr: int, length: int, off: int = 0) -> int:
        """Submit one request, wait for its completion, return its result."""
        iocb = ctypes.create_string_buffer(
            struct.pack("=QIIHhIQQqQII", 0, 0, 0, opcode, 0, fd, addr, length, off, 0, 0, 0)
        )
        iocbs = (ctypes.c_void_p * 1)(ctypes.addressof(iocb))
        syscall(NR_IO_SUBMIT, self.ctx, 1, iocbs)
        event = ctypes.create_string_buffer(32)
        syscall(NR_IO_GETEVENTS, self.ctx, 1, 1, event, 0)
        res = struct.unpack_from("=q", event, 16)[0]
        if res < 0:
            raise OSError(-res, os.strerror(-res))
        return int(res)


def copy(mode: str, src: str, dst: str) -> int:
    """Copy src to dst through io_uring or aio; the bytes copied."""
    if mode == "uring":
        ring = Ring()
        path = ctypes.create_string_buffer(os.fsencode(src))
        fd_in = ring.run(OP_OPENAT, AT_FDCWD, ctypes.addressof(path), 0, flags=os.O_RDONLY)
        read, write = OP_READ, OP_WRITE
        engine: Ring | Aio = ring
    else:
        fd_in = os.open(src, os.O_RDONLY)
        read, write = IOCB_CMD_PREAD, IOCB_CMD_PWRITE
        engine = Aio()
    fd_out = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    buf = ctypes.create_string_buffer(65536)
    offset = 0
    while n := engine.run(read, fd_in, ctypes.addressof(buf), len(buf), offset):
        written = engine.run(write, fd_out, ctypes.addressof(buf), n, offset)
        assert written == n, (written, n)
        offset += n
    return offset


if __name__ == "__main__":
    print(copy(sys.argv[1], sys.argv[2], sys.argv[3]))

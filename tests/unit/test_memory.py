"""Which mappings roard.memory drops after the compile, and that dropping them is harmless."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from roard.memory import compiler_code_ranges

MAPS = """\
7f0000000000-7f0000100000 r--p 00000000 fe:01 100 /usr/lib/x86_64-linux-gnu/libLLVM-14.so.1
7f0000100000-7f0003000000 r-xp 00100000 fe:01 100 /usr/lib/x86_64-linux-gnu/libLLVM-14.so.1
7f0003000000-7f0003400000 r--p 03000000 fe:01 100 /usr/lib/x86_64-linux-gnu/libLLVM-14.so.1
7f0003400000-7f0003500000 rw-p 03400000 fe:01 100 /usr/lib/x86_64-linux-gnu/libLLVM-14.so.1
7f0004000000-7f0005000000 r-xp 00200000 fe:01 200 /usr/lib/llvm-14/lib/libclang-cpp.so.14
7f0006000000-7f0006100000 r-xp 00020000 fe:01 300 /usr/lib/x86_64-linux-gnu/libc.so.6
7f0007000000-7f0007100000 r-xp 00000000 fe:01 400 /opt/libLLVM-weird/not-llvm.so
7f0008000000-7f0008100000 rw-p 00000000 00:00 0
"""


def test_only_the_compilers_executable_mappings_are_chosen() -> None:
    """Text of libLLVM and libclang only: never their relocated or writable data (dropping
    those would lose private changes), never another library."""
    assert compiler_code_ranges(MAPS) == [
        (0x7F0000100000, 0x7F0003000000),
        (0x7F0004000000, 0x7F0005000000),
    ]


def test_a_process_keeps_working_after_the_release() -> None:
    """In a process that loaded and ran LLVM, the release shrinks RSS and LLVM still runs
    afterwards (its code faults back in from the file)."""
    script = textwrap.dedent("""
        import ctypes, ctypes.util, sys
        from roard.memory import release_compiler_memory
        llvm = ctypes.CDLL("libLLVM-14.so.1")
        llvm.LLVMContextCreate.restype = ctypes.c_void_p
        llvm.LLVMModuleCreateWithNameInContext.restype = ctypes.c_void_p
        llvm.LLVMModuleCreateWithNameInContext.argtypes = [ctypes.c_char_p, ctypes.c_void_p]
        llvm.LLVMContextDispose.argtypes = [ctypes.c_void_p]
        llvm.LLVMDisposeModule.argtypes = [ctypes.c_void_p]
        def work():
            ctx = llvm.LLVMContextCreate()
            llvm.LLVMDisposeModule(llvm.LLVMModuleCreateWithNameInContext(b"m", ctx))
            llvm.LLVMContextDispose(ctx)
        work()
        released = release_compiler_memory()
        work()
        print(released.code_bytes > 0, released.rss_after < released.rss_before)
    """)
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "True"]

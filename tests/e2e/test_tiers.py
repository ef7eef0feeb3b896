"""Tiers: the VFS hook (bpf/vfs.c) that sees io_uring and aio file I/O, attached by fentry
or kprobe where the kernel allows. Where this host cannot attach a tier, its code must
still compile, and (kprobe) pass the verifier."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from roard.config import KernelSizing
from roard.kernel import bpfsys, features, loader
from roard.kernel.btf import Btf
from roard.kernel.headers import find_headers
from tests.e2e.conftest import VENV_BIN, failed_start, start_roard, stop_roard


@pytest.fixture(scope="module")
def btf() -> Btf:
    return Btf.load()


@pytest.fixture(scope="module")
def headers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """bcc finds the same kernel headers roard uses (merged into the state dir if need be)."""
    tree = find_headers(tmp_path_factory.mktemp("state"))
    before = os.environ.get("BCC_KERNEL_SOURCE")
    if tree.how == "merged":
        os.environ["BCC_KERNEL_SOURCE"] = str(tree.path)
    yield
    if before is None:
        os.environ.pop("BCC_KERNEL_SOURCE", None)
    else:
        os.environ["BCC_KERNEL_SOURCE"] = before


def compile_variant(btf: Btf, tier: str) -> Any:
    """bcc's module for the programs with the VFS hook of `tier`, nothing attached by us."""
    from bcc import BPF

    text = loader.program_text(loader.bpf_source_dir()).encode()
    cflags = loader.program_cflags(btf, KernelSizing(), True, True, tier)
    return BPF(text=text, cflags=cflags)


def test_kprobe_variant_passes_the_verifier(btf: Btf, headers: None) -> None:
    """The kprobe handler compiles and the kernel's verifier accepts it (loading a kprobe
    program needs no kprobe support; attaching does)."""
    from bcc import BPF

    bpf = compile_variant(btf, "kprobe")
    try:
        assert bpf.load_func(f"kp__{features.VFS_FUNCTION}".encode(), BPF.KPROBE).fd >= 0
    finally:
        bpf.cleanup()


def test_fentry_variant_compiles(btf: Btf, headers: None) -> None:
    """The fentry handler compiles; bcc loads and attaches it at once, which this host may
    refuse (that is a load failure, never a compile failure)."""
    try:
        compile_variant(btf, "fentry").cleanup()
    except Exception as exc:
        assert "compile" not in str(exc).lower(), exc
        assert features.vfs_plan(btf, False).tiers == ()  # refused by the probe too


def test_noop_programs_load_through_bpf_syscall() -> None:
    """The probe's own bpf(2) call works: a no-op tracepoint program loads."""
    os.close(bpfsys.load_noop(bpfsys.PROG_TYPE_TRACEPOINT))


def test_program_run_stats_list_a_program_loaded_now() -> None:
    """bench/hook_costs.py's reader of the kernel's per-program counters sees a program
    the moment it is loaded, with its counters (zero: it never ran)."""
    before = bpfsys.program_run_stats()
    prog = bpfsys.load_noop(bpfsys.PROG_TYPE_TRACEPOINT)
    try:
        now = bpfsys.program_run_stats()
        new = {key: counts for key, counts in now.items() if key not in before}
    finally:
        os.close(prog)
    assert list(new.values()) == [(0, 0)]


def test_doctor_reports_the_tier_of_each_hook() -> None:
    """`roard doctor --json`: a tier, why, and each hook's attachment."""
    out = subprocess.run(
        [str(VENV_BIN / "roard"), "doctor", "--json"], capture_output=True, text=True, check=False
    )
    report = json.loads(out.stdout)
    hooks = report["hooks"]
    assert set(hooks) == {"processes", "files", "io_uring_aio"}
    assert report["tier"] in ("fentry", "kprobe", "tracepoint")
    assert hooks["io_uring_aio"].startswith(
        report["tier"] if report["tier"] != "tracepoint" else "none"
    )


def test_doctor_mounts_tracefs_as_roard_run_does_before_judging_kprobes() -> None:
    """On a host that booted without tracefs mounted (seen on a fresh GPU host), doctor
    mounts it as `roard run` would: the tracefs check passes and kprobes are judged by what
    the kernel lists there, not reported absent for want of the mount. In a private mount
    namespace, so the host's tracefs stays mounted."""
    script = (
        f"umount {features.TRACEFS} && ! test -d {features.TRACEFS}/events && "
        f"{VENV_BIN / 'roard'} doctor --json"
    )
    out = subprocess.run(
        ["unshare", "--mount", "sh", "-c", script], capture_output=True, text=True, check=False
    )
    report = json.loads(out.stdout)
    checks = {c["check"]: c for c in report["checks"]}
    assert checks["tracefs"] == {"check": "tracefs", "ok": True, "detail": str(features.TRACEFS)}
    assert report["kprobes"] == features.kprobes_available()


@pytest.mark.parametrize("tier", ["kprobe", "fentry"])
def test_a_required_tier_runs_or_roard_says_why_not(tier: str, btf: Btf, tmp_path: Path) -> None:
    """`[kernel] tier = "kprobe"` (or "fentry"): roard runs with that tier, or refuses to
    start with the reason and what to set instead."""
    available = tier in features.vfs_plan(btf, features.kprobes_available(), tier).tiers
    config = f'[kernel]\ntier = "{tier}"\n'
    if available:
        daemon = start_roard(tmp_path, config)
        try:
            status = json.loads(daemon.roarctl("status", "--json").stdout)
            assert status["tier"] == tier and status["hooks"]["io_uring_aio"] == tier
        finally:
            stop_roard(daemon)
        return
    (tmp_path / "roard.toml").write_text(config)
    config_path = str(tmp_path / "roard.toml")
    result = failed_start(
        tmp_path / "state", tmp_path / "roard.sock", "--embedded", "--config", config_path
    )
    assert result.returncode != 0
    assert f"tier = '{tier}'" in result.stderr and 'tier = "auto"' in result.stderr

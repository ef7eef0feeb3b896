"""The capability set deploy/roard.service.in grants is enough, proven without systemd:
roard runs as root with exactly the unit's bounding set (read from the unit file, so the
two cannot drift apart) and no-new-privs, as systemd would start it, and records another
user's private files and processes."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import Roard, as_nobody, start_roard, stop_roard

UNIT = Path(__file__).resolve().parents[2] / "deploy" / "roard.service.in"
NOBODY = 65534
# Bit numbers (linux/capability.h) of the capabilities a unit may name here.
CAP_BITS = {
    "CAP_DAC_OVERRIDE": 1,
    "CAP_DAC_READ_SEARCH": 2,
    "CAP_SYS_PTRACE": 19,
    "CAP_SYS_ADMIN": 21,
    "CAP_SYS_RESOURCE": 24,
    "CAP_PERFMON": 38,
    "CAP_BPF": 39,
}


def unit_setting(name: str) -> list[str]:
    """The values of a setting in the unit file (space-separated), [] when absent."""
    for line in UNIT.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() == name:
            return value.split()
    return []


def setpriv_for_unit() -> tuple[str, ...]:
    """setpriv arguments that give a root process what the unit gives roard."""
    caps = unit_setting("CapabilityBoundingSet")
    assert caps, f"{UNIT} has no CapabilityBoundingSet"
    # Root: the bounding set alone decides; an AmbientCapabilities line would mean a
    # non-root User= and need another set-up here.
    assert unit_setting("User") == [] and unit_setting("AmbientCapabilities") == []
    bounding = ",".join(["-all", *(f"+{c.removeprefix('CAP_').lower()}" for c in caps)])
    nnp = ("--no-new-privs",) if unit_setting("NoNewPrivileges") == ["yes"] else ()
    return ("setpriv", *nnp, "--inh-caps=-all", f"--bounding-set={bounding}", "--")


def cap_mask(pid: int | str, which: str) -> int:
    """A capability mask of a process: "CapEff", "CapBnd", ..."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{which}:"):
            return int(line.split()[1], 16)
    raise AssertionError(f"no {which} for pid {pid}")


@pytest.fixture(scope="module")
def confined(_bpf_available: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Roard]:
    """A private daemon started with the unit's capabilities only."""
    daemon = start_roard(tmp_path_factory.mktemp("confined"), wrapper=setpriv_for_unit())
    yield daemon
    stop_roard(daemon)


@pytest.fixture
def nobodys_dir() -> Iterator[Path]:
    """A directory only `nobody` may enter, holding a secret only `nobody` may read."""
    top = Path(tempfile.mkdtemp(prefix="roard-caps-"))
    top.chmod(0o755)  # reachable by nobody; pytest's tmp_path is root's only
    private = top / "private"
    private.mkdir(mode=0o700)
    (private / "secret").write_text("for nobody's eyes only\n")
    (private / "secret").chmod(0o600)
    for path in (private, private / "secret"):
        os.chown(path, NOBODY, NOBODY)
    yield private
    shutil.rmtree(top)


def test_the_daemon_runs_with_exactly_the_units_capabilities(confined: Roard) -> None:
    """The set-up is what the unit says: nothing more (no CAP_DAC_OVERRIDE or CAP_SYS_ADMIN,
    for one); less only where the tests themselves run without one of them."""
    wanted = sum(1 << CAP_BITS[c] for c in unit_setting("CapabilityBoundingSet"))
    assert cap_mask(confined.proc.pid, "CapEff") == wanted & cap_mask("self", "CapBnd")


def test_another_users_private_files_are_hashed(confined: Roard, nobodys_dir: Path) -> None:
    """A job running as nobody reads a 0600 file in a 0700 directory and writes another
    there: both are recorded with their content hash."""
    # roarctl itself runs as nobody: the job must not start with privileges (and
    # setpriv, which reads /proc/sys, would add a file roard fails to hash: see README).
    tagged = as_nobody(
        "roarctl", "tag", "--name", "private", "--", "sh", "-c", "umask 077; cat secret > copy",
        cwd=nobodys_dir, env=confined.env(),
    )  # fmt: skip
    assert tagged.returncode == 0, tagged.stderr
    doc = confined.show("private")
    assert doc["complete"] is True, (doc["loss_reasons"], doc["inputs"], doc["outputs"])
    inputs = {i["path"]: i for i in doc["inputs"]}
    outputs = {o["path"]: o for o in doc["outputs"]}
    secret, copy = str(nobodys_dir / "secret"), str(nobodys_dir / "copy")
    assert inputs[secret]["hash"].startswith("blake3:")
    assert outputs[copy]["hash"] == inputs[secret]["hash"]  # same bytes, same hash
    assert (nobodys_dir / "copy").stat().st_uid == NOBODY


def test_another_users_running_process_is_adopted(confined: Roard, nobodys_dir: Path) -> None:
    """tag --pid reads the process's exe, cwd and argv from /proc, which for another user's
    process takes CAP_SYS_PTRACE."""
    sleeper = subprocess.Popen(
        ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "sleep", "60"],
        cwd=nobodys_dir,
    )
    try:
        run_id = confined.roarctl("tag", "--pid", str(sleeper.pid), "--name", "adopted").stdout
        (process,) = confined.show(run_id.strip())["processes"]
        assert process["pid"] == sleeper.pid
        assert process["exe"].endswith("/sleep") and process["cwd"] == str(nobodys_dir)
    finally:
        sleeper.kill()
        sleeper.wait()

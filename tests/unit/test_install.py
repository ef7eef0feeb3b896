"""deploy/install.sh writes a unit that runs this checkout's roard, and removes it again."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def run_install(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(REPO / "deploy" / "install.sh"), *args],
        env={**os.environ, "ROOT": str(root)},
        capture_output=True,
        text=True,
        check=False,
    )


def test_install_writes_the_units_and_uninstall_removes_them(tmp_path: Path) -> None:
    """The units start this checkout's roard (daemon and collector); install is idempotent."""
    for _ in range(2):
        assert run_install(tmp_path, "--no-start").returncode == 0
    units = tmp_path / "etc" / "systemd" / "system"
    daemon = (units / "roard.service").read_text()
    collector = (units / "roard-collector.service").read_text()
    assert f"ExecStart={REPO}/.venv/bin/roard run\n" in daemon
    assert f"ExecStart={REPO}/.venv/bin/roard collector --listen" in collector
    for text in (daemon, collector):
        assert "@ROARD@" not in text and "@DOCS@" not in text  # every placeholder filled
        assert "Type=notify" in text and "NoNewPrivileges=yes" in text
    assert "WatchdogSec=" in daemon and "PrivateTmp=no" in daemon
    assert "DynamicUser=yes" in collector and "CapabilityBoundingSet=\n" in collector
    if shutil.which("systemd-analyze"):
        verify = subprocess.run(
            ["systemd-analyze", "verify", "--man=no", *(str(u) for u in units.iterdir())],
            capture_output=True,
            text=True,
            check=False,
        )
        assert verify.returncode == 0, verify.stderr
    assert (tmp_path / "etc" / "roard" / "roard.toml.example").is_file()
    assert run_install(tmp_path, "--uninstall").returncode == 0
    assert list(units.iterdir()) == []
    assert not (tmp_path / "etc" / "roard" / "roard.toml.example").exists()


def test_unknown_argument_is_refused(tmp_path: Path) -> None:
    """A mistyped flag is an error that names the accepted ones."""
    result = run_install(tmp_path, "--nostart")
    assert result.returncode == 2 and "--no-start" in result.stderr

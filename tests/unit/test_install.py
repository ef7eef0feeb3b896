"""deploy/install.sh writes a unit that runs this checkout's roard, and removes it again."""

from __future__ import annotations

import os
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


def test_install_writes_the_unit_and_uninstall_removes_it(tmp_path: Path) -> None:
    """The unit starts `<checkout>/.venv/bin/roard run --embedded`; install is idempotent."""
    for _ in range(2):
        assert run_install(tmp_path, "--no-start").returncode == 0
    unit = tmp_path / "etc" / "systemd" / "system" / "roard.service"
    text = unit.read_text()
    assert f"ExecStart={REPO}/.venv/bin/roard run --embedded" in text
    assert "@" not in text  # every placeholder filled
    assert run_install(tmp_path, "--uninstall").returncode == 0
    assert not unit.exists()


def test_unknown_argument_is_refused(tmp_path: Path) -> None:
    """A mistyped flag is an error that names the accepted ones."""
    result = run_install(tmp_path, "--nostart")
    assert result.returncode == 2 and "--no-start" in result.stderr

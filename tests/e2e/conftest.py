"""A private roard for end-to-end tests: its own state dir and socket in a temp dir.

These tests need root and a working eBPF stack. Without them they skip, except when
ROARD_REQUIRE_BPF=1 (CI), where they fail: eBPF tests must never pass by skipping.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from roard.kernel import pins

VENV_BIN = Path(sys.executable).parent


def _bpf_unavailable() -> str | None:
    if os.geteuid() != 0:
        return "needs root"
    try:
        import bcc  # noqa: F401
    except ImportError:
        return "bcc is not importable (run deploy/setup.sh)"
    if not Path("/sys/kernel/btf/vmlinux").exists():
        return "kernel has no BTF"
    return None


@pytest.fixture(autouse=True, scope="session")
def _bpf_available() -> None:
    """Skip where eBPF cannot work, except under ROARD_REQUIRE_BPF=1 (CI): there, fail."""
    reason = _bpf_unavailable()
    if reason is None:
        return
    if os.environ.get("ROARD_REQUIRE_BPF") == "1":
        pytest.fail(f"eBPF required (ROARD_REQUIRE_BPF=1) but unavailable: {reason}")
    pytest.skip(f"eBPF unavailable: {reason}")


@pytest.fixture(autouse=True, scope="session")
def _no_pins_left() -> Iterator[None]:
    """Remove the map pins of the session's daemons once they are all gone: those killed,
    or refused at start after pinning, leave them (by design, for a restart) under state
    dirs that are temporary here."""
    root = pins.BPFFS / "roard"
    before = set(root.iterdir()) if root.is_dir() else set()
    yield
    for left in set(root.iterdir()) - before if root.is_dir() else ():
        shutil.rmtree(left, ignore_errors=True)


@dataclass
class Roard:
    """A running private daemon and helpers to drive roarctl against it."""

    root: Path
    socket: Path
    proc: subprocess.Popen[bytes]
    log: Path

    def env(self) -> dict[str, str]:
        """Environment for roarctl: points at this daemon."""
        return {**os.environ, "ROARD_SOCKET": str(self.socket)}

    def roarctl(
        self, *args: str, cwd: Path | None = None, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """Run roarctl; fail the test (with the daemon's log) if it fails and check is set."""
        result = subprocess.run(
            [str(VENV_BIN / "roarctl"), *args],
            check=False,
            cwd=cwd,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            pytest.fail(
                f"roarctl {' '.join(args)} exited {result.returncode}\n"
                f"stdout: {result.stdout}\nstderr: {result.stderr}\n"
                f"daemon log tail:\n{self.log.read_text()[-3000:]}"
            )
        return result

    def show(self, run: str) -> dict[str, Any]:
        """`roarctl show RUN --json`."""
        doc: dict[str, Any] = json.loads(self.roarctl("show", run, "--json").stdout)
        return doc

    def finished(self, run: str, within: float = 60) -> dict[str, Any]:
        """`roarctl show RUN --json` once the run is in the registry, finished; fails the
        test with the daemon's log if it is not within `within` seconds."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            shown = self.roarctl("show", run, "--json", check=False)
            if shown.returncode == 0:
                doc: dict[str, Any] = json.loads(shown.stdout)
                if doc["status"] == "finished":
                    return doc
            time.sleep(0.3)
        pytest.fail(f"run {run} did not finish:\n{self.log.read_text()[-3000:]}")


def start_roard(
    root: Path,
    config: str | None = None,
    where: tuple[str, ...] = ("--embedded",),
    socket: Path | None = None,
    wrapper: tuple[str, ...] = (),
) -> Roard:
    """Start a private daemon under `root` (optionally with a config file's text; `where`:
    --embedded or --collector ADDR; `socket`: a previous daemon's, for a restart;
    `wrapper`: a command that execs it, e.g. setpriv) and wait until it answers."""
    if socket is None:
        # The socket's directory must be reachable by the unprivileged users tests run as.
        public = Path(tempfile.mkdtemp(prefix="roard-sock-"))
        public.chmod(0o755)
        socket = public / "roard.sock"
    root.mkdir(parents=True, exist_ok=True)
    log = root / f"roard-{time.monotonic_ns()}.log"
    args = ["run", *where, "--state-dir", str(root / "state"), "--socket", str(socket)]
    if config is not None:
        (root / "roard.toml").write_text(config)
        args += ["--config", str(root / "roard.toml")]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*wrapper, str(VENV_BIN / "roard"), *args], stdout=out, stderr=subprocess.STDOUT
        )
    daemon = Roard(root, socket, proc, log)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"roard exited {proc.returncode} at start:\n{log.read_text()}")
        if socket.exists() and daemon.roarctl("status", check=False).returncode == 0:
            return daemon
        time.sleep(0.2)
    proc.kill()
    pytest.fail(f"roard did not become ready:\n{log.read_text()}")


def failed_start(state_dir: Path, socket: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """`roard run` in the foreground, for a start that must fail: its exit code and words."""
    args = ["run", "--state-dir", str(state_dir), "--socket", str(socket), *extra]
    return subprocess.run(
        [str(VENV_BIN / "roard"), *args], capture_output=True, text=True, timeout=120, check=False
    )


def stop_roard(daemon: Roard) -> None:
    """SIGTERM, as systemd stops it; it must exit cleanly."""
    daemon.proc.send_signal(signal.SIGTERM)
    try:
        daemon.proc.wait(30)
    except subprocess.TimeoutExpired:
        daemon.proc.kill()
        pytest.fail(f"roard did not stop on SIGTERM:\n{daemon.log.read_text()[-3000:]}")
    shutil.rmtree(daemon.socket.parent, ignore_errors=True)
    # Runs a test left open keep their maps pinned for a restart that will not come.
    pins.remove(daemon.root / "state")
    assert daemon.proc.returncode == 0, daemon.log.read_text()[-3000:]


@pytest.fixture(scope="session")
def roard(_bpf_available: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Roard]:
    """One private daemon for the whole session (compiling the BPF programs takes seconds)."""
    daemon = start_roard(tmp_path_factory.mktemp("roard"))
    yield daemon
    stop_roard(daemon)


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A directory for one test's files, outside the system prefixes."""
    return tmp_path


def python3() -> str:
    """A real python3 binary (not a shell shim), for the traced programs."""
    found = shutil.which("python3", path="/usr/bin")
    assert found, "/usr/bin/python3 is required"
    return found


def as_nobody(
    tool: str, *args: str, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run roarctl or roard (`tool`) as the unprivileged user nobody."""
    helper = Path(__file__).with_name("as_user.py")
    return subprocess.run(
        [sys.executable, str(helper), "65534", tool, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )

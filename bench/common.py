"""Helpers the benchmarks share: timing a command and running a private roard."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from roard.kernel import pins
from roard.neighbours import other_daemons

BIN = Path(sys.executable).parent


def no_other_roard() -> None:
    """Exit, saying why, when a roard is running: its hooks would slow every workload,
    untraced runs too, and a job with ROARD_RUN but no ROARD_SOCKET would be its run."""
    if others := other_daemons(os.getpid()):
        listed = "; ".join(f"pid {n.pid}: {n.command}" for n in others)
        raise SystemExit(f"another roard is running ({listed}): stop it before measuring")


def timed(cmd: list[str], cwd: Path, env: dict[str, str]) -> float:
    """Wall seconds of one run of `cmd` (which must succeed)."""
    start = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def start_daemon(
    root: Path, config: str | None = None
) -> tuple[subprocess.Popen[bytes], dict[str, str]]:
    """A private roard (with a config file's text, if given); returns it and the
    environment that points roarctl at it."""
    sock = root / "roard.sock"
    env = {**os.environ, "ROARD_SOCKET": str(sock)}
    config_args = []
    if config is not None:
        (root / "roard.toml").write_text(config)
        config_args = ["--config", str(root / "roard.toml")]
    proc = subprocess.Popen(
        [
            str(BIN / "roard"),
            "run",
            "--embedded",
            "--state-dir",
            str(root / "state"),
            "--socket",
            str(sock),
            *config_args,
        ],
        stdout=subprocess.DEVNULL,
        stderr=(root / "roard.log").open("wb"),
    )
    for _ in range(600):
        if proc.poll() is not None:
            raise SystemExit(
                f"roard exited {proc.returncode} at start: {(root / 'roard.log').read_text()}"
            )
        # The module, not the roarctl script: PYTHONPATH may pick an older tree (bench/ab.py).
        status = [str(BIN / "python"), "-m", "roard.cli.roarctl_main", "status"]
        ok = subprocess.run(status, env=env, capture_output=True, check=False)
        if ok.returncode == 0:
            return proc, env
        time.sleep(0.1)
    raise SystemExit(f"roard did not start: {(root / 'roard.log').read_text()}")


def stop_daemon(proc: subprocess.Popen[bytes], root: Path) -> None:
    """Stop a daemon of start_daemon and drop its map pins (kept for a restart that will
    not come: its state dir is the bench's)."""
    proc.terminate()
    proc.wait(60)
    pins.remove(root / "state")


@contextlib.contextmanager
def daemon(
    root: Path, config: str | None = None
) -> Iterator[tuple[subprocess.Popen[bytes], dict[str, str]]]:
    """start_daemon as a context: the daemon is stopped on the way out."""
    root.mkdir(parents=True, exist_ok=True)
    proc, env = start_daemon(root, config)
    try:
        yield proc, env
    finally:
        stop_daemon(proc, root)


def roarctl_json(args: list[str], env: dict[str, str]) -> Any:
    """The JSON document of `roarctl ARGS --json`."""
    out = subprocess.run(
        [str(BIN / "roarctl"), *args, "--json"], env=env, capture_output=True, check=True
    )
    return json.loads(out.stdout)

"""A private PostgreSQL server for tests: its own data directory and Unix socket in a temp
directory, no TCP, trust authentication; stopped and deleted on teardown.

Without PostgreSQL's server binaries the tests that need one skip, except when
ROARD_REQUIRE_BPF=1 (CI), where they fail: CI must never pass by skipping.
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import itertools
import os
import pwd
import re
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Any

import psycopg
import pytest

INSTALL_HINT = (
    "install the PostgreSQL server (Debian/Ubuntu: apt-get install postgresql; "
    "Fedora/RHEL: dnf install postgresql-server), or set ROARD_PG_BINDIR to the directory "
    "holding initdb and pg_ctl"
)
SUPERUSER = "roard"
_REQUIRED = ("initdb", "pg_ctl", "postgres")


def find_bindir() -> Path | None:
    """The directory holding initdb, pg_ctl and postgres, or None when not installed."""
    candidates: list[str] = []
    if os.environ.get("ROARD_PG_BINDIR"):
        candidates.append(os.environ["ROARD_PG_BINDIR"])
    pg_config = shutil.which("pg_config")
    if pg_config:
        try:
            out = subprocess.run(
                [pg_config, "--bindir"], check=True, capture_output=True, text=True, timeout=30
            )
            candidates.append(out.stdout.strip())
        except (OSError, subprocess.SubprocessError):
            pass

    def version(path: str) -> tuple[int, ...]:
        return tuple(int(n) for n in re.findall(r"\d+", path))

    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version, reverse=True)
    candidates += sorted(glob.glob("/usr/pgsql-*/bin"), key=version, reverse=True)
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(str(Path(initdb).parent))
    for candidate in candidates:
        if all(os.access(Path(candidate) / name, os.X_OK) for name in _REQUIRED):
            return Path(candidate)
    return None


def require_bindir() -> Path:
    """`find_bindir()`, or else skips the test (fails it under ROARD_REQUIRE_BPF=1)."""
    bindir = find_bindir()
    if bindir is not None:
        return bindir
    reason = f"PostgreSQL server binaries (initdb, pg_ctl) not found: {INSTALL_HINT}"
    if os.environ.get("ROARD_REQUIRE_BPF") == "1":
        pytest.fail(f"PostgreSQL required (ROARD_REQUIRE_BPF=1): {reason}")
    pytest.skip(reason)


class PgServer:
    """A running private server; `create_database()` hands out fresh databases."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="roard-pg-"))
        self.data = self.root / "data"
        self.socket_dir = self.root  # short path: a socket path is limited to ~107 bytes
        self.log = self.root / "server.log"
        self._counter = itertools.count(1)
        self._lock = threading.Lock()
        self._running = False
        # postgres refuses to run as root: run it as an unprivileged user then.
        self._run_as: dict[str, Any] = {}
        if os.geteuid() == 0:
            user = _unprivileged_user()
            self._run_as = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
            os.chown(self.root, user.pw_uid, user.pw_gid)
        self.root.chmod(0o755)
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        atexit.register(self.stop)

    def _pg(self, tool: str, *args: str) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(self.bindir / tool), *args],
            check=False,
            capture_output=True,
            text=True,
            timeout=120,
            cwd=self.root,
            env={**os.environ, "LC_ALL": "C", "LANG": "C"},
            **self._run_as,
        )
        if result.returncode != 0:
            log = self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""
            raise RuntimeError(
                f"{tool} {' '.join(args)} exited {result.returncode}\n"
                f"stdout: {result.stdout}\nstderr: {result.stderr}\nserver log tail:\n{log}"
            )
        return result

    def _start(self) -> None:
        self._pg(
            "initdb",
            "-D", str(self.data),
            "-U", SUPERUSER,
            "--locale=C",
            "-E", "UTF8",
            "--auth=trust",
        )  # fmt: skip
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write(
                "\n# roard tests: Unix socket only, in the temp directory\n"
                "listen_addresses = ''\n"
                f"unix_socket_directories = '{self.socket_dir}'\n"
                "max_connections = 200\n"
                "# Throwaway data: durability only costs time here.\n"
                "fsync = off\n"
                "synchronous_commit = off\n"
                "full_page_writes = off\n"
            )
        self._pg("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60", "start")
        self._running = True

    def url(self, dbname: str = "postgres") -> str:
        """A libpq URL for `dbname` on this server (as the superuser, over the socket)."""
        return f"postgresql://{SUPERUSER}@/{dbname}?host={self.socket_dir}"

    def create_database(self, options: str = "") -> str:
        """Creates an empty database test_<n> (`options` are CREATE DATABASE's, e.g. a
        collation); returns its URL."""
        with self._lock:
            name = f"test_{next(self._counter)}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}" {options}'.strip().encode())
        return self.url(name)

    def stop(self) -> None:
        """Stops the server (fast shutdown) and deletes its directory. Idempotent."""
        if self._running:
            self._running = False
            with contextlib.suppress(RuntimeError, subprocess.SubprocessError):
                self._pg("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)


def _unprivileged_user() -> pwd.struct_passwd:
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise RuntimeError("running as root and neither user 'postgres' nor 'nobody' exists")


def start_server() -> PgServer:
    """Starts a private server, or skips (fails under ROARD_REQUIRE_BPF=1) without one."""
    return PgServer(require_bindir())

"""How a run was invoked: each process's environment at exec, stored once per distinct
environment, and secrets in environments and argv never reaching the registry (nor the
daemon's spool) on disk."""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path

from tests.e2e.conftest import VENV_BIN, Roard, python3

REDACTED = "<redacted>"


def _files_hold(root: Path, needle: bytes) -> list[str]:
    """Files under `root` whose bytes contain `needle` (SQLite files, WAL included)."""
    return [str(p) for p in root.rglob("*") if p.is_file() and needle in p.read_bytes()]


def test_secrets_in_env_and_argv_never_reach_the_registry(roard: Roard, workdir: Path) -> None:
    token = f"tok-{uuid.uuid4().hex}"
    password = f"pw-{uuid.uuid4().hex}"
    ghp = "ghp_" + uuid.uuid4().hex + "ABCD"
    name = f"secrets-{uuid.uuid4().hex[:8]}"
    script = "import sys; open('out.txt', 'w').write(' '.join(sys.argv[1:]))"
    env = {
        **os.environ,
        "API_TOKEN": token,
        "DATABASE_URL": f"postgresql://ml:{password}@db/x",
        "GREETING": "hello",
        "SOME_VAR": ghp,
    }
    cmd = [python3(), "-c", script, "--api-key", token, f"--password={password}", "--lr=0.1"]
    # roarctl passes its environment on to the command: give it the secrets.
    subprocess.run(
        [str(VENV_BIN / "roarctl"), "tag", "--name", name, "--", *cmd],
        cwd=workdir,
        env={**env, "ROARD_SOCKET": str(roard.socket)},
        check=True,
        capture_output=True,
    )
    doc = roard.show(name)
    # The command ran with the secrets (its output has them) ...
    assert token in (workdir / "out.txt").read_text()
    # ... and the record has the rest of the command line, secrets redacted.
    argv = next(p["argv"] for p in doc["processes"] if "--lr=0.1" in p["argv"])
    assert argv[-4:] == ["--api-key", REDACTED, f"--password={REDACTED}", "--lr=0.1"]
    proc = next(p for p in doc["processes"] if "--lr=0.1" in p["argv"])
    recorded = doc["environments"][proc["env_hash"]]
    assert recorded["GREETING"] == "hello"
    assert recorded["API_TOKEN"] == REDACTED
    assert recorded["SOME_VAR"] == REDACTED
    assert recorded["DATABASE_URL"] == f"postgresql://ml:{REDACTED}@db/x"
    for secret in (token, password, ghp):
        assert _files_hold(roard.root / "state", secret.encode()) == []
    assert roard.root.joinpath("state", "registry.db").exists()


def test_one_environment_is_stored_once_for_many_processes(roard: Roard, workdir: Path) -> None:
    """Children exec'd with the same environment share one stored environment; a child
    exec'd with a different one gets its own. (The kernel copies the environment at exec:
    test_kernel_environment.py covers children that exit at once.)"""
    name = f"envs-{uuid.uuid4().hex[:8]}"
    script = "for i in 1 2 3 4 5; do sleep 0.3 & done; EXTRA=1 sleep 0.3; wait"
    roard.roarctl("tag", "--name", name, "--", "sh", "-c", script, cwd=workdir)
    doc = roard.show(name)
    sleeps = [p for p in doc["processes"] if p["argv"][:1] == ["sleep"]]
    assert len(sleeps) == 6 and None not in {p["env_hash"] for p in sleeps}
    envs = {p["env_hash"] for p in doc["processes"] if p["env_hash"]}
    assert envs == set(doc["environments"])
    # (sh itself started with another: it exports PWD to its children)
    assert len({p["env_hash"] for p in sleeps}) == 2
    extra = [h for h, e in doc["environments"].items() if e.get("EXTRA") == "1"]
    assert len(extra) == 1
    assert sum(p["env_hash"] == extra[0] for p in sleeps) == 1

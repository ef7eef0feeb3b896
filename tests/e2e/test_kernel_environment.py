"""The environment each process exec'd with, as the kernel copied it at exec: recorded even
for programs that exit before the daemon could read /proc, secrets redacted; one longer
than the kernel copies (or than the ring has room for) is completed from /proc while the
process lives, and recorded as known only in part (never silently cut) when it is already
gone."""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from roard.kernel.abi import Abi
from tests.e2e.conftest import VENV_BIN, Roard, start_roard, stop_roard

REDACTED = "<redacted>"
ENV_MAX = Abi.load().const("ENV_MAX")
# A process exec'd with LIVES=1 that lives until the test writes a line to the run's stdin.
LIVES = "LIVES=1 sh -c 'read go'"


def _tag_keeping_alive(daemon: Roard, name: str, script: str, workdir: Path) -> dict[str, Any]:
    """`roarctl tag --name NAME -- sh -c SCRIPT`; the run as shown once it is done. Its LIVES
    process is let go only once the run shows its environment: /proc has the whole of it
    only while that process lives."""
    with subprocess.Popen(
        [str(VENV_BIN / "roarctl"), "tag", "--name", name, "--", "sh", "-c", script],
        cwd=workdir,
        env=daemon.env(),
        stdin=subprocess.PIPE,
    ) as tagged:
        deadline = time.monotonic() + 60
        while True:
            shown = daemon.roarctl("show", name, "--json", check=False)  # not tagged yet: fails
            envs = json.loads(shown.stdout)["environments"] if shown.returncode == 0 else {}
            if any(env.get("LIVES") == "1" for env in envs.values()):
                break
            assert time.monotonic() < deadline, "the LIVES process's environment never showed"
            time.sleep(0.2)
        tagged.communicate(b"go\n", timeout=60)
    assert tagged.returncode == 0
    return daemon.show(name)


def test_short_lived_processes_keep_their_environment(roard: Roard, workdir: Path) -> None:
    """50 children that exit at once, each exec'd with its own FOO and a token (which
    roarctl passes on to the shell: not in any argv): every process has an environment,
    each FOO is there, no token is."""
    token = f"tok-{uuid.uuid4().hex}"
    name = f"kenv-{uuid.uuid4().hex[:8]}"
    script = "for i in $(seq 50); do env FOO=$i /bin/true; done"
    subprocess.run(
        [str(VENV_BIN / "roarctl"), "tag", "--name", name, "--", "sh", "-c", script],
        cwd=workdir,
        env={**roard.env(), "API_TOKEN": token},
        check=True,
        capture_output=True,
    )
    doc = roard.show(name)
    assert sum(p["argv"] == ["/bin/true"] for p in doc["processes"]) == 50  # (+ sh, seq)
    assert all(p["env_hash"] for p in doc["processes"]), doc["processes"]
    envs = doc["environments"]
    assert {p["env_hash"] for p in doc["processes"]} == set(envs)
    foos = {e["FOO"] for e in envs.values() if "FOO" in e}
    assert foos == {str(i) for i in range(1, 51)}
    assert all(e["API_TOKEN"] == REDACTED for e in envs.values())
    assert doc["environments_truncated"] == []
    state = roard.root / "state"
    assert [p for p in state.rglob("*") if p.is_file() and token.encode() in p.read_bytes()] == []


def test_an_environment_longer_than_the_kernel_copies(roard: Roard, workdir: Path) -> None:
    """BIG makes the environment longer than ROARD_ENV_MAX. A process that lives is
    recorded whole (from /proc); one that exits at once is recorded as known only in part:
    its whole entries, BIG (the cut one) left out. (That one exits within a millisecond or
    so of its exec; the daemon may still, rarely, read /proc first: then it is whole too.)"""
    big = "b" * (ENV_MAX + 1000)
    name = f"kenv-big-{uuid.uuid4().hex[:8]}"
    short = "for i in 1 2 3 4 5; do env BIG=$BIG SHORT=$i /bin/true; done"
    script = f"BIG={big}; env BIG=$BIG {LIVES}; {short}"
    doc = _tag_keeping_alive(roard, name, script, workdir)
    envs, cut = doc["environments"], set(doc["environments_truncated"])
    lived = [h for h, e in envs.items() if e.get("LIVES") == "1"]
    assert len(lived) == 1 and lived[0] not in cut
    assert envs[lived[0]]["BIG"] == big
    exited = {h: e for h, e in envs.items() if "SHORT" in e or h in cut}
    assert cut, "no exiting process was recorded in part"
    for env_hash, env in exited.items():
        if env_hash in cut:
            assert "BIG" not in env  # the entry the kernel cut is left out, not kept cut
        else:
            assert env["BIG"] == big


def test_an_exec_too_large_for_the_ring_is_sent_without_its_environment(
    _bpf_available: None, tmp_path_factory: pytest.TempPathFactory, workdir: Path
) -> None:
    """With a 16 KiB ring, an exec carrying a 16 KiB environment can never be sent whole: it
    is sent without it rather than lost, and the environment comes from /proc (the process
    lives) or is recorded as known only in part (it has exited: nothing of it known)."""
    one_exec_too_small = "[kernel]\nring_pages = 4\nwakeup_every = 1\n"
    daemon = start_roard(tmp_path_factory.mktemp("small-ring"), one_exec_too_small)
    try:
        pad = "p" * (ENV_MAX + 1000)
        name = f"kenv-ring-{uuid.uuid4().hex[:8]}"
        script = f"PAD={pad}; env PAD=$PAD {LIVES}; env PAD=$PAD /bin/true"
        doc = _tag_keeping_alive(daemon, name, script, workdir)
        assert not any("ringbuf_proc" in reason for reason in doc["loss_reasons"])
        lived = next(p for p in doc["processes"] if p["argv"] == ["sh", "-c", "read go"])
        assert doc["environments"][lived["env_hash"]]["PAD"] == pad
        true = next(p for p in doc["processes"] if p["argv"] == ["/bin/true"])
        assert true["exe"].endswith("/true") and true["env_hash"]
        if true["env_hash"] in doc["environments_truncated"]:
            assert doc["environments"][true["env_hash"]] == {}
        else:  # read from /proc before it exited (rare)
            assert doc["environments"][true["env_hash"]]["PAD"] == pad
    finally:
        stop_roard(daemon)

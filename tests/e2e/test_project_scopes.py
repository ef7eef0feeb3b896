"""Two projects on one collector: daemons with tokens of projects A and B, a file A wrote
and B read, and what each side (and a person's own token) sees of the other."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

from tests.e2e.conftest import VENV_BIN, Roard, start_roard, stop_roard
from tests.e2e.test_collector import FAST_RETRY, start_collector

TOKEN_A, TOKEN_B, TOKEN_USER = "a" * 40, "b" * 40, "u" * 40


def _config(host: str, token_file: Path, address: str) -> str:
    token_file.write_text({"host-a": TOKEN_A, "host-b": TOKEN_B, "alice": TOKEN_USER}[host] + "\n")
    token_file.chmod(0o600)
    return f'{FAST_RETRY}address = "{address}"\nhost_id = "{host}"\ntoken_file = "{token_file}"\n'


def _json(daemon: Roard, *args: str, cwd: Path | None = None) -> Any:
    return json.loads(daemon.roarctl(*args, "--json", cwd=cwd).stdout)


def test_two_projects_share_a_file_and_keep_their_lineage(
    _bpf_available: None, tmp_path: Path, workdir: Path
) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text(
        f"host-a {TOKEN_A} proj-a\nhost-b {TOKEN_B} proj-b\nuser:alice {TOKEN_USER} proj-a\n"
    )
    # Tokens on a Unix socket: local, so no TLS is needed (transport.check_exposure).
    collector = start_collector(
        tmp_path, f"sqlite:///{tmp_path / 'r.db'}", flags=("--tokens", str(tokens))
    )
    address = collector.address
    a = start_roard(tmp_path / "a", _config("host-a", tmp_path / "a.token", address), where=())
    b = start_roard(tmp_path / "b", _config("host-b", tmp_path / "b.token", address), where=())
    try:
        (workdir / "raw.txt").write_text("raw\n")
        # Each step changes the content: three distinct hashes.
        prep_cmd = "tr a-z A-Z < raw.txt > shared.txt"
        a.roarctl("tag", "--name", "prep", "--", "sh", "-c", prep_cmd, cwd=workdir)
        train_cmd = "rev shared.txt > model.txt"
        b.roarctl("tag", "--name", "train", "--", "sh", "-c", train_cmd, cwd=workdir)
        prep, train = a.finished("prep"), b.finished("train")
        assert (prep["project"], train["project"]) == ("proj-a", "proj-b")

        # B: lineage up from its model is cut where A's run produced the file.
        up = _json(b, "lineage", str(workdir / "model.txt"))
        assert [r["name"] for r in up["runs"]] == ["train"]
        assert up["hidden"]["upstream"] == {
            "runs": 1,
            "projects": 1,
            "message": "1 upstream run in projects you cannot see",
        }
        tree = b.roarctl("lineage", str(workdir / "model.txt")).stdout
        assert "1 upstream run in projects you cannot see" in tree
        assert b.roarctl("show", "prep", check=False).returncode != 0
        (raw_hash,) = [i["hash"] for i in prep["inputs"] if i["path"].endswith("raw.txt")]
        raw = _json(b, "artifact", raw_hash)["artifacts"][0]
        assert (raw["known"], raw["paths"], raw["produced_by"]) == (True, [], [])

        # A: its own run, and only a count of B's consumer.
        down = _json(a, "lineage", str(workdir / "shared.txt"), "--both")
        assert [r["name"] for r in down["runs"]] == ["prep"]
        assert down["hidden"]["downstream"]["runs"] == 1
        assert str(workdir / "model.txt") not in json.dumps(down)
        assert [r["name"] for r in _json(a, "runs")] == ["prep"]

        # A person's token for A, straight to the collector.
        env = {
            **os.environ,
            "ROARD_COLLECTOR": address,
            "ROARD_TOKEN_FILE": str(tmp_path / "alice.token"),
            "ROARD_SOCKET": str(tmp_path / "no-daemon.sock"),
        }
        _config("alice", tmp_path / "alice.token", address)

        def user(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [str(VENV_BIN / "roarctl"), *args],
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )

        listed = user("runs", "--json")
        assert listed.returncode == 0, listed.stderr
        assert [(r["name"], r["project"]) for r in json.loads(listed.stdout)] == [
            ("prep", "proj-a")
        ]
        assert user("show", "train").returncode != 0
        refused = user("tag", "--", "true")
        assert refused.returncode != 0 and "needs the local daemon" in refused.stderr
    finally:
        stop_roard(a)
        stop_roard(b)
        collector.stop()


def test_a_public_run_is_seen_by_the_other_project(
    _bpf_available: None, tmp_path: Path, workdir: Path
) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text(f"host-a {TOKEN_A} proj-a\nhost-b {TOKEN_B} proj-b\n")
    collector = start_collector(
        tmp_path, f"sqlite:///{tmp_path / 'r.db'}", flags=("--tokens", str(tokens))
    )
    a = start_roard(
        tmp_path / "a", _config("host-a", tmp_path / "a.token", collector.address), where=()
    )
    b = start_roard(
        tmp_path / "b", _config("host-b", tmp_path / "b.token", collector.address), where=()
    )
    try:
        a.roarctl("tag", "--public", "--name", "release", "--", "true", cwd=workdir)
        a.finished("release")
        shown = b.finished("release")
        assert (shown["project"], shown["public"]) == ("proj-a", True)
    finally:
        stop_roard(a)
        stop_roard(b)
        collector.stop()

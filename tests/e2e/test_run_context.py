"""A run's context in `roarctl show`: the git work tree its script came from (commit,
dirty state, modified files), the system package owning its interpreter, the host; and
`roarctl diff` naming a new commit between two runs."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from pathlib import Path

from tests.e2e.conftest import Roard, python3


def _git(repo: Path, *args: str) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.com",
    }
    done = subprocess.run(
        ["git", "-C", str(repo), *args], env=env, check=True, capture_output=True, text=True
    )
    return done.stdout.strip()


def test_context_names_the_commit_the_dirty_files_and_the_interpreter_package(
    roard: Roard, workdir: Path
) -> None:
    repo = workdir / "project"
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "remote", "add", "origin", "https://bot:hunter2@git.example.com/ml/project.git")
    (repo / "train.py").write_text("open('model.bin', 'w').write('m1')\n")
    _git(repo, "add", "train.py")
    _git(repo, "commit", "-qm", "first")
    first = _git(repo, "rev-parse", "HEAD")
    name = f"ctx-{uuid.uuid4().hex[:8]}"

    roard.roarctl("tag", "--name", name, "--", python3(), "train.py", cwd=repo)
    doc = roard.show(name)
    (tree,) = doc["context"]["git"]
    assert (tree["root"], tree["commit"], tree["branch"]) == (str(repo), first, "main")
    assert tree["dirty"] is True and tree["modified"] == ["model.bin"]  # untracked output
    assert tree["remote"] == "https://git.example.com/ml/project.git"  # no credentials
    assert "train.py" in tree["files_read"]
    system = {p["name"] for p in doc["context"]["packages"]["system"]}
    assert any(n.startswith("python3") for n in system), system
    host = doc["context"]["host"]
    assert host["kernel"] == os.uname().release and host["cpus"] >= 1

    # A new commit, then the same command: diff names the code change.
    (repo / "train.py").write_text("open('model.bin', 'w').write('m2')\n")
    _git(repo, "commit", "-qam", "second")
    second = _git(repo, "rev-parse", "HEAD")
    roard.roarctl("tag", "--name", name, "--", python3(), "train.py", cwd=repo)
    latest = roard.show(name)["run_id"]
    diff = json.loads(roard.roarctl("diff", doc["run_id"], latest, "--json").stdout)
    (code,) = diff["code"]
    assert (code["a"]["commit"], code["b"]["commit"]) == (first, second)
    assert diff["same"] is False

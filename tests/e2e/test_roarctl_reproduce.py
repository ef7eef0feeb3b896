"""End to end: `roarctl reproduce` rebuilds a model from a clean directory, from the
lineage a private roard recorded of two runs in a git repository with a (local) remote."""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
import uuid
from pathlib import Path

from tests.e2e.conftest import VENV_BIN, Roard, python3
from tests.e2e.test_observe import b3
from tests.e2e.test_run_context import _git


def _repo(workdir: Path, files: dict[str, str]) -> Path:
    """A repository with `files` committed and pushed to a bare remote beside it."""
    remote, repo = workdir / "remote.git", workdir / "proj"
    subprocess.run(["git", "init", "-q", "--bare", str(remote)], check=True)
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "remote", "add", "origin", str(remote))
    for name, text in files.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(textwrap.dedent(text))
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "pipeline")
    _git(repo, "push", "-q", "origin", "main")
    return repo


def _rebuild(
    roard: Roard, target: str, clean: Path, secrets: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`roarctl reproduce TARGET` written to a file and run with `sh` into `clean`, given
    `secrets` in its environment."""
    script = clean.parent / f"{clean.name}.sh"
    script.write_text(roard.roarctl("reproduce", target).stdout)
    # The venv's python3 has the blake3 module, so the script checks contents.
    env = {**os.environ, "PATH": f"{VENV_BIN}:{os.environ['PATH']}", **(secrets or {})}
    return subprocess.run(
        ["sh", str(script), str(clean)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def test_reproduce_rebuilds_the_model_in_a_clean_directory(roard: Roard, workdir: Path) -> None:
    repo = _repo(
        workdir,
        {
            "data/raw.csv": "a,b\n1,2\n3,4\n",
            "prepare.py": """
                import os
                os.makedirs("work", exist_ok=True)
                rows = open("data/raw.csv").read().splitlines()
                open("work/features.csv", "w").write("\\n".join(r.upper() for r in rows))
            """,
            "train.py": """
                import hashlib
                features = open("work/features.csv", "rb").read()
                open("model.bin", "wb").write(hashlib.sha256(features).digest() * 4)
            """,
        },
    )
    tag = uuid.uuid4().hex[:8]
    roard.roarctl("tag", "--name", f"prepare-{tag}", "--", python3(), "prepare.py", cwd=repo)
    roard.roarctl("tag", "--name", f"train-{tag}", "--", python3(), "train.py", cwd=repo)
    prepare = roard.finished(f"prepare-{tag}")["run_id"]
    train = roard.finished(f"train-{tag}")["run_id"]
    model = b3(repo / "model.bin")

    plan = json.loads(roard.roarctl("reproduce", model, "--json").stdout)
    assert [s["run_id"] for s in plan["steps"]] == [prepare, train]
    assert plan["target"]["verify"] == [
        {
            "path": str(repo / "model.bin"),
            "hash": model,
            "kind": "artifact",
            "rebuild_path": "proj/model.bin",
        }
    ]
    (clone,) = plan["clones"]
    assert clone["url"] == str(workdir / "remote.git") and clone["dir"] == "proj"
    assert plan["fetch"] == [] and plan["warnings"] == []  # dirty only by outputs it re-creates
    first, second = plan["steps"]
    command = {k: first["command"][k] for k in ("argv", "cwd", "rebuild_cwd", "secrets")}
    assert command == {
        "argv": [python3(), "prepare.py"],
        "cwd": str(repo),
        "rebuild_cwd": "proj",
        "secrets": [],
    }
    assert first["command"]["env"]["PATH"] == os.environ["PATH"]  # set again as it was
    assert "HOME" not in first["command"]["env"]
    assert {i["path"]: i["source"] for i in first["inputs"]} == {
        str(repo / "data/raw.csv"): "checkout",
        str(repo / "prepare.py"): "checkout",
    }
    features = next(i for i in second["inputs"] if i["path"].endswith("features.csv"))
    assert (features["source"], features["step"]) == ("step", 1)
    # The run, by name, gives the same steps.
    by_run = json.loads(roard.roarctl("reproduce", f"train-{tag}", "--json").stdout)
    assert [s["run_id"] for s in by_run["steps"]] == [prepare, train]

    clean = workdir / "clean"
    done = _rebuild(roard, model, clean)
    assert done.returncode == 0, done.stderr
    assert f"OK: {clean / 'proj/model.bin'} has {model}" in done.stdout
    assert b3(clean / "proj/model.bin") == model


def test_reproduce_stops_when_an_input_to_fetch_is_missing(roard: Roard, workdir: Path) -> None:
    weights = workdir / "outside" / "weights.txt"
    weights.parent.mkdir()
    weights.write_text("w=0.5\n")
    repo = _repo(
        workdir,
        {"use.py": f"open('out.txt', 'w').write(open({str(weights)!r}).read() * 2)\n"},
    )
    name = f"fetch-{uuid.uuid4().hex[:8]}"
    roard.roarctl("tag", "--name", name, "--", python3(), "use.py", cwd=repo)
    roard.finished(name)
    out, wanted = b3(repo / "out.txt"), b3(weights)
    plan = json.loads(roard.roarctl("reproduce", out, "--json").stdout)
    assert [(f["path"], f["hash"]) for f in plan["fetch"]] == [(str(weights), wanted)]

    weights.rename(workdir / "elsewhere")
    failed = _rebuild(roard, out, workdir / "clean")
    assert failed.returncode != 0
    assert f"missing {weights} (expected {wanted}): fetch it" in failed.stderr
    assert not (workdir / "clean/proj/out.txt").exists()  # stopped before running anything

    (workdir / "elsewhere").rename(weights)
    done = _rebuild(roard, out, workdir / "clean")  # the same clone, reused
    assert done.returncode == 0, done.stderr
    assert b3(workdir / "clean/proj/out.txt") == out


def test_reproduce_of_an_unknown_target_fails_with_its_error(roard: Roard) -> None:
    result = roard.roarctl("reproduce", "no-such-run-e2e", check=False)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.startswith("roarctl: no run or artifact 'no-such-run-e2e'")

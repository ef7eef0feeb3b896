"""End to end, the run-context story: a two-step pipeline (prepare -> train) in a git
repository is run, then run again with one input and one dependency changed. `roarctl diff`
names exactly those changes; `roarctl reproduce` of the final model rebuilds it, with the
same hash, in a clean directory; the secrets the job was given never reach the registry."""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

from tests.e2e.conftest import Roard, python3
from tests.e2e.test_observe import b3
from tests.e2e.test_roarctl_reproduce import _rebuild, _repo

SECRET_TOKEN = "tok-5f1e7c0a9b2d4e6f"  # an environment variable's value
SECRET_PASSWORD = "pw-hunter2-8c3d"  # a command-line option's value

PREPARE = """
    import os, sys
    os.makedirs("work", exist_ok=True)
    rows = open(sys.argv[1]).read().split()
    open("work/features.csv", "w").write("\\n".join(sorted(rows)))
"""
TRAIN = """
    import tinyscale
    rows = open("work/features.csv").read().split()
    open("model.bin", "w").write(f"{tinyscale.FACTOR}:{len(rows)}:{','.join(rows)}")
"""


def _dependency(site: Path, version: str, factor: int) -> None:
    """A Python distribution `tinyscale` of `version` installed into `site` (replacing
    any other version), as pip leaves one: the module and its dist-info with a RECORD."""
    for old in site.glob("tinyscale-*.dist-info"):
        shutil.rmtree(old)
    info = site / f"tinyscale-{version}.dist-info"
    info.mkdir(parents=True)
    (site / "tinyscale.py").write_text(f"FACTOR = {factor}\n")
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: tinyscale\nVersion: {version}\n")
    (info / "RECORD").write_text(
        f"tinyscale.py,,\ntinyscale-{version}.dist-info/METADATA,,\n"
        f"tinyscale-{version}.dist-info/RECORD,,\n"
    )


def _run_pipeline(roard: Roard, repo: Path, raw: Path, site: Path, tag: str) -> tuple[str, str]:
    """prepare then train, tagged; (prepare's run id, train's run id)."""
    env = {"PYTHONPATH": str(site), "API_TOKEN": SECRET_TOKEN}
    ids = []
    for step, argv in (
        ("prepare", [python3(), "prepare.py", str(raw)]),
        ("train", [python3(), "train.py", "--password", SECRET_PASSWORD]),
    ):
        name = f"{step}-{tag}-{uuid.uuid4().hex[:6]}"
        roard.roarctl(
            "tag", "--name", name, "--", "env", *(f"{k}={v}" for k, v in env.items()), *argv,
            cwd=repo,
        )  # fmt: skip
        ids.append(roard.show(name)["run_id"])
    return ids[0], ids[1]


def _diff(roard: Roard, a: str, b: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(roard.roarctl("diff", a, b, "--json").stdout)
    return doc


def _changed_paths(section: dict[str, Any]) -> tuple[list[str], list[Any], list[Any]]:
    return [c["path"] for c in section["changed"]], section["added"], section["removed"]


def test_rerun_with_a_changed_input_and_dependency(roard: Roard, workdir: Path) -> None:
    repo = _repo(
        workdir,
        {"prepare.py": PREPARE, "train.py": TRAIN, ".gitignore": "work/\nmodel.bin\n"},
    )
    lake, site = workdir / "lake", workdir / "deps" / "site-packages"
    lake.mkdir()
    raw = lake / "raw.txt"
    raw.write_text("b\na\nc\n")
    _dependency(site, "1.0", 2)
    prep_1, train_1 = _run_pipeline(roard, repo, raw, site, "1")
    model_1 = b3(repo / "model.bin")

    raw.write_text("b\na\nc\nd\n")  # one more row: a changed input
    _dependency(site, "1.1", 3)  # a new release of a dependency
    prep_2, train_2 = _run_pipeline(roard, repo, raw, site, "2")
    model_2 = b3(repo / "model.bin")
    assert model_1 != model_2

    # prepare: only its input (and so its output) changed.
    prep = _diff(roard, prep_1, prep_2)
    assert _changed_paths(prep["inputs"]) == ([str(raw)], [], [])
    assert _changed_paths(prep["outputs"]) == ([str(repo / "work" / "features.csv")], [], [])
    # train: its input from prepare, the dependency, and so the model; nothing else.
    train = _diff(roard, train_1, train_2)
    assert _changed_paths(train["inputs"]) == ([str(repo / "work" / "features.csv")], [], [])
    assert _changed_paths(train["outputs"]) == ([str(repo / "model.bin")], [], [])
    assert train["packages"]["python"] == {
        "changed": [{"name": "tinyscale", "a": "1.0", "b": "1.1"}],
        "added": [],
        "removed": [],
    }
    assert prep["packages"]["python"] == {"changed": [], "added": [], "removed": []}
    for doc in (prep, train):
        assert doc["same"] is False
        assert doc["command"] is None  # the same command lines (and code: no "code" change)
        assert doc["code"] == []
        assert doc["environment"] == {"changed": [], "added": [], "removed": []}
        for role in ("inputs", "outputs"):
            assert doc["datasets"][role] == {"changed": [], "added": [], "removed": []}

    # The final model rebuilds, with the same hash, from a clean directory.
    clean = workdir / "clean"
    clean.mkdir()
    # The secrets were redacted: the script asks for them, and is given them.
    refused = _rebuild(roard, model_2, clean)
    assert refused.returncode != 0
    assert "API_TOKEN" in refused.stderr and "redacted" in refused.stderr
    secrets = {"API_TOKEN": SECRET_TOKEN, "REPRODUCE_SECRET_1": SECRET_PASSWORD}
    rebuilt = _rebuild(roard, model_2, clean, secrets)
    assert rebuilt.returncode == 0, rebuilt.stdout + rebuilt.stderr
    assert b3(clean / repo.name / "model.bin") == model_2

    # The secrets were redacted before anything was recorded: not in the registry's files.
    shown = json.dumps([roard.show(r) for r in (prep_1, train_1, prep_2, train_2)])
    for secret in (SECRET_TOKEN, SECRET_PASSWORD):
        assert secret not in shown
        for stored in roard.root.rglob("*"):
            if stored.is_file():
                assert secret.encode() not in stored.read_bytes(), stored
    assert "<redacted>" in shown
    assert os.environ.get("API_TOKEN") != SECRET_TOKEN  # (only the job had it)

"""Experiment-tracker runs a roard run belongs to, found without touching the user's code:
the real MLflow writing its local file store, W&B and Neptune's documented variables and
local layouts (written by a plain script: offline, no network), and `tag --link`."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

from tests.e2e.conftest import VENV_BIN, Roard, python3

MLFLOW_SCRIPT = """
import mlflow
mlflow.set_tracking_uri("file:./mlruns")
with mlflow.start_run() as run:
    mlflow.log_param("lr", 0.1)
    mlflow.log_metric("loss", 0.25)
    print(run.info.run_id, run.info.experiment_id)
"""


def _tag(
    roard: Roard, workdir: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`roarctl tag ARGS` with extra environment for the command."""
    return subprocess.run(
        [str(VENV_BIN / "roarctl"), "tag", *args],
        cwd=workdir,
        env={**roard.env(), **(env or {})},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def _runs_linked(roard: Roard, link: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = json.loads(roard.roarctl("runs", "--link", link, "--json").stdout)
    return found


def test_a_real_mlflow_run_is_linked(roard: Roard, workdir: Path) -> None:
    name = f"mlflow-{uuid.uuid4().hex[:8]}"
    (workdir / "train.py").write_text(MLFLOW_SCRIPT)
    # The venv's python: it has mlflow (mlflow-skinny, a dev dependency).
    result = _tag(
        roard, workdir, "--name", name, "--", sys.executable, "train.py",
        env={"MLFLOW_ALLOW_FILE_STORE": "true"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    run_id, experiment_id = result.stdout.split()
    doc = roard.show(name)
    assert doc["links"] == [
        {
            "tracker": "mlflow",
            "project": experiment_id,
            "run_id": run_id,
            "url": "",  # a file store has no UI address
            "source": "files",
        }
    ]
    assert [r["run_id"] for r in _runs_linked(roard, run_id)] == [doc["run_id"]]
    assert [r["run_id"] for r in _runs_linked(roard, f"mlflow={run_id}")] == [doc["run_id"]]
    assert _runs_linked(roard, f"wandb={run_id}") == []
    human = roard.roarctl("show", doc["run_id"]).stdout
    assert f"mlflow run {run_id} in {experiment_id} (files)" in human


def test_wandb_and_neptune_from_environment_and_files(roard: Roard, workdir: Path) -> None:
    name = f"trackers-{uuid.uuid4().hex[:8]}"
    wandb_id = uuid.uuid4().hex[:8]
    neptune_uuid = str(uuid.uuid4())
    # What W&B (offline) and neptune-client (async) leave in the working directory; the
    # W&B run directory is gone by the time the run ends.
    script = f"""
import os, shutil
run = "wandb/offline-run-20250102_030405-{wandb_id}"
os.makedirs(run + "/files")
open(run + "/files/config.yaml", "w").write("lr: 0.1\\n")
shutil.rmtree("wandb")
nep = ".neptune/async/run__{neptune_uuid}__" + str(os.getpid()) + "__a1b2c3d4"
os.makedirs(nep)
open(nep + "/data-1.log", "w").write("{{}}\\n")
"""
    secret_key = "0123456789abcdef" * 2 + "01234567"
    env = {
        "WANDB_RUN_ID": wandb_id,
        "WANDB_PROJECT": "resnet",
        "WANDB_ENTITY": "vision",
        "WANDB_MODE": "offline",
        "WANDB_API_KEY": secret_key,
        "NEPTUNE_PROJECT": "ml-team/classification",
        "NEPTUNE_CUSTOM_RUN_ID": "sweep-17",
        "NEPTUNE_API_TOKEN": "nep-" + secret_key,
    }
    result = _tag(roard, workdir, "--name", name, "--", python3(), "-c", script, env=env)
    assert result.returncode == 0, result.stderr
    links = roard.show(name)["links"]
    assert links == [
        {"tracker": "neptune", "project": "", "run_id": neptune_uuid, "url": "", "source": "files"},
        {
            "tracker": "neptune",
            "project": "ml-team/classification",
            "run_id": "sweep-17",
            "url": "",
            "source": "env",
        },
        {
            "tracker": "wandb",
            "project": "vision/resnet",
            "run_id": wandb_id,
            "url": f"https://wandb.ai/vision/resnet/runs/{wandb_id}",
            "source": "env",
        },
    ]
    assert secret_key not in json.dumps(links)
    assert [r["name"] for r in _runs_linked(roard, f"wandb={wandb_id}")] == [name]
    assert [r["name"] for r in _runs_linked(roard, "sweep-17")] == [name]


def test_links_given_by_the_user(roard: Roard, workdir: Path) -> None:
    name = f"linked-{uuid.uuid4().hex[:8]}"
    wandb_id = uuid.uuid4().hex[:8]
    result = _tag(
        roard, workdir, "--name", name, "--link", f"wandb=vision/resnet/{wandb_id}",
        "--link", "mlflow=7/" + "c" * 32, "--", python3(), "-c", "pass",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    links = roard.show(name)["links"]
    assert [(x["tracker"], x["project"], x["run_id"], x["source"]) for x in links] == [
        ("mlflow", "7", "c" * 32, "user"),
        ("wandb", "vision/resnet", wandb_id, "user"),
    ]
    listed = _runs_linked(roard, wandb_id)
    assert [r["name"] for r in listed] == [name]
    assert listed[0]["links"] == links
    # OpenLineage consumers see them in roard's run facet.
    exported = roard.roarctl("export", name, "--format", "openlineage").stdout.splitlines()
    facet = json.loads(exported[-1])["run"]["facets"]["roard"]
    assert [(x["tracker"], x["runId"]) for x in facet["trackerLinks"]] == [
        ("mlflow", "c" * 32),
        ("wandb", wandb_id),
    ]

    # An adopted process too.
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        adopted = roard.roarctl(
            "tag", "--pid", str(sleeper.pid), "--link", "neptune=sweep-9", "--json"
        )
        doc = json.loads(adopted.stdout)
        assert [(x["tracker"], x["run_id"]) for x in doc["links"]] == [("neptune", "sweep-9")]
    finally:
        sleeper.kill()
        sleeper.wait()
    roard.finished(doc["run_id"])


def test_bad_links_are_refused_before_anything_runs(roard: Roard, workdir: Path) -> None:
    marker = workdir / "ran"
    for bad, says in (
        ("mlflow", "expected TRACKER=RUN_ID"),
        ("comet=abc", "unknown tracker 'comet'"),
        ("wandb=", "empty"),
        ("wandb=" + "x" * 300, "longer than 256"),
    ):
        result = _tag(roard, workdir, "--link", bad, "--", "touch", str(marker))
        assert result.returncode == 2, result.stderr
        assert says in result.stderr
        assert not marker.exists()

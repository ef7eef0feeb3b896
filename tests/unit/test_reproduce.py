"""Tests for roard.cli.reproduce: plans and scripts from hand-built lineage and show docs."""

from __future__ import annotations

import subprocess
from typing import Any

import pytest

from roard.cli.reproduce import build_plan, script

RAW, FEAT, MODEL, EXT, OTHER = (f"blake3:{c * 64}" for c in "abcde")
REPO = "/home/u/proj"
COMMIT = "c" * 40


def run(run_id: str, started: str) -> dict[str, Any]:
    """A lineage node for a run."""
    return {"run_id": run_id, "name": run_id, "host": "n1", "started_at": started, "complete": True}


def f(path: str, h: str | None, kind: str = "artifact") -> dict[str, Any]:
    return {"path": path, "hash": h, "kind": kind, "size": 1, "host": "n1"}


def show(
    run_id: str,
    started: str,
    argv: list[str],
    inputs: list[dict[str, Any]],
    outputs: list[dict[str, Any]],
    *,
    cwd: str = REPO,
    modified: tuple[str, ...] = (),
    **extra: Any,
) -> dict[str, Any]:
    """A `show` document: one root process, one git tree (REPO) unless overridden."""
    doc = {
        **run(run_id, started),
        "status": "finished",
        "exit_code": 0,
        "lost_events": 0,
        "how": "spawn",
        "joined": False,
        "root_pid": 10,
        "processes": [{"host": "n1", "pid": 10, "ppid": 1, "argv": argv, "cwd": cwd}],
        "inputs": inputs,
        "outputs": outputs,
        "unhashed": [],
        "context": {
            "git": [
                {
                    "root": REPO,
                    "remote": "https://git.example.com/proj.git",
                    "branch": "main",
                    "commit": COMMIT,
                    "dirty": bool(modified),
                    "diff_hash": "blake3:" + "9" * 64 if modified else "",
                    "modified": list(modified),
                }
            ],
            "packages": {
                "python": [{"name": "numpy", "version": "1.26.0", "location": "/x"}],
                "system": [
                    {"manager": "dpkg", "name": "libc6", "version": "2.36", "arch": "amd64"}
                ],
            },
        },
    }
    doc.update(extra)
    return doc


def edges(*pairs: tuple[str, str, str]) -> list[dict[str, str]]:
    return [{"from": a, "to": b, "kind": k} for a, b, k in pairs]


def pipeline() -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """prepare (raw.csv in git -> features.csv), train (features + /data/ext -> model.bin),
    given in the walk's order (train first) to show the plan orders them itself."""
    docs = {
        "train": show(
            "train",
            "2026-01-01T00:00:02.000000Z",
            ["python3", "train.py", f"{REPO}/work/features.csv", "--out", f"{REPO}/model.bin"],
            [
                f(f"{REPO}/work/features.csv", FEAT),
                f("/data/ext.bin", EXT),
                f("/usr/x", OTHER, "system"),
            ],
            [f(f"{REPO}/model.bin", MODEL)],
            modified=("work/features.csv", "model.bin"),
        ),
        "prepare": show(
            "prepare",
            "2026-01-01T00:00:01.000000Z",
            ["python3", "prepare.py"],
            [f(f"{REPO}/data/raw.csv", RAW)],
            [f(f"{REPO}/work/features.csv", FEAT)],
            modified=("work/features.csv",),
        ),
    }
    graph = {
        "root": {"type": "artifact", "hash": MODEL},
        "depth": 5,
        "runs": [
            run("train", "2026-01-01T00:00:02.000000Z"),
            run("prepare", "2026-01-01T00:00:01.000000Z"),
        ],
        "edges": edges(
            ("train", MODEL, "generated"),
            (FEAT, "train", "used"),
            (EXT, "train", "used"),
            ("prepare", FEAT, "generated"),
            (RAW, "prepare", "used"),
        ),
        "hidden_runs": 0,
        "truncated": False,
    }
    return graph, docs


def plan_of(graph: dict[str, Any], docs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return build_plan("q", graph, docs.__getitem__, lambda h: pytest.fail("not needed"))


def test_steps_are_ordered_producer_first_with_sources_and_fetches() -> None:
    plan = plan_of(*pipeline())
    assert [s["run_id"] for s in plan["steps"]] == ["prepare", "train"]
    prepare, train = plan["steps"]
    assert prepare["inputs"][0]["source"] == "checkout"
    by_path = {i["path"]: i for i in train["inputs"]}
    assert set(by_path) == {f"{REPO}/work/features.csv", "/data/ext.bin"}  # no system file
    assert by_path[f"{REPO}/work/features.csv"]["source"] == "step"
    assert by_path[f"{REPO}/work/features.csv"]["step"] == 1
    assert by_path["/data/ext.bin"]["source"] == "fetch"
    assert plan["fetch"] == [
        {
            "path": "/data/ext.bin",
            "hash": EXT,
            "kind": "artifact",
            "rebuild_path": "/data/ext.bin",
            "steps": [2],
        }
    ]
    assert plan["clones"] == [
        {
            "dir": "proj",
            "url": "https://git.example.com/proj.git",
            "remote": "https://git.example.com/proj.git",
            "commit": COMMIT,
            "branch": "main",
            "roots": [REPO],
        }
    ]
    assert train["python_packages"] == ["numpy==1.26.0"]
    assert plan["target"]["verify"] == [
        {
            "path": f"{REPO}/model.bin",
            "hash": MODEL,
            "kind": "artifact",
            "rebuild_path": "proj/model.bin",
        }
    ]
    # Dirty only by files the plan re-creates: nothing lost, no warning.
    assert plan["warnings"] == []


def test_ties_and_independent_runs_go_by_start_time() -> None:
    graph, docs = pipeline()
    # A second input of train, made by a run that started after prepare.
    docs["train"]["inputs"].append(f(f"{REPO}/vocab.txt", OTHER))
    docs["vocab"] = show(
        "vocab", "2026-01-01T00:00:01.500000Z", ["sh", "v.sh"], [], [f(f"{REPO}/vocab.txt", OTHER)]
    )
    graph["runs"].append(run("vocab", "2026-01-01T00:00:01.500000Z"))
    graph["edges"] += edges(("vocab", OTHER, "generated"), (OTHER, "train", "used"))
    plan = plan_of(graph, docs)
    assert [s["run_id"] for s in plan["steps"]] == ["prepare", "vocab", "train"]


def test_paths_under_the_tree_are_rewritten_in_cwd_argv_and_files() -> None:
    plan = plan_of(*pipeline())
    train = plan["steps"][1]
    assert train["command"] == {
        "argv": ["python3", "train.py", f"{REPO}/work/features.csv", "--out", f"{REPO}/model.bin"],
        "cwd": REPO,
        "rebuild_cwd": "proj",
        "env": {},
        "secrets": [],
    }
    text = script(plan)
    assert (
        '(cd "$DEST"/proj && exec python3 train.py "$DEST"/proj/work/features.csv --out '
        '"$DEST"/proj/model.bin) || status=$?'
    ) in text
    assert f"need /data/ext.bin {EXT} 'fetch it'" in text
    assert f'need "$DEST"/proj/data/raw.csv {RAW}' in text
    assert f'clone https://git.example.com/proj.git "$DEST"/proj {COMMIT}' in text
    assert f'rebuilt "$DEST"/proj/model.bin {MODEL}' in text


def test_a_modified_input_no_step_makes_is_fetched_and_the_dirty_tree_warned() -> None:
    graph, docs = pipeline()
    docs["prepare"]["context"]["git"][0]["modified"] = ["data/raw.csv", "work/features.csv"]
    docs["prepare"]["context"]["git"][0]["dirty"] = True
    plan = plan_of(graph, docs)
    (fetch_raw,) = (x for x in plan["fetch"] if x["hash"] == RAW)
    assert fetch_raw["rebuild_path"] == "proj/data/raw.csv" and fetch_raw["steps"] == [1]
    (warning,) = plan["warnings"]
    assert "step 1 (run prepare)" in warning and "uncommitted changes" in warning
    assert "data/raw.csv" in warning and "work/features.csv" not in warning
    assert 'need "$DEST"/proj/data/raw.csv' in script(plan)


def test_argv_with_spaces_and_quotes_is_quoted() -> None:
    graph, docs = pipeline()
    docs["prepare"]["processes"][0]["argv"] = ["python3", "-c", "print('a b')", f"{REPO}/my file"]
    text = script(plan_of(graph, docs))
    line = next(x for x in text.splitlines() if x.startswith('(cd "$DEST"/proj && exec python3 -c'))
    assert line == (
        "(cd \"$DEST\"/proj && exec python3 -c 'print('\"'\"'a b'\"'\"')' "
        "\"$DEST\"/'proj/my file') || status=$?"
    )


def test_a_target_no_run_produced_is_only_fetched() -> None:
    graph = {
        "root": {"type": "artifact", "hash": EXT},
        "depth": 5,
        "runs": [],
        "edges": [],
        "hidden_runs": 0,
        "truncated": False,
    }
    found = {"artifacts": [{"hash": EXT, "paths": [{"host": "n1", "path": "/data/ext.bin"}]}]}
    plan = build_plan(EXT, graph, lambda r: pytest.fail("no run to show"), lambda h: found)
    assert plan["steps"] == [] and plan["clones"] == []
    assert [x["path"] for x in plan["fetch"]] == ["/data/ext.bin"]
    assert plan["target"]["verify"][0]["path"] == "/data/ext.bin"
    (warning,) = plan["warnings"]
    assert "no run you may see produced" in warning and "can only be fetched" in warning


def test_run_target_adopted_runs_unhashed_inputs_and_a_cut_walk_are_warned() -> None:
    graph, docs = pipeline()
    docs["prepare"].update(how="pid", complete=False, lost_events=3)
    docs["prepare"]["processes"].append(
        {"host": "n1", "pid": 11, "ppid": 10, "argv": ["child"], "cwd": REPO}
    )
    docs["train"]["unhashed"] = [
        {"path": "/data/big.bin", "role": "input", "kind": "artifact", "reason": "size"}
    ]
    docs["prepare"]["inputs"].append(f("/data/seed.bin", OTHER))  # fetched, at the cut
    graph["root"] = {"type": "run", "run_id": "train"}
    graph["depth"] = 1
    plan = plan_of(graph, docs)
    prepare = plan["steps"][0]
    assert prepare["command"] is None
    assert prepare["processes"] == [{"host": "n1", "argv": ["python3", "prepare.py"], "cwd": REPO}]
    text = "\n".join(plan["warnings"])
    assert "step 1 (run prepare): no single command" in text
    assert "step 1 (run prepare) is incomplete (3 events lost)" in text
    assert "input /data/big.bin has no hash (size)" in text
    # train is the walk's level 0, prepare level 1 = the depth: its fetched input may
    # have a producer the walk did not reach; train's could not.
    assert "step 1 (run prepare): input /data/seed.bin may have a producer beyond" in text
    assert text.count("beyond the walk's depth (1)") == 1
    assert plan["target"] == {
        "type": "run",
        "query": "q",
        "run_id": "train",
        "verify": plan["steps"][1]["outputs"],
    }
    body = script(plan)
    assert (
        "has no single command" in body
        and "#     on n1, in /home/u/proj: python3 prepare.py" in body
    )
    assert "[ -f /data/big.bin ] || die" in body


def test_the_script_is_valid_posix_sh() -> None:
    result = subprocess.run(
        ["sh", "-n"], input=script(plan_of(*pipeline())), text=True, check=False
    )
    assert result.returncode == 0


def test_two_commits_of_one_tree_are_two_clones_and_files_are_carried_between() -> None:
    graph, docs = pipeline()
    docs["train"]["context"]["git"][0]["commit"] = "d" * 40
    plan = plan_of(graph, docs)
    assert [c["dir"] for c in plan["clones"]] == ["proj", "proj-dddddddddddd"]
    features = plan["steps"][1]["inputs"][1]
    assert features["produced_at"] == "proj/work/features.csv"
    assert features["rebuild_path"] == "proj-dddddddddddd/work/features.csv"
    assert (
        'cp "$DEST"/proj/work/features.csv "$DEST"/proj-dddddddddddd/work/features.csv'
        in script(plan)
    )


def test_the_job_environment_is_set_again_and_secrets_are_asked_for() -> None:
    """The root's recorded variables are set again (session ones left out, paths into the
    tree rewritten); redacted variables and arguments must come from the caller."""
    graph, docs = pipeline()
    train = docs["train"]
    train["processes"][0]["env_hash"] = "blake3:env"
    train["processes"][0]["argv"] = ["python3", "train.py", "--token", "<redacted>"]
    train["environments"] = {
        "blake3:env": {
            "PYTHONPATH": f"{REPO}/src",
            "OMP_NUM_THREADS": "4",
            "HOME": "/home/u",
            "SSH_AUTH_SOCK": "/tmp/agent",
            "ROARD_RUN": "train",
            "WANDB_API_KEY": "<redacted>",
        }
    }
    plan = plan_of(graph, docs)
    command = plan["steps"][1]["command"]
    assert command["env"] == {"OMP_NUM_THREADS": "4", "PYTHONPATH": f"{REPO}/src"}
    assert command["secrets"] == ["WANDB_API_KEY", "REPRODUCE_SECRET_1"]
    text = script(plan)
    assert 'PYTHONPATH="$DEST"/proj/src' in text and "OMP_NUM_THREADS=4" in text
    assert "HOME=" not in text and "ROARD_RUN" not in text
    assert ': "${WANDB_API_KEY:?' in text and ': "${REPRODUCE_SECRET_1:?' in text
    assert 'train.py --token "$REPRODUCE_SECRET_1"' in text
    assert "<redacted>" not in text
    checked = subprocess.run(["sh", "-n"], input=text, text=True, check=False)
    assert checked.returncode == 0

"""End to end: `roarctl diff` between two real runs of one script under a private roard."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

from tests.e2e.conftest import Roard, python3
from tests.e2e.test_observe import b3


def test_diff_names_the_changed_input_argv_and_output(roard: Roard, workdir: Path) -> None:
    """Same script, another input and another argument: exactly those, and the output."""
    (workdir / "train.py").write_text(
        textwrap.dedent("""
        import sys
        rows = open("data.csv").read()
        with open("model.txt", "w") as out:
            out.write(rows * int(sys.argv[1]))
    """)
    )
    data, model = workdir / "data.csv", workdir / "model.txt"
    data.write_text("a,b\n1,2\n")
    roard.roarctl("tag", "--name", "diff-e2e-1", "--", python3(), "train.py", "2", cwd=workdir)
    hash_a, model_a = b3(data), b3(model)
    data.write_text("a,b\n1,2\n3,4\n")
    roard.roarctl("tag", "--name", "diff-e2e-2", "--", python3(), "train.py", "3", cwd=workdir)
    hash_b, model_b = b3(data), b3(model)
    run_a = roard.finished("diff-e2e-1")["run_id"]
    roard.finished("diff-e2e-2")

    # One side by id, one by name (its latest run), as show accepts.
    doc = json.loads(roard.roarctl("diff", run_a, "diff-e2e-2", "--json").stdout)
    assert doc["same"] is False
    assert doc["a"]["run_id"] == run_a and doc["b"]["name"] == "diff-e2e-2"
    assert doc["inputs"] == {
        "changed": [{"path": str(data), "a": hash_a, "b": hash_b, "size_a": 8, "size_b": 12}],
        "added": [],
        "removed": [],
    }
    assert doc["outputs"]["changed"] == [
        {
            "path": str(model),
            "a": model_a,
            "b": model_b,
            "size_a": 16,
            "size_b": 36,
        }
    ]
    assert doc["outputs"]["added"] == doc["outputs"]["removed"] == []
    assert doc["command"] == {
        "a": [python3(), "train.py", "2"],
        "b": [python3(), "train.py", "3"],
    }

    human = roard.roarctl("diff", run_a, "diff-e2e-2").stdout
    assert "inputs: 1 changed, 0 added, 0 removed" in human
    assert f"  ~ {data}  {hash_a[:19]}… -> {hash_b[:19]}…" in human
    assert f"command: {python3()} train.py 2 -> {python3()} train.py 3" in human

    differ = roard.roarctl("diff", run_a, "diff-e2e-2", "--exit-code", check=False)
    assert differ.returncode == 1, differ.stderr

    same = roard.roarctl("diff", run_a, run_a, "--json", "--exit-code")
    assert json.loads(same.stdout)["same"] is True
    assert roard.roarctl("diff", run_a, run_a).stdout.rstrip().endswith("no differences")


def test_diff_of_an_unknown_run_fails_with_its_error(roard: Roard) -> None:
    result = roard.roarctl("diff", "no-such-run-e2e", "no-such-run-e2e", check=False)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.startswith("roarctl: ")

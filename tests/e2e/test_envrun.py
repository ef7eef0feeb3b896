"""End to end: the ROARD_RUN environment convention, with real programs and no roarctl tag
around them (the jobs are started from the test, itself untracked)."""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Roard, python3, start_roard, stop_roard
from tests.e2e.test_observe import b3, by_path


def unique(prefix: str) -> str:
    """A run name no other test of the session's daemon uses."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def run_env_job(
    cmd: list[str], cwd: Path, roard_run: str | None, **env: str
) -> subprocess.CompletedProcess[str]:
    """Run `cmd` to completion with ROARD_RUN set (unless None), untagged."""
    environ = {**os.environ, **env}
    environ.pop("ROARD_RUN", None)
    if roard_run is not None:
        environ["ROARD_RUN"] = roard_run
    return subprocess.run(
        cmd, cwd=cwd, env=environ, capture_output=True, text=True, timeout=60, check=False
    )


def runs_named(roard: Roard, name: str) -> list[dict[str, Any]]:
    """`roarctl runs --name NAME --json`."""
    runs: list[dict[str, Any]] = json.loads(roard.roarctl("runs", "--name", name, "--json").stdout)
    return runs


def barrier(roard: Roard, cwd: Path) -> None:
    """Return once the daemon has handled every kernel event that came before: a tagged
    run is finalized only after its exit event, which the ring delivers after theirs."""
    roard.roarctl("tag", "--", "true", cwd=cwd)


def status(roard: Roard) -> dict[str, Any]:
    """`roarctl status --json`."""
    doc: dict[str, Any] = json.loads(roard.roarctl("status", "--json").stdout)
    return doc


def test_env_run_records_a_python_job_and_its_children(roard: Roard, workdir: Path) -> None:
    """`ROARD_RUN=NAME python3 script.py`: one complete run of that name, its input read
    (hashed as read), its output, and its child (which inherits ROARD_RUN) inside it."""
    name = unique("train")
    (workdir / "data.txt").write_text("rows\n" * 50)
    (workdir / "train.py").write_text(
        textwrap.dedent("""
        import subprocess, sys
        data = open("data.txt").read()
        open("model.bin", "w").write(data.upper())
        subprocess.run(["cp", "model.bin", "model-copy.bin"], check=True)
        sys.exit(4)
    """)
    )
    job = run_env_job([python3(), "train.py"], workdir, name)
    assert job.returncode == 4, job.stderr

    doc = roard.finished(name)
    assert doc["name"] == name and doc["how"] == "env"
    assert doc["complete"] is True and doc["lost_events"] == 0, doc["loss_reasons"]
    assert doc["exit_code"] == 4
    root = next(p for p in doc["processes"] if p["pid"] == doc["root_pid"])
    assert root["argv"] == [python3(), "train.py"] and root["cwd"] == str(workdir)
    inputs, outputs = by_path(doc["inputs"]), by_path(doc["outputs"])
    assert inputs[str(workdir / "data.txt")]["hash"] == b3(workdir / "data.txt")
    assert inputs[str(workdir / "train.py")]["hash"] == b3(workdir / "train.py")
    assert outputs[str(workdir / "model.bin")]["hash"] == b3(workdir / "model.bin")
    assert outputs[str(workdir / "model-copy.bin")]["hash"] == b3(workdir / "model.bin")
    assert any(p["argv"][:1] == ["cp"] for p in doc["processes"])
    # The child exec'd with ROARD_RUN inherited, inside the run: no nested run.
    assert [r["run_id"] for r in runs_named(roard, name)] == [doc["run_id"]]


def test_shell_script_that_exports_roard_run_is_one_run(roard: Roard, workdir: Path) -> None:
    """A batch script that exports ROARD_RUN and re-execs itself under it (the README's
    idiom for scripts) is one run containing every command it runs."""
    name = unique("etl")
    (workdir / "raw.txt").write_text("raw\n")
    (workdir / "job.sh").write_text(
        textwrap.dedent(f"""\
        if [ -z "$ROARD_RUN" ]; then export ROARD_RUN={name}; exec sh "$0" "$@"; fi
        cat raw.txt > stage1.txt
        {python3()} -c 'open("stage2.txt", "w").write(open("stage1.txt").read() * 2)'
        cp stage2.txt final.txt
    """)
    )
    job = run_env_job(["sh", "job.sh"], workdir, None)
    assert job.returncode == 0, job.stderr

    doc = roard.finished(name)
    assert doc["complete"] is True, doc["loss_reasons"]
    outputs = by_path(doc["outputs"])
    for out in ("stage1.txt", "stage2.txt", "final.txt"):
        assert outputs[str(workdir / out)]["hash"] == b3(workdir / out)
    commands = [p["argv"][:1] for p in doc["processes"]]
    assert ["cat"] in commands and ["cp"] in commands and [python3()] in commands
    assert len(runs_named(roard, name)) == 1


def test_each_command_of_an_exporting_shell_is_its_own_run(roard: Roard, workdir: Path) -> None:
    """Without the re-exec, the exporting shell is no run: each program it starts execs
    with ROARD_RUN, outside any run, and starts a run of that name (as the README says)."""
    name = unique("steps")
    script = f"export ROARD_RUN={name}; cp /etc/hostname a.txt; cp a.txt b.txt"
    assert run_env_job(["sh", "-c", script], workdir, None).returncode == 0
    barrier(roard, workdir)
    runs = runs_named(roard, name)
    assert len(runs) == 2
    outputs = {
        tuple(by_path(roard.finished(r["run_id"])["outputs"])) for r in runs
    }  # each run holds the output of its own command
    assert outputs == {(str(workdir / "a.txt"),), (str(workdir / "b.txt"),)}


@pytest.mark.parametrize("value", ["bad name!", "train@bad/id", "", "x" * 600])
def test_invalid_value_starts_no_run_and_is_counted(
    roard: Roard, workdir: Path, value: str
) -> None:
    """An invalid ROARD_RUN value starts nothing; the daemon counts it and carries on."""
    before = status(roard)["tracker"]
    job = run_env_job(["cp", "/etc/hostname", "out.txt"], workdir, value)
    assert job.returncode == 0, job.stderr
    barrier(roard, workdir)
    after = status(roard)["tracker"]
    assert after["env_runs_rejected"] == before["env_runs_rejected"] + 1
    assert after["env_runs_started"] == before["env_runs_started"]
    assert "ROARD_RUN ignored" in roard.log.read_text()
    # Still recording: a valid one right after works.
    name = unique("after-invalid")
    assert run_env_job(["cp", "/etc/hostname", "ok.txt"], workdir, name).returncode == 0
    assert str(workdir / "ok.txt") in by_path(roard.finished(name)["outputs"])


def test_process_inside_a_tagged_run_ignores_roard_run(roard: Roard, workdir: Path) -> None:
    """ROARD_RUN set for a command inside a `roarctl tag` run: it stays in that run."""
    outer, inner = unique("outer"), unique("inner")
    script = f"ROARD_RUN={inner} cp /etc/hostname inside.txt"
    roard.roarctl("tag", "--name", outer, "--", "sh", "-c", script, cwd=workdir)
    assert str(workdir / "inside.txt") in by_path(roard.show(outer)["outputs"])
    assert runs_named(roard, inner) == []


def test_switched_off_env_runs_start_nothing(tmp_path: Path) -> None:
    """`env_runs = false`: ROARD_RUN means nothing, and the daemon says the switch is off."""
    daemon = start_roard(tmp_path / "off", config="env_runs = false\n")
    try:
        work = tmp_path / "work"
        work.mkdir()
        job = run_env_job(["cp", "/etc/hostname", "out.txt"], work, "off-run")
        assert job.returncode == 0, job.stderr
        barrier(daemon, work)
        doc = status(daemon)
        assert doc["env_runs"] is False
        assert doc["tracker"]["env_runs_started"] == 0
        assert runs_named(daemon, "off-run") == []
    finally:
        stop_roard(daemon)


def test_a_job_is_the_run_of_the_roard_its_roard_socket_names(roard: Roard, tmp_path: Path) -> None:
    """Two roards on one host (a private one beside another): a ROARD_RUN job whose
    ROARD_SOCKET names one of them, as it does for the roarctl it runs, is a run of that
    one alone; the other leaves it be (else both would trace it) and counts it."""
    second = start_roard(tmp_path / "second")
    try:
        work = tmp_path / "work"
        work.mkdir()
        before = status(roard)["tracker"]["env_runs_elsewhere"]
        for meant, other in ((second, roard), (roard, second)):
            name = unique("meant")
            env = {"ROARD_SOCKET": str(meant.socket)}
            job = run_env_job(["cp", "/etc/hostname", "out.txt"], work, name, **env)
            assert job.returncode == 0, job.stderr
            assert str(work / "out.txt") in by_path(meant.finished(name)["outputs"])
            barrier(other, work)
            assert runs_named(other, name) == []
        assert status(roard)["tracker"]["env_runs_elsewhere"] == before + 1
        assert status(second)["tracker"]["env_runs_elsewhere"] == 1
        # Each costs every process its hooks: roarctl status says the other is there.
        assert roard.proc.pid in [o["pid"] for o in status(second)["other_daemons"]]
        shown = second.roarctl("status").stdout
        assert f"ANOTHER ROARD is running here (pid {roard.proc.pid}" in shown
    finally:
        stop_roard(second)

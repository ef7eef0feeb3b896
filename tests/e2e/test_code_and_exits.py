"""What a run's files are (its code apart from its data), which programs it ran (with
their hashes), how its processes ended (a signal apart from an exit status), and where it
ran (cgroup), as `roarctl show` says."""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

from roard.tracking.cgroups import proc_cgroup_path
from tests.e2e.conftest import Roard, python3
from tests.e2e.test_observe import b3


def _name() -> str:
    return f"t-{uuid.uuid4().hex[:8]}"


def test_scripts_and_sources_are_code_and_the_files_they_read_are_data(
    roard: Roard, workdir: Path
) -> None:
    (workdir / "data.txt").write_text("rows\n")
    # A shebang script without a suffix: code because an interpreter ran it.
    prep = workdir / "prep"
    prep.write_text("#!/bin/sh\ncat data.txt > staged.txt\n")
    prep.chmod(0o755)
    (workdir / "helpers.py").write_text("SCALE = 2\n")
    (workdir / "train.py").write_text(
        "import helpers\nopen('model.bin', 'w').write(open('staged.txt').read() * helpers.SCALE)\n"
    )
    name = _name()
    roard.roarctl("tag", "--name", name, "--", "sh", "-c", f"./prep && {python3()} train.py",
                  cwd=workdir)  # fmt: skip
    doc = roard.show(name)
    kinds = {Path(f["path"]).name: f["kind"] for f in doc["inputs"]}
    assert kinds["prep"] == "code"
    assert kinds["train.py"] == "code" and kinds["helpers.py"] == "code"
    assert kinds["data.txt"] == "artifact"
    outputs = {Path(f["path"]).name: f["kind"] for f in doc["outputs"]}
    assert outputs["staged.txt"] == outputs["model.bin"] == "artifact"
    # Every program it ran has its hash: the exe is an input of the run that exec'd it.
    for proc in doc["processes"]:
        assert proc["exe_hash"] == b3(Path(proc["exe"])), proc
    shown = roard.roarctl("show", name).stdout
    assert f"{workdir / 'train.py'}  (code)" in shown


def test_a_program_and_the_library_it_loads_from_the_job_directory_are_code(
    roard: Roard, workdir: Path
) -> None:
    """A program built in the job's directory and the shared library the loader maps from
    there (LD_LIBRARY_PATH) are inputs of kind code with their hashes, not data; the file
    the program reads is data."""
    (workdir / "ops.c").write_text("int scale(int x) { return 3 * x; }\n")
    (workdir / "main.c").write_text(
        "#include <stdio.h>\nint scale(int);\n"
        'int main(void) { FILE *f = fopen("data.txt", "r"); printf("%d\\n", scale(fgetc(f)));'
        " return 0; }\n"
    )
    (workdir / "data.txt").write_text("x")
    gcc = ["gcc", "-O1", "-o"]
    subprocess.run([*gcc, "libops.so", "-shared", "-fPIC", "ops.c"], cwd=workdir, check=True)
    subprocess.run([*gcc, "tool", "main.c", "-L.", "-lops"], cwd=workdir, check=True)
    name = _name()
    out = roard.roarctl("tag", "--name", name, "--", "sh", "-c", "LD_LIBRARY_PATH=. ./tool",
                        cwd=workdir)  # fmt: skip
    assert out.stdout.strip() == str(3 * ord("x"))
    inputs = {Path(f["path"]).name: f for f in roard.show(name)["inputs"]}
    for code in ("tool", "libops.so"):
        assert inputs[code]["kind"] == "code", inputs[code]
        assert inputs[code]["hash"] == b3(workdir / code)
    assert inputs["data.txt"]["kind"] == "artifact"


def test_a_signal_is_told_apart_from_an_exit_status(roard: Roard, workdir: Path) -> None:
    killed = _name()
    # The child is killed by SIGKILL, then the root shell by SIGTERM.
    done = roard.roarctl("tag", "--name", killed, "--", "sh", "-c",
                         "sleep 30 & kill -9 $!; wait; kill -TERM $$", check=False)  # fmt: skip
    assert done.returncode == 143
    doc = roard.show(killed)
    assert (doc["exit_code"], doc["signal"]) == (143, "SIGTERM")
    assert "exit 143 (SIGTERM)" in roard.roarctl("show", killed).stdout
    # The background child (sleep, or the shell's fork not yet exec'd) and the root.
    ends = sorted((p["exit_code"], p["signal"]) for p in doc["processes"])
    assert ends == [(137, "SIGKILL"), (143, "SIGTERM")]

    exited = _name()
    assert roard.roarctl("tag", "--name", exited, "--", "sh", "-c", "exit 137",
                         check=False).returncode == 137  # fmt: skip
    doc = roard.show(exited)
    assert (doc["exit_code"], doc["signal"]) == (137, None)
    assert [p["signal"] for p in doc["processes"]] == [None]


def test_the_run_says_which_cgroup_its_root_ran_in(roard: Roard, workdir: Path) -> None:
    name = _name()
    roard.roarctl("tag", "--name", name, "--", "true")
    placement = roard.show(name)["placement"]
    # The spawned root starts in roarctl's cgroup, which is this test's.
    assert placement["cgroup"] == proc_cgroup_path(Path("/proc/self/cgroup").read_text())
    assert placement["container"] == "" and placement["kubernetes_pod"] == ""

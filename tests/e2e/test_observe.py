"""End to end: real programs under a private roard, checked through roarctl as a user would."""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
import time
from pathlib import Path
from typing import Any

import blake3
import pytest

from roard.cli.tagging import summary
from tests.e2e.conftest import VENV_BIN, Roard, as_nobody, failed_start, python3


def b3(path: Path) -> str:
    """The hash roard must report for a file's content."""
    return "blake3:" + blake3.blake3(path.read_bytes()).hexdigest()


def by_path(files: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Index show's inputs/outputs by path."""
    return {f["path"]: f for f in files}


def test_python_read_write_is_recorded_with_hashes(roard: Roard, workdir: Path) -> None:
    """A Python job: its input and output, hashes, sizes, process tree, times, exit code."""
    (workdir / "data.csv").write_text("a,b\n1,2\n3,4\n")
    (workdir / "prep.py").write_text(
        textwrap.dedent("""
        import sys
        rows = open("data.csv").read()
        with open("features.parquet", "w") as out:
            out.write(rows.upper() * 100)
        sys.exit(3)
    """)
    )
    result = roard.roarctl(
        "tag",
        "--name",
        "prep-e2e",
        "--label",
        "team=ml",
        "--",
        python3(),
        "prep.py",
        cwd=workdir,
        check=False,
    )
    assert result.returncode == 3, result.stderr
    assert result.stdout == ""  # the command owns stdout; the summary goes to stderr
    assert "prep-e2e" in result.stderr and "complete" in result.stderr

    doc = roard.show("prep-e2e")
    assert doc["status"] == "finished"
    assert doc["exit_code"] == 3
    assert doc["complete"] is True and doc["lost_events"] == 0
    assert doc["started_at"].endswith("Z") and doc["ended_at"] >= doc["started_at"]
    inputs, outputs = by_path(doc["inputs"]), by_path(doc["outputs"])
    data, features = workdir / "data.csv", workdir / "features.parquet"
    assert inputs[str(data)] == {
        **inputs[str(data)],
        "hash": b3(data),
        "size": 12,
        "kind": "artifact",
    }
    assert inputs[str(workdir / "prep.py")]["hash"] == b3(workdir / "prep.py")
    assert outputs[str(features)]["hash"] == b3(features)
    assert outputs[str(features)]["size"] == features.stat().st_size
    assert str(features) not in inputs and str(data) not in outputs
    root = doc["processes"][0]
    assert root["exe"] == os.path.realpath(python3())
    assert root["argv"] == [python3(), "prep.py"]
    assert root["cwd"] == str(workdir)
    assert root["ppid"] > 1


def test_the_summary_roarctl_prints_is_what_show_then_says(roard: Roard, workdir: Path) -> None:
    """`roarctl tag` returns once the run is spooled, with the daemon's own summary; the
    collector, asked right after, has the run and summarizes it the same way (inputs of
    several kinds, outputs, a temporary that did not survive, a kernel file never hashed)."""
    (workdir / "data.csv").write_text("x\n" * 100)
    (workdir / "job.py").write_text(
        textwrap.dedent("""
        import os
        open("data.csv").read()
        open("/proc/self/status").read()
        open("tmp.part", "w").write("scratch")
        os.remove("tmp.part")
        open("out.txt", "w").write("done")
    """)
    )
    result = roard.roarctl("tag", "--name", "told", "--", python3(), "job.py", cwd=workdir)
    doc = roard.show("told")
    assert str(workdir / "out.txt") in by_path(doc["outputs"])
    assert f"roarctl: {summary(doc)}\n" in result.stderr
    assert " finished, exit 0: " in result.stderr and "complete" in result.stderr


def test_shell_redirection_and_pipeline(roard: Roard, workdir: Path) -> None:
    """Redirections (dup2 onto 0/1) attribute bytes to the redirected files."""
    (workdir / "in.txt").write_text("hello\nworld\n")
    script = "sort < in.txt > sorted.txt; echo done >> log.txt; cat in.txt | wc -l > count.txt"
    roard.roarctl("tag", "--name", "shell-e2e", "--", "sh", "-c", script, cwd=workdir)
    doc = roard.show("shell-e2e")
    inputs, outputs = by_path(doc["inputs"]), by_path(doc["outputs"])
    assert str(workdir / "in.txt") in inputs
    for name in ("sorted.txt", "log.txt", "count.txt"):
        assert outputs[str(workdir / name)]["hash"] == b3(workdir / name), name
    assert (workdir / "count.txt").read_text().strip() == "2"
    assert len(doc["processes"]) >= 4  # sh, sort, cat, wc


def test_cp_copy_file_range(roard: Roard, workdir: Path) -> None:
    """cp moves bytes with copy_file_range: source is the input, copy the output."""
    src = workdir / "model.bin"
    src.write_bytes(os.urandom(3 << 20))
    roard.roarctl("tag", "--name", "cp-e2e", "--", "cp", str(src), str(workdir / "copy.bin"))
    doc = roard.show("cp-e2e")
    assert by_path(doc["inputs"])[str(src)]["hash"] == b3(src)
    out = by_path(doc["outputs"])[str(workdir / "copy.bin")]
    assert out["hash"] == b3(src) and out["size"] == 3 << 20


def test_forked_child_and_thread_outputs(roard: Roard, workdir: Path) -> None:
    """Outputs written by a forked child and by a thread belong to the run."""
    (workdir / "job.py").write_text(
        textwrap.dedent("""
        import os, threading
        pid = os.fork()
        if pid == 0:
            open("child.out", "w").write("from the child")
            os._exit(0)
        os.waitpid(pid, 0)
        t = threading.Thread(target=lambda: open("thread.out", "w").write("from a thread"))
        t.start(); t.join()
    """)
    )
    roard.roarctl("tag", "--name", "fork-e2e", "--", python3(), "job.py", cwd=workdir)
    doc = roard.show("fork-e2e")
    outputs = by_path(doc["outputs"])
    for name in ("child.out", "thread.out"):
        assert outputs[str(workdir / name)]["hash"] == b3(workdir / name)
    pids = {p["pid"] for p in doc["processes"]}
    assert len(pids) == 2
    child = next(p for p in doc["processes"] if p["ppid"] in pids)
    assert child["argv"] == [python3(), "job.py"]  # fork without exec keeps the program


def test_untagged_process_is_not_in_the_run(roard: Roard, workdir: Path) -> None:
    """A process outside the tagged tree writing in the same directory is never recorded."""
    outsider = subprocess.Popen(
        [
            "sh",
            "-c",
            "for i in 1 2 3 4 5 6 7 8 9 10; do echo $i > outsider.txt; "
            "cat outsider.txt > /dev/null; sleep 0.05; done",
        ],
        cwd=workdir,
    )
    roard.roarctl(
        "tag",
        "--name",
        "inside-e2e",
        "--",
        "sh",
        "-c",
        "for i in 1 2 3 4 5; do echo $i > inside.txt; sleep 0.05; done",
        cwd=workdir,
    )
    outsider.wait(10)
    doc = roard.show("inside-e2e")
    paths = {f["path"] for f in doc["inputs"] + doc["outputs"]}
    assert str(workdir / "inside.txt") in paths
    assert str(workdir / "outsider.txt") not in paths
    assert outsider.pid not in {p["pid"] for p in doc["processes"]}


def test_tag_pid_adopts_running_process_and_descendants(roard: Roard, workdir: Path) -> None:
    """`tag --pid` adopts a running job; its later reads/writes and children are recorded."""
    (workdir / "input.txt").write_text("adopted input\n")
    (workdir / "job.py").write_text(
        textwrap.dedent("""
        import os, subprocess, time
        while not os.path.exists("go"):
            time.sleep(0.02)
        data = open("input.txt").read()
        open("adopted.out", "w").write(data * 2)
        subprocess.run(["cp", "input.txt", "child-copy.txt"], check=True)
    """)
    )
    job = subprocess.Popen([python3(), "job.py"], cwd=workdir)
    try:
        run_id = roard.roarctl("tag", "--pid", str(job.pid), "--name", "adopt-e2e").stdout.strip()
        assert run_id
        (workdir / "go").touch()
        assert job.wait(30) == 0
    finally:
        job.kill()
    deadline = time.monotonic() + 30
    while (doc := roard.show(run_id))["status"] != "finished" and time.monotonic() < deadline:
        time.sleep(0.2)
    assert doc["status"] == "finished", doc
    assert doc["name"] == "adopt-e2e"
    outputs = by_path(doc["outputs"])
    assert outputs[str(workdir / "adopted.out")]["hash"] == b3(workdir / "adopted.out")
    assert outputs[str(workdir / "child-copy.txt")]["hash"] == b3(workdir / "input.txt")
    assert str(workdir / "input.txt") in by_path(doc["inputs"])
    assert any(p["argv"][:1] == ["cp"] for p in doc["processes"])


def test_untag_finalizes_a_running_job(roard: Roard, workdir: Path) -> None:
    """`untag` stops tracking a still-running process and finalizes what was seen, including
    a file it still holds open."""
    (workdir / "hold.py").write_text(
        textwrap.dedent("""
        import os, time
        held = open("held.txt", "w")
        while not os.path.exists("go"):
            time.sleep(0.02)
        held.write("written while tagged")
        held.flush()
        open("ready", "w").close()
        time.sleep(60)
    """)
    )
    job = subprocess.Popen([python3(), "hold.py"], cwd=workdir)
    try:
        run_id = roard.roarctl("tag", "--pid", str(job.pid)).stdout.strip()
        assert roard.show(run_id)["status"] == "running"
        assert run_id in roard.roarctl("runs", "--json").stdout
        (workdir / "go").touch()
        deadline = time.monotonic() + 10
        while not (workdir / "ready").exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        summary = json.loads(roard.roarctl("untag", run_id, "--json").stdout)
        assert summary["status"] == "finished"
        doc = roard.show(run_id)
        assert doc["status"] == "finished"
        held = by_path(doc["outputs"])[str(workdir / "held.txt")]
        assert held["hash"] == b3(workdir / "held.txt")
    finally:
        job.kill()


def test_errors_are_one_line_with_the_fix(roard: Roard, tmp_path: Path) -> None:
    """Bad input gets a clear one-line error and a non-zero exit, never a traceback."""
    missing = roard.roarctl("show", "no-such-run", check=False)
    assert missing.returncode != 0 and "roarctl runs" in missing.stderr
    assert "Traceback" not in missing.stderr
    bad_pid = roard.roarctl("tag", "--pid", "999999999", check=False)
    assert bad_pid.returncode != 0 and "no process with pid" in bad_pid.stderr
    nothing = roard.roarctl("tag", check=False)
    assert nothing.returncode == 2 and "nothing to run" in nothing.stderr
    not_found = roard.roarctl("tag", "--", "/nonexistent/program", check=False)
    assert not_found.returncode == 127 and "cannot run" in not_found.stderr
    env = {**os.environ, "ROARD_SOCKET": str(tmp_path / "nobody.sock")}
    down = subprocess.run(
        [str(VENV_BIN / "roarctl"), "status"], env=env, capture_output=True, text=True, check=False
    )
    assert down.returncode != 0 and "roard is not running" in down.stderr
    marker = tmp_path / "ran"
    untagged = subprocess.run(
        [str(VENV_BIN / "roarctl"), "tag", "--", "touch", str(marker)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert untagged.returncode != 0 and "roard is not running" in untagged.stderr
    assert "Traceback" not in untagged.stderr
    assert not marker.exists()  # nothing runs untraced when it cannot be tagged
    typo = subprocess.run(
        [str(VENV_BIN / "roarctl"), "tag", "--", "touch", str(marker)],
        env={**roard.env(), "ROARCTL_PROGRESS_AFTER": "soon"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert typo.returncode == 2 and "ROARCTL_PROGRESS_AFTER='soon'" in typo.stderr
    assert "Traceback" not in typo.stderr
    assert not marker.exists()  # a malformed setting is found before the command runs


def test_status_reports_tier_probes_and_counters(roard: Roard) -> None:
    """`roarctl status --json` says which tier runs, what is attached, and the loss counters."""
    doc = json.loads(roard.roarctl("status", "--json").stdout)
    assert doc["tier"] == "tracepoint"
    assert "syscalls:sys_exit_openat" not in doc["probes_missing"]
    assert "syscalls:sys_exit_read" in doc["probes"]
    # x86_64 with kernel 5.15+ (CI's machines): each read hooked once, at its exit
    assert doc["io_hooks"] == "exit"
    assert "syscalls:sys_enter_read" not in doc["probes"]
    assert set(doc["lost"]) >= {"ringbuf_proc", "ringbuf_file", "tracked_full", "agg_full"}
    assert doc["lost_total"] == 0


def test_unprivileged_user_tags_only_own_processes_and_sees_own_runs(
    roard: Roard, tmp_path: Path
) -> None:
    """SO_PEERCRED: a user may tag only their own processes and sees only their own runs."""
    workdir = tmp_path / "nobody"
    workdir.mkdir()
    workdir.chmod(0o777)
    roarctl = "roarctl"
    denied = as_nobody(roarctl, "tag", "--pid", "1", env=roard.env())
    assert denied.returncode != 0 and "only root may tag" in denied.stderr
    own = as_nobody(
        roarctl,
        "tag",
        "--name",
        "nobody-e2e",
        "--",
        "sh",
        "-c",
        "echo mine > mine.txt",
        cwd=workdir,
        env=roard.env(),
    )
    assert own.returncode == 0, own.stderr
    mine = json.loads(as_nobody(roarctl, "show", "nobody-e2e", "--json", env=roard.env()).stdout)
    assert str(workdir / "mine.txt") in by_path(mine["outputs"])
    listed = json.loads(as_nobody(roarctl, "runs", "--json", env=roard.env()).stdout)
    # Only their own: root's runs are invisible (other tests may have left nobody's runs).
    assert "nobody-e2e" in {r["name"] for r in listed}
    assert {r["uid"] for r in listed} == {65534}
    hidden = as_nobody(roarctl, "show", "prep-e2e", env=roard.env())
    assert hidden.returncode != 0 and "no run" in hidden.stderr


def test_roard_refuses_to_start_without_privileges(tmp_path: Path) -> None:
    """`roard run` as a normal user says what is missing, in one line."""
    result = as_nobody(
        "roard",
        "run",
        "--state-dir",
        str(tmp_path / "s"),
        "--socket",
        str(tmp_path / "s.sock"),
    )
    assert result.returncode == 1
    assert "roard needs root" in result.stderr and "Traceback" not in result.stderr


def check_config(config: Path, text: str) -> subprocess.CompletedProcess[str]:
    """`roard run --check-config` on a config file holding `text`."""
    config.write_text(text)
    return subprocess.run(
        [str(VENV_BIN / "roard"), "run", "--check-config", "--config", str(config)],
        capture_output=True,
        text=True,
        check=False,
    )


def test_malformed_config_names_the_key(tmp_path: Path) -> None:
    """A bad config file is rejected at start with the key and what was expected."""
    config = tmp_path / "roard.toml"
    wrong_type = check_config(config, "hash_workers = 'many'\n")
    assert wrong_type.returncode == 2 and "hash_workers" in wrong_type.stderr
    not_pow2 = check_config(config, "[kernel]\nring_pages = 3\n")
    assert not_pow2.returncode == 2 and "power of two" in not_pow2.stderr
    assert check_config(config, "hash_workers = 2\n").returncode == 0


def test_doctor_reports_tier_and_checks(roard: Roard) -> None:
    """`roard doctor --json` checks every prerequisite and names the tier."""
    result = subprocess.run(
        [str(VENV_BIN / "roard"), "doctor", "--json"], capture_output=True, text=True, check=False
    )
    doc = json.loads(result.stdout)
    assert result.returncode == 0 and doc["ok"] is True, doc
    assert doc["tier"] == "tracepoint"
    assert {c["check"] for c in doc["checks"]} >= {
        "privileges",
        "btf",
        "btf_fields",
        "bcc",
        "tracefs",
        "headers",
    }


def test_files_left_open_at_exit_and_exec_and_on_high_descriptors(
    roard: Roard, workdir: Path
) -> None:
    """Files never closed (exit, close-on-exec at exec) and files on high descriptors
    (announced at open instead of at close) are all recorded."""
    (workdir / "job.py").write_text(
        textwrap.dedent("""
        import os
        handles = [open(f"many{i:02d}.out", "w") for i in range(24)]  # fds 3..26
        for i, h in enumerate(handles):
            h.write(f"file {i}\\n" * (i + 1))
            h.flush()
        kept = open("before-exec.out", "w")
        kept.write("written before exec")
        kept.flush()
        os.execv("/bin/sh", ["sh", "-c", "echo after > after-exec.out"])
    """)
    )
    roard.roarctl("tag", "--name", "leftopen-e2e", "--", python3(), "job.py", cwd=workdir)
    doc = roard.show("leftopen-e2e")
    assert doc["complete"], doc["lost_events"]
    outputs = by_path(doc["outputs"])
    names = [f"many{i:02d}.out" for i in range(24)] + ["before-exec.out", "after-exec.out"]
    for name in names:
        assert outputs[str(workdir / name)]["hash"] == b3(workdir / name), name


def test_nested_tag_makes_a_separate_step_run(roard: Roard, workdir: Path) -> None:
    """`roarctl tag` inside a tagged job: the inner step's I/O belongs to the inner run."""
    (workdir / "raw.txt").write_text("raw data\n")
    roarctl = str(VENV_BIN / "roarctl")
    script = f"cp raw.txt stage1.txt; {roarctl} tag --name inner-e2e -- cp stage1.txt final.txt"
    roard.roarctl("tag", "--name", "outer-e2e", "--", "sh", "-c", script, cwd=workdir)
    outer, inner = roard.show("outer-e2e"), roard.show("inner-e2e")
    assert str(workdir / "stage1.txt") in by_path(outer["outputs"])
    assert str(workdir / "final.txt") not in by_path(outer["outputs"])
    assert by_path(inner["inputs"])[str(workdir / "stage1.txt")]["hash"] == b3(
        workdir / "stage1.txt"
    )
    assert by_path(inner["outputs"])[str(workdir / "final.txt")]["hash"] == b3(
        workdir / "final.txt"
    )
    assert inner["status"] == outer["status"] == "finished"


def test_a_second_daemon_refuses_to_take_over(roard: Roard, tmp_path: Path) -> None:
    """Starting roard again on the same state dir or socket fails in one line and leaves the
    running daemon serving."""
    state = roard.root / "state"
    same_state = failed_start(state, tmp_path / "other.sock")
    assert same_state.returncode == 1 and "another roard" in same_state.stderr
    same_socket = failed_start(tmp_path / "s2", roard.socket)
    assert same_socket.returncode == 1 and "another roard is serving" in same_socket.stderr
    assert "Traceback" not in same_state.stderr + same_socket.stderr
    assert roard.roarctl("status").returncode == 0


def test_write_then_rename_records_final_names(roard: Roard, workdir: Path) -> None:
    """Atomic writes (temporary + os.replace over an existing file) and a checkpoint
    directory renamed with mv: the outputs are the final names, never the temporaries."""
    (workdir / "model.pt").write_text("old model")
    (workdir / "save.py").write_text(
        textwrap.dedent("""
        import os
        with open("model.pt.tmp", "w") as f:
            f.write("new model")
        os.replace("model.pt.tmp", "model.pt")
        os.mkdir("ckpt.tmp")
        with open("ckpt.tmp/shard0.bin", "wb") as f:
            f.write(b"shard zero")
    """)
    )
    script = f"{python3()} save.py && mv ckpt.tmp ckpt && echo scratch > tmp.log && rm tmp.log"
    roard.roarctl("tag", "--name", "rename-e2e", "--", "sh", "-c", script, cwd=workdir)
    doc = roard.show("rename-e2e")
    assert doc["complete"], doc["lost_events"]
    outputs = by_path(doc["outputs"])
    assert outputs[str(workdir / "model.pt")]["hash"] == b3(workdir / "model.pt")
    shard = workdir / "ckpt" / "shard0.bin"
    assert outputs[str(shard)]["hash"] == b3(shard)
    assert str(workdir / "model.pt.tmp") not in outputs
    assert str(workdir / "ckpt.tmp" / "shard0.bin") not in outputs
    assert [d["path"] for d in doc["deleted"]] == [str(workdir / "tmp.log")]


@pytest.mark.parametrize("mode", ["uring", "aio"])
def test_async_io_is_seen_or_marks_the_run_incomplete(
    roard: Roard, workdir: Path, mode: str
) -> None:
    """A file read only through io_uring (opened through it too) or Linux AIO, and one
    written through it: with a VFS hook (kprobe/fentry tier) both are recorded with their
    hashes; on the tracepoint tier the run says it is incomplete, and why, instead of being
    silently partial."""
    tier = json.loads(roard.roarctl("status", "--json").stdout)["tier"]
    src, dst = workdir / "src.bin", workdir / "dst.bin"
    src.write_bytes(os.urandom(200_000))
    helper = str(Path(__file__).with_name("async_io.py"))
    name = f"{mode}-e2e"
    result = roard.roarctl(
        "tag", "--name", name, "--", python3(), helper, mode, "src.bin", "dst.bin", cwd=workdir
    )
    doc = roard.show(name)
    assert dst.read_bytes() == src.read_bytes()
    outputs = by_path(doc["outputs"])
    assert outputs[str(dst)]["hash"] == b3(dst)  # created with O_TRUNC: seen on every tier
    if tier == "tracepoint":
        assert "INCOMPLETE" in result.stderr
        assert doc["complete"] is False
        why = "io_uring" if mode == "uring" else "aio"
        assert any(why in reason for reason in doc["loss_reasons"]), doc["loss_reasons"]
        assert str(src) not in by_path(doc["inputs"])  # what the tier cannot see
    else:
        assert doc["complete"], doc["loss_reasons"]
        assert by_path(doc["inputs"])[str(src)]["hash"] == b3(src)


def test_ftruncate_is_an_output(roard: Roard, workdir: Path) -> None:
    """A file only resized through its descriptor is an output."""
    (workdir / "sized.bin").write_bytes(b"0123456789" * 10)
    (workdir / "job.py").write_text(
        textwrap.dedent("""
        import os
        fd = os.open("sized.bin", os.O_WRONLY)
        os.ftruncate(fd, 10)
        os.close(fd)
    """)
    )
    roard.roarctl("tag", "--name", "truncate-e2e", "--", python3(), "job.py", cwd=workdir)
    doc = roard.show("truncate-e2e")
    assert doc["complete"], doc["loss_reasons"]
    sized = by_path(doc["outputs"])[str(workdir / "sized.bin")]
    assert sized["size"] == 10 and sized["hash"] == b3(workdir / "sized.bin")

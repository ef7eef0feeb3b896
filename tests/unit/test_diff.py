"""Tests for roard.cli.diff: `roarctl diff` on hand-built show documents."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from roard.cli import roarctl_main
from roard.cli.diff import diff_runs, lines

H1, H2, H3, H4 = (f"blake3:{c * 64}" for c in "1234")


def file(
    path: str, h: str, kind: str = "artifact", host: str = "n1", size: int = 10
) -> dict[str, Any]:
    return {"path": path, "hash": h, "size": size, "kind": kind, "host": host, "bytes_read": size}


def proc(
    argv: list[str], started: str, exe: str = "/usr/bin/python3", cwd: str = "/w"
) -> dict[str, Any]:
    return {
        "host": "n1",
        "pid": 10,
        "ppid": 1,
        "exe": exe,
        "argv": argv,
        "cwd": cwd,
        "uid": 0,
        "started_at": started,
        "ended_at": None,
        "exit_code": 0,
        "start_ticks": 5,
    }


def context() -> dict[str, Any]:
    return {
        "git": [
            {
                "root": "/w",
                "remote": "git@x:r.git",
                "branch": "main",
                "commit": "a" * 40,
                "dirty": False,
                "diff_hash": None,
                "modified": [],
            }
        ],
        "packages": {
            "python": [{"name": "numpy", "version": "1.26.0"}, {"name": "Foo_Bar", "version": "1"}],
            "system": [{"manager": "dpkg", "name": "libc6", "version": "2.36"}],
        },
        "environment": {"LR": "0.1", "HOME": "/root", "TOKEN": "<redacted>"},
        "host": {"os": "Debian 12", "kernel": "6.1.0", "cpus": 16},
    }


def run(run_id: str = "r1", host: str = "n1", **over: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "run_id": run_id,
        "name": "train",
        "status": "finished",
        "exit_code": 0,
        "host": host,
        "hosts": [host],
        "started_at": "2026-11-01T10:00:00.000000Z",
        "ended_at": "2026-11-01T10:01:00.000000Z",
        "complete": True,
        "lost_events": 0,
        "labels": {},
        "how": "spawned",
        "processes": [
            proc(["python3", "train.py", "--lr", "0.1"], "2026-11-01T10:00:00.000000Z"),
            proc(["gcc", "-c", "x.c"], "2026-11-01T10:00:01.000000Z", exe="/usr/bin/gcc"),
        ],
        "inputs": [
            file("/data/raw.csv", H1, host=host),
            file("/w/train.py", H2, host=host),
            file("/usr/lib/libc.so.6", H3, kind="system", host=host),
        ],
        "outputs": [{**file("/w/model.pt", H4, host=host), "bytes_written": 10, "read_too": False}],
        "unhashed": [],
        "deleted": [],
    }
    doc.update(over)
    return doc


def rerun(doc: dict[str, Any], run_id: str = "r2") -> dict[str, Any]:
    """A copy as another run of the same thing."""
    return {**copy.deepcopy(doc), "run_id": run_id, "started_at": "2026-11-02T10:00:00.000000Z"}


def test_identical_runs_are_the_same() -> None:
    a = run(context=context())
    d = diff_runs(a, rerun(a))
    assert d["same"] is True
    assert d["a"] == {
        "run_id": "r1",
        "name": "train",
        "started_at": a["started_at"],
        "host": "n1",
        "complete": True,
    }
    assert d["b"]["run_id"] == "r2"
    assert d["inputs"] == d["outputs"] == {"changed": [], "added": [], "removed": []}
    assert d["command"] is None
    assert not {"processes", "exit_code", "complete"} & d.keys()
    assert d["code"] == [] and d["host"] == {}
    assert d["environment"] == {"changed": [], "added": [], "removed": []}
    json.dumps(d)  # one JSON document
    assert list(lines(d))[-1] == "no differences"


def test_changed_added_removed_files() -> None:
    a = run()
    b = rerun(a)
    b["inputs"][0] = file("/data/raw.csv", H3, size=12)
    b["inputs"][1] = file("/w/other.py", H2)
    b["outputs"][0]["hash"] = H1
    d = diff_runs(a, b)
    assert d["same"] is False and d["keyed_by"] == "path"
    assert d["inputs"]["changed"] == [
        {"path": "/data/raw.csv", "a": H1, "b": H3, "size_a": 10, "size_b": 12}
    ]
    assert [f["path"] for f in d["inputs"]["added"]] == ["/w/other.py"]
    assert d["inputs"]["added"][0] == b["inputs"][1]  # whole file docs
    assert [f["path"] for f in d["inputs"]["removed"]] == ["/w/train.py"]
    assert d["outputs"]["changed"] == [
        {"path": "/w/model.pt", "a": H4, "b": H1, "size_a": 10, "size_b": 10}
    ]


def test_metadata_alone_is_no_change() -> None:
    """Same content read a different amount: not a change."""
    a = run()
    b = rerun(a)
    b["inputs"][0]["bytes_read"] = 3
    assert diff_runs(a, b)["same"] is True


def test_single_host_runs_on_different_nodes_compare_by_path() -> None:
    a = run(host="n1")
    b = rerun(run(host="n2"))
    d = diff_runs(a, b)
    assert d["keyed_by"] == "path"
    assert d["same"] is True


def test_joined_runs_key_by_host_and_path() -> None:
    a = run(hosts=["n1", "n2"])
    a["inputs"].append(file("/data/raw.csv", H1, host="n2"))
    b = rerun(a)
    b["inputs"][-1] = file("/data/raw.csv", H2, host="n2")  # only n2's copy changed
    d = diff_runs(a, b)
    assert d["keyed_by"] == "host+path"
    assert d["inputs"]["changed"] == [
        {"path": "/data/raw.csv", "host": "n2", "a": H1, "b": H2, "size_a": 10, "size_b": 10}
    ]
    # A run on one host against a joined one: n1's file matches, n2's is missing.
    d = diff_runs(run(), b)
    assert d["keyed_by"] == "host+path" and d["inputs"]["changed"] == []
    assert [(f["host"], f["path"]) for f in d["inputs"]["added"]] == [("n2", "/data/raw.csv")]
    assert "  + n2:/data/raw.csv" in list(lines(d))


def test_only_artifacts_unless_all_kinds() -> None:
    a = run()
    b = rerun(a)
    b["inputs"][2]["hash"] = H4  # a system library changed
    b["inputs"].append(file("/usr/lib/python3/x.py", H1, kind="package"))
    assert diff_runs(a, b)["same"] is True
    d = diff_runs(a, b, all_kinds=True)
    assert [c["path"] for c in d["inputs"]["changed"]] == ["/usr/lib/libc.so.6"]
    assert [f["path"] for f in d["inputs"]["added"]] == ["/usr/lib/python3/x.py"]


def test_command_processes_exit_and_completeness() -> None:
    a = run()
    b = rerun(a)
    b["processes"][0] = proc(["python3", "train.py", "--lr", "0.2"], a["started_at"], cwd="/v")
    b["processes"][1]["exe"] = "/usr/bin/clang"
    b["processes"].append(proc(["ld"], "2026-11-01T10:00:02.000000Z", exe="/usr/bin/ld"))
    b.update(exit_code=1, complete=False)
    d = diff_runs(a, b)
    assert d["command"] == {
        "a": ["python3", "train.py", "--lr", "0.1"],
        "b": ["python3", "train.py", "--lr", "0.2"],
        "cwd": {"a": "/w", "b": "/v"},
    }
    assert d["processes"] == {
        "a": 2,
        "b": 3,
        "exes_only_a": ["/usr/bin/gcc"],
        "exes_only_b": ["/usr/bin/clang", "/usr/bin/ld"],
    }
    assert d["exit_code"] == {"a": 0, "b": 1}
    assert d["complete"] == {"a": True, "b": False}
    assert d["same"] is False


def test_root_process_is_the_first_to_start() -> None:
    a = run()
    b = rerun(a)
    b["processes"].reverse()  # order of the list does not matter, start time does
    assert diff_runs(a, b)["command"] is None


def test_argv_equal_cwd_differs() -> None:
    a = run()
    b = rerun(a)
    b["processes"][0]["cwd"] = "/elsewhere"
    d = diff_runs(a, b)
    assert d["command"]["cwd"] == {"a": "/w", "b": "/elsewhere"}
    out = list(lines(d))
    assert "cwd: /w -> /elsewhere" in out
    assert not any(line.startswith("command:") for line in out)


def test_context_sections() -> None:
    a = run(context=context())
    b = rerun(a)
    cb = b["context"]
    cb["git"][0].update(commit="b" * 40, dirty=True, diff_hash=H1, modified=["train.py"])
    cb["git"].append({"root": "/lib", "branch": "dev", "commit": "c" * 40, "dirty": False})
    cb["packages"]["python"] = [
        {"name": "numpy", "version": "2.0.0"},
        {"name": "foo-bar", "version": "1"},  # the same distribution, normalized
        {"name": "torch", "version": "2.3.0"},
    ]
    cb["packages"]["system"] = []
    cb["environment"] = {"LR": "0.2", "TOKEN": "<redacted>", "CUDA_VISIBLE_DEVICES": "0"}
    cb["host"] = {"os": "Debian 12", "kernel": "6.8.0", "gpus": 1}
    d = diff_runs(a, b)
    assert d["same"] is False
    state_a = {"remote": "git@x:r.git", "branch": "main", "commit": "a" * 40}
    assert d["code"] == [
        {
            "root": "/lib",
            "a": None,
            "b": {
                "remote": None,
                "branch": "dev",
                "commit": "c" * 40,
                "dirty": False,
                "diff_hash": None,
            },
        },
        {
            "root": "/w",
            "a": {**state_a, "dirty": False, "diff_hash": None},
            "b": {**state_a, "commit": "b" * 40, "dirty": True, "diff_hash": H1},
            "modified_a": [],
            "modified_b": ["train.py"],
        },
    ]
    assert d["packages"] == {
        "python": {
            "changed": [{"name": "numpy", "a": "1.26.0", "b": "2.0.0"}],
            "added": [{"name": "torch", "version": "2.3.0"}],
            "removed": [],
        },
        "system": {
            "changed": [],
            "added": [],
            "removed": [{"manager": "dpkg", "name": "libc6", "version": "2.36"}],
        },
    }
    assert d["environment"] == {
        "changed": [{"key": "LR", "a": "0.1", "b": "0.2"}],
        "added": [{"key": "CUDA_VISIBLE_DEVICES", "value": "0"}],
        "removed": [{"key": "HOME", "value": "/root"}],
    }
    assert d["host"] == {
        "cpus": {"a": 16, "b": None},
        "gpus": {"a": None, "b": 1},
        "kernel": {"a": "6.1.0", "b": "6.8.0"},
    }
    out = list(lines(d))
    for expected in (
        "code /w: commit "
        + "a" * 40
        + " -> "
        + "b" * 40
        + f"; dirty False -> True; diff_hash None -> {H1}",
        "  modified: 0 -> 1 files",
        "packages (python): 1 changed, 1 added, 0 removed",
        "  ~ numpy 1.26.0 -> 2.0.0",
        "  + torch 2.3.0",
        "packages (system): 0 changed, 0 added, 1 removed",
        "  - libc6 2.36",
        "environment: 1 changed, 1 added, 1 removed",
        "  ~ LR=0.1 -> 0.2",
        "host kernel: 6.1.0 -> 6.8.0",
    ):
        assert expected in out


def test_context_only_when_both_have_it() -> None:
    a = run(context=context())
    b = rerun(run())
    d = diff_runs(a, b)
    assert not {"code", "packages", "environment", "host"} & d.keys()
    assert d["same"] is True
    # A section missing on one side only is left out; the others are compared.
    b = rerun(a)
    del b["context"]["environment"]
    del b["context"]["packages"]["system"]
    d = diff_runs(a, b)
    assert "environment" not in d and list(d["packages"]) == ["python"]


def test_human_lines() -> None:
    a = run()
    b = rerun(a)
    b["inputs"][0]["hash"] = H3
    b["inputs"].append(file("/data/extra.csv", H1))
    b["processes"][0]["argv"] = ["python3", "train.py", "--lr", "0.2 x"]
    b["exit_code"] = 2
    out = list(lines(diff_runs(a, b)))
    assert out == [
        f"a: run r1 train (n1, {a['started_at'][:19]}Z)",
        f"b: run r2 train (n1, {b['started_at'][:19]}Z)",
        "inputs: 1 changed, 1 added, 0 removed",
        f"  ~ /data/raw.csv  {H1[:19]}… -> {H3[:19]}…",
        "  + /data/extra.csv",
        "command: python3 train.py --lr 0.1 -> python3 train.py --lr '0.2 x'",
        "exit code: 0 -> 2",
    ]


class FakeClient:
    """show() from a dict; an unknown run raises as the real client does."""

    def __init__(self, runs: dict[str, dict[str, Any]]) -> None:
        self.runs = runs

    def show(self, run: str) -> dict[str, Any]:
        from roard.errors import NotFound

        if run not in self.runs:
            raise NotFound(f"no run {run!r}")
        return self.runs[run]


@pytest.fixture
def client(monkeypatch: pytest.MonkeyPatch) -> FakeClient:
    a = run()
    b = rerun(a)
    b["inputs"][0]["hash"] = H3
    fake = FakeClient({"r1": a, "r2": b})
    monkeypatch.setattr(roarctl_main, "_grpc_client", lambda _socket: fake)
    return fake


def test_cli_exit_status_and_json(client: FakeClient, capsys: pytest.CaptureFixture[str]) -> None:
    assert roarctl_main.main(["diff", "r1", "r2"]) == 0
    assert "inputs: 1 changed, 0 added, 0 removed" in capsys.readouterr().out
    assert roarctl_main.main(["diff", "r1", "r2", "--exit-code"]) == 1
    capsys.readouterr()
    assert roarctl_main.main(["diff", "r1", "r1", "--exit-code", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["same"] is True
    assert roarctl_main.main(["diff", "r1", "nope"]) == 1
    assert "no run 'nope'" in capsys.readouterr().err


def test_host_fact_from_none_to_falsy_is_a_difference() -> None:
    a = run(context=context())
    b = rerun(a)
    a["context"]["host"]["gpus"] = None
    b["context"]["host"]["gpus"] = 0
    d = diff_runs(a, b)
    assert d["host"] == {"gpus": {"a": None, "b": 0}} and d["same"] is False


def test_root_environment_as_show_records_it_is_compared() -> None:
    """show gives each process an env_hash into `environments`: the root processes'
    environments are compared, secrets staying redacted on both sides."""
    a, b = run("r1"), run("r2")
    for doc, lr in ((a, "0.1"), (b, "0.2")):
        doc["processes"][0]["env_hash"] = f"blake3:{lr}"
        doc["environments"] = {f"blake3:{lr}": {"LR": lr, "TOKEN": "<redacted>"}}
    diff = diff_runs(a, b)
    assert diff["environment"] == {
        "changed": [{"key": "LR", "a": "0.1", "b": "0.2"}],
        "added": [],
        "removed": [],
    }
    assert diff["same"] is False
    b["environments"] = {"blake3:0.2": {"LR": "0.1", "TOKEN": "<redacted>"}}
    assert diff_runs(a, b)["same"] is True


def dataset(path: str, h: str, files: dict[str, str], role: str = "input") -> dict[str, Any]:
    return {
        "path": path,
        "hash": h,
        "role": role,
        "size": 10 * len(files),
        "file_count": len(files),
        "host": "n1",
        "files": [{"path": p, "hash": fh, "size": 10} for p, fh in sorted(files.items())],
    }


def test_a_changed_dataset_is_reported_once_with_its_files() -> None:
    shards = {"0.bin": H1, "1.bin": H2, "2.bin": H3}
    a = run(datasets=[dataset("/data/shards", H1, shards)])
    a["inputs"] += [file(f"/data/shards/{p}", h) for p, h in shards.items()]
    b = rerun(a)
    b["inputs"] = [f for f in b["inputs"] if f["path"] != "/data/shards/2.bin"]
    b["inputs"][-1] = file("/data/shards/1.bin", H4)
    b["inputs"].append(file("/data/shards/3.bin", H3))
    b["datasets"] = [dataset("/data/shards", H2, {"0.bin": H1, "1.bin": H4, "3.bin": H3})]
    d = diff_runs(a, b)
    assert d["same"] is False
    # The shards are not listed again as inputs.
    assert d["inputs"] == {"changed": [], "added": [], "removed": []}
    (changed,) = d["datasets"]["inputs"]["changed"]
    assert (changed["path"], changed["a"], changed["b"]) == ("/data/shards", H1, H2)
    assert changed["files"]["changed"] == [{"path": "1.bin", "a": H2, "b": H4}]
    assert [f["path"] for f in changed["files"]["added"]] == ["3.bin"]
    assert [f["path"] for f in changed["files"]["removed"]] == ["2.bin"]
    assert d["datasets"]["outputs"] == {"changed": [], "added": [], "removed": []}
    text = "\n".join(lines(d))
    assert "input datasets: 1 changed, 0 added, 0 removed" in text
    assert "      ~ 1.bin" in text and "      + 3.bin" in text and "      - 2.bin" in text
    # The same datasets: no difference (documents from older collectors have none).
    assert diff_runs(a, rerun(a))["same"] is True
    assert diff_runs(run(), run())["datasets"]["inputs"]["changed"] == []

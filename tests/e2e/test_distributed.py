"""One run across hosts: two daemons (host ids node-a and node-b, separate state dirs)
stream to one collector; each tags part of a job under the same run id.

Both daemons watch the same kernel here, so node-a keeps ROARD_RUN off (it would otherwise
pick up node-b's ROARD_RUN=NAME@ID part too), and "node-b" sees the shared directory
through a bind mount at another path, as a node with its own mount point would."""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import blake3
import pytest

from roard.kernel import pins
from tests.e2e.conftest import Roard, python3, start_roard, stop_roard
from tests.e2e.test_collector import FAST_RETRY, Collector, start_collector

JOIN_TIMEOUT = 4  # seconds the collector waits for a silent host's part


@dataclass
class Cluster:
    collector: Collector
    a: Roard
    b: Roard
    shared: Path  # the shared directory, as node-a sees it
    mount_b: Path  # the same directory, as node-b sees it
    root: Path


def _config(host: str, shared: Path, env_runs: bool) -> str:
    return (
        f"env_runs = {'true' if env_runs else 'false'}\n"
        f'[artifacts]\nshared_paths = {{ "{shared}" = "lake" }}\n'
        f'{FAST_RETRY}host_id = "{host}"\n'
    )


@pytest.fixture(scope="module")
def cluster(_bpf_available: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("cluster")
    shared, mount_b = root / "shared", root / "mnt-b"
    shared.mkdir()
    mount_b.mkdir()
    subprocess.run(["mount", "--bind", str(shared), str(mount_b)], check=True)
    collector = start_collector(
        root, f"sqlite:///{root / 'registry.db'}", flags=("--join-timeout", str(JOIN_TIMEOUT))
    )
    where = ("--collector", collector.address)
    a = start_roard(root / "node-a", _config("node-a", shared, env_runs=False), where=where)
    b = start_roard(root / "node-b", _config("node-b", mount_b, env_runs=True), where=where)
    yield Cluster(collector, a, b, shared, mount_b, root)
    stop_roard(a)
    stop_roard(b)
    collector.stop()
    subprocess.run(["umount", str(mount_b)], check=True)


def b3(path: Path) -> str:
    return "blake3:" + blake3.blake3(path.read_bytes()).hexdigest()


def _until(daemon: Roard, run: str, done: Any, within: float = 60) -> dict[str, Any]:
    """`show RUN --json` once `done(doc)` holds."""
    deadline = time.monotonic() + within
    doc: dict[str, Any] = {}
    while time.monotonic() < deadline:
        shown = daemon.roarctl("show", run, "--json", check=False)
        if shown.returncode == 0:
            doc = json.loads(shown.stdout)
            if done(doc):
                return doc
        time.sleep(0.3)
    pytest.fail(f"run {run} never got there: {doc}\n{daemon.log.read_text()[-3000:]}")


def _parts(doc: dict[str, Any]) -> dict[str, str]:
    return {p["host"]: p["status"] for p in doc["parts"]}


RANK0 = """
import sys
data = open(sys.argv[1], "rb").read()
with open(sys.argv[2] + ".tmp", "wb") as f:
    f.write(b"weights of " + data)
import os
os.replace(sys.argv[2] + ".tmp", sys.argv[2])
"""

RANK1 = """
import sys
data = open(sys.argv[1], "rb").read()
open(sys.argv[2], "w").write(f"rank 1 saw {len(data)} bytes")
"""


def test_two_hosts_parts_are_one_run_linked_through_the_shared_path(
    cluster: Cluster, tmp_path: Path
) -> None:
    """node-a (roarctl tag --join --hosts 2) reads the dataset and writes the checkpoint on
    the shared directory; node-b (ROARD_RUN=NAME@ID) reads the dataset through its own
    mount point. The collector shows one run with both hosts' processes and files; a later
    run on node-b that reads the checkpoint is linked to the job through its hash."""
    job = f"job-{uuid.uuid4().hex[:8]}"
    data = cluster.shared / "data.bin"
    data.write_bytes(b"dataset " * 1000)
    ckpt = cluster.shared / "ckpt.pt"
    local_b = tmp_path / "rank1.txt"

    tagged = cluster.a.roarctl(
        "tag", "--join", job, "--hosts", "2", "--name", "train", "--",
        python3(), "-c", RANK0, str(data), str(ckpt),
    )  # fmt: skip
    assert tagged.returncode == 0
    assert f"this host's part of run {job} (train) is recorded" in tagged.stderr
    # node-a's part is done, node-b has not joined yet: the run waits for it.
    doc = cluster.a.show(job)
    assert (doc["status"], _parts(doc), doc["join_hosts"]) == ("running", {"node-a": "finished"}, 2)

    env = {"ROARD_RUN": f"train@{job}", "PATH": "/usr/bin:/bin"}
    subprocess.run(
        [python3(), "-c", RANK1, str(cluster.mount_b / "data.bin"), str(local_b)],
        env=env,
        check=True,
    )
    doc = _until(cluster.b, job, lambda d: d["status"] == "finished")
    assert _parts(doc) == {"node-a": "finished", "node-b": "finished"}
    assert (doc["complete"], doc["exit_code"], doc["name"]) == (True, 0, "train")
    assert doc["hosts"] == ["node-a", "node-b"]
    assert {p["host"] for p in doc["processes"]} == {"node-a", "node-b"}
    human = cluster.a.roarctl("show", job).stdout
    assert "on node-a: finished, exit 0" in human and "on node-b: finished" in human
    assert f"node-b:{local_b}" in human

    inputs = {(f["host"], f["path"]): f for f in doc["inputs"]}
    lake = "shared:lake/data.bin"
    assert inputs[("node-a", str(data))]["location"] == lake
    assert inputs[("node-b", str(cluster.mount_b / "data.bin"))]["location"] == lake
    assert inputs[("node-a", str(data))]["hash"] == b3(data)
    outputs = {(f["host"], f["path"]): f for f in doc["outputs"]}
    assert outputs[("node-a", str(ckpt))]["hash"] == b3(ckpt)
    assert outputs[("node-a", str(ckpt))]["location"] == "shared:lake/ckpt.pt"
    assert outputs[("node-b", str(local_b))]["hash"] == b3(local_b)
    assert "location" not in outputs[("node-b", str(local_b))]  # a local file
    assert not any(f["path"].endswith(".tmp") for f in doc["outputs"])

    # A later job on node-b reads the checkpoint at node-b's path: linked to the job.
    seen_b = cluster.mount_b / "ckpt.pt"
    cluster.b.roarctl("tag", "--name", "eval", "--", "cat", str(seen_b))
    up = json.loads(cluster.b.roarctl("lineage", str(seen_b), "--up", "--json").stdout)
    assert job in {r["run_id"] for r in up["runs"]}
    # Looked up by node-a's path, the same file: both hosts' paths, one location.
    found = json.loads(cluster.a.roarctl("artifact", str(ckpt), "--json").stdout)
    paths = {(p["host"], p["path"]) for p in found["artifacts"][0]["paths"]}
    assert paths == {("node-a", str(ckpt)), ("node-b", str(seen_b))}
    listed = json.loads(cluster.b.roarctl("runs", "--host", "node-b", "--json").stdout)
    assert job in {r["run_id"] for r in listed}


def test_a_host_that_dies_mid_part_times_out_and_the_run_says_so(
    cluster: Cluster, tmp_path: Path
) -> None:
    """node-c joins, then its daemon is killed for good: after the collector's join
    timeout the run is finished, incomplete, and names the host."""
    job = f"job-{uuid.uuid4().hex[:8]}"
    c = start_roard(
        cluster.root / f"node-c-{job}",
        _config("node-c", cluster.shared, env_runs=False),
        where=("--collector", cluster.collector.address),
    )
    sleeper = subprocess.Popen(["sleep", "600"])
    try:
        c.roarctl("tag", "--join", job, "--pid", str(sleeper.pid))
        cluster.a.roarctl("tag", "--join", job, "--", "true")
        doc = _until(cluster.a, job, lambda d: len(d["parts"]) == 2)
        assert doc["status"] == "running"
        c.proc.kill()
        c.proc.wait(30)
        doc = _until(cluster.a, job, lambda d: d["status"] == "finished", within=30 * JOIN_TIMEOUT)
    finally:
        sleeper.kill()
        sleeper.wait()
        pins.remove(c.root / "state")
    assert _parts(doc) == {"node-a": "finished", "node-c": "timed_out"}
    assert doc["complete"] is False
    assert any("host node-c never finished" in r for r in doc["loss_reasons"])


@pytest.mark.parametrize(
    ("args", "why"),
    [
        (("--join", "bad/id"), "not allowed"),
        (("--join", ""), "must not be empty"),
        (("--hosts", "2"), "--hosts goes with --join"),
    ],
)
def test_bad_join_arguments_are_refused(cluster: Cluster, args: tuple[str, ...], why: str) -> None:
    """Nothing runs, and the message says what to fix."""
    result = cluster.a.roarctl("tag", *args, "--", "true", check=False)
    assert result.returncode != 0
    assert why in result.stderr


def test_untag_by_shared_id_ends_every_part_on_this_host(cluster: Cluster) -> None:
    """Two parts on one host (two tasks of a job on one node): `roarctl untag RUN_ID`
    ends both; the run is then finished with both parts."""
    job = f"job-{uuid.uuid4().hex[:8]}"
    sleepers = [subprocess.Popen(["sleep", "600"]) for _ in range(2)]
    try:
        for proc in sleepers:
            printed = cluster.a.roarctl("tag", "--join", job, "--pid", str(proc.pid)).stdout
            assert printed.strip() == job  # the shared id, not the part
        cluster.a.roarctl("untag", job)
        doc = _until(cluster.a, job, lambda d: d["status"] == "finished")
    finally:
        for proc in sleepers:
            proc.kill()
            proc.wait()
    assert [p["host"] for p in doc["parts"]] == ["node-a", "node-a"]
    assert len({p["part"] for p in doc["parts"]}) == 2
    assert {p["pid"] for p in doc["processes"]} == {p.pid for p in sleepers}

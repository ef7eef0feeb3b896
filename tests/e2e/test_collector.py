"""A daemon streaming to a standalone collector (SQLite and PostgreSQL): lineage across
runs, queries through roarctl, and nothing lost when the collector or the daemon dies."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import blake3
import pytest

from tests.e2e.conftest import VENV_BIN, Roard, python3, start_roard, stop_roard
from tests.pki import make_pki
from tests.unit.test_export import openlineage_errors, prov_errors


@dataclass
class Collector:
    """A `roard collector` process."""

    address: str
    db: str
    log: Path
    proc: subprocess.Popen[bytes]

    def stop(self, sig: int = signal.SIGTERM) -> None:
        self.proc.send_signal(sig)
        self.proc.wait(30)


def start_collector(
    root: Path, db: str, address: str | None = None, flags: tuple[str, ...] = ()
) -> Collector:
    """Start `roard collector` (on a socket under `root` unless `address` is given) and
    wait until it listens."""
    address = address or f"unix:{root / 'collector.sock'}"
    log = root / f"collector-{time.monotonic_ns()}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(VENV_BIN / "roard"), "collector", "--listen", address, "--db", db, *flags],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"collector exited {proc.returncode}:\n{log.read_text()}")
        if "listening on" in log.read_text():
            return Collector(address, db, log, proc)
        time.sleep(0.1)
    proc.kill()
    pytest.fail(f"collector did not start:\n{log.read_text()}")


# Outages in these tests last seconds: retry often, and do not keep roarctl waiting long.
FAST_RETRY = """
[collector]
delivery_wait_seconds = 2
reconnect_max_seconds = 1
"""


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'registry.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def remote(_bpf_available: None, tmp_path: Path, db_url: str) -> Iterator[tuple[Collector, Roard]]:
    """A collector and a daemon that streams to it."""
    collector = start_collector(tmp_path, db_url)
    daemon = start_roard(tmp_path / "host", FAST_RETRY, where=("--collector", collector.address))
    yield collector, daemon
    stop_roard(daemon)
    if collector.proc.poll() is None:
        collector.stop()


def b3(path: Path) -> str:
    return "blake3:" + blake3.blake3(path.read_bytes()).hexdigest()


PREP = """
import sys
rows = open("raw.csv").read().splitlines()
with open("clean.csv", "w") as f:
    f.write("\\n".join(r.strip() for r in rows if r.strip()) + "\\n")
"""

TRAIN = """
import os
data = open("clean.csv").read()
with open("model.tmp", "w") as f:
    f.write(f"model of {len(data)} bytes")
os.replace("model.tmp", "model.bin")
"""


def test_pipeline_lineage_through_a_collector(
    remote: tuple[Collector, Roard], workdir: Path
) -> None:
    """prepare -> train under one daemon; the collector answers show, runs by label,
    artifact by hash prefix, lineage up and down, run graph and exports."""
    _, daemon = remote
    (workdir / "raw.csv").write_text("a,1\n\nb,2\n")
    (workdir / "prep.py").write_text(PREP)
    (workdir / "train.py").write_text(TRAIN)
    daemon.roarctl(
        "tag", "--name", "prep", "--label", "stage=prep", "--", python3(), "prep.py", cwd=workdir
    )
    daemon.roarctl("tag", "--name", "train", "--", python3(), "train.py", cwd=workdir)

    train = daemon.show("train")
    assert {i["path"]: i["hash"] for i in train["inputs"] if i["kind"] == "artifact"} == {
        str(workdir / "clean.csv"): b3(workdir / "clean.csv"),
    }
    assert {i["path"]: i["hash"] for i in train["inputs"] if i["kind"] == "code"} == {
        str(workdir / "train.py"): b3(workdir / "train.py"),
    }
    assert [o["path"] for o in train["outputs"]] == [str(workdir / "model.bin")]
    assert [(c["op"], c["path"], c["new_path"]) for c in train["path_changes"]] == [
        ("rename", str(workdir / "model.tmp"), str(workdir / "model.bin"))
    ]

    labelled = json.loads(daemon.roarctl("runs", "--label", "stage=prep", "--json").stdout)
    assert [r["name"] for r in labelled] == ["prep"]

    clean = b3(workdir / "clean.csv")
    found = json.loads(daemon.roarctl("artifact", clean[:20], "--json").stdout)
    (artifact,) = found["artifacts"]
    assert [r["name"] for r in artifact["produced_by"]] == ["prep"]
    assert [r["name"] for r in artifact["consumed_by"]] == ["train"]

    up = json.loads(
        daemon.roarctl("lineage", str(workdir / "model.bin"), "--json", cwd=workdir).stdout
    )
    assert up["root"]["hash"] == b3(workdir / "model.bin")
    assert {r["name"] for r in up["runs"]} == {"prep", "train"}
    edges = {(e["from"], e["to"], e["kind"]) for e in up["edges"]}
    runs = {r["name"]: r["run_id"] for r in up["runs"]}
    assert (b3(workdir / "raw.csv"), runs["prep"], "used") in edges
    assert (runs["prep"], clean, "generated") in edges
    assert (clean, runs["train"], "used") in edges
    assert (runs["train"], b3(workdir / "model.bin"), "generated") in edges

    down = json.loads(daemon.roarctl("lineage", "raw.csv", "--down", "--json", cwd=workdir).stdout)
    assert {r["name"] for r in down["runs"]} == {"prep", "train"}
    shallow = json.loads(
        daemon.roarctl("lineage", "raw.csv", "--down", "--depth", "1", "--json", cwd=workdir).stdout
    )
    assert {r["name"] for r in shallow["runs"]} == {"prep"}

    tree = daemon.roarctl("lineage", "model.bin", cwd=workdir).stdout
    assert "upstream" in tree and " prep " in tree and " train " in tree

    graph = json.loads(daemon.roarctl("graph", "prep", "--json").stdout)
    assert {r["name"] for r in graph["runs"]} == {"prep", "train"}

    lines = daemon.roarctl("export", "train", "--format", "openlineage").stdout.splitlines()
    events = [json.loads(line) for line in lines]
    assert [e["eventType"] for e in events] == ["START", "COMPLETE"]
    for event in events:
        assert openlineage_errors(event) == []
    versions = {d["name"]: d["facets"]["version"]["datasetVersion"] for d in events[1]["outputs"]}
    assert versions == {str(workdir / "model.bin"): b3(workdir / "model.bin")}
    prov = json.loads(daemon.roarctl("export", "train", "--format", "prov").stdout)
    assert prov_errors(prov) == []


def test_collector_outage_loses_nothing(remote: tuple[Collector, Roard], workdir: Path) -> None:
    """With the collector killed, a tagged job still runs and exits with its own status;
    roarctl says the run is spooled, not stored; once a collector is back on the same
    database, the run arrives complete."""
    collector, daemon = remote
    collector.stop(signal.SIGKILL)
    (workdir / "in.txt").write_text("input during the outage\n")
    job = "import shutil; shutil.copyfile('in.txt', 'out.txt'); raise SystemExit(3)"
    result = daemon.roarctl(
        "tag", "--name", "offline", "--", python3(), "-c", job, cwd=workdir, check=False
    )
    assert result.returncode == 3
    assert "spooled" in result.stderr
    status = json.loads(daemon.roarctl("status", "--json").stdout)
    assert status["collector"]["connected"] is False
    assert status["spool"]["records"] > 0

    back = start_collector(Path(collector.address.removeprefix("unix:")).parent, collector.db)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            shown = daemon.roarctl("show", "offline", "--json", check=False)
            if shown.returncode == 0 and json.loads(shown.stdout)["status"] == "finished":
                break
            time.sleep(0.5)
        doc = daemon.show("offline")
    finally:
        back.stop()
    assert doc["exit_code"] == 3 and doc["complete"] is True
    assert {o["path"]: o["hash"] for o in doc["outputs"]} == {
        str(workdir / "out.txt"): b3(workdir / "out.txt")
    }
    assert json.loads(daemon.roarctl("status", "--json").stdout)["spool"]["records"] == 0


def test_daemon_killed_mid_run_keeps_what_it_saw(
    remote: tuple[Collector, Roard], workdir: Path, tmp_path: Path
) -> None:
    """SIGKILL the daemon during a tagged run: after restart the run is closed as
    incomplete, with what was spooled before the kill."""
    collector, daemon = remote
    job = subprocess.Popen(
        [python3(), "-c", "import time; open('early.txt','w').write('x'); time.sleep(60)"],
        cwd=workdir,
    )
    try:
        run_id = daemon.roarctl("tag", "--pid", str(job.pid), "--name", "cut").stdout.strip()
        daemon.proc.send_signal(signal.SIGKILL)
        daemon.proc.wait(30)
    finally:
        job.kill()
        job.wait()
    again = start_roard(tmp_path / "host", FAST_RETRY, where=("--collector", collector.address))
    try:
        deadline = time.monotonic() + 30
        doc: dict[str, Any] = {}
        while time.monotonic() < deadline:
            doc = again.show(run_id)
            if doc["status"] == "finished":
                break
            time.sleep(0.3)
        assert doc["status"] == "finished" and doc["complete"] is False
        assert any("roard stopped" in r for r in doc["loss_reasons"])
        assert [p["pid"] for p in doc["processes"]] == [job.pid]
    finally:
        stop_roard(again)
        daemon.proc = again.proc  # the fixture's teardown stops the new one (already stopped)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_daemon_to_collector_over_mutual_tls(
    _bpf_available: None, tmp_path: Path, workdir: Path
) -> None:
    """The [collector] section with a CA and a client certificate: the daemon proves its
    host id with its certificate over TCP, and queries go over the same channel."""
    (tmp_path / "pki").mkdir()
    pki = make_pki(tmp_path / "pki")
    server, client = pki.server, pki.clients["host-a"]
    assert server.cert and server.key and client.cert and client.key
    address = f"127.0.0.1:{free_port()}"
    flags = ("--tls-cert", str(server.cert), "--tls-key", str(server.key))
    flags += ("--tls-ca", str(pki.ca), "--mtls")
    collector = start_collector(tmp_path, f"sqlite:///{tmp_path / 'r.db'}", address, flags)
    config = f"""
[collector]
address = "{address}"
host_id = "host-a"
tls_ca = "{pki.ca}"
tls_cert = "{client.cert}"
tls_key = "{client.key}"
"""
    daemon = start_roard(tmp_path / "host", config, where=())
    try:
        (workdir / "in.txt").write_text("over TLS\n")
        daemon.roarctl("tag", "--name", "tls", "--", "cp", "in.txt", "out.txt", cwd=workdir)
        doc = daemon.show("tls")
        assert doc["host"] == "host-a" and doc["complete"] is True
        assert [o["hash"] for o in doc["outputs"]] == [b3(workdir / "out.txt")]
        status = json.loads(daemon.roarctl("status", "--json").stdout)
        assert status["collector"]["connected"] is True
        assert status["collector"]["address"] == address
    finally:
        stop_roard(daemon)
        collector.stop()

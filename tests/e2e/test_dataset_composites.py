"""End to end: directories of many files become datasets with a tree hash, under a private
roard; their hashes link runs in the lineage and `roarctl diff` compares them."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import blake3

from tests.e2e.conftest import Roard, python3
from tests.e2e.test_observe import b3

READ = textwrap.dedent("""
    import json, os, sys
    json.load(open("config.json"))
    for name in sorted(os.listdir(sys.argv[1])):
        open(os.path.join(sys.argv[1], name), "rb").read()
""")
WRITE = textwrap.dedent("""
    import os
    os.makedirs("ckpt", exist_ok=True)
    for i in range(10):
        with open(f"ckpt/layer-{i}.pt", "wb") as out:
            out.write(bytes([i]) * 100)
""")


def _tree_hash(directory: Path) -> str:
    """The documented tree hash, recomputed from the files themselves."""
    lines = sorted(f"{p.name}\0{b3(p)}\n".encode() for p in directory.iterdir())
    return "blake3:" + blake3.blake3(b"".join(lines)).hexdigest()


def test_shards_and_checkpoints_are_datasets(roard: Roard, workdir: Path) -> None:
    (workdir / "read.py").write_text(READ)
    (workdir / "write.py").write_text(WRITE)
    (workdir / "config.json").write_text('{"lr": 0.1}')
    shards = workdir / "data" / "shards"
    shards.mkdir(parents=True)
    for i in range(20):
        (shards / f"part-{i:03}.bin").write_bytes(f"shard {i}\n".encode() * 50)

    roard.roarctl(
        "tag", "--name", "ds-read-1", "--", python3(), "read.py", str(shards), cwd=workdir
    )
    first = roard.finished("ds-read-1")
    (dataset,) = first["datasets"]
    assert (dataset["path"], dataset["role"], dataset["file_count"]) == (str(shards), "input", 20)
    assert dataset["hash"] == _tree_hash(shards)
    assert {f["path"] for f in dataset["files"]} == {p.name for p in shards.iterdir()}
    assert dataset["size"] == sum(p.stat().st_size for p in shards.iterdir())
    # The files keep their own records; the config is read, and in no dataset.
    inputs = {f["path"] for f in first["inputs"]}
    assert str(workdir / "config.json") in inputs and str(shards / "part-007.bin") in inputs
    assert "datasets:" in roard.roarctl("show", "ds-read-1").stdout

    # A checkpoint directory written, then read back: the dataset hash links the runs.
    roard.roarctl("tag", "--name", "ds-write", "--", python3(), "write.py", cwd=workdir)
    ckpt = workdir / "ckpt"
    (written,) = roard.finished("ds-write")["datasets"]
    assert (written["path"], written["role"], written["file_count"]) == (str(ckpt), "output", 10)
    assert written["hash"] == _tree_hash(ckpt)
    roard.roarctl("tag", "--name", "ds-load", "--", python3(), "read.py", str(ckpt), cwd=workdir)
    (loaded,) = roard.finished("ds-load")["datasets"]
    assert loaded["hash"] == written["hash"]
    lineage = json.loads(roard.roarctl("lineage", written["hash"], "--both", "--json").stdout)
    names = {r["run_id"]: r["name"] for r in lineage["runs"]}
    edges = {
        (names.get(e["from"], e["from"]), names.get(e["to"], e["to"])) for e in lineage["edges"]
    }
    assert {("ds-write", written["hash"]), (written["hash"], "ds-load")} <= edges

    # One shard changed: diff reports the dataset once, with that shard.
    (shards / "part-011.bin").write_bytes(b"changed\n")
    roard.roarctl(
        "tag", "--name", "ds-read-2", "--", python3(), "read.py", str(shards), cwd=workdir
    )
    second = roard.finished("ds-read-2")
    diff = json.loads(roard.roarctl("diff", first["run_id"], second["run_id"], "--json").stdout)
    (changed,) = diff["datasets"]["inputs"]["changed"]
    assert (changed["path"], changed["a"], changed["b"]) == (
        str(shards),
        dataset["hash"],
        _tree_hash(shards),
    )
    assert [f["path"] for f in changed["files"]["changed"]] == ["part-011.bin"]
    assert changed["files"]["added"] == changed["files"]["removed"] == []
    assert diff["inputs"]["changed"] == []  # the shard is listed under its dataset only

"""Tests for roard.cli.render: lineage graphs from a real registry as tree, DOT, Mermaid."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from roard.cli import render
from roard.collector.sqlite import SqliteStore
from roard.v1 import records_pb2 as pb

H_RAW, H_CLEAN, H_MODEL = (f"blake3:{c * 64}" for c in "abc")


def rec(run: str, n: int, **body: Any) -> pb.Record:
    return pb.Record(id=f"{run}/{n}", seq=n, run_id=run, time=1_795_000_000.0 + n, **body)


def access(run: str, n: int, path: str, role: pb.Role, h: str) -> pb.Record:
    return rec(run, n, file_access=pb.FileAccess(path=path, role=role, hash=h, kind="artifact"))


@pytest.fixture
def doc(tmp_path: Path) -> dict[str, Any]:
    """prep: raw -> clean; train: clean -> model (a path with quotes and angle brackets)."""
    odd = '/out/"model" <v1>.bin'
    with SqliteStore(tmp_path / "r.db") as store:
        store.ingest(
            [
                rec("prep", 1, run_tagged=pb.RunTagged(name="prep", host="h", started_at=1.0)),
                access("prep", 2, "/data/raw.csv", pb.ROLE_INPUT, H_RAW),
                access("prep", 3, "/data/clean.csv", pb.ROLE_OUTPUT, H_CLEAN),
                rec("train", 4, run_tagged=pb.RunTagged(name="train", host="h", started_at=2.0)),
                access("train", 5, "/data/clean.csv", pb.ROLE_INPUT, H_CLEAN),
                access("train", 6, odd, pb.ROLE_OUTPUT, H_MODEL),
            ]
        )
        return store.lineage(H_MODEL, up=True, down=False, depth=5)


def test_tree_walks_up_from_the_root(doc: dict[str, Any]) -> None:
    lines = list(render.tree(doc))
    assert lines[0] == "upstream (what produced it):"
    assert lines[1].strip().startswith(H_MODEL[:19])
    assert "train" in lines[2] and "clean.csv" in lines[3] and "prep" in lines[4]
    assert "raw.csv" in lines[5]


def _graphviz_missing() -> bool:
    if shutil.which("dot") is not None:
        return False
    if os.environ.get("ROARD_REQUIRE_BPF") == "1":  # CI installs it (setup.sh --dev)
        pytest.fail("graphviz `dot` is missing: run deploy/setup.sh --dev")
    return True


def test_dot_is_valid_graphviz(doc: dict[str, Any]) -> None:
    """Graphviz itself accepts the output (quotes and brackets in paths are escaped)."""
    if _graphviz_missing():
        pytest.skip("graphviz not installed")
    text = "\n".join(render.dot(doc))
    svg = subprocess.run(["dot", "-Tsvg"], input=text, capture_output=True, text=True, check=True)
    assert svg.stdout.count('class="node"') == 5
    assert svg.stdout.count('class="edge"') == 4


def test_dot_shapes_and_edges(doc: dict[str, Any]) -> None:
    text = "\n".join(render.dot(doc))
    assert text.count("shape=box") == 2 and text.count("shape=ellipse") == 3
    assert f'"{H_CLEAN}" -> "train";' in text and f'"prep" -> "{H_CLEAN}";' in text
    assert '\\"model\\" <v1>.bin' in text


def test_mermaid_ids_edges_and_escaping(doc: dict[str, Any]) -> None:
    lines = list(render.mermaid(doc))
    assert lines[0] == "flowchart LR"
    nodes = [line for line in lines if re.match(r"  [ra]\d+[\[(]", line)]
    edges = [line for line in lines if "-->" in line]
    assert len(nodes) == 5 and len(edges) == 4
    assert all(re.fullmatch(r"  [ra]\d+ --> [ra]\d+", e) for e in edges)
    model = next(line for line in nodes if "bin" in line)
    assert "#quot;model#quot; #lt;v1#gt;.bin" in model and '"model"' not in model

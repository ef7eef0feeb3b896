"""The committed protobuf code in roard/v1/ is what proto/generate.sh produces now."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
COMMITTED = REPO / "roard" / "v1"
PATTERNS = ("*_pb2.py", "*_pb2_grpc.py", "*.pyi")


def _generated(tmp_path: Path) -> Path:
    """Run proto/generate.sh into tmp_path; return the folder holding roard/v1 output."""
    pytest.importorskip("grpc_tools")
    env = {**os.environ, "PYTHON": sys.executable}
    subprocess.run(
        ["bash", str(REPO / "proto" / "generate.sh"), str(tmp_path)],
        check=True,
        env=env,
        capture_output=True,
    )
    return tmp_path / "roard" / "v1"


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for pattern in PATTERNS for p in folder.glob(pattern)}


def test_generated_code_is_up_to_date(tmp_path: Path) -> None:
    """Regenerating from proto/ gives byte-identical files (run proto/generate.sh if not)."""
    fresh = _files(_generated(tmp_path))
    committed = _files(COMMITTED)
    assert sorted(fresh) == sorted(committed)
    stale = [name for name in fresh if fresh[name] != committed[name]]
    assert not stale, f"stale generated files {stale}: run proto/generate.sh"


def test_every_proto_has_generated_code() -> None:
    """Each .proto under proto/roard/v1 has its _pb2, _pb2_grpc and .pyi module committed."""
    for proto in (REPO / "proto" / "roard" / "v1").glob("*.proto"):
        for suffix in ("_pb2.py", "_pb2_grpc.py", "_pb2.pyi"):
            assert (COMMITTED / f"{proto.stem}{suffix}").is_file()

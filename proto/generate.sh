#!/usr/bin/env bash
# Regenerate roard/v1/*_pb2*.py from proto/roard/v1/*.proto (needs grpcio-tools: pip install -e '.[dev]').
# tests/unit/test_proto.py fails when the committed output is stale.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-.}
python=${PYTHON:-.venv/bin/python}
"$python" -m grpc_tools.protoc -Iproto --python_out="$out" --grpc_python_out="$out" --pyi_out="$out" proto/roard/v1/*.proto

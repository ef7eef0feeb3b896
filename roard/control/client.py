"""roarctl's side of the control socket, over gRPC (tagging uses roard.control.plain)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import grpc

from roard.collector.filters import RunFilter
from roard.control.address import check_present, not_running
from roard.control.errors import from_status
from roard.v1 import MAX_MESSAGE_BYTES, control_pb2_grpc
from roard.v1 import control_pb2 as pb


class ControlClient:
    """Calls the daemon; every failure becomes a RoardError that says what to do."""

    def __init__(self, socket: Path) -> None:
        self._socket = socket
        # Reconnect quickly: a restarted roard is back within seconds (see tag -- CMD).
        self._channel = grpc.insecure_channel(
            f"unix:{socket}",
            options=[
                ("grpc.initial_reconnect_backoff_ms", 200),
                ("grpc.max_reconnect_backoff_ms", 1000),
                # `show` of a run of 10,000 processes is megabytes (gRPC's default: 4 MiB).
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ],
        )
        self._stub = control_pb2_grpc.ControlStub(self._channel)  # type: ignore[no-untyped-call]

    def _call(self, method: str, request: Any, timeout: float | None = 30.0) -> Any:
        check_present(self._socket)
        try:
            return getattr(self._stub, method)(request, timeout=timeout)
        except grpc.RpcError as exc:
            code = exc.code()
            if code == grpc.StatusCode.UNAVAILABLE:
                raise not_running(self._socket) from None
            raise from_status(code, exc.details() or str(code)) from None

    def _json(self, method: str, request: Any, timeout: float | None = 30.0) -> Any:
        return json.loads(self._call(method, request, timeout).json)

    def untag(self, run: str) -> dict[str, Any]:
        """Stop tracking a run and finalize it."""
        doc: dict[str, Any] = self._json("Untag", pb.RunRef(run=run), None)
        return doc

    def show(self, run: str) -> dict[str, Any]:
        """A run by id, or a name meaning its latest run."""
        doc: dict[str, Any] = self._json("Show", pb.RunRef(run=run))
        return doc

    def runs(self, where: RunFilter) -> list[dict[str, Any]]:
        """Runs visible to the caller, newest first, filtered by every criterion given."""
        request = pb.RunsRequest(
            name=where.name or "",
            limit=where.limit,
            labels=dict(where.labels or {}),
            host=where.host or "",
            since=where.since or 0,
            until=where.until or 0,
            link=where.link or "",
            project=where.project or "",
        )
        doc: list[dict[str, Any]] = self._json("Runs", request)
        return doc

    def artifact(self, query: str, host: str | None = None) -> dict[str, Any]:
        """Artifacts by hash, hash prefix or absolute path, with their runs."""
        doc: dict[str, Any] = self._json(
            "Artifact", pb.LineageRequest(query=query, host=host or "")
        )
        return doc

    def lineage(
        self,
        query: str,
        up: bool,
        down: bool,
        depth: int = 0,
        host: str | None = None,
        max_nodes: int = 0,
    ) -> dict[str, Any]:
        """The lineage graph around an artifact."""
        request = pb.LineageRequest(
            query=query, host=host or "", up=up, down=down, depth=depth, max_nodes=max_nodes
        )
        doc: dict[str, Any] = self._json("Lineage", request)
        return doc

    def run_graph(self, run: str, depth: int = 0, max_nodes: int = 0) -> dict[str, Any]:
        """A run's DAG of upstream producers and downstream consumers."""
        request = pb.RunRef(run=run, depth=depth, max_nodes=max_nodes)
        doc: dict[str, Any] = self._json("RunGraph", request)
        return doc

    def export(self, run: str, fmt: str) -> Any:
        """A run as OpenLineage events or a PROV-JSON document."""
        return self._json("Export", pb.ExportRequest(run=run, format=fmt))

    def status(self) -> dict[str, Any]:
        """Daemon health, tier and counters."""
        doc: dict[str, Any] = self._json("Status", pb.Empty())
        return doc

    def close(self) -> None:
        """Close the channel."""
        self._channel.close()

"""Asking the collector: the queries behind `roarctl show/runs/lineage/export`."""

from __future__ import annotations

import json
from typing import Any

import grpc

from roard.collector.filters import RunFilter
from roard.collector.transport import CollectorTarget, client_channel
from roard.control.errors import from_status
from roard.errors import CollectorUnavailable
from roard.v1 import collector_pb2 as pb
from roard.v1 import collector_pb2_grpc

_TIMEOUT = 30.0


class CollectorClient:
    """Query calls to one collector; failures become RoardErrors that say what to do."""

    def __init__(self, target: CollectorTarget) -> None:
        self._target = target
        self._channel = client_channel(target)
        self._stub = collector_pb2_grpc.CollectorStub(self._channel)  # type: ignore[no-untyped-call]

    def _call(self, method: str, request: Any) -> Any:
        try:
            reply = getattr(self._stub, method)(request, timeout=_TIMEOUT)
        except grpc.RpcError as exc:
            code = exc.code()
            if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                raise CollectorUnavailable(
                    f"the collector at {self._target.address} does not answer ({exc.details()}):"
                    " records stay spooled until it is back; check `roarctl status`"
                ) from None
            raise from_status(code, exc.details() or str(code)) from None
        return json.loads(reply.json)

    def show(self, run: str, uid: int | None = None) -> dict[str, Any]:
        """The `roarctl show` document of a run (id, or a name meaning its latest run)."""
        result: dict[str, Any] = self._call("ShowRun", pb.RunQuery(run=run, uid=uid or 0))
        return result

    def summary(self, run_id: str, uid: int | None = None) -> dict[str, Any]:
        """A run's header fields and file counts by kind."""
        result: dict[str, Any] = self._call("RunSummary", pb.RunQuery(run=run_id, uid=uid or 0))
        return result

    def runs(self, where: RunFilter, uid: int | None = None) -> list[dict[str, Any]]:
        """Run summaries, newest first, filtered by every criterion `where` gives."""
        query = pb.RunsQuery(
            name=where.name or "",
            labels=dict(where.labels or {}),
            host=where.host or "",
            since=where.since or 0,
            until=where.until or 0,
            limit=where.limit,
            uid=uid or 0,
            link=where.link or "",
            project=where.project or "",
        )
        result: list[dict[str, Any]] = self._call("ListRuns", query)
        return result

    def artifact(
        self, query: str, host: str | None = None, uid: int | None = None
    ) -> dict[str, Any]:
        """Artifacts matching a hash, hash prefix or path."""
        request = pb.ArtifactQuery(query=query, host=host or "", uid=uid or 0)
        result: dict[str, Any] = self._call("FindArtifact", request)
        return result

    def lineage(
        self,
        query: str,
        up: bool,
        down: bool,
        depth: int = 0,
        host: str | None = None,
        uid: int | None = None,
        max_nodes: int = 0,
    ) -> dict[str, Any]:
        """The lineage graph around an artifact."""
        request = pb.LineageQuery(
            query=query,
            host=host or "",
            up=up,
            down=down,
            depth=depth,
            uid=uid or 0,
            max_nodes=max_nodes,
        )
        result: dict[str, Any] = self._call("Lineage", request)
        return result

    def run_graph(
        self, run: str, uid: int | None = None, depth: int = 0, max_nodes: int = 0
    ) -> dict[str, Any]:
        """A run's DAG."""
        request = pb.RunQuery(run=run, uid=uid or 0, depth=depth, max_nodes=max_nodes)
        result: dict[str, Any] = self._call("RunGraph", request)
        return result

    def export(self, run: str, fmt: str, uid: int | None = None) -> Any:
        """A run as OpenLineage events ("openlineage") or a PROV-JSON document ("prov")."""
        return self._call("Export", pb.ExportQuery(run=run, format=fmt, uid=uid or 0))

    def close(self) -> None:
        """Closes the channel."""
        self._channel.close()

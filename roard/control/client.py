"""roarctl's side of the control socket."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import grpc

from roard.control.errors import from_status
from roard.errors import DaemonUnavailable
from roard.v1 import control_pb2 as pb
from roard.v1 import control_pb2_grpc


class ControlClient:
    """Calls the daemon; every failure becomes a RoardError that says what to do."""

    def __init__(self, socket: Path) -> None:
        self._socket = socket
        self._channel = grpc.insecure_channel(f"unix:{socket}")
        self._stub = control_pb2_grpc.ControlStub(self._channel)  # type: ignore[no-untyped-call]

    def _call(self, method: str, request: Any, timeout: float | None = 30.0) -> Any:
        try:
            present = self._socket.exists()
        except PermissionError:
            raise DaemonUnavailable(
                f"cannot reach {self._socket}: permission denied on a directory above it; "
                "ask an administrator to make it searchable, or use another ROARD_SOCKET"
            ) from None
        if not present:
            raise DaemonUnavailable(self._unavailable())
        try:
            return getattr(self._stub, method)(request, timeout=timeout)
        except grpc.RpcError as exc:
            code = exc.code()
            if code == grpc.StatusCode.UNAVAILABLE:
                raise DaemonUnavailable(self._unavailable()) from None
            raise from_status(code, exc.details() or str(code)) from None

    def _unavailable(self) -> str:
        return (
            f"roard is not running (nothing answers on {self._socket}): start it with "
            "`sudo roard run --embedded`, or point ROARD_SOCKET at its socket"
        )

    def tag(self, pid: int, name: str | None, labels: dict[str, str], spawned: bool) -> str:
        """Tag `pid` and its descendants as a new run; returns the run id."""
        reply = self._call(
            "Tag", pb.TagRequest(pid=pid, spawned=spawned, name=name or "", labels=labels)
        )
        return str(reply.run_id)

    def finish(self, run_id: str, exit_code: int | None, timeout: float = 0) -> dict[str, Any]:
        """Wait until the daemon has finalized the run; returns `show` of it."""
        request = pb.FinishRequest(
            run_id=run_id,
            has_exit_code=exit_code is not None,
            exit_code=exit_code or 0,
            timeout=timeout,
        )
        doc: dict[str, Any] = json.loads(self._call("Finish", request, timeout=None).json)
        return doc

    def untag(self, run: str) -> dict[str, Any]:
        """Stop tracking a run and finalize it."""
        doc: dict[str, Any] = json.loads(self._call("Untag", pb.RunRef(run=run), None).json)
        return doc

    def show(self, run: str) -> dict[str, Any]:
        """A run by id, or a name meaning its latest run."""
        doc: dict[str, Any] = json.loads(self._call("Show", pb.RunRef(run=run)).json)
        return doc

    def runs(self, name: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """Runs visible to the caller, newest first."""
        doc: list[dict[str, Any]] = json.loads(
            self._call("Runs", pb.RunsRequest(name=name or "", limit=limit)).json
        )
        return doc

    def status(self) -> dict[str, Any]:
        """Daemon health, tier and counters."""
        doc: dict[str, Any] = json.loads(self._call("Status", pb.Empty()).json)
        return doc

    def close(self) -> None:
        """Close the channel."""
        self._channel.close()

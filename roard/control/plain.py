"""The control socket's plain protocol: the calls `roarctl tag` makes (Tag, Finish,
Progress), one JSON line each way, so that it tags and starts the command without loading
gRPC and protobuf (about 50 ms of roarctl's start, paid by every tagged run).

A connection carries one call. It starts with MAGIC, where a gRPC connection starts with
the HTTP/2 preface ("PRI * ..."): that first byte tells the daemon's socket relay which
protocol follows. Then one line `{"method": NAME, "request": {...}}`, the request being the
method's roard.v1 protobuf request in proto JSON (field names as in control.proto). The
daemon answers one line: `{"reply": {...}}` (the reply message the same way) or
`{"error": {"code": GRPC_STATUS_NAME, "message": ...}}`. The caller is identified by
SO_PEERCRED and checked exactly as for gRPC calls.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Sequence
from typing import Any, NamedTuple

from roard.control.address import check_present, not_running
from roard.control.errors import from_name
from roard.errors import DaemonUnavailable, RoardError

MAGIC = b"ROARD-PLAIN/1\n"
MAX_LINE = 1 << 20  # a request or reply line, at most (a Finish summary is small)


# The values below are NamedTuples, not dataclasses: roarctl's tag form would import
# dataclasses for them, and inspect with it (~5 ms of every tagged run's start).


class Tagged(NamedTuple):
    """A new run (or part of a joined run), and why its records are not spooled yet
    (empty when they are)."""

    run_id: str  # for finish/progress: a joined run's part is "RUN_ID/PART"
    warning: str
    shared_run_id: str = ""  # a joined run: the id every host shares

    @property
    def shown(self) -> str:
        """The run id to tell the user (what show/runs/lineage know it by)."""
        return self.shared_run_id or self.run_id


class JoinSpec(NamedTuple):
    """`roarctl tag --join RUN_ID [--hosts N]`: one more part of a shared run."""

    run_id: str = ""  # empty: a run of its own
    hosts: int = 0


OWN_RUN = JoinSpec()  # a run not shared with other hosts


def encode(doc: dict[str, Any]) -> bytes:
    """One protocol line."""
    return json.dumps(doc, separators=(",", ":")).encode() + b"\n"


def error_line(code: str, message: str) -> bytes:
    """The line of a call that failed with gRPC status `code`."""
    return encode({"error": {"code": code, "message": message}})


class PlainClient:
    """The daemon's Tag, Finish and Progress calls over the plain protocol; every failure
    is a RoardError that says what to do, as with roard.control.client."""

    def __init__(self, socket_path: str | os.PathLike[str]) -> None:
        self._socket = socket_path

    def tag(
        self,
        pid: int,
        name: str | None,
        labels: dict[str, str],
        spawned: bool,
        join: JoinSpec = OWN_RUN,
        links: Sequence[str] = (),
        public: bool = False,
    ) -> Tagged:
        """Tag `pid` and its descendants as a new run (or a part of `join`), linked to the
        tracker runs `links` names (TRACKER=RUN_ID...); `public`: visible to every project
        on the collector. `spawned`: pid is the caller's child, waiting to exec."""
        return self._tag({"pid": pid, "spawned": spawned}, name, labels, join, links, public)

    def tag_cgroup(
        self,
        path: str,
        name: str | None,
        labels: dict[str, str],
        join: JoinSpec = OWN_RUN,
        links: Sequence[str] = (),
        public: bool = False,
    ) -> Tagged:
        """Tag every process in the cgroup directory `path`, now and later."""
        return self._tag({"cgroup": path}, name, labels, join, links, public)

    def _tag(
        self,
        which: dict[str, Any],
        name: str | None,
        labels: dict[str, str],
        join: JoinSpec,
        links: Sequence[str],
        public: bool,
    ) -> Tagged:
        request = {
            **which,
            "name": name or "",
            "labels": labels,
            "links": list(links),
            "public": public,
            "join": join.run_id,
            "join_hosts": join.hosts,
        }
        reply = self._call("Tag", request, 30.0)
        return Tagged(
            str(reply.get("run_id", "")),
            str(reply.get("warning", "")),
            str(reply.get("shared_run_id", "")),
        )

    def finish(self, run_id: str, exit_code: int | None, timeout: float = 0) -> dict[str, Any]:
        """Wait until the daemon has finalized the run; returns its summary."""
        request = {
            "run_id": run_id,
            "has_exit_code": exit_code is not None,
            "exit_code": exit_code or 0,
            "timeout": timeout,
        }
        doc: dict[str, Any] = self._json("Finish", request, None)
        return doc

    def progress(self, run_id: str) -> dict[str, Any]:
        """How far the run's finalization got (see Control.Progress)."""
        doc: dict[str, Any] = self._json("Progress", {"run": run_id}, 5.0)
        return doc

    def _json(self, method: str, request: dict[str, Any], timeout: float | None) -> Any:
        return json.loads(self._call(method, request, timeout).get("json", "null"))

    def _call(self, method: str, request: dict[str, Any], timeout: float | None) -> Any:
        check_present(self._socket)
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(timeout)
            try:
                conn.connect(str(self._socket))
                conn.sendall(MAGIC + encode({"method": method, "request": request}))
                line = _read_line(conn)
            except TimeoutError:
                raise RoardError(
                    f"roard did not answer {method} within {timeout:g} s: it may be "
                    "overloaded; see its log (journalctl -u roard)"
                ) from None
            except (FileNotFoundError, ConnectionRefusedError):
                raise not_running(self._socket) from None
            except OSError as exc:
                raise DaemonUnavailable(
                    f"lost roard on {self._socket} during {method} ({exc.strerror or exc}): "
                    "is it restarting? see its log (journalctl -u roard)"
                ) from None
        if line is None:
            raise DaemonUnavailable(
                f"roard closed {self._socket} without answering {method}: it is restarting, "
                "or older than this roarctl (restart it after an upgrade)"
            )
        try:
            doc = json.loads(line)
            if "error" in doc:
                raise from_name(str(doc["error"]["code"]), str(doc["error"]["message"]))
            reply = doc["reply"]
        except (ValueError, KeyError, TypeError):
            raise RoardError(
                f"roard answered {method} with something else than a reply: {line[:200]!r}"
            ) from None
        if not isinstance(reply, dict):
            raise RoardError(f"roard answered {method} with a malformed reply: {line[:200]!r}")
        return reply


def _read_line(conn: socket.socket) -> bytes | None:
    """The reply line; None when the daemon closed the connection before sending it."""
    data = bytearray()
    while b"\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return None
        data += chunk
        if len(data) > MAX_LINE:
            raise OSError(0, f"reply longer than {MAX_LINE} bytes")
    return bytes(data[: data.index(b"\n")])

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

The client imports only C modules of the standard library: `_json` and `_socket` do what
the json and socket packages would, which import re and enum (and `typing`, re too): ~10
ms of every tagged run's start. `bench/RESULTS.md` has the figures.
"""

from __future__ import annotations

import _json
import _socket
import math
import os

from roard.control.address import check_present, not_running
from roard.control.errors import from_name
from roard.errors import DaemonUnavailable, RoardError

TYPE_CHECKING = False  # not typing's: importing typing is what this module avoids
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

MAGIC = b"ROARD-PLAIN/1\n"
MAX_LINE = 1 << 20  # a request or reply line, at most (a Finish summary is small)


class Value:
    """A plain value: its fields are its `__slots__`, and it equals another of its class
    with equal fields. (Not a NamedTuple nor a dataclass: typing, or dataclasses with
    inspect, would add 5 to 8 ms to every tagged run's start.)"""

    __slots__: tuple[str, ...] = ()

    def _fields(self) -> tuple[object, ...]:
        return tuple(getattr(self, name) for name in self.__slots__)

    def __eq__(self, other: object) -> bool:
        return (
            type(other) is type(self)
            and isinstance(other, Value)
            and self._fields() == other._fields()
        )

    __hash__ = None  # type: ignore[assignment]  # mutable fields: as a dataclass with eq

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__slots__)
        return f"{type(self).__name__}({fields})"


class Tagged(Value):
    """A new run (or part of a joined run), and why its records are not spooled yet
    (empty when they are)."""

    __slots__ = ("run_id", "shared_run_id", "warning")

    def __init__(self, run_id: str, warning: str, shared_run_id: str = "") -> None:
        self.run_id = run_id  # for finish/progress: a joined run's part is "RUN_ID/PART"
        self.warning = warning
        self.shared_run_id = shared_run_id  # a joined run: the id every host shares

    @property
    def shown(self) -> str:
        """The run id to tell the user (what show/runs/lineage know it by)."""
        return self.shared_run_id or self.run_id


class JoinSpec(Value):
    """`roarctl tag --join RUN_ID [--hosts N]`: one more part of a shared run."""

    __slots__ = ("hosts", "run_id")

    def __init__(self, run_id: str = "", hosts: int = 0) -> None:
        self.run_id = run_id  # empty: a run of its own
        self.hosts = hosts


OWN_RUN = JoinSpec()  # a run not shared with other hosts


def encode(doc: dict[str, Any]) -> bytes:
    """One protocol line."""
    return dumps(doc).encode() + b"\n"


def dumps(value: Any) -> str:
    """`value` as compact JSON, as `json.dumps(value, separators=(",", ":"))` writes it:
    strings, numbers, booleans, None, and lists, tuples and dicts (string keys) of them."""
    if isinstance(value, str):
        return _json.encode_basestring_ascii(value)
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return int.__repr__(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        return float.__repr__(value)
    if isinstance(value, dict):
        for key in value:
            if not isinstance(key, str):
                raise TypeError(f"a JSON object's keys are strings, not {type(key).__name__}")
        items = (f"{_json.encode_basestring_ascii(k)}:{dumps(v)}" for k, v in value.items())
        return "{" + ",".join(items) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(map(dumps, value)) + "]"
    raise TypeError(f"{type(value).__name__} is not JSON")


class _Decoding:
    """The settings `_json`'s scanner reads, those of `json.loads`."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = float  # NaN, Infinity, -Infinity


# typeshed types the context as a scanner; it is anything with _Decoding's attributes.
_scan = _json.make_scanner(_Decoding())  # type: ignore[arg-type]


def loads(text: str | bytes) -> Any:
    """The JSON document `text` holds, as `json.loads` reads it; ValueError if none."""
    if isinstance(text, bytes):
        text = text.decode()
    text = text.strip(" \t\n\r")
    try:
        value, end = _scan(text, 0)
    except StopIteration:
        raise ValueError(f"not JSON: {text[:80]!r}") from None
    if end != len(text):
        raise ValueError(f"extra data after the JSON document at {end}: {text[:80]!r}")
    return value


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
        return loads(self._call(method, request, timeout).get("json", "null"))

    def _call(self, method: str, request: dict[str, Any], timeout: float | None) -> Any:
        check_present(self._socket)
        conn = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        try:
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
        finally:
            conn.close()
        if line is None:
            raise DaemonUnavailable(
                f"roard closed {self._socket} without answering {method}: it is restarting, "
                "or older than this roarctl (restart it after an upgrade)"
            )
        try:
            doc = loads(line)
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


def _read_line(conn: _socket.socket) -> bytes | None:
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

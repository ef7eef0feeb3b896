"""The control service roarctl calls: tag, finish, untag, show, runs, status."""

from __future__ import annotations

import contextlib
import functools
import json
import socket
import time
from collections.abc import Callable
from concurrent import futures
from pathlib import Path
from typing import Any, Protocol, TypeVar

import grpc
import structlog
from google.protobuf import json_format
from google.protobuf.message import Message

from roard.collector.client import CollectorClient
from roard.collector.storage import RunFilter
from roard.context.trackers import parse_links
from roard.control import plain
from roard.control.errors import status_name
from roard.control.peercred import CredentialRelay, PeerCred
from roard.errors import CollectorUnavailable, PrerequisiteError, RoardError, UsageError
from roard.records import ids
from roard.tracking import cgroups
from roard.tracking.names import check_run_id
from roard.tracking.runs import Join
from roard.tracking.tracker import Caller, Tracker
from roard.v1 import control_pb2 as pb
from roard.v1 import control_pb2_grpc

log = structlog.get_logger("roard.control")

Reply = TypeVar("Reply")

# Per-connection limits, so that clients that connect and stall cost nothing for long: the
# HTTP/2 handshake must finish quickly, and a connection with no call in flight is closed
# after a while (roarctl opens one per command). (grpc.max_concurrent_streams is not set:
# clients whose first call beats the server's SETTINGS frame get REFUSED_STREAM.)
_LIMITS = (
    ("grpc.server_handshake_timeout_ms", 10_000),
    ("grpc.max_connection_idle_ms", 30_000),
)


def _rpc(
    method: Callable[[ControlService, Any, Caller], Reply],
) -> Callable[[ControlService, Any, grpc.ServicerContext], Reply]:
    """Resolve the caller and turn roard errors into gRPC statuses with their message."""

    @functools.wraps(method)
    def wrapper(self: ControlService, request: Any, context: grpc.ServicerContext) -> Reply:
        cred = self._relay.lookup(context.peer())
        if cred is None:
            context.abort(grpc.StatusCode.PERMISSION_DENIED, "connect through roard's socket")
            raise AssertionError("abort() raises")
        try:
            return method(self, request, Caller(uid=cred.uid, pid=cred.pid))
        except Exception as exc:
            code, message = _failure(exc, method.__name__)
            context.abort(grpc.StatusCode[code], message)
        raise AssertionError("abort() raises")

    return wrapper


def _failure(exc: Exception, method: str) -> tuple[str, str]:
    """The status name and message a failed call answers with (either protocol); an
    unexpected error is logged with its traceback."""
    if isinstance(exc, RoardError):
        return status_name(exc), str(exc)
    log.exception("control call failed", method=method)
    return "INTERNAL", f"roard internal error: {exc}"


# The plain protocol's calls (roard.control.plain) and their request types.
_PLAIN_REQUESTS: dict[str, type[Message]] = {
    "Tag": pb.TagRequest,
    "Finish": pb.FinishRequest,
    "Progress": pb.RunRef,
}


def _json(doc: Any) -> pb.JsonReply:
    return pb.JsonReply(json=json.dumps(doc))


class Delivery(Protocol):
    """Where the daemon's records stand on their way to the collector."""

    def delivered(self, timeout: float | None) -> bool:
        """Wait until the collector stored all records emitted so far (None: the
        configured wait); whether it did."""
        ...

    def spool_problem(self) -> str | None:
        """Why records wait in memory instead of the spool (None: they do not)."""
        ...

    def collector_problem(self) -> str | None:
        """Why the collector is known to be unreachable (None: it is not)."""
        ...


class ControlService(control_pb2_grpc.ControlServicer):
    """Implements roard.v1.Control."""

    def __init__(
        self,
        tracker: Tracker,
        queries: CollectorClient,
        status: Callable[[int | None], dict[str, Any]],
        relay: CredentialRelay,
        delivery: Delivery,
    ) -> None:
        self._tracker = tracker
        self._queries = queries
        self._status = status
        self._relay = relay
        self._delivery = delivery

    def plain_call(self, sock: socket.socket, cred: PeerCred, line: bytes) -> None:
        """Answer one plain-protocol call (roard.control.plain) on `sock`, then close it."""
        with contextlib.closing(sock):
            answer = self._plain_answer(line, Caller(uid=cred.uid, pid=cred.pid))
            sock.settimeout(10.0)  # a client that does not read its answer
            with contextlib.suppress(OSError):
                sock.sendall(answer)

    def _plain_answer(self, line: bytes, caller: Caller) -> bytes:
        try:
            call = json.loads(line)
            method = call["method"]
            request = json_format.ParseDict(call.get("request", {}), _PLAIN_REQUESTS[method]())
        except (ValueError, KeyError, TypeError, json_format.ParseError) as exc:
            return plain.error_line(
                "INVALID_ARGUMENT",
                f"not a plain-protocol call ({exc!r}); known methods: {', '.join(_PLAIN_REQUESTS)}",
            )
        try:
            reply = getattr(type(self), method).__wrapped__(self, request, caller)
        except Exception as exc:
            return plain.error_line(*_failure(exc, method))
        return plain.encode(
            {"reply": json_format.MessageToDict(reply, preserving_proto_field_name=True)}
        )

    @staticmethod
    def _scope(caller: Caller) -> int | None:
        return None if caller.root else caller.uid

    @_rpc
    def Tag(self, request: pb.TagRequest, caller: Caller) -> pb.TagReply:
        name, labels = request.name or None, dict(request.labels)
        join = Join(check_run_id(request.join), request.join_hosts) if request.join else None
        if request.join_hosts and join is None:
            raise UsageError("--hosts is only for a joined run: give --join RUN_ID too")
        links = parse_links(request.links)
        if request.cgroup:
            cgroup = cgroups.resolve(request.cgroup)
            run = self._tracker.tag_cgroup(
                caller, cgroup, name, labels, join, links, request.public
            )
        else:
            run = self._tracker.tag(
                caller, request.pid, name, labels, request.spawned, join, links, request.public
            )
        problem = self._delivery.spool_problem()
        warning = f"records of run {run.shared_id} are waiting: {problem}" if problem else ""
        shared = run.shared_id if run.joined else ""
        return pb.TagReply(run_id=run.run_id, warning=warning, shared_run_id=shared)

    @_rpc
    def Finish(self, request: pb.FinishRequest, caller: Caller) -> pb.JsonReply:
        run = self._tracker.active_run(caller, request.run_id)
        code = request.exit_code if request.has_exit_code else None
        if run is not None and not self._tracker.finish(run, code, request.timeout or None):
            raise RoardError(
                f"run {run.run_id} was not finalized within {request.timeout:g}s; "
                "it will be finalized in the background: check `roarctl show`"
            )
        # Finalized (now, or before roarctl asked): its records are spooled. The daemon's
        # own account answers at once; the collector stores the run meanwhile, and queries
        # wait for that (_queries_now). A joined run's summary is the collector's to give.
        if run is not None and run.summary is not None and not run.joined:
            return _json(self._spooled(run.summary))
        return _json(self._summary(ids.split(request.run_id)[0], caller))

    def _spooled(self, summary: dict[str, Any]) -> dict[str, Any]:
        """The daemon's summary of a run it finalized, with why its records are not on their
        way to the collector yet, if they are not."""
        doc = dict(summary)
        waiting = self._delivery.spool_problem()
        if waiting:
            doc["waiting"] = waiting
        unreachable = self._delivery.collector_problem()
        if unreachable:
            doc["collector"] = unreachable
        return doc

    def _summary(self, run_id: str, caller: Caller) -> dict[str, Any]:
        """The collector's summary of a finalized run or, while the collector has not
        stored it yet, what the daemon can say: spooled, not delivered."""
        if self._delivery.delivered(None):
            try:
                return self._queries.summary(run_id, self._scope(caller))
            except CollectorUnavailable:
                pass
        doc: dict[str, Any] = {"run_id": run_id, "status": "finished", "delivered": False}
        problem = self._delivery.spool_problem()
        if problem:
            doc["waiting"] = problem
        return doc

    def _queries_now(self) -> CollectorClient:
        """The collector, once it has stored what the daemon emitted before this call (or
        the configured wait passed): a query right after `roarctl tag` sees that run."""
        self._delivery.delivered(None)
        return self._queries

    @_rpc
    def Untag(self, request: pb.RunRef, caller: Caller) -> pb.JsonReply:
        run_id = request.run
        parts = self._tracker.active_parts(caller, run_id)
        if parts:  # a joined run: this host's parts of it end here
            for part in parts:
                self._tracker.untag(part)
            return _json(self._summary(run_id, caller))
        run = self._tracker.active_run(caller, run_id)
        if run is None:  # a name means its latest active run
            named = [
                r
                for r in self._tracker.active_runs()
                if r.name == run_id and (caller.root or r.uid == caller.uid)
            ]
            if named:
                latest_active = max(named, key=lambda r: r.started_at)
                run = self._tracker.active_run(caller, latest_active.run_id)
        if run is None:  # finalized already: say how it ended
            queries = self._queries_now()
            latest = queries.runs(RunFilter(name=run_id, limit=1), self._scope(caller))
            known = latest[0]["run_id"] if latest else run_id
            return _json(queries.summary(known, self._scope(caller)))
        self._tracker.untag(run)
        return _json(self._summary(run.shared_id, caller))

    @_rpc
    def Show(self, request: pb.RunRef, caller: Caller) -> pb.JsonReply:
        return _json(self._queries_now().show(request.run, self._scope(caller)))

    @_rpc
    def Runs(self, request: pb.RunsRequest, caller: Caller) -> pb.JsonReply:
        runs = self._queries_now().runs(RunFilter.of(request), self._scope(caller))
        return _json(runs)

    @_rpc
    def Artifact(self, request: pb.LineageRequest, caller: Caller) -> pb.JsonReply:
        return _json(
            self._queries_now().artifact(request.query, request.host or None, self._scope(caller))
        )

    @_rpc
    def Lineage(self, request: pb.LineageRequest, caller: Caller) -> pb.JsonReply:
        doc = self._queries_now().lineage(
            request.query,
            request.up,
            request.down,
            request.depth,
            request.host or None,
            self._scope(caller),
            request.max_nodes,
        )
        return _json(doc)

    @_rpc
    def RunGraph(self, request: pb.RunRef, caller: Caller) -> pb.JsonReply:
        doc = self._queries_now().run_graph(
            request.run, self._scope(caller), request.depth, request.max_nodes
        )
        return _json(doc)

    @_rpc
    def Export(self, request: pb.ExportRequest, caller: Caller) -> pb.JsonReply:
        queries = self._queries_now()
        return _json(queries.export(request.run, request.format, self._scope(caller)))

    @_rpc
    def Progress(self, request: pb.RunRef, caller: Caller) -> pb.JsonReply:
        run = self._tracker.active_run(caller, request.run)
        if run is None:
            return _json({"phase": "done"})
        p = run.progress
        if not p.started:
            return _json({"phase": "running"})
        return _json(
            {
                "phase": "finalizing",
                "seconds": round(time.monotonic() - p.started, 3),
                "files": p.files,
                "files_done": p.files_done,
                "bytes": p.bytes,
                "bytes_done": p.bytes_done,
            }
        )

    @_rpc
    def Status(self, request: pb.Empty, caller: Caller) -> pb.JsonReply:
        return _json(self._status(self._scope(caller)))


class ControlServer:
    """The gRPC server on a private socket, behind the credential relay."""

    def __init__(
        self,
        service_factory: Callable[[CredentialRelay], ControlService],
        public: Path,
        private: Path,
    ) -> None:
        self._relay = CredentialRelay(public, private)
        self._server = grpc.server(
            futures.ThreadPoolExecutor(16, thread_name_prefix="roard-ctl"), options=_LIMITS
        )
        service = service_factory(self._relay)
        control_pb2_grpc.add_ControlServicer_to_server(  # type: ignore[no-untyped-call]
            service, self._server
        )
        self._plain_call = service.plain_call
        self._plain_pool = futures.ThreadPoolExecutor(16, thread_name_prefix="roard-plain")
        self._relay.on_plain = self._take_plain
        private.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        private.unlink(missing_ok=True)
        try:
            self._server.add_insecure_port(f"unix:{private}")
        except RuntimeError as exc:
            raise PrerequisiteError(
                f"cannot serve on {private} ({exc}): the state dir path may be too long for "
                "a Unix socket (108 bytes); use a shorter --state-dir"
            ) from None

    def _take_plain(self, sock: socket.socket, cred: PeerCred, line: bytes) -> None:
        """A plain-protocol call, from the relay's thread: answered on a pool thread."""
        self._plain_pool.submit(self._plain_call, sock, cred, line)

    def start(self) -> None:
        """Serve."""
        self._server.start()
        self._relay.start()

    def stop(self) -> None:
        """Stop serving; calls in flight get a second to finish."""
        self._relay.stop()
        self._server.stop(1).wait()
        # Calls in flight (a Finish waiting for hashes) end with the daemon.
        self._plain_pool.shutdown(wait=False, cancel_futures=True)

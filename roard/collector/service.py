"""The collector's gRPC service: record streams in, registry queries out.

Each daemon opens one `Stream`: a hello, then batches in increasing sequence order; every
batch is stored in one transaction and acked with its highest sequence number, so an ack
means durable. Anything malformed ends the stream with a status that says what was wrong;
nothing of a rejected batch is stored.
"""

from __future__ import annotations

import functools
import json
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent import futures
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc
import structlog

import roard
from roard.collector import export
from roard.collector.scopes import DEFAULT_PROJECT, Principal, Viewer, viewer_of
from roard.collector.storage import LineageStore, RunFilter
from roard.collector.transport import (
    TOKEN_HEADER,
    Credentials,
    TlsFiles,
    check_address,
    check_exposure,
    server_credentials,
)
from roard.control.errors import status_code
from roard.errors import ConfigError, RoardError, UsageError
from roard.v1 import MAX_MESSAGE_BYTES, collector_pb2_grpc, records_pb2
from roard.v1 import collector_pb2 as pb

log = structlog.get_logger("roard.collector")

PROTOCOL = 1
MAX_BATCH = 10_000
_QUERY_THREADS = 16
# How long a joined run waits for the part of a host that went silent (a dead node).
DEFAULT_JOIN_TIMEOUT = 600.0
# How often a connected daemon's liveness is written down (its heartbeats come every 15 s).
_ALIVE_EVERY = 10.0

Reply = TypeVar("Reply")

# What the registry must be able to show and export of every record it stores: times in
# RFC 3339 range (NaN cannot even be stored; one infinite time would break every listing
# that includes its run) and content hashes in the one form exports understand.
_TIME_LIMIT = 253402214400.0  # 9999-12-31T00:00:00Z
_TIMED_BODIES = {
    "run_tagged": "started_at",
    "process_started": "started_at",
    "process_exited": "ended_at",
    "run_finished": "ended_at",
}
_HASH = re.compile(r"blake3:[0-9a-f]{64}")
# Status details travel in a trailer that clients cap (8 KiB by default): a longer one,
# say quoting a megabyte-long id, reaches them as RESOURCE_EXHAUSTED instead of the reason.
_MAX_DETAILS = 512


def _problem(record: records_pb2.Record) -> str | None:
    """Why the registry could not store or show `record` faithfully; None if it can."""
    kind = record.WhichOneof("body") or ""
    times = [record.time]
    if kind in _TIMED_BODIES:
        times.append(getattr(getattr(record, kind), _TIMED_BODIES[kind]))
    if not all(0.0 <= t < _TIME_LIMIT for t in times):
        return f"a time outside 1970..9999 ({times})"
    digests: Iterable[str] = ()  # built for the record's own kind only: this runs per record
    if kind == "file_access":
        digests = (record.file_access.hash,)
    elif kind == "dataset":
        digests = (record.dataset.hash, *(f.hash for f in record.dataset.files))
    for digest in digests:
        if digest and not _HASH.fullmatch(digest):
            return f"hash {digest!r} is not blake3:<64 hex digits>"
    return None


@dataclass(frozen=True)
class Access:
    """How a collector decides who is calling.

    `credentials.tokens` maps bearer tokens to hosts and people; `mtls` takes the host id
    from the client certificate's common name (its project from `credentials.certified`).
    With neither, every caller is trusted (loopback only) and names its own host id in its
    hello.
    """

    credentials: Credentials | None = None
    mtls: bool = False

    def principal_of(self, context: grpc.ServicerContext) -> Principal | None:
        """Who the caller proved to be, or None when the collector does not check.
        Aborts the call with UNAUTHENTICATED when a required proof is missing or wrong."""
        tokens = self.credentials.tokens if self.credentials else {}
        if self.mtls:
            names = context.auth_context().get("x509_common_name") or []
            if names:
                return (self.credentials or Credentials()).certified_host(bytes(names[0]).decode())
            if not tokens:
                _abort(context, grpc.StatusCode.UNAUTHENTICATED, "no client certificate")
        if tokens:
            metadata = dict(context.invocation_metadata())
            header = str(metadata.get(TOKEN_HEADER, ""))
            token = header.removeprefix("Bearer ").strip()
            principal = tokens.get(token)
            if principal is None:
                _abort(
                    context,
                    grpc.StatusCode.UNAUTHENTICATED,
                    "missing or unknown bearer token: check the daemon's [collector] token"
                    " (or roarctl's --token-file)",
                )
            return principal
        return None


def _abort(context: grpc.ServicerContext, code: grpc.StatusCode, message: str) -> None:
    if len(message) > _MAX_DETAILS:
        message = message[: _MAX_DETAILS - 3] + "..."
    context.abort(code, message)
    raise AssertionError("abort() raises")


def _query(method: Callable[..., Any]) -> Callable[..., pb.JsonDoc]:
    """Authenticate, run a query, return its JSON; roard errors become statuses."""

    @functools.wraps(method)
    def wrapper(self: CollectorService, request: Any, context: grpc.ServicerContext) -> pb.JsonDoc:
        viewer = viewer_of(self._access.principal_of(context), request.uid)
        try:
            return pb.JsonDoc(json=json.dumps(method(self, request, viewer)))
        except RoardError as exc:
            _abort(context, status_code(exc), str(exc))
        except Exception as exc:
            log.exception("query failed", method=method.__name__)
            _abort(context, grpc.StatusCode.INTERNAL, f"collector internal error: {exc}")
        raise AssertionError("unreachable")

    return wrapper


class CollectorService(collector_pb2_grpc.CollectorServicer):
    """Implements roard.v1.Collector over a LineageStore."""

    def __init__(self, store: LineageStore, access: Access, max_streams: int) -> None:
        self._store = store
        self._access = access
        # Each stream holds a server thread for as long as its daemon is connected; past
        # this many, new streams are refused so that queries always find a thread.
        self._max_streams = max_streams
        self._streams = 0
        self._streams_lock = threading.Lock()
        self.collector_id = uuid.uuid4().hex[:12]
        self.records_stored = 0
        self.records_duplicate = 0

    # ----------------------------------------------------------------------------- stream

    def Stream(  # noqa: N802 (the proto's name)
        self, request_iterator: Iterator[pb.StreamRequest], context: grpc.ServicerContext
    ) -> Iterator[pb.StreamReply]:
        """One daemon's record stream (see the module docstring)."""
        with self._streams_lock:
            full = self._streams >= self._max_streams
            if not full:
                self._streams += 1
        if full:
            _abort(
                context,
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"{self._max_streams} daemons are connected already: the daemon retries "
                "later; raise the collector's --max-hosts",
            )
        try:
            yield from self._stream(request_iterator, context)
        finally:
            with self._streams_lock:
                self._streams -= 1

    def _stream(
        self, request_iterator: Iterator[pb.StreamRequest], context: grpc.ServicerContext
    ) -> Iterator[pb.StreamReply]:
        principal = self._access.principal_of(context)
        if principal is not None and principal.user:
            _abort(
                context,
                grpc.StatusCode.PERMISSION_DENIED,
                f"the token of user {principal.name!r} is for queries only: a daemon streams"
                " records with a host token ('HOST_ID TOKEN [PROJECT]' in the tokens file)",
            )
        proven = principal.name if principal is not None else None
        project = principal.project if principal is not None else DEFAULT_PROJECT
        first = next(request_iterator, None)
        if first is None or first.WhichOneof("msg") != "hello":
            _abort(context, grpc.StatusCode.INVALID_ARGUMENT, "a stream must open with a hello")
        assert first is not None
        hello = first.hello
        if hello.protocol != PROTOCOL:
            _abort(
                context,
                grpc.StatusCode.FAILED_PRECONDITION,
                f"protocol {hello.protocol} not supported (this collector speaks {PROTOCOL}):"
                " run the same roard version on hosts and collector",
            )
        if not hello.host_id:
            _abort(context, grpc.StatusCode.INVALID_ARGUMENT, "hello without a host id")
        if proven is not None and hello.host_id != proven:
            _abort(
                context,
                grpc.StatusCode.PERMISSION_DENIED,
                f"credentials are for host {proven!r}, hello says {hello.host_id!r}",
            )
        host = hello.host_id
        acked = self._storage(
            context,
            lambda: self._store.hello(host, hello.boot_id, hello.version, hello.tier, time.time()),
        )
        log.info("daemon connected", host=host, version=hello.version, peer=context.peer())
        yield pb.StreamReply(
            welcome=pb.Welcome(
                protocol=PROTOCOL,
                collector_id=self.collector_id,
                acked_seq=acked,
                max_batch=MAX_BATCH,
            )
        )
        last = 0
        alive_at = time.monotonic()
        for request in request_iterator:
            which = request.WhichOneof("msg")
            if time.monotonic() - alive_at >= _ALIVE_EVERY:
                # Joined runs wait for the parts of hosts that are alive (expire_parts).
                self._storage(context, lambda: self._store.seen(host, time.time()))
                alive_at = time.monotonic()
            if which == "heartbeat":
                yield pb.StreamReply(heartbeat=pb.Heartbeat(time=time.time()))
            elif which == "batch":
                last = self._check_batch(context, request.batch, last)
                yield self._store_batch(context, host, project, request.batch)
            else:
                _abort(
                    context,
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"unexpected {which or 'empty'} message",
                )

    @staticmethod
    def _check_batch(context: grpc.ServicerContext, batch: pb.Batch, last: int) -> int:
        """Rejects empty, oversized or out-of-order batches, and records the registry
        could not show (see `_problem`); returns the batch's last seq."""
        records = batch.records
        if not records:
            _abort(context, grpc.StatusCode.INVALID_ARGUMENT, "empty batch")
        if len(records) > MAX_BATCH:
            _abort(context, grpc.StatusCode.INVALID_ARGUMENT, f"batch over {MAX_BATCH} records")
        for record in records:
            if record.seq <= last:
                _abort(
                    context,
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"sequence {record.seq} after {last}: records must be in increasing order"
                    " within a stream (a replay of old sequences?)",
                )
            problem = _problem(record)
            if problem is not None:
                _abort(
                    context,
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"record {record.id!r} has {problem}: the sender is broken",
                )
            last = record.seq
        return last

    def _store_batch(
        self, context: grpc.ServicerContext, host: str, project: str, batch: pb.Batch
    ) -> pb.StreamReply:
        records = list(batch.records)
        stored = self._storage(
            context, lambda: self._store.ingest(records, host=host, project=project)
        )
        last = records[-1].seq
        self._storage(context, lambda: self._store.acked(host, last))
        self.records_stored += stored
        self.records_duplicate += len(records) - stored
        return pb.StreamReply(ack=pb.Ack(seq=last, stored=stored, duplicates=len(records) - stored))

    @staticmethod
    def _storage(context: grpc.ServicerContext, call: Callable[[], Reply]) -> Reply:
        """Runs a store call; bad records end the stream with their reason, storage trouble
        with UNAVAILABLE (the daemon keeps its spool and retries)."""
        try:
            return call()
        except RoardError as exc:
            _abort(context, status_code(exc), str(exc))
        except Exception as exc:
            log.exception("storing records failed")
            _abort(context, grpc.StatusCode.UNAVAILABLE, f"registry storage failed: {exc}")
        raise AssertionError("unreachable")

    # ---------------------------------------------------------------------------- queries

    @_query
    def ShowRun(self, request: pb.RunQuery, viewer: Viewer) -> Any:  # noqa: N802
        return self._store.show(request.run, viewer)

    @_query
    def RunSummary(self, request: pb.RunQuery, viewer: Viewer) -> Any:  # noqa: N802
        return self._store.summary(request.run, viewer)

    @_query
    def ListRuns(self, request: pb.RunsQuery, viewer: Viewer) -> Any:  # noqa: N802
        return self._store.runs(RunFilter.of(request), viewer)

    @_query
    def FindArtifact(self, request: pb.ArtifactQuery, viewer: Viewer) -> Any:  # noqa: N802
        return self._store.artifact(request.query, request.host or None, viewer)

    @_query
    def Lineage(self, request: pb.LineageQuery, viewer: Viewer) -> Any:  # noqa: N802
        up, down = request.up, request.down
        if not up and not down:
            up = True  # "what produced this?" is the question people ask first
        return self._store.lineage(
            request.query,
            up,
            down,
            request.depth,
            request.host or None,
            viewer,
            request.max_nodes,
        )

    @_query
    def RunGraph(self, request: pb.RunQuery, viewer: Viewer) -> Any:  # noqa: N802
        return self._store.run_graph(request.run, request.depth, viewer, request.max_nodes)

    @_query
    def Export(self, request: pb.ExportQuery, viewer: Viewer) -> Any:  # noqa: N802
        doc = self._store.show(request.run, viewer)
        if request.format == "openlineage":
            return export.openlineage_events(doc, producer=PRODUCER)
        if request.format == "prov":
            return export.prov_document(doc)
        raise UsageError(f"--format {request.format!r}: choose openlineage or prov")


PRODUCER = f"https://github.com/roard/roard/tree/v{roard.__version__}"


class CollectorServer:
    """A gRPC server for one CollectorService, on one address."""

    def __init__(
        self,
        store: LineageStore,
        listen: str,
        tls: TlsFiles | None = None,
        mtls: bool = False,
        credentials: Credentials | None = None,
        max_hosts: int = 256,
        join_timeout: float = DEFAULT_JOIN_TIMEOUT,
    ) -> None:
        """`max_hosts`: daemons connected at once (each stream holds a thread);
        `join_timeout`: how long a joined run waits for a silent host's part."""
        check_address(listen, listen=True)
        tokens = bool(credentials and credentials.tokens)
        check_exposure(listen, tls is not None, mtls, tokens, "listen")
        self.service = CollectorService(
            store, Access(credentials=credentials, mtls=mtls), max_hosts
        )
        self._server = grpc.server(
            # Streams, plus threads that only queries use.
            futures.ThreadPoolExecutor(
                max_hosts + _QUERY_THREADS, thread_name_prefix="roard-collector"
            ),
            options=[
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                ("grpc.keepalive_permit_without_calls", 1),
                ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
            ],
        )
        collector_pb2_grpc.add_CollectorServicer_to_server(  # type: ignore[no-untyped-call]
            self.service, self._server
        )
        try:
            if tls is not None:
                self.port = self._server.add_secure_port(listen, server_credentials(tls, mtls))
            else:
                self.port = self._server.add_insecure_port(listen)
        except RuntimeError as exc:
            raise ConfigError(
                f"cannot listen on {listen}: {exc} (in use, or not this host's)"
            ) from None
        self.address = listen
        self.authenticated = tls is not None or tokens
        self._store = store
        self._join_timeout = join_timeout
        self._stopping = threading.Event()
        self._expirer = threading.Thread(
            target=self._expire_loop, name="roard-collector-expire", daemon=True
        )

    def _expire_loop(self) -> None:
        """Time out joined runs' parts whose hosts went silent, a few times per timeout."""
        every = min(max(self._join_timeout / 4, 0.2), 30.0)
        while not self._stopping.wait(every):
            try:
                changed = self._store.expire_parts(time.time(), self._join_timeout)
            except Exception as exc:  # the database is down: try again next round
                log.warning("could not time out silent hosts' parts", error=str(exc))
                continue
            if changed:
                log.warning("joined runs stopped waiting for silent hosts", runs=changed)

    def start(self) -> None:
        """Serve."""
        self._server.start()
        self._expirer.start()
        if not self.authenticated:
            log.warning(
                "collector accepts unauthenticated connections on loopback only",
                listen=self.address,
            )

    def stop(self, grace: float = 1.0) -> None:
        """Stop serving; calls in flight get `grace` seconds."""
        self._stopping.set()
        self._server.stop(grace).wait()
        if self._expirer.is_alive():
            self._expirer.join()

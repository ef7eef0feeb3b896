"""The exporter: streams spooled records to the collector and forgets them once acked.

One background thread keeps one `Stream` call open: a hello, then batches read from the
spool in sequence order, at most `window` batches unacknowledged. Each ack deletes the
acked records from the spool. Any failure (collector down, network cut, a rejected batch)
ends the call; the thread reconnects with exponential backoff and jitter and resends
everything still spooled, which the collector deduplicates by record id.

The embedded collector's service is called in-process (`local`): the same call, the same
requests and replies, without gRPC's serialization and threads (a third of the time its
records took to reach the registry).
"""

from __future__ import annotations

import functools
import random
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, NoReturn, Protocol, cast

import grpc
import structlog

from roard.collector.transport import CollectorTarget, client_channel
from roard.records.sink import SpoolSink
from roard.records.spool import Spool, delivery_loss
from roard.v1 import collector_pb2 as pb
from roard.v1 import collector_pb2_grpc

log = structlog.get_logger("roard.export")

PROTOCOL = 1
_HEARTBEAT_SECONDS = 15.0
_BACKOFF_FIRST = 0.2


@dataclass(frozen=True)
class HelloInfo:
    """What the daemon says about itself when it connects."""

    host_id: str
    boot_id: str
    version: str
    tier: str


# A stream that ends with one of these after a batch was sent was refused for what the batch
# held, not for the connection: resending the same batch would fail forever.
_REFUSED = (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.PERMISSION_DENIED)


class StreamService(Protocol):
    """The collector's record stream, as CollectorService implements it."""

    def Stream(  # noqa: N802 (the proto's name)
        self, request_iterator: Iterator[pb.StreamRequest], context: grpc.ServicerContext
    ) -> Iterator[pb.StreamReply]: ...


class _Aborted(grpc.RpcError):  # type: ignore[misc]  # grpc is untyped
    """The in-process service ended the call, as a gRPC status would."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


class _InProcessContext:
    """What the service asks of a call's context, for a caller in this process: no
    credentials (the embedded collector trusts its own daemon), and abort as an error."""

    def auth_context(self) -> dict[str, list[bytes]]:
        return {}

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return ()

    def peer(self) -> str:
        return "in-process"

    def abort(self, code: grpc.StatusCode, details: str) -> NoReturn:
        raise _Aborted(code, details)


class _Session:
    """One Stream call's state, shared by the request generator and the reply loop."""

    def __init__(self) -> None:
        self.active = True
        self.welcomed = False  # the collector accepted the hello
        # (first seq, last seq) of each batch sent and not yet acked, oldest first.
        self.inflight: deque[tuple[int, int]] = deque()


class Exporter:
    """Moves records from the spool to the collector, forever, until stopped."""

    def __init__(
        self,
        spool: Spool,
        sink: SpoolSink,
        target: CollectorTarget,
        hello: HelloInfo,
        batch_records: int = 2000,
        window: int = 4,
        backoff_max: float = 15.0,
        local: StreamService | None = None,
    ) -> None:
        self._spool = spool
        self._local = local
        self._sink = sink
        self._target = target
        self._hello = hello
        self._batch = batch_records
        self._window = window
        self._backoff_max = backoff_max
        self._cond = threading.Condition()
        self._stopping = False
        self._session: _Session | None = None
        self._call: Any = None
        self.connected = False
        self.acked_seq = 0
        self.records_sent = 0
        self.reconnects = 0
        self.last_error: str | None = None
        self.rejected = 0
        # After a refused batch: send one record per batch up to here, to find the culprit.
        self._probe_until = 0
        self._thread = threading.Thread(target=self._run, name="roard-export", daemon=True)

    def start(self) -> None:
        """Start streaming in the background."""
        self._thread.start()

    def notify(self) -> None:
        """New records are spooled (the sink calls this)."""
        with self._cond:
            self._cond.notify_all()

    def wait_acked(self, seq: int, timeout: float) -> bool:
        """Wait until the collector has stored every record up to `seq`."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self.acked_seq < seq and self._spool_holds(seq):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.5))
        return True

    def _spool_holds(self, seq: int) -> bool:
        """Whether records up to `seq` may still be waiting (acked in an earlier daemon
        life, or shed, they are gone from the spool)."""
        first = self._spool.after(0, 1)
        return bool(first) and first[0].seq <= seq

    def stop(self) -> None:
        """Stop streaming; what is not acked stays spooled for the next start."""
        with self._cond:
            self._stopping = True
            if self._session is not None:
                self._session.active = False
            self._cond.notify_all()
        call = self._call
        if call is not None:
            call.cancel()
        self._thread.join(timeout=10)

    # ------------------------------------------------------------------------- internals

    def _run(self) -> None:
        backoff = _BACKOFF_FIRST
        while not self._stopping:
            started = time.monotonic()
            try:
                self._stream()
            except grpc.RpcError as exc:
                if not self._stopping:
                    self.last_error = f"{exc.code().name}: {exc.details()}"
                    log.warning("collector stream ended", error=self.last_error)
                    if exc.code() in _REFUSED:
                        self._refused(self.last_error)
            except Exception as exc:
                self.last_error = repr(exc)
                log.exception("collector stream failed")
            finally:
                self.connected = False
            if self._stopping:
                return
            if time.monotonic() - started > self._backoff_max:
                backoff = _BACKOFF_FIRST  # it was up for a while: this is a new outage
            # Jitter: after a collector restart, hundreds of hosts must not reconnect in step.
            delay = backoff * random.uniform(0.5, 1.5)
            backoff = min(backoff * 2, self._backoff_max)
            self.reconnects += 1
            with self._cond:
                self._cond.wait_for(lambda: self._stopping, delay)

    def _refused(self, reason: str) -> None:
        """The collector refused the oldest unacked batch. Narrow it down to one record by
        resending one record at a time; set that record aside, and tell its run."""
        session = self._session
        if session is None or not session.welcomed or not session.inflight:
            # Refused at hello (wrong host id for the credentials, say): a configuration
            # problem, not a bad record. Keep everything and retry after backoff.
            return
        first, last = session.inflight[0]
        if first != last:
            self._probe_until = last
            return
        record = self._spool.reject(first, reason)
        if record is None:
            return
        self.rejected += 1
        log.error("collector refused a record; set aside", seq=first, run_id=record.run_id)
        if not record.HasField("loss_notice"):  # never a notice about a refused notice
            self._sink.emit(
                [delivery_loss(record.run_id, 1, f"the collector refused a record: {reason}")]
            )

    def _stream(self) -> None:
        session = _Session()
        with self._cond:
            self._session = session
        channel = None
        try:
            replies: Iterator[pb.StreamReply]
            if self._local is not None:
                # Pulled by this thread: each batch is stored and acked before the next is read.
                context = cast(grpc.ServicerContext, _InProcessContext())
                replies = self._local.Stream(self._requests(session), context)
            else:
                channel = client_channel(self._target)
                stub = collector_pb2_grpc.CollectorStub(channel)  # type: ignore[no-untyped-call]
                replies = self._call = stub.Stream(self._requests(session))
            for reply in replies:
                self._handle(session, reply)
        finally:
            with self._cond:
                session.active = False
                self._cond.notify_all()
            if channel is not None:
                channel.close()
            self._call = None

    def _handle(self, session: _Session, reply: pb.StreamReply) -> None:
        which = reply.WhichOneof("msg")
        if which == "welcome":
            session.welcomed = True
            # Keep numbering above whatever this host ever sent, whatever the clock says.
            self._sink.advance_past(reply.welcome.acked_seq)
            self.connected = True
            self.last_error = None
            log.info("collector connected", collector=reply.welcome.collector_id)
            self._batch = min(self._batch, reply.welcome.max_batch or self._batch)
        elif which == "ack":
            seq = reply.ack.seq
            self._spool.ack(seq)
            with self._cond:
                while session.inflight and session.inflight[0][1] <= seq:
                    session.inflight.popleft()
                self.acked_seq = max(self.acked_seq, seq)
                self._cond.notify_all()

    def _can_send(self, session: _Session, sent_upto: int) -> bool:
        """Wake the request generator: the session ended, or there is room and news."""
        if not session.active:
            return True
        window = 1 if sent_upto < self._probe_until else self._window
        return len(session.inflight) < window and self._sink.spooled_seq > sent_upto

    def _requests(self, session: _Session) -> Iterator[pb.StreamRequest]:
        """The request side of the call, run by gRPC's own thread."""
        pending = self._spool.after(0, 1)
        yield pb.StreamRequest(
            hello=pb.Hello(
                protocol=PROTOCOL,
                host_id=self._hello.host_id,
                boot_id=self._hello.boot_id,
                version=self._hello.version,
                tier=self._hello.tier,
                resume_seq=pending[0].seq if pending else 0,
            )
        )
        sent_upto = 0  # every session resends all that is spooled: acks may have been lost
        while True:
            with self._cond:
                ready = self._cond.wait_for(
                    functools.partial(self._can_send, session, sent_upto), _HEARTBEAT_SECONDS
                )
                if not session.active:
                    return
                high = self._sink.spooled_seq
            if not ready:
                yield pb.StreamRequest(heartbeat=pb.Heartbeat(time=time.time()))
                continue
            size = 1 if sent_upto < self._probe_until else self._batch
            records = self._spool.after(sent_upto, size)
            if not records:  # acked or shed meanwhile
                sent_upto = max(sent_upto, high)
                continue
            sent_upto = records[-1].seq
            with self._cond:
                session.inflight.append((records[0].seq, sent_upto))
            self.records_sent += len(records)
            yield pb.StreamRequest(batch=pb.Batch(records=records))

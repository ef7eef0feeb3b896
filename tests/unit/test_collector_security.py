"""The collector's defences, over real gRPC sockets: mutual TLS (a host's id is its client
certificate's common name), bearer tokens, the loopback-only rule for unauthenticated
collectors, tokens-file parsing, and fuzzing of the wire protocol (random bytes, mutated
messages, protocol abuse). Every bad stream or query ends with the status that says what
was wrong, the collector keeps serving, and what it stored before is never altered.

The fuzz cases derive from one seed, printed by each fuzz test; rerun a failure with
ROARD_FUZZ_SEED=<seed>.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.message import DecodeError, Message

from roard.collector.client import CollectorClient
from roard.collector.scopes import (
    DEFAULT_PROJECT,
    Principal,
)
from roard.collector.service import MAX_BATCH, PROTOCOL, CollectorServer
from roard.collector.sqlite import SqliteStore
from roard.collector.transport import (
    MAX_MESSAGE_BYTES,
    CollectorTarget,
    TlsFiles,
    client_channel,
    parse_tokens,
)
from roard.errors import ConfigError
from roard.export.stream import Exporter, HelloInfo
from roard.records.sink import SpoolSink
from roard.records.spool import Spool
from roard.v1 import collector_pb2 as cpb
from roard.v1 import records_pb2 as pb
from tests.pki import Pki, make_pki

OK = grpc.StatusCode.OK
INVALID = grpc.StatusCode.INVALID_ARGUMENT
DENIED = grpc.StatusCode.PERMISSION_DENIED
UNAUTHENTICATED = grpc.StatusCode.UNAUTHENTICATED
PRECONDITION = grpc.StatusCode.FAILED_PRECONDITION
UNAVAILABLE = grpc.StatusCode.UNAVAILABLE
INTERNAL = grpc.StatusCode.INTERNAL

HASH = "blake3:" + "ab" * 32
TOKEN_A = "a1" * 16
TOKEN_B = "b2" * 16
TOKENS_FILE = f"# host tokens\nhost-a {TOKEN_A}\nhost-b {TOKEN_B}  # the second host\n"
CALL_TIMEOUT = 10.0

SEED = int(os.environ.get("ROARD_FUZZ_SEED", "20261126"))
FUZZ_CASES = 300
STREAM = "/roard.v1.Collector/Stream"
# Every unary method of the service, with its request type.
QUERIES: dict[str, type[Message]] = {
    "ShowRun": cpb.RunQuery,
    "RunSummary": cpb.RunQuery,
    "ListRuns": cpb.RunsQuery,
    "FindArtifact": cpb.ArtifactQuery,
    "Lineage": cpb.LineageQuery,
    "RunGraph": cpb.RunQuery,
    "Export": cpb.ExportQuery,
}


# ------------------------------------------------------------------------------ records


def run_records(run_id: str, host: str, first_seq: int = 0) -> list[pb.Record]:
    """A whole run: tagged, a process, an input and an output, a path change, a loss
    notice, the process's exit, finished. Numbered from `first_seq` unless it is 0 (the
    sink numbers them)."""
    now = time.time()
    bodies: list[dict[str, Any]] = [
        {
            "run_tagged": pb.RunTagged(
                name=f"name-{run_id}",
                labels={"team": "ml", "run": run_id},
                host=host,
                uid=1000,
                how="spawn",
                root_pid=4242,
                started_at=now,
            )
        },
        {
            "process_started": pb.ProcessStarted(
                pid=4242,
                ppid=1,
                start_ticks=99,
                exe="/usr/bin/python3",
                argv=["python3", "train.py"],
                cwd="/work",
                uid=1000,
                started_at=now,
            )
        },
        {
            "file_access": pb.FileAccess(
                path=f"/data/{run_id}.csv",
                role=pb.ROLE_INPUT,
                hash=HASH,
                size=10,
                kind="artifact",
                bytes_read=10,
            )
        },
        {
            "file_access": pb.FileAccess(
                path=f"/out/{run_id}.pt",
                role=pb.ROLE_OUTPUT,
                hash="blake3:" + "cd" * 32,
                size=20,
                kind="artifact",
                bytes_written=20,
            )
        },
        {
            "path_changed": pb.PathChanged(
                op=pb.PathChanged.OP_RENAME, path="/out/tmp", new_path=f"/out/{run_id}.pt"
            )
        },
        {"loss_notice": pb.LossNotice(lost_events=2, reason="ring buffer full")},
        {"process_exited": pb.ProcessExited(pid=4242, start_ticks=99, exit_code=0, ended_at=now)},
        {"run_finished": pb.RunFinished(has_exit_code=True, exit_code=0, ended_at=now)},
    ]
    return [
        pb.Record(
            id=f"{run_id}/{i}",
            run_id=run_id,
            seq=first_seq + i if first_seq else 0,
            time=now,
            **body,
        )
        for i, body in enumerate(bodies)
    ]


def record(run_id: str, seq: int, rid: str | None = None, **body: Any) -> pb.Record:
    """One record (a FileAccess unless a body is given)."""
    if not body:
        body = {"file_access": pb.FileAccess(path=f"/data/{seq}", role=pb.ROLE_INPUT, hash=HASH)}
    return pb.Record(
        id=f"{run_id}/r{seq}" if rid is None else rid,
        run_id=run_id,
        seq=seq,
        time=time.time(),
        **body,
    )


def hello(host: str, protocol: int = PROTOCOL) -> cpb.StreamRequest:
    return cpb.StreamRequest(
        hello=cpb.Hello(protocol=protocol, host_id=host, boot_id="boot", version="test")
    )


def batch(records: Sequence[pb.Record]) -> cpb.StreamRequest:
    return cpb.StreamRequest(batch=cpb.Batch(records=records))


def heartbeat() -> cpb.StreamRequest:
    return cpb.StreamRequest(heartbeat=cpb.Heartbeat(time=time.time()))


# -------------------------------------------------------------------------- raw calls


def _identity(data: bytes) -> bytes:
    return data


@dataclass
class Outcome:
    """How one Stream call ended, and what it was answered on the way."""

    code: grpc.StatusCode
    details: str
    replies: list[cpb.StreamReply] = field(default_factory=list)

    @property
    def stored(self) -> int:
        """Records the collector acked as newly stored."""
        return sum(r.ack.stored for r in self.replies if r.HasField("ack"))


def raw_stream(channel: grpc.Channel, messages: Sequence[bytes]) -> Outcome:
    """Sends `messages` (serialized StreamRequests, or any bytes) on one Stream call."""
    method = channel.stream_stream(
        STREAM, request_serializer=_identity, response_deserializer=_identity
    )
    replies: list[cpb.StreamReply] = []
    try:
        for raw in method(iter(messages), timeout=CALL_TIMEOUT):
            replies.append(cpb.StreamReply.FromString(raw))
    except grpc.RpcError as exc:
        return Outcome(exc.code(), exc.details() or "", replies)
    return Outcome(OK, "", replies)


def stream(channel: grpc.Channel, requests: Sequence[cpb.StreamRequest]) -> Outcome:
    return raw_stream(channel, [r.SerializeToString() for r in requests])


def raw_query(channel: grpc.Channel, method: str, data: bytes) -> tuple[grpc.StatusCode, bytes]:
    call = channel.unary_unary(
        f"/roard.v1.Collector/{method}",
        request_serializer=_identity,
        response_deserializer=_identity,
    )
    try:
        return OK, call(data, timeout=CALL_TIMEOUT)
    except grpc.RpcError as exc:
        return exc.code(), b""


def show_run(channel: grpc.Channel, run: str) -> tuple[grpc.StatusCode, bytes]:
    return raw_query(channel, "ShowRun", cpb.RunQuery(run=run).SerializeToString())


def count_records(store: SqliteStore) -> int:
    with store._read() as cur:
        cur.execute("SELECT COUNT(*) AS n FROM records")
        return int(cur.fetchone()["n"])


def snapshot(store: SqliteStore, runs: Sequence[str]) -> dict[str, str]:
    """What the registry says about `runs`, to compare before and after an attack."""
    return {run: json.dumps([store.show(run), store.summary(run)], sort_keys=True) for run in runs}


@contextlib.contextmanager
def serve(store: SqliteStore, listen: str = "127.0.0.1:0", **kwargs: Any) -> Iterator[str]:
    """A started collector on `listen`; yields the address clients dial."""
    server = CollectorServer(store, listen, max_hosts=8, **kwargs)
    server.start()
    try:
        yield listen if listen.startswith("unix:") else f"127.0.0.1:{server.port}"
    finally:
        server.stop(0)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    with SqliteStore(tmp_path / "registry.db") as registry:
        yield registry


# ------------------------------------------------------------------------ a real daemon


@dataclass
class Host:
    """A daemon's delivery path: spool, sink, exporter."""

    spool: Spool
    sink: SpoolSink
    exporter: Exporter

    def emit(self, records: list[pb.Record]) -> None:
        self.sink.emit(records)
        assert self.sink.flush(10)

    def close(self) -> None:
        self.sink.close()
        self.exporter.stop()
        self.spool.close()


@contextlib.contextmanager
def daemon(state: Path, target: CollectorTarget, host_id: str) -> Iterator[Host]:
    state.mkdir(parents=True, exist_ok=True)
    spool = Spool(state / "spool.db", 1 << 30)
    holder: list[Exporter] = []

    def spooled() -> None:
        if holder:
            holder[0].notify()

    sink = SpoolSink(spool, on_spooled=spooled)
    exporter = Exporter(spool, sink, target, HelloInfo(host_id, "boot", "test", "tracepoint"))
    holder.append(exporter)
    exporter.start()
    host = Host(spool, sink, exporter)
    try:
        yield host
    finally:
        host.close()


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


# --------------------------------------------------------------------------------- PKI


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


# --------------------------------------------------------------------------------- mTLS


@pytest.fixture
def mtls_address(store: SqliteStore, pki: Pki) -> Iterator[str]:
    with serve(store, tls=pki.server, mtls=True) as address:
        yield address


def test_mtls_host_delivers_through_the_exporter(
    tmp_path: Path, store: SqliteStore, pki: Pki, mtls_address: str
) -> None:
    target = CollectorTarget(mtls_address, tls=pki.clients["host-a"])
    with daemon(tmp_path / "a", target, "host-a") as host:
        records = run_records("run-a", "host-a")
        host.emit(records)
        assert host.exporter.wait_acked(host.sink.last_emitted, 10), host.exporter.last_error
        assert host.spool.depth().records == 0
    shown = store.show("run-a")
    assert (shown["host"], shown["status"], shown["exit_code"]) == ("host-a", "finished", 0)
    assert [f["path"] for f in shown["inputs"]] == ["/data/run-a.csv"]
    assert count_records(store) == len(records)
    # Queries go through the same certificate check.
    client = CollectorClient(target)
    try:
        assert client.show("run-a") == shown
    finally:
        client.close()


def test_mtls_hello_for_another_host_is_denied(
    tmp_path: Path, store: SqliteStore, pki: Pki, mtls_address: str
) -> None:
    channel = client_channel(CollectorTarget(mtls_address, tls=pki.clients["host-a"]))
    with channel:
        outcome = stream(channel, [hello("host-b"), batch(run_records("run-b", "host-b", 1))])
    assert outcome.code == DENIED, outcome
    assert "'host-a'" in outcome.details and "'host-b'" in outcome.details
    assert outcome.replies == []  # not even a welcome

    # A daemon configured as host-b with host-a's certificate: refused on every attempt,
    # and its records stay spooled.
    target = CollectorTarget(mtls_address, tls=pki.clients["host-a"])
    with daemon(tmp_path / "b", target, "host-b") as host:
        host.emit(run_records("run-b2", "host-b"))
        assert wait_for(lambda: (host.exporter.last_error or "").startswith("PERMISSION_DENIED"))
        assert not host.exporter.connected
        assert host.spool.depth().records == 8
    assert count_records(store) == 0


def test_mtls_host_b_cannot_write_host_a_runs(
    store: SqliteStore, pki: Pki, mtls_address: str
) -> None:
    with (
        client_channel(CollectorTarget(mtls_address, tls=pki.clients["host-a"])) as channel_a,
        client_channel(CollectorTarget(mtls_address, tls=pki.clients["host-b"])) as channel_b,
    ):
        _host_b_attacks(channel_a, channel_b, store)


@pytest.mark.parametrize("client", ["rogue", "no-cert", "wrong-trust"])
def test_mtls_untrusted_clients_cannot_connect(
    store: SqliteStore, pki: Pki, mtls_address: str, client: str
) -> None:
    """A client certificate from another CA, none at all, or a client that does not trust
    the collector's certificate: the handshake fails, so the call is UNAVAILABLE."""
    channel = client_channel(CollectorTarget(mtls_address, tls=pki.clients[client]))
    with channel:
        outcome = stream(channel, [hello("host-a"), batch(run_records("run-x", "host-a", 1))])
        query, _ = show_run(channel, "run-x")
    assert (outcome.code, query) == (UNAVAILABLE, UNAVAILABLE), outcome
    assert count_records(store) == 0


def test_plaintext_client_to_the_tls_port_fails(
    store: SqliteStore, pki: Pki, mtls_address: str
) -> None:
    with grpc.insecure_channel(mtls_address) as channel:
        outcome = stream(channel, [hello("host-a"), batch(run_records("run-x", "host-a", 1))])
        query, _ = show_run(channel, "run-x")
    assert (outcome.code, query) == (UNAVAILABLE, UNAVAILABLE), outcome
    assert count_records(store) == 0


# ------------------------------------------------------------------------------- tokens


def test_tokens_need_tls_except_to_loopback() -> None:
    with pytest.raises(ConfigError, match="needs TLS"):
        client_channel(CollectorTarget("192.0.2.1:7443", token=TOKEN_A))
    # Loopback and Unix sockets: the token rides on gRPC's local credentials.
    client_channel(CollectorTarget("127.0.0.1:7443", token=TOKEN_A)).close()
    client_channel(CollectorTarget("unix:/nonexistent/c.sock", token=TOKEN_A)).close()


@pytest.fixture
def token_address(store: SqliteStore) -> Iterator[str]:
    with serve(store, credentials=parse_tokens(TOKENS_FILE, "tokens")) as address:
        yield address


def test_token_host_delivers_through_the_exporter(
    tmp_path: Path, store: SqliteStore, token_address: str
) -> None:
    target = CollectorTarget(token_address, token=TOKEN_A)
    with daemon(tmp_path / "a", target, "host-a") as host:
        host.emit(run_records("run-a", "host-a"))
        assert host.exporter.wait_acked(host.sink.last_emitted, 10), host.exporter.last_error
    assert store.show("run-a")["host"] == "host-a"
    assert count_records(store) == 8


@pytest.mark.parametrize("token", ["ff" * 16, None], ids=["wrong", "missing"])
def test_wrong_or_missing_token_is_unauthenticated(
    store: SqliteStore, token_address: str, token: str | None
) -> None:
    with client_channel(CollectorTarget(token_address, token=token)) as channel:
        outcome = stream(channel, [hello("host-a"), batch(run_records("run-x", "host-a", 1))])
        query, _ = show_run(channel, "run-x")
    assert (outcome.code, query) == (UNAUTHENTICATED, UNAUTHENTICATED), outcome
    assert "token" in outcome.details
    assert count_records(store) == 0


def _host_b_attacks(channel_a: grpc.Channel, channel_b: grpc.Channel, store: SqliteStore) -> None:
    """host-a records run-a; host-b's credentials cannot touch it in any way."""
    assert stream(channel_a, [hello("host-a"), batch(run_records("run-a", "host-a", 1))]).code == OK
    before, count = snapshot(store, ["run-a"]), count_records(store)
    attacks = {
        "hello as host-a": [hello("host-a"), batch([record("run-a", 100)])],
        "append to run-a": [hello("host-b"), batch([record("run-a", 100)])],
        "tag naming host-a": [
            hello("host-b"),
            batch([record("run-a", 100, run_tagged=pb.RunTagged(host="host-a"))]),
        ],
        "retag as host-b": [
            hello("host-b"),
            batch([record("run-a", 100, run_tagged=pb.RunTagged(host="host-b", uid=0))]),
        ],
        "finish run-a": [
            hello("host-b"),
            batch([record("run-a", 100, run_finished=pb.RunFinished(has_exit_code=True))]),
        ],
    }
    for name, requests in attacks.items():
        outcome = stream(channel_b, requests)
        assert outcome.code == DENIED, (name, outcome)
    assert snapshot(store, ["run-a"]) == before
    assert count_records(store) == count
    # host-b still records its own runs.
    assert stream(channel_b, [hello("host-b"), batch(run_records("run-b", "host-b", 1))]).code == OK
    assert store.show("run-b")["host"] == "host-b"


def test_host_b_token_cannot_write_host_a_runs(store: SqliteStore, token_address: str) -> None:
    with (
        client_channel(CollectorTarget(token_address, token=TOKEN_A)) as channel_a,
        client_channel(CollectorTarget(token_address, token=TOKEN_B)) as channel_b,
    ):
        _host_b_attacks(channel_a, channel_b, store)


def test_tls_and_tokens_together(store: SqliteStore, pki: Pki) -> None:
    tls = TlsFiles(cert=pki.server.cert, key=pki.server.key)  # server-only TLS
    trust = TlsFiles(ca=pki.ca)
    with serve(store, tls=tls, credentials=parse_tokens(TOKENS_FILE, "tokens")) as address:
        for token in ("ff" * 16, None):
            with client_channel(CollectorTarget(address, tls=trust, token=token)) as channel:
                outcome = stream(channel, [hello("host-a"), batch([record("run-x", 1)])])
                assert outcome.code == UNAUTHENTICATED, outcome
                assert show_run(channel, "run-x")[0] == UNAUTHENTICATED
        with client_channel(CollectorTarget(address, token=TOKEN_A)) as plaintext:
            assert stream(plaintext, [hello("host-a")]).code == UNAVAILABLE
        assert count_records(store) == 0
        with (
            client_channel(CollectorTarget(address, tls=trust, token=TOKEN_A)) as channel_a,
            client_channel(CollectorTarget(address, tls=trust, token=TOKEN_B)) as channel_b,
        ):
            _host_b_attacks(channel_a, channel_b, store)
            assert show_run(channel_a, "run-a")[0] == OK


# ------------------------------------------------------------------------ configuration


@pytest.mark.parametrize("listen", ["0.0.0.0:0", "[::]:0", "192.0.2.1:7443"])
def test_refuses_to_listen_publicly_without_client_authentication(
    store: SqliteStore, listen: str
) -> None:
    with pytest.raises(ConfigError) as error:
        CollectorServer(store, listen)
    message = str(error.value)
    assert listen in message
    for hint in ("without client authentication", "--mtls", "--tokens", "127.0.0.1", "unix:"):
        assert hint in message


def test_public_listen_needs_client_authentication(store: SqliteStore, pki: Pki) -> None:
    """Off loopback: mutual TLS, or tokens over TLS. TLS alone (anyone may connect) and
    tokens in the clear are refused."""
    tokens = parse_tokens(TOKENS_FILE, "t")
    CollectorServer(store, "0.0.0.0:0", tls=pki.server, credentials=tokens).stop(0)
    CollectorServer(store, "0.0.0.0:0", tls=pki.server, mtls=True).stop(0)
    with pytest.raises(ConfigError, match="without client authentication"):
        CollectorServer(store, "0.0.0.0:0", tls=pki.server)
    with pytest.raises(ConfigError, match="in the clear"):
        CollectorServer(store, "0.0.0.0:0", credentials=tokens)
    with pytest.raises(ConfigError, match="--tls-ca"):
        CollectorServer(
            store, "0.0.0.0:0", tls=TlsFiles(pki.server.cert, pki.server.key), mtls=True
        )
    with pytest.raises(ConfigError, match="--tls-key"):
        CollectorServer(store, "0.0.0.0:0", tls=TlsFiles(cert=pki.server.cert))


def test_parse_tokens() -> None:
    text = f"\n# comment\nhost-a   {TOKEN_A}\t# trailing comment\n  host-b {TOKEN_B}\n"
    default = frozenset({DEFAULT_PROJECT})
    assert parse_tokens(text, "t").tokens == {
        TOKEN_A: Principal("host-a", default),
        TOKEN_B: Principal("host-b", default),
    }
    # One host may hold two tokens (rotation).
    rotated = parse_tokens(f"h {TOKEN_A}\nh {TOKEN_B}\n", "t").tokens
    assert rotated == {TOKEN_A: Principal("h", default), TOKEN_B: Principal("h", default)}


@pytest.mark.parametrize(
    ("text", "where", "why"),
    [
        (f"host-a {TOKEN_A}\nhost-b 0123456789abcde\n", "tokens:2:", "at least 16"),
        (f"# c\n\nhost-a {TOKEN_A}\nhost-b {TOKEN_A}\n", "tokens:4:", "token reused"),
        (f"host-a {TOKEN_A} proj extra\n", "tokens:1:", "expected 'HOST_ID TOKEN"),
        (f"host-a {TOKEN_A}\n{TOKEN_B}\n", "tokens:2:", "expected 'HOST_ID TOKEN"),
    ],
    ids=["short", "reused", "four-fields", "one-field"],
)
def test_parse_tokens_errors_name_the_line(text: str, where: str, why: str) -> None:
    with pytest.raises(ConfigError) as error:
        parse_tokens(text, "tokens")
    assert str(error.value).startswith(where)
    assert why in str(error.value)


# ------------------------------------------------------------------------------ fuzzing


PRE_RUNS = ["pre-run-0", "pre-run-1", "pre-run-2"]


@dataclass
class FuzzTarget:
    """A collector on loopback (no authentication: hellos name their host) holding a few
    runs of host-a, with what the registry said about them before the attack."""

    store: SqliteStore
    channel: grpc.Channel
    before: dict[str, str]
    records_before: int

    def owner(self, run_id: str) -> str:
        with self.store._read() as cur:
            cur.execute("SELECT host FROM runs WHERE run_id = ?", (run_id,))
            row = cur.fetchone()
        return str(row["host"]) if row else ""

    def expected(self, messages: Sequence[bytes]) -> grpc.StatusCode:
        """The status the protocol (collector.proto, service.py) demands for a stream of
        `messages`, decided independently of the collector, message by message."""
        if not messages:
            return INVALID
        host: str | None = None
        last = 0
        for raw in messages:
            try:
                request = cpb.StreamRequest.FromString(raw)
            except DecodeError:
                return INTERNAL  # gRPC cannot deserialize it: the call ends there
            which = request.WhichOneof("msg")
            if host is None:
                if which != "hello":
                    return INVALID
                if request.hello.protocol != PROTOCOL:
                    return PRECONDITION
                if not request.hello.host_id:
                    return INVALID
                host = request.hello.host_id
                continue
            if which == "heartbeat":
                continue
            if which != "batch" or not request.batch.records:
                return INVALID
            records = list(request.batch.records)
            if len(records) > MAX_BATCH:
                return INVALID
            for r in records:
                if r.seq <= last or not _storable(r):
                    return INVALID
                last = r.seq
            if any(not r.id or not r.run_id for r in records):
                return INVALID
            unique = list({r.id: r for r in reversed(records)}.values())  # first id wins
            if any(r.HasField("run_tagged") and r.run_tagged.host != host for r in unique):
                return DENIED
            if any(self.owner(r.run_id) not in ("", host) for r in unique):
                return DENIED
        return OK

    def check(self, outcome: Outcome, messages: Sequence[bytes], case: str) -> None:
        expected = self.expected(messages)
        assert outcome.code == expected, (case, outcome, [m[:200].hex() for m in messages])
        if outcome.code == INTERNAL:
            assert "deserializ" in outcome.details, (case, outcome)

    def assert_intact(self, stored: int) -> None:
        """The collector still takes a stream and answers queries; host-a's runs read
        as before; the registry grew by exactly the records it acked as stored."""
        healthy = run_records("healthy-run", "healthy-host", 1)
        outcome = stream(self.channel, [hello("healthy-host"), batch(healthy)])
        assert (outcome.code, outcome.stored) == (OK, len(healthy)), outcome
        code, reply = show_run(self.channel, "healthy-run")
        assert code == OK and json.loads(cpb.JsonDoc.FromString(reply).json)["status"] == "finished"
        assert snapshot(self.store, PRE_RUNS) == self.before
        for run in PRE_RUNS:
            code, reply = show_run(self.channel, run)
            assert code == OK
            assert json.loads(cpb.JsonDoc.FromString(reply).json) == self.store.show(run)
        assert count_records(self.store) == self.records_before + stored + len(healthy)
        # Everything the collector accepted can be read back, listed and exported.
        code, reply = raw_query(
            self.channel, "ListRuns", cpb.RunsQuery(limit=100_000).SerializeToString()
        )
        assert code == OK, "a stored run breaks `roarctl runs`"
        for summary in json.loads(cpb.JsonDoc.FromString(reply).json):
            by_id = cpb.RunQuery(run=summary["run_id"]).SerializeToString()
            for method in ("ShowRun", "RunSummary", "RunGraph"):
                assert raw_query(self.channel, method, by_id)[0] == OK, (method, summary)
            for fmt in ("openlineage", "prov"):
                query = cpb.ExportQuery(run=summary["run_id"], format=fmt).SerializeToString()
                assert raw_query(self.channel, "Export", query)[0] == OK, (fmt, summary)


def _storable(r: pb.Record) -> bool:
    """Whether the registry can show and export the record: every timestamp in RFC 3339
    range (1970..9999), and a content hash, if any, in the form the proto names."""
    times = [r.time]
    kind = r.WhichOneof("body")
    if kind == "run_tagged":
        times.append(r.run_tagged.started_at)
    elif kind == "process_started":
        times.append(r.process_started.started_at)
    elif kind == "process_exited":
        times.append(r.process_exited.ended_at)
    elif kind == "run_finished":
        times.append(r.run_finished.ended_at)
    if not all(math.isfinite(t) and 0 <= t < 253402214400.0 for t in times):
        return False
    digest = r.file_access.hash if kind == "file_access" else ""
    return not digest or (
        digest.startswith("blake3:")
        and len(digest) == 71
        and all(c in "0123456789abcdef" for c in digest[7:])
    )


@pytest.fixture
def target(store: SqliteStore) -> Iterator[FuzzTarget]:
    with serve(store) as address, grpc.insecure_channel(address) as channel:
        for i, run in enumerate(PRE_RUNS):
            outcome = stream(
                channel, [hello("host-a"), batch(run_records(run, "host-a", 1 + i * 100))]
            )
            assert outcome.code == OK, outcome
        yield FuzzTarget(store, channel, snapshot(store, PRE_RUNS), count_records(store))


def _random_bytes(rng: random.Random) -> bytes:
    size = rng.choice([0, 1, 2, 3, rng.randint(4, 64), rng.randint(64, 2048)])
    return rng.randbytes(size)


def test_fuzz_random_bytes(target: FuzzTarget) -> None:
    print(f"fuzz seed {SEED} (ROARD_FUZZ_SEED)")
    rng = random.Random(SEED)
    opening = hello("fuzz-host").SerializeToString()
    stored = 0
    codes: dict[grpc.StatusCode, int] = {}
    for i in range(FUZZ_CASES):
        data = _random_bytes(rng)
        # As the opening message, and after a proper hello.
        for messages in ([data], [opening, data]):
            outcome = raw_stream(target.channel, messages)
            target.check(outcome, messages, f"stream case {i}")
            stored += outcome.stored
            codes[outcome.code] = codes.get(outcome.code, 0) + 1
        for method, request_type in QUERIES.items():
            code, reply = raw_query(target.channel, method, data)
            try:
                request_type.FromString(data)
            except DecodeError:
                assert code == INTERNAL, (method, i, data.hex())
                continue
            assert code in (OK, INVALID, grpc.StatusCode.NOT_FOUND), (method, i, code, data.hex())
            if code == OK:
                json.loads(cpb.JsonDoc.FromString(reply).json)
    print("stream outcomes:", {c.name: n for c, n in codes.items()})
    target.assert_intact(stored)


def test_every_method_is_fuzzed() -> None:
    methods = cpb.DESCRIPTOR.services_by_name["Collector"].methods_by_name
    assert set(methods) == {*QUERIES, "Stream"}
    for name, request_type in QUERIES.items():
        assert methods[name].input_type.full_name == request_type.DESCRIPTOR.full_name


def _mutate(rng: random.Random, data: bytes) -> bytes:
    """`data` with one to four random byte edits. Most keep the length, and most of those
    keep text valid UTF-8, so that many mutants still parse and reach the protocol checks
    instead of all failing to deserialize."""
    buf = bytearray(data)
    for _ in range(rng.choice([1, 1, 1, 2, 3, 4])):
        op = rng.choices(["flip", "text", "byte", "insert", "delete"], [40, 20, 15, 12, 13])[0]
        if op == "insert" or not buf:
            buf.insert(rng.randint(0, len(buf)), rng.randrange(256))
        elif op == "delete":
            del buf[rng.randrange(len(buf))]
        else:
            at = rng.randrange(len(buf))
            if op == "flip":
                buf[at] ^= 1 << rng.randrange(7)
            else:
                buf[at] = rng.randrange(32, 127) if op == "text" else rng.randrange(256)
    return bytes(buf)


def test_fuzz_mutated_messages(target: FuzzTarget) -> None:
    print(f"fuzz seed {SEED} (ROARD_FUZZ_SEED)")
    rng = random.Random(SEED + 1)
    stored = 0
    codes: dict[grpc.StatusCode, int] = {}
    for i in range(FUZZ_CASES):
        valid = [
            hello("fuzz-host").SerializeToString(),
            batch(run_records(f"fz-{i}", "fuzz-host", 1)).SerializeToString(),
        ]
        which = rng.choice([[0], [1], [0, 1]])
        messages = [_mutate(rng, m) if n in which else m for n, m in enumerate(valid)]
        outcome = raw_stream(target.channel, messages)
        target.check(outcome, messages, f"mutation case {i}")
        stored += outcome.stored
        codes[outcome.code] = codes.get(outcome.code, 0) + 1
    print("outcomes:", {c.name: n for c, n in codes.items()})
    assert codes.get(OK, 0) < FUZZ_CASES  # the mutations did break things
    target.assert_intact(stored)


def _oversized() -> bytes:
    """One batch message over the collector's message limit."""
    big = record("big-run", 1)
    big.file_access.path = "/" + "x" * MAX_MESSAGE_BYTES
    return batch([big]).SerializeToString()


def test_protocol_abuse(target: FuzzTarget) -> None:
    """Each abuse ends its stream with the status that names it; the oracle the fuzz tests
    use agrees with each of these hand-written expectations."""
    h = hello("sem-host")
    ok_batch = batch(run_records("sem-run", "sem-host", 10)[:3])  # seq 10, 11, 12
    replayed = batch(run_records("sem-run-r", "sem-host", 10)[:3])
    huge = "h" * (1 << 20)
    mb_path = record("mb-run", 1)
    mb_path.file_access.path = "/" + "p" * (1 << 20)
    cases: dict[str, tuple[list[cpb.StreamRequest] | list[bytes], grpc.StatusCode, int]] = {
        "nothing at all": ([], INVALID, 0),
        "batch before hello": ([ok_batch, h], INVALID, 0),
        "heartbeat before hello": ([heartbeat(), h], INVALID, 0),
        "two hellos": ([h, h], INVALID, 0),
        "protocol 99": ([hello("sem-host", 99), ok_batch], PRECONDITION, 0),
        "protocol unset": ([hello("sem-host", 0), ok_batch], PRECONDITION, 0),
        "empty host id": ([hello(""), ok_batch], INVALID, 0),
        "empty message": ([h, cpb.StreamRequest()], INVALID, 0),
        "empty batch": ([h, batch([])], INVALID, 0),
        "seq 0": ([h, batch([record("sem-run", 0)])], INVALID, 0),
        "repeated seq": ([h, batch([record("sem-run", 5), record("sem-run", 5, "x")])], INVALID, 0),
        "decreasing seq": ([h, batch([record("sem-run", 7), record("sem-run", 6)])], INVALID, 0),
        "seq backwards across batches": ([h, ok_batch, batch([record("sem-run", 5)])], INVALID, 3),
        "batch replayed": ([h, replayed, replayed], INVALID, 3),
        "record without id": ([h, batch([record("sem-run", 1, rid="")])], INVALID, 0),
        "record without run id": ([h, batch([record("", 1, rid="x")])], INVALID, 0),
        "batch over MAX_BATCH": (
            [h, batch([record("sem-run", s) for s in range(1, MAX_BATCH + 2)])],
            INVALID,
            0,
        ),
        "run tagged on another host": (
            [h, batch([record("sem-run-2", 1, run_tagged=pb.RunTagged(host="host-a"))])],
            DENIED,
            0,
        ),
        "record for another host's run": ([h, batch([record("pre-run-0", 1)])], DENIED, 0),
        "retag another host's run": (
            [h, batch([record("pre-run-1", 1, run_tagged=pb.RunTagged(host="sem-host"))])],
            DENIED,
            0,
        ),
        "good records, then one for another host's run": (
            [h, batch([*run_records("sem-run-3", "sem-host", 1)[:3], record("pre-run-2", 9)])],
            DENIED,
            0,
        ),
        "NaN time": (
            [h, batch([pb.Record(id="n", run_id="nan-run", seq=1, time=math.nan)])],
            INVALID,
            0,
        ),
        "infinite started_at": (
            [
                h,
                batch(
                    [
                        record(
                            "inf-run",
                            1,
                            run_tagged=pb.RunTagged(host="sem-host", started_at=math.inf),
                        )
                    ]
                ),
            ],
            INVALID,
            0,
        ),
        "time past year 9999": (
            [h, batch([record("far-run", 1, run_finished=pb.RunFinished(ended_at=1e300))])],
            INVALID,
            0,
        ),
        "negative time": (
            [h, batch([pb.Record(id="neg", run_id="neg-run", seq=1, time=-1.0)])],
            INVALID,
            0,
        ),
        "message over the size limit": (
            [h.SerializeToString(), _oversized()],
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            0,
        ),
        # No per-field length limit below the message limit: a 1 MiB path is stored intact.
        "1 MiB path": ([h, batch([mb_path])], OK, 1),
        # Reasons quoting a huge value still arrive as the reason, not as an oversized
        # trailer (RESOURCE_EXHAUSTED).
        "1 MiB id, no run id": ([h, batch([record("", 1, rid=huge)])], INVALID, 0),
        "run tagged on a 1 MiB host": (
            [h, batch([record("sem-run-4", 1, run_tagged=pb.RunTagged(host=huge))])],
            DENIED,
            0,
        ),
        "1 MiB host, protocol 99": ([hello(huge, 99)], PRECONDITION, 0),
        "hash not blake3": (
            [
                h,
                batch(
                    [record("sem-run-5", 1, file_access=pb.FileAccess(path="/a", hash="md5:00"))]
                ),
            ],
            INVALID,
            0,
        ),
        "hash in upper case": (
            [h, batch([record("sem-run-5", 1, file_access=pb.FileAccess(hash=HASH.upper()))])],
            INVALID,
            0,
        ),
        # A temporary the run deleted was never hashed.
        "no hash": (
            [
                h,
                batch(
                    [
                        record(
                            "sem-run-6",
                            1,
                            file_access=pb.FileAccess(path="/tmp/x", role=pb.ROLE_DELETED),
                        )
                    ]
                ),
            ],
            OK,
            1,
        ),
    }
    stored = 0
    for name, (requests, code, new) in cases.items():
        messages = [m if isinstance(m, bytes) else m.SerializeToString() for m in requests]
        if code != grpc.StatusCode.RESOURCE_EXHAUSTED:
            assert target.expected(messages) == code, name
        outcome = raw_stream(target.channel, messages)
        assert (outcome.code, outcome.stored) == (code, new), (name, outcome)
        assert len(outcome.details) <= 512, name
        stored += outcome.stored
    assert target.store.show("mb-run")["inputs"][0]["path"] == mb_path.file_access.path
    assert show_run(target.channel, huge)[0] == grpc.StatusCode.NOT_FOUND
    target.assert_intact(stored)


def test_unknown_enum_values_are_stored_and_shown(target: FuzzTarget) -> None:
    """A newer sender's enum values (or a mutated one) are stored, and the run still shows."""
    records = [
        record("enum-run", 1, file_access=pb.FileAccess(path="/a", role=7, hash=HASH)),  # type: ignore[arg-type]
        record("enum-run", 2, path_changed=pb.PathChanged(op=52, path="/a", new_path="/b")),  # type: ignore[arg-type]
    ]
    outcome = stream(target.channel, [hello("enum-host"), batch(records)])
    assert (outcome.code, outcome.stored) == (OK, 2), outcome
    assert show_run(target.channel, "enum-run")[0] == OK
    target.assert_intact(2)

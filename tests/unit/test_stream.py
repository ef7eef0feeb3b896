"""Delivery from a daemon's spool to a collector over real gRPC sockets (and in-process, as
the embedded collector is fed): exactly once in the registry through collector restarts,
network cuts and daemon restarts."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from roard.collector.service import CollectorServer
from roard.collector.sqlite import SqliteStore
from roard.collector.storage import RunFilter, SqlStore
from roard.collector.stores import open_store
from roard.collector.transport import CollectorTarget, parse_tokens
from roard.export.stream import Exporter, HelloInfo, StreamService
from roard.records.sink import SpoolSink
from roard.records.spool import Spool
from roard.v1 import records_pb2 as pb

HASH = "blake3:" + "ab" * 32


def run_records(run_id: str, host: str, files: int) -> list[pb.Record]:
    """A whole run: tagged, `files` inputs, finished."""
    records = [
        pb.Record(
            id=f"{run_id}/tagged",
            run_id=run_id,
            time=time.time(),
            run_tagged=pb.RunTagged(name=run_id, host=host, uid=0, started_at=time.time()),
        )
    ]
    records += [
        pb.Record(
            id=f"{run_id}/file/{i}",
            run_id=run_id,
            time=time.time(),
            file_access=pb.FileAccess(
                path=f"/data/{run_id}/{i}", role=pb.ROLE_INPUT, hash=HASH, kind="artifact"
            ),
        )
        for i in range(files)
    ]
    records.append(
        pb.Record(
            id=f"{run_id}/finished",
            run_id=run_id,
            time=time.time(),
            run_finished=pb.RunFinished(complete=True, ended_at=time.time()),
        )
    )
    return records


@dataclass
class Host:
    """A daemon's delivery path: spool, sink, exporter."""

    spool: Spool
    sink: SpoolSink
    exporter: Exporter
    host_id: str

    def emit_run(self, run_id: str, files: int) -> int:
        """Emit and spool a run's records; returns how many."""
        self.sink.emit(run_records(run_id, self.host_id, files))
        assert self.sink.flush(10)
        return files + 2

    def delivered(self, timeout: float = 20) -> bool:
        """Everything this host spooled (in this life and before) reached the collector."""
        deadline = time.monotonic() + timeout
        if not self.exporter.wait_acked(self.sink.last_emitted, timeout):
            return False
        while self.spool.depth().records:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    def close(self) -> None:
        self.sink.close()
        self.exporter.stop()
        self.spool.close()


def start_host(
    state: Path, address: str, host_id: str = "host-a", local: StreamService | None = None
) -> Host:
    """A daemon's delivery path to the collector at `address` (called in-process: `local`)."""
    state.mkdir(parents=True, exist_ok=True)
    spool = Spool(state / "spool.db", 1 << 30)
    holder: list[Exporter] = []
    sink = SpoolSink(spool, on_spooled=lambda: holder and holder[0].notify())
    hello = HelloInfo(host_id, "boot", "test", "tracepoint")
    exporter = Exporter(spool, sink, CollectorTarget(address), hello, local=local)
    holder.append(exporter)
    exporter.start()
    return Host(spool, sink, exporter, host_id)


def count_records(store: SqlStore) -> tuple[int, int]:
    """(records stored, distinct ids) straight from the registry's table."""
    with store._read() as cur:
        cur.execute("SELECT COUNT(*) AS n, COUNT(DISTINCT id) AS d FROM records")
        row = cur.fetchone()
    return int(row["n"]), int(row["d"])


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[SqliteStore]:
    with SqliteStore(tmp_path / "registry.db") as store:
        yield store


def serve(store: SqliteStore, address: str) -> CollectorServer:
    server = CollectorServer(store, address, max_hosts=4)
    server.start()
    return server


@pytest.mark.parametrize("in_process", [False, True], ids=["grpc", "in-process"])
def test_records_arrive_and_are_forgotten_once_acked(
    tmp_path: Path, registry: SqliteStore, in_process: bool
) -> None:
    address = f"unix:{tmp_path / 'c.sock'}"
    server = serve(registry, address)
    host = start_host(tmp_path / "a", address, local=server.service if in_process else None)
    try:
        n = host.emit_run("run-1", 50)
        assert host.delivered()
        assert registry.show("run-1")["status"] == "finished"
        assert len(registry.show("run-1")["inputs"]) == 50
        assert count_records(registry) == (n, n)
        assert host.spool.depth().records == 0
        assert host.exporter.connected
    finally:
        host.close()
        server.stop()


def test_collector_down_then_restarted_loses_and_duplicates_nothing(
    tmp_path: Path, registry: SqliteStore
) -> None:
    """Records emitted while the collector is down (and one killed mid-stream) stay spooled
    and arrive exactly once when a collector is back on the same address."""
    address = f"unix:{tmp_path / 'c.sock'}"
    server = serve(registry, address)
    host = start_host(tmp_path / "a", address)
    try:
        total = host.emit_run("before", 10)
        assert host.delivered()
        # Kill it while a large backlog streams, then keep producing during the outage.
        total += host.emit_run("during-1", 20_000)
        server.stop(grace=0)
        total += host.emit_run("during-2", 500)
        assert not host.delivered(timeout=1)
        assert host.spool.depth().records > 0
        server = serve(registry, address)
        assert host.delivered(timeout=60)
        assert count_records(registry) == (total, total)
        for run in ("before", "during-1", "during-2"):
            assert registry.show(run)["status"] == "finished"
        assert len(registry.show("during-1")["inputs"]) == 20_000
        assert host.exporter.reconnects >= 1
    finally:
        host.close()
        server.stop()


class CuttableProxy:
    """A TCP forwarder to a collector whose connections can be cut and refused, as a
    network partition would."""

    def __init__(self, target_port: int) -> None:
        self.target = target_port  # where new connections go (a load balancer's choice)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._open = threading.Event()
        self._open.set()
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if not self._open.is_set():
                client.close()
                continue
            upstream = socket.create_connection(("127.0.0.1", self.target))
            with self._lock:
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        self._open.clear()
        with self._lock:
            for conn in self._conns:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
                conn.close()
            self._conns.clear()

    def restore(self) -> None:
        self._open.set()

    def close(self) -> None:
        self.cut()
        self._listener.close()


def test_network_cut_then_restored(tmp_path: Path, registry: SqliteStore) -> None:
    server = serve(registry, "127.0.0.1:0")
    proxy = CuttableProxy(server.port)
    host = start_host(tmp_path / "a", f"127.0.0.1:{proxy.port}")
    try:
        total = host.emit_run("r1", 100)
        assert host.delivered()
        proxy.cut()
        total += host.emit_run("r2", 3000)
        assert not host.delivered(timeout=1.5)
        proxy.restore()
        assert host.delivered(timeout=60)
        assert count_records(registry) == (total, total)
        assert len(registry.show("r2")["inputs"]) == 3000
    finally:
        host.close()
        proxy.close()
        server.stop()


def test_daemon_restart_resends_what_was_not_acked(tmp_path: Path, registry: SqliteStore) -> None:
    """A daemon that stops with records still spooled (collector down) delivers them after
    its restart; records acked before are not stored twice."""
    address = f"unix:{tmp_path / 'c.sock'}"
    server = serve(registry, address)
    host = start_host(tmp_path / "a", address)
    total = host.emit_run("acked", 5)
    assert host.delivered()
    server.stop(grace=0)
    total += host.emit_run("spooled", 200)
    host.close()
    server = serve(registry, address)
    again = start_host(tmp_path / "a", address)
    try:
        assert again.delivered(timeout=30)
        assert again.spool.depth().records == 0
        assert count_records(registry) == (total, total)
        assert registry.show("spooled")["status"] == "finished"
    finally:
        again.close()
        server.stop()


def test_two_daemons_into_one_collector(tmp_path: Path, registry: SqliteStore) -> None:
    address = f"unix:{tmp_path / 'c.sock'}"
    server = serve(registry, address)
    a = start_host(tmp_path / "a", address, "host-a")
    b = start_host(tmp_path / "b", address, "host-b")
    try:
        total = 0
        for i in range(5):
            total += a.emit_run(f"a{i}", 100)
            total += b.emit_run(f"b{i}", 100)
        assert a.delivered() and b.delivered()
        assert count_records(registry) == (total, total)
        hosts = {r["run_id"][0]: r["host"] for r in registry.runs()}
        assert hosts == {"a": "host-a", "b": "host-b"}
    finally:
        a.close()
        b.close()
        server.stop()


def test_failover_between_two_collectors_on_one_postgres(tmp_path: Path, postgres_url: str) -> None:
    """Two stateless collectors behind a (simulated) load balancer share one PostgreSQL
    database: when the balancer moves a host to the other collector mid-stream, every
    record is stored exactly once; a second host streams through the other collector at
    the same time."""
    store_a, store_b = open_store(postgres_url), open_store(postgres_url)
    server_a = CollectorServer(store_a, "127.0.0.1:0", max_hosts=4)
    server_b = CollectorServer(store_b, "127.0.0.1:0", max_hosts=4)
    server_a.start()
    server_b.start()
    balancer = CuttableProxy(server_a.port)
    host_a = start_host(tmp_path / "a", f"127.0.0.1:{balancer.port}", "host-a")
    host_b = start_host(tmp_path / "b", f"127.0.0.1:{server_b.port}", "host-b")
    try:
        total = host_a.emit_run("a1", 2000)
        total += host_b.emit_run("b1", 2000)
        balancer.cut()
        balancer.target = server_b.port
        balancer.restore()
        total += host_a.emit_run("a2", 2000)
        total += host_b.emit_run("b2", 2000)
        assert host_a.delivered(timeout=60) and host_b.delivered(timeout=60)
        assert count_records(store_a) == (total, total)
        for run in ("a1", "a2", "b1", "b2"):
            assert len(store_b.show(run)["inputs"]) == 2000
    finally:
        host_a.close()
        host_b.close()
        balancer.close()
        server_a.stop()
        server_b.stop()
        store_a.close()
        store_b.close()


@pytest.mark.parametrize("in_process", [False, True], ids=["grpc", "in-process"])
def test_a_refused_record_is_set_aside_and_its_run_marked_incomplete(
    tmp_path: Path, registry: SqliteStore, in_process: bool
) -> None:
    """One record the collector refuses for good (a malformed hash) must not block the
    records behind it: it is found, set aside in the spool, and its run says what it lost
    (in-process, the service's abort ends the call as a gRPC status does)."""
    address = f"unix:{tmp_path / 'c.sock'}"
    server = serve(registry, address)
    host = start_host(tmp_path / "a", address, local=server.service if in_process else None)
    try:
        records = run_records("poisoned", "host-a", 500)
        records[200].file_access.hash = "blake3:not-hex"
        host.sink.emit(records)
        total = len(records) - 1
        total += host.emit_run("after", 100)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and host.spool.depth().records:
            time.sleep(0.1)
        assert host.delivered(timeout=30)
        assert host.exporter.rejected == 1
        doc = registry.show("poisoned")
        assert len(doc["inputs"]) == 499 and doc["complete"] is False
        assert any("refused" in reason for reason in doc["loss_reasons"])
        assert registry.show("after")["complete"] is True
        assert count_records(registry)[0] == total + 1  # + the loss notice
    finally:
        host.close()
        server.stop()


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_collector_process_sigkilled_mid_stream(
    tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    """A real `roard collector` process killed with SIGKILL while a backlog streams in,
    then started again on the same database: every record is stored exactly once."""
    db = (
        f"sqlite:///{tmp_path / 'registry.db'}"
        if backend == "sqlite"
        else request.getfixturevalue("postgres_url")
    )
    address = f"unix:{tmp_path / 'c.sock'}"
    roard_bin = Path(sys.executable).parent / "roard"

    def launch() -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            [str(roard_bin), "collector", "--listen", address, "--db", db],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        assert proc.stdout is not None
        for line in proc.stdout:  # structlog lines first, then the listening banner
            if b"listening on" in line:
                return proc
        pytest.fail(f"collector exited {proc.wait()}")

    collector = launch()
    host = start_host(tmp_path / "a", address)
    try:
        total = host.emit_run("big", 60_000)
        deadline = time.monotonic() + 30
        while host.exporter.acked_seq == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert host.exporter.acked_seq > 0  # some batches are in, the rest in flight
        collector.kill()
        collector.wait()
        assert host.spool.depth().records > 0
        collector = launch()
        assert host.delivered(timeout=120)
    finally:
        host.close()
        collector.kill()
        collector.wait()
    with open_store(db) as store:
        assert count_records(store) == (total, total)
        assert len(store.show("big")["inputs"]) == 60_000


def test_queries_are_answered_while_every_stream_slot_is_taken(
    tmp_path: Path, registry: SqliteStore
) -> None:
    """Streams hold a server thread each: past max_hosts a daemon is told to retry later,
    and queries still find a thread."""
    from roard.collector.client import CollectorClient

    address = f"unix:{tmp_path / 'c.sock'}"
    server = CollectorServer(registry, address, max_hosts=2)
    server.start()
    hosts = [start_host(tmp_path / f"h{i}", address, f"host-{i}") for i in range(2)]
    try:
        for i, host in enumerate(hosts):
            host.emit_run(f"run-{i}", 5)
        assert hosts[0].delivered(10) and hosts[1].delivered(10)
        # Slots go first come first served: the third host starts once both slots are held.
        hosts.append(start_host(tmp_path / "h2", address, "host-2"))
        hosts[2].emit_run("run-2", 5)
        assert not hosts[2].delivered(timeout=2)
        assert "RESOURCE_EXHAUSTED" in (hosts[2].exporter.last_error or "")
        client = CollectorClient(CollectorTarget(address))
        assert {r["run_id"] for r in client.runs(RunFilter())} == {"run-0", "run-1"}
        client.close()
        hosts[0].close()  # a slot frees up: the third host gets in
        assert hosts[2].delivered(timeout=30)
    finally:
        for host in hosts[1:]:
            host.close()
        server.stop()


def test_a_hello_refused_for_the_wrong_host_keeps_every_record(
    tmp_path: Path, registry: SqliteStore
) -> None:
    """Credentials for one host id, a hello for another: a configuration mistake. The
    daemon keeps retrying and sets no record aside (none of them is at fault)."""
    token = "t" * 32
    server = CollectorServer(
        registry, "127.0.0.1:0", credentials=parse_tokens(f"host-a {token}", "tokens"), max_hosts=4
    )
    server.start()
    target = CollectorTarget(f"127.0.0.1:{server.port}", token=token)
    spool = Spool(tmp_path / "spool.db", 1 << 30)
    holder: list[Exporter] = []
    sink = SpoolSink(spool, on_spooled=lambda: holder and holder[0].notify())
    exporter = Exporter(spool, sink, target, HelloInfo("host-b", "b", "t", "t"), backoff_max=0.2)
    holder.append(exporter)
    exporter.start()
    try:
        sink.emit(run_records("r", "host-b", 20))
        assert sink.flush(5)
        time.sleep(2)  # several refused attempts
        assert exporter.reconnects >= 2 and "PERMISSION_DENIED" in (exporter.last_error or "")
        assert exporter.rejected == 0 and spool.depth().records == 22
    finally:
        sink.close()
        exporter.stop()
        spool.close()
        server.stop()

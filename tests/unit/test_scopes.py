"""Projects and public runs: what each project's callers see of a shared registry (both
databases), the tokens file that names projects, and a person's token over real gRPC."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from roard.collector.client import CollectorClient
from roard.collector.postgres import PostgresStore
from roard.collector.scopes import DEFAULT_PROJECT, Principal, Viewer
from roard.collector.service import PROTOCOL, CollectorServer
from roard.collector.sqlite import SqliteStore
from roard.collector.storage import RunFilter, SqlStore
from roard.collector.transport import CollectorTarget, client_channel, parse_tokens
from roard.errors import ConfigError, NotFound
from roard.v1 import collector_pb2, collector_pb2_grpc
from roard.v1 import records_pb2 as pb

T0 = 1_795_000_000.0
RAW = "blake3:" + "1" * 64  # A's raw data
SHARED = "blake3:" + "2" * 64  # A's prepared dataset, which B also reads
MODEL_A = "blake3:" + "3" * 64
MODEL_B = "blake3:" + "4" * 64
TOKEN_A, TOKEN_B, TOKEN_U = "a" * 32, "b" * 32, "u" * 32

A = Viewer(projects=frozenset({"proj-a"}))
B = Viewer(projects=frozenset({"proj-b"}))


def run_records(
    run_id: str,
    host: str,
    counter: Iterator[int],
    reads: list[tuple[str, str]],
    writes: list[tuple[str, str]],
    started: float,
    public: bool = False,
) -> list[pb.Record]:
    """A finished run of `host` that read and wrote (path, hash) pairs."""

    def record(**body: object) -> pb.Record:
        n = next(counter)
        return pb.Record(id=f"{run_id}-{n}", seq=n, run_id=run_id, time=started + n, **body)  # type: ignore[arg-type]

    tagged = pb.RunTagged(
        name=run_id, host=host, uid=1000, how="spawn", started_at=started, public=public
    )
    records = [record(run_tagged=tagged)]
    for role, files in ((pb.ROLE_INPUT, reads), (pb.ROLE_OUTPUT, writes)):
        for path, digest in files:
            access = pb.FileAccess(path=path, role=role, hash=digest, size=7, kind="artifact")
            records.append(record(file_access=access))
    records.append(
        record(
            run_finished=pb.RunFinished(has_exit_code=True, ended_at=started + 50, complete=True)
        )
    )
    return records


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqlStore]:
    """A registry where project A prepared a dataset that both A and B trained on."""
    opened: SqlStore
    if request.param == "sqlite":
        opened = SqliteStore(tmp_path / "registry.db")
    else:
        opened = PostgresStore(request.getfixturevalue("postgres_url"))
    counter = itertools.count(1)
    with opened:
        opened.ingest(
            run_records("a-prep", "host-a", counter, [("/raw", RAW)], [("/shared/x", SHARED)], T0)
            + run_records(
                "a-train", "host-a", counter, [("/shared/x", SHARED)], [("/a/m", MODEL_A)], T0 + 100
            ),
            host="host-a",
            project="proj-a",
        )
        opened.ingest(
            run_records(
                "b-train", "host-b", counter, [("/mnt/x", SHARED)], [("/b/m", MODEL_B)], T0 + 200
            ),
            host="host-b",
            project="proj-b",
        )
        yield opened


def run_ids(doc: dict[str, object]) -> list[str]:
    return [r["run_id"] for r in doc["runs"]]  # type: ignore[attr-defined]


def test_each_project_sees_only_its_own_runs(store: SqlStore) -> None:
    assert [r["run_id"] for r in store.runs(RunFilter(), A)] == ["a-train", "a-prep"]
    assert [r["run_id"] for r in store.runs(RunFilter(), B)] == ["b-train"]
    with pytest.raises(NotFound):
        store.show("a-prep", B)
    shown = store.show("b-train", B)
    assert (shown["project"], shown["public"]) == ("proj-b", False)
    # Without projects (an unauthenticated loopback collector), everything, as before.
    assert len(store.runs(RunFilter())) == 3
    assert [r["run_id"] for r in store.runs(RunFilter(project="proj-b"))] == ["b-train"]


def test_lineage_up_stops_at_another_project_and_says_so(store: SqlStore) -> None:
    doc = store.lineage(MODEL_B, up=True, down=False, viewer=B)
    assert run_ids(doc) == ["b-train"]
    assert RAW not in {a["hash"] for a in doc["artifacts"]}
    assert doc["hidden_runs"] == 1
    assert doc["hidden"] == {
        "upstream": {
            "runs": 1,
            "projects": 1,
            "message": "1 upstream run in projects you cannot see",
        }
    }
    # The same walk for the producer's project goes all the way up.
    full = store.lineage(MODEL_B, up=True, down=False)
    assert set(run_ids(full)) == {"b-train", "a-prep"} and RAW in {
        a["hash"] for a in full["artifacts"]
    }
    graph = store.run_graph("b-train", viewer=B)
    assert run_ids(graph) == ["b-train"]
    assert graph["hidden"]["upstream"]["runs"] == 1


def test_a_project_sees_its_consumers_not_the_other_projects(store: SqlStore) -> None:
    doc = store.lineage(SHARED, up=False, down=True, viewer=A)
    assert run_ids(doc) == ["a-train"]
    assert doc["hidden"]["downstream"]["runs"] == 1
    assert "/mnt/x" not in {p for a in doc["artifacts"] for p in a["paths"]}
    assert "upstream" not in doc["hidden"]


def test_a_foreign_hash_is_known_and_nothing_more(store: SqlStore) -> None:
    (found,) = store.artifact(RAW, viewer=B)["artifacts"]
    assert found["known"] is True
    assert (found["paths"], found["produced_by"], found["consumed_by"]) == ([], [], [])
    assert (found["size"], found["projects"], found["hidden_runs"]) == (None, [], 1)
    assert found["hidden"]["projects"] == 1
    # A shared hash: only the caller's own paths and runs.
    (shared,) = store.artifact(SHARED, viewer=B)["artifacts"]
    assert [p["path"] for p in shared["paths"]] == ["/mnt/x"]
    assert [r["run_id"] for r in shared["consumed_by"]] == ["b-train"]
    assert (shared["projects"], shared["hidden_runs"]) == (["proj-b"], 2)
    # Paths are only looked up among visible runs.
    with pytest.raises(NotFound):
        store.artifact("/raw", viewer=B)
    with pytest.raises(NotFound):
        store.artifact("blake3:" + "9" * 64, viewer=B)
    # A prefix does not list another project's hashes (no enumeration); its owner's does.
    with pytest.raises(NotFound):
        store.artifact(RAW[:20], viewer=B)
    assert [a["hash"] for a in store.artifact(RAW[:20], viewer=A)["artifacts"]] == [RAW]


def test_a_public_run_is_visible_to_every_project(store: SqlStore) -> None:
    store.ingest(
        run_records(
            "a-pub", "host-a", itertools.count(500), [], [("/pub/x", RAW)], T0 + 300, public=True
        ),
        host="host-a",
        project="proj-a",
    )
    shown = store.show("a-pub", B)
    assert (shown["project"], shown["public"]) == ("proj-a", True)
    assert "a-pub" in [r["run_id"] for r in store.runs(RunFilter(), B)]
    (found,) = store.artifact(RAW, viewer=B)["artifacts"]
    assert [r["run_id"] for r in found["produced_by"]] == ["a-pub"]


def test_tokens_file_forms() -> None:
    text = (
        f"old-host {TOKEN_A}\n"
        f"host-b {TOKEN_B} proj-b\n"
        "cert-host - proj-c\n"
        f"user:alice {TOKEN_U} proj-a,proj-b\n"
    )
    credentials = parse_tokens(text, "tokens")
    assert credentials.tokens == {
        TOKEN_A: Principal("old-host", frozenset({DEFAULT_PROJECT})),
        TOKEN_B: Principal("host-b", frozenset({"proj-b"})),
        TOKEN_U: Principal("alice", frozenset({"proj-a", "proj-b"}), user=True),
    }
    assert credentials.certified_host("cert-host").project == "proj-c"
    assert credentials.certified_host("unlisted").project == DEFAULT_PROJECT


@pytest.mark.parametrize(
    ("line", "why"),
    [
        (f"user:alice {TOKEN_U}", "expected"),  # a person needs projects
        ("user:alice - proj-a", "'-' (no token) is for hosts"),
        ("cert-host -", "names their project"),
        (f"host {TOKEN_A} proj-a,proj-b", "one project"),
        (f"host {TOKEN_A} proj/a", "project names"),
        (f"user: {TOKEN_U} proj-a", "needs a name"),
    ],
)
def test_tokens_file_errors_name_file_and_line(line: str, why: str) -> None:
    with pytest.raises(ConfigError) as error:
        parse_tokens(f"# projects\n{line}\n", "/etc/roard/tokens")
    assert str(error.value).startswith("/etc/roard/tokens:2:")
    assert why in str(error.value)


def test_a_persons_token_queries_its_projects_and_cannot_stream(
    store: SqlStore, tmp_path: Path
) -> None:
    credentials = parse_tokens(f"host-a {TOKEN_A} proj-a\nuser:bob {TOKEN_U} proj-b\n", "tokens")
    server = CollectorServer(store, f"unix:{tmp_path}/c.sock", credentials=credentials)
    server.start()
    try:
        target = CollectorTarget(f"unix:{tmp_path}/c.sock", token=TOKEN_U)
        client = CollectorClient(target)
        try:
            assert [r["run_id"] for r in client.runs(RunFilter())] == ["b-train"]
            doc = client.lineage(MODEL_B, True, False)
            assert doc["hidden"]["upstream"]["message"] == (
                "1 upstream run in projects you cannot see"
            )
        finally:
            client.close()
        channel = client_channel(target)
        stub = collector_pb2_grpc.CollectorStub(channel)  # type: ignore[no-untyped-call]
        hello = collector_pb2.StreamRequest(
            hello=collector_pb2.Hello(protocol=PROTOCOL, host_id="bob")
        )
        with pytest.raises(grpc.RpcError) as error:
            list(stub.Stream(iter([hello]), timeout=10))
        assert error.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "queries only" in str(error.value.details())
        channel.close()
        # A host's token streams into its own project.
        host = CollectorClient(CollectorTarget(f"unix:{tmp_path}/c.sock", token=TOKEN_A))
        try:
            assert [r["run_id"] for r in host.runs(RunFilter())] == ["a-train", "a-prep"]
        finally:
            host.close()
    finally:
        server.stop(0)

"""The registry browser's HTTP side (roard.collector.web), without a browser: a WebServer on a
SqliteStore filled with a small pipeline, driven with urllib / http.client."""

from __future__ import annotations

import http.client
import json
import signal
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from roard import config
from roard.collector.sqlite import SqliteStore
from roard.collector.transport import TlsFiles, parse_tokens
from roard.collector.web import COOKIE, WebServer, ssl_context
from roard.errors import ConfigError
from roard.v1 import records_pb2 as pb
from tests.pki import Pki, make_pki

T0 = 1_795_000_000.0  # 2026-11-18T11:06:40Z
RAW = "blake3:" + "1" * 64
CLEAN = "blake3:" + "2c" * 32
MODEL = "blake3:" + "3d" * 32
TOKEN = "t0ken-for-the-web-ui-0123456789"


@dataclass
class Run:
    """Builds the records of one run: fresh ids, increasing seq numbers."""

    run_id: str
    host: str = "host-1"
    seq: int = 0

    def record(self, at: float, **body: Any) -> pb.Record:
        self.seq += 1
        return pb.Record(
            id=f"{self.run_id}-{self.seq}", seq=self.seq, run_id=self.run_id, time=at, **body
        )

    def tagged(self, name: str, at: float, labels: dict[str, str] | None = None) -> pb.Record:
        return self.record(
            at,
            run_tagged=pb.RunTagged(
                name=name,
                labels=labels or {},
                host=self.host,
                uid=1000,
                how="spawn",
                root_pid=100,
                started_at=at,
            ),
        )

    def process(self, pid: int, ppid: int, argv: list[str], at: float) -> pb.Record:
        return self.record(
            at,
            process_started=pb.ProcessStarted(
                pid=pid,
                ppid=ppid,
                start_ticks=pid * 10,
                exe="/usr/bin/python3",
                argv=argv,
                cwd="/work",
                uid=1000,
                started_at=at,
            ),
        )

    def file(
        self, path: str, role: int, digest: str, size: int, at: float, kind: str = "artifact"
    ) -> pb.Record:
        return self.record(
            at,
            file_access=pb.FileAccess(
                path=path,
                role=role,
                hash=digest,
                size=size,
                kind=kind,
                dev=1,
                ino=size,
                mtime_ns=1,
                bytes_read=size if role == pb.ROLE_INPUT else 0,
                bytes_written=size if role == pb.ROLE_OUTPUT else 0,
            ),
        )

    def finished(self, at: float, lost: int = 0) -> pb.Record:
        return self.record(
            at,
            run_finished=pb.RunFinished(
                has_exit_code=True, exit_code=0, ended_at=at, complete=lost == 0, lost_events=lost
            ),
        )


def pipeline() -> list[pb.Record]:
    """raw.csv -> prep -> clean.csv -> train -> model.bin (train lost 2 events)."""
    prep, train = Run("aaaa000000000001"), Run("bbbb000000000002")
    return [
        prep.tagged("prep", T0, {"stage": "prep"}),
        prep.process(100, 1, ["python3", "prep.py"], T0),
        prep.file("/work/raw.csv", pb.ROLE_INPUT, RAW, 12, T0 + 0.1),
        prep.file(
            "/usr/lib/libc.so.6", pb.ROLE_INPUT, "blake3:" + "9" * 64, 1000, T0 + 0.1, "system"
        ),
        prep.file("/work/clean.csv", pb.ROLE_OUTPUT, CLEAN, 34, T0 + 0.2),
        prep.finished(T0 + 1),
        train.tagged("train", T0 + 10, {"stage": "train"}),
        train.process(200, 1, ["python3", "train.py", "--epochs", "3"], T0 + 10),
        train.process(201, 200, ["sh", "-c", "echo <b>hi</b>"], T0 + 10.5),
        train.file("/work/clean.csv", pb.ROLE_INPUT, CLEAN, 34, T0 + 10.1),
        train.file("/work/model.bin", pb.ROLE_OUTPUT, MODEL, 5678, T0 + 11),
        train.record(T0 + 11, loss_notice=pb.LossNotice(lost_events=2, reason="ring full")),
        train.finished(T0 + 12, lost=2),
    ]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SqliteStore]:
    db = SqliteStore(tmp_path_factory.mktemp("web") / "registry.db")
    db.ingest(pipeline())
    yield db
    db.close()


@pytest.fixture(scope="module")
def web(store: SqliteStore) -> Iterator[WebServer]:
    server = WebServer(store, "127.0.0.1:0")
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@dataclass
class Reply:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def json(self) -> Any:
        assert self.headers["Content-Type"] == "application/json"
        return json.loads(self.body)


def call(
    server: WebServer,
    path: str,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    context: ssl.SSLContext | None = None,
) -> Reply:
    """One raw request (the path is sent exactly as given: no normalization)."""
    conn: http.client.HTTPConnection
    if context is not None:
        conn = http.client.HTTPSConnection("127.0.0.1", server.port, context=context, timeout=10)
    else:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.request(method, path, headers=headers or {})
        response = conn.getresponse()
        return Reply(response.status, response.headers, response.read())
    finally:
        conn.close()


def get_json(server: WebServer, path: str, status: int = 200) -> Any:
    reply = call(server, path)
    assert reply.status == status, reply.body
    return reply.json()


# ------------------------------------------------------------------------------------ API


def test_runs_lists_newest_first_with_filters(web: WebServer) -> None:
    runs = get_json(web, "/api/runs")
    assert [r["name"] for r in runs] == ["train", "prep"]
    assert runs[0]["run_id"] == "bbbb000000000002"
    assert runs[0]["complete"] is False and runs[0]["lost_events"] == 2
    assert (runs[1]["inputs"], runs[1]["outputs"]) == (2, 1)
    assert [r["name"] for r in get_json(web, "/api/runs?name=prep")] == ["prep"]
    assert [r["name"] for r in get_json(web, "/api/runs?label=stage%3Dtrain")] == ["train"]
    assert get_json(web, "/api/runs?label=stage%3Dtrain&label=team%3Dml") == []
    assert len(get_json(web, "/api/runs?host=host-1")) == 2
    assert get_json(web, "/api/runs?host=elsewhere") == []
    assert [r["name"] for r in get_json(web, "/api/runs?limit=1")] == ["train"]
    # Times: ISO 8601 (naive = UTC) or epoch seconds; since inclusive, until exclusive.
    assert [r["name"] for r in get_json(web, "/api/runs?since=2026-11-18T11:06:45Z")] == ["train"]
    assert [r["name"] for r in get_json(web, f"/api/runs?until={T0 + 5}")] == ["prep"]
    assert get_json(web, "/api/runs?since=2026-11-19") == []
    # Empty parameters (an empty form field) mean "not given".
    assert len(get_json(web, "/api/runs?name=&host=&label=&since=&limit=")) == 2


@pytest.mark.parametrize(
    ("query", "needle"),
    [
        ("limit=0", "limit=0"),
        ("limit=x", "whole number"),
        ("since=yesterday", "ISO 8601"),
        ("label=stage", "KEY=VALUE"),
    ],
)
def test_runs_rejects_bad_arguments_with_400(web: WebServer, query: str, needle: str) -> None:
    doc = get_json(web, f"/api/runs?{query}", status=400)
    assert needle in doc["error"]


def test_run_document_by_id_and_by_name(web: WebServer) -> None:
    doc = get_json(web, "/api/runs/train")
    assert doc["run_id"] == "bbbb000000000002"
    assert [p["argv"] for p in doc["processes"]] == [
        ["python3", "train.py", "--epochs", "3"],
        ["sh", "-c", "echo <b>hi</b>"],
    ]
    assert doc["processes"][1]["ppid"] == 200
    assert doc["outputs"] == [
        {**doc["outputs"][0], "path": "/work/model.bin", "hash": MODEL, "size": 5678}
    ]
    assert doc["loss_reasons"] == ["ring full"] and doc["complete"] is False
    assert get_json(web, "/api/runs/aaaa000000000001")["name"] == "prep"


def test_unknown_run_is_404_with_the_reason(web: WebServer) -> None:
    doc = get_json(web, "/api/runs/nope", status=404)
    assert doc == {"error": "no run 'nope': list runs with `roarctl runs`"}
    assert "error" in get_json(web, "/api/graph/nope", status=404)


def test_artifact_by_prefix_hash_and_path(web: WebServer) -> None:
    doc = get_json(web, "/api/artifacts?q=2c2c2c2c")
    (found,) = doc["artifacts"]
    assert found["hash"] == CLEAN and found["size"] == 34
    assert found["paths"] == [{"host": "host-1", "path": "/work/clean.csv"}]
    assert [r["name"] for r in found["produced_by"]] == ["prep"]
    assert [r["name"] for r in found["consumed_by"]] == ["train"]
    assert get_json(web, f"/api/artifacts?q={CLEAN}")["artifacts"][0]["hash"] == CLEAN
    by_path = get_json(web, "/api/artifacts?q=/work/clean.csv&host=host-1")
    assert by_path["artifacts"][0]["hash"] == CLEAN
    assert "error" in get_json(web, "/api/artifacts?q=/work/clean.csv&host=other", status=404)
    assert "error" in get_json(web, "/api/artifacts?q=ffffffff", status=404)
    assert "neither" in get_json(web, "/api/artifacts?q=clean", status=400)["error"]
    assert "q=" in get_json(web, "/api/artifacts", status=400)["error"]


def test_lineage_directions_depth_and_limits(web: WebServer) -> None:
    up = get_json(web, "/api/lineage?q=/work/model.bin")
    assert up["direction"] == "up" and up["root"] == {"type": "artifact", "hash": MODEL}
    assert {r["name"] for r in up["runs"]} == {"prep", "train"}
    assert {a["hash"] for a in up["artifacts"]} == {RAW, CLEAN, MODEL}
    assert {"from": CLEAN, "to": "bbbb000000000002", "kind": "used"} in up["edges"]
    assert {"from": "bbbb000000000002", "to": MODEL, "kind": "generated"} in up["edges"]
    assert up["truncated"] is False and up["hidden_runs"] == 0
    down = get_json(web, f"/api/lineage?q={RAW}&dir=down")
    assert {r["name"] for r in down["runs"]} == {"prep", "train"}
    both = get_json(web, "/api/lineage?q=2c2c2c&dir=both&depth=1")
    assert both["direction"] == "both" and both["depth"] == 1
    assert {r["name"] for r in both["runs"]} == {"prep", "train"}
    small = get_json(web, "/api/lineage?q=/work/model.bin&max_nodes=2")
    assert small["truncated"] is True
    assert len(small["runs"]) + len(small["artifacts"]) <= 2


@pytest.mark.parametrize(
    ("path", "needle"),
    [
        ("/api/lineage?q=/work/model.bin&dir=sideways", "up, down or both"),
        ("/api/lineage?q=/work/model.bin&depth=99", "--depth 99"),
        ("/api/lineage?q=/work/model.bin&depth=two", "whole number"),
        ("/api/lineage?q=/work/model.bin&max_nodes=-1", "--max-nodes"),
        ("/api/lineage", "q="),
        ("/api/graph/train?depth=0.5", "whole number"),
    ],
)
def test_lineage_rejects_bad_arguments_with_400(web: WebServer, path: str, needle: str) -> None:
    assert needle in get_json(web, path, status=400)["error"]


def test_run_graph(web: WebServer) -> None:
    doc = get_json(web, "/api/graph/train?depth=2&max_nodes=100")
    assert doc["root"] == {"type": "run", "run_id": "bbbb000000000002"}
    assert {r["name"] for r in doc["runs"]} == {"prep", "train"}
    assert {a["hash"] for a in doc["artifacts"]} == {RAW, CLEAN, MODEL}
    assert all(set(e) == {"from", "to", "kind"} for e in doc["edges"])
    # Run ids and names with characters that need quoting in a URL.
    assert get_json(web, "/api/graph/tr%61in")["root"]["run_id"] == "bbbb000000000002"


def test_unknown_endpoints_and_pages_are_404(web: WebServer) -> None:
    assert "error" in get_json(web, "/api/nothing", status=404)
    assert "error" in get_json(web, "/api/runs/a/b", status=404)
    assert call(web, "/admin").status == 404


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
def test_only_get_is_allowed(web: WebServer, method: str) -> None:
    for path in ("/api/runs", "/", "/static/app.js"):
        reply = call(web, path, method=method)
        assert reply.status == 405, (method, path)
        assert reply.headers["Allow"] == "GET"
        assert "read-only" in reply.json()["error"]


def test_head_is_405_without_a_body(web: WebServer) -> None:
    reply = call(web, "/api/runs", method="HEAD")
    assert reply.status == 405 and reply.body == b""


# -------------------------------------------------------------------------------- static


def test_index_and_assets_with_security_headers(web: WebServer) -> None:
    index = call(web, "/")
    assert index.status == 200
    assert index.headers["Content-Type"] == "text/html; charset=utf-8"
    csp = index.headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "script-src 'self'" in csp
    assert "unsafe-inline" not in csp
    assert index.headers["X-Content-Type-Options"] == "nosniff"
    html = index.body.decode()
    assert "<script>" not in html and " on" not in html.replace(" one", "")  # no inline code
    for asset in ("app.js", "app.css", "vendor/cytoscape.min.js", "vendor/cytoscape-dagre.min.js"):
        assert f'src="static/{asset}"' in html or f'href="static/{asset}"' in html
        reply = call(web, f"/static/{asset}")
        assert reply.status == 200, asset
        assert reply.headers["X-Content-Type-Options"] == "nosniff"
        assert len(reply.body) > 1000
    assert call(web, "/static/app.js").headers["Content-Type"].startswith("text/javascript")
    assert call(web, "/static/app.css").headers["Content-Type"].startswith("text/css")
    api = call(web, "/api/runs")
    assert api.headers["Cache-Control"] == "no-store"
    assert "default-src 'self'" in api.headers["Content-Security-Policy"]


def test_static_revalidation_with_etag(web: WebServer) -> None:
    first = call(web, "/static/app.js")
    etag = first.headers["ETag"]
    again = call(web, "/static/app.js", headers={"If-None-Match": etag})
    assert again.status == 304 and again.body == b""


@pytest.mark.parametrize(
    "path",
    [
        "/static/../web.py",
        "/static/%2e%2e/web.py",
        "/static/..%2fweb.py",
        "/static/vendor/../../web.py",
        "/static/vendor/%2e%2e%2f%2e%2e%2fweb.py",
        "/static//etc/passwd",
        "/static/%2fetc%2fpasswd",
        "/static/",
        "/static/vendor",
        "/static/nothing.js",
        "/../../etc/passwd",
    ],
)
def test_static_serves_only_the_packaged_files(web: WebServer, path: str) -> None:
    reply = call(web, path)
    assert reply.status == 404, path
    assert b"import " not in reply.body and b"root:" not in reply.body


# ---------------------------------------------------------------------------------- access


@pytest.fixture
def guarded(store: SqliteStore) -> Iterator[WebServer]:
    server = WebServer(store, "127.0.0.1:0", credentials=parse_tokens(f"host-1 {TOKEN}", "tokens"))
    server.start()
    yield server
    server.stop()


def test_tokens_required_when_configured(guarded: WebServer) -> None:
    for path in ("/api/runs", "/", "/static/app.js"):
        reply = call(guarded, path)
        assert reply.status == 401, path
        assert "token" in reply.body.decode()
    assert call(guarded, "/api/runs", headers={"Authorization": "Bearer wrong-token"}).status == 401
    assert call(guarded, "/api/runs?token=wrong-token").status == 401
    ok = call(guarded, "/api/runs", headers={"Authorization": f"Bearer {TOKEN}"})
    assert ok.status == 200 and len(ok.json()) == 2
    assert ok.headers["Set-Cookie"] is None


def test_token_in_the_url_once_then_a_cookie(guarded: WebServer) -> None:
    first = call(guarded, f"/?token={TOKEN}")
    assert first.status == 200
    cookie = first.headers["Set-Cookie"]
    assert cookie.startswith(f"{COOKIE}=")
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
    assert "Secure" not in cookie  # plain HTTP on loopback
    value = cookie.split(";")[0]
    assert TOKEN not in value  # the cookie holds a digest, not the token
    again = call(guarded, "/api/runs", headers={"Cookie": f"other=1; {value}"})
    assert again.status == 200 and again.headers["Set-Cookie"] is None
    assert call(guarded, "/static/app.js", headers={"Cookie": value}).status == 200
    assert call(guarded, "/api/runs", headers={"Cookie": f"{COOKIE}={TOKEN}"}).status == 401
    assert call(guarded, "/api/runs", headers={"Cookie": f"{COOKIE}=abc"}).status == 401
    assert call(guarded, "/api/runs", headers={"Cookie": "garbage;;=\x01"}).status == 401


def test_refuses_a_public_address_without_client_authentication(
    store: SqliteStore, pki: Pki
) -> None:
    for address in ("0.0.0.0:0", "[::]:0", "192.0.2.1:8080"):
        with pytest.raises(ConfigError, match="refusing to serve the web UI on"):
            WebServer(store, address)
    with pytest.raises(ConfigError, match="without client authentication"):
        WebServer(store, "0.0.0.0:0", tls=ssl_context(pki.server))  # TLS alone: anyone
    with pytest.raises(ConfigError, match="in the clear"):
        WebServer(store, "0.0.0.0:0", credentials=parse_tokens(f"host-1 {TOKEN}", "tokens"))
    for address in ("unix:/tmp/x.sock", "8080", "localhost:http", "127.0.0.1:70000"):
        with pytest.raises(ConfigError, match="web UI address"):
            WebServer(store, address)
    # With tokens over TLS, or with client certificates, a public address is allowed.
    for server in (
        WebServer(
            store,
            "0.0.0.0:0",
            tls=ssl_context(pki.server),
            credentials=parse_tokens(f"host-1 {TOKEN}", "tokens"),
        ),
        WebServer(store, "0.0.0.0:0", tls=ssl_context(pki.server, client_certs="required")),
    ):
        assert server.port > 0
        server.stop()


def test_port_in_use_is_a_config_error(web: WebServer, store: SqliteStore) -> None:
    with pytest.raises(ConfigError, match="cannot serve the web UI"):
        WebServer(store, f"127.0.0.1:{web.port}")


def test_tls_and_mutual_tls(store: SqliteStore, pki: Pki) -> None:
    client = ssl.create_default_context(cafile=str(pki.ca))
    server = WebServer(
        store,
        "127.0.0.1:0",
        tls=ssl_context(pki.server),
        credentials=parse_tokens(f"h {TOKEN}", "tokens"),
    )
    server.start()
    try:
        assert server.url == f"https://127.0.0.1:{server.port}/"
        assert call(server, "/api/runs", context=client).status == 401
        first = call(server, f"/?token={TOKEN}", context=client)
        assert first.status == 200 and "Secure" in first.headers["Set-Cookie"]
        with pytest.raises(ssl.SSLError):  # plain HTTP to a TLS port
            call(server, "/api/runs", context=ssl.create_default_context())
    finally:
        server.stop()
    mutual = WebServer(store, "127.0.0.1:0", tls=ssl_context(pki.server, "required"))
    mutual.start()
    try:
        with_cert = ssl.create_default_context(cafile=str(pki.ca))
        host_a = pki.clients["host-a"]
        with_cert.load_cert_chain(str(host_a.cert), str(host_a.key))
        assert call(mutual, "/api/runs", context=with_cert).status == 200
        with pytest.raises((ssl.SSLError, ConnectionError)):
            call(mutual, "/api/runs", context=client)
    finally:
        mutual.stop()
    # Client certificates authenticate where tokens are accepted too (optional certificates).
    both = WebServer(
        store,
        "127.0.0.1:0",
        tls=ssl_context(pki.server, "optional"),
        credentials=parse_tokens(f"h {TOKEN}", "tokens"),
    )
    both.start()
    try:
        assert call(both, "/api/runs", context=with_cert).status == 200
        assert call(both, "/api/runs", context=client).status == 401
        token = {"Authorization": f"Bearer {TOKEN}"}
        assert call(both, "/api/runs", headers=token, context=client).status == 200
    finally:
        both.stop()


def test_ssl_context_needs_its_files(tmp_path: Path, pki: Pki) -> None:
    with pytest.raises(ConfigError, match="--tls-cert and --tls-key"):
        ssl_context(TlsFiles(cert=pki.server.cert))
    with pytest.raises(ConfigError, match="web UI TLS files"):
        ssl_context(TlsFiles(cert=tmp_path / "missing.pem", key=tmp_path / "missing.key"))
    with pytest.raises(ConfigError, match="--tls-ca"):
        ssl_context(TlsFiles(cert=pki.server.cert, key=pki.server.key), "required")


def test_urllib_round_trip(web: WebServer) -> None:
    """What a script would do: urllib against the URL the server reports."""
    with urllib.request.urlopen(web.url + "api/runs?name=train", timeout=10) as response:
        assert json.load(response)[0]["name"] == "train"
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(web.url + "api/runs/nope", timeout=10)
    assert caught.value.code == 404


@pytest.mark.parametrize(
    ("host", "status"),
    [
        ("127.0.0.1", 200),
        ("127.0.0.1:8080", 200),
        ("localhost:1234", 200),
        ("LOCALHOST", 200),
        ("[::1]:8080", 200),
        ("127.5.6.7", 200),
        ("evil.example:8080", 403),  # a name someone pointed at 127.0.0.1 (DNS rebinding)
        ("10.0.0.1", 403),
        ("[::2]", 403),
    ],
)
def test_open_server_answers_loopback_host_names_only(
    web: WebServer, host: str, status: int
) -> None:
    reply = call(web, "/api/runs", headers={"Host": host})
    assert reply.status == status
    if status == 403:
        assert "Host" in reply.json()["error"]


def test_guarded_server_does_not_check_host_names(guarded: WebServer) -> None:
    token = {"Authorization": f"Bearer {TOKEN}", "Host": "registry.example:443"}
    assert call(guarded, "/api/runs", headers=token).status == 200


def test_security_headers_on_http_server_error_pages(web: WebServer) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", web.port, timeout=10)
    try:
        conn.putrequest("BREW", "/")  # unknown method: http.server's own 501 page
        conn.endheaders()
        response = conn.getresponse()
        assert response.status == 501
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert "default-src 'self'" in response.headers["Content-Security-Policy"]
    finally:
        conn.close()


def test_config_web_listen_is_for_the_embedded_registry() -> None:
    conf = config.parse('[collector]\nweb_listen = "127.0.0.1:8080"\n')
    assert conf.collector.web_listen == "127.0.0.1:8080"
    assert config.Config().collector.web_listen == ""
    with pytest.raises(ConfigError, match="web_listen serves the embedded registry"):
        config.parse('[collector]\naddress = "c:7443"\nweb_listen = "127.0.0.1:8080"\n')


def test_roard_collector_serves_the_web_ui(tmp_path: Path) -> None:
    """`roard collector --web`: prints the URL, serves the registry, stops on SIGTERM;
    refuses a public --web address without TLS or tokens."""
    roard = Path(sys.executable).parent / "roard"
    db = tmp_path / "registry.db"
    with SqliteStore(db) as seeded:
        seeded.ingest(pipeline())
    base = [str(roard), "collector", "--listen", "127.0.0.1:0", "--db", f"sqlite:///{db}"]
    refused = subprocess.run(
        [*base, "--web", "0.0.0.0:0"], check=False, capture_output=True, text=True, timeout=60
    )
    assert refused.returncode == 2
    assert "refusing to serve the web UI on 0.0.0.0:0" in refused.stderr
    proc = subprocess.Popen(
        [*base, "--web", "127.0.0.1:0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        url = ""
        for line in proc.stdout:
            if "web UI on " in line:
                url = line.split("web UI on ", 1)[1].strip()
                break
        assert url.startswith("http://127.0.0.1:"), url
        with urllib.request.urlopen(url + "api/runs/prep", timeout=10) as response:
            assert json.load(response)["run_id"] == "aaaa000000000001"
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0

"""The registry browser: a read-only web application over a collector's LineageStore.

Served by the collector process on its own HTTP(S) port, beside the gRPC listener: a
single-page application (`web_static/`, shipped in the package; no CDN, hosts are often
offline) and the JSON API it reads:

    GET /api/runs?name=&label=K=V&host=&since=&until=&limit=   runs, newest first
    GET /api/runs/<run>                                        one run (`roarctl show`)
    GET /api/artifacts?q=&host=                                an artifact and its runs
    GET /api/lineage?q=&host=&dir=up|down|both&depth=&max_nodes=
    GET /api/graph/<run>?depth=&max_nodes=                     a run's DAG

Errors are {"error": message} with 404 (not found), 400 (bad arguments), 401 (not
authenticated) or 405 (anything but GET). Access follows the gRPC listener's rules: on a
non-loopback address the server needs TLS or tokens; with tokens, a request carries one as
`Authorization: Bearer TOKEN`, or once as `?token=TOKEN` (which sets an HttpOnly,
SameSite=Strict cookie for the rest of the session); with a TLS context that requires
client certificates, a verified certificate is enough (its common name is a host id). A
token or certificate scopes every answer to its projects (and public runs) as it does over
gRPC; without tokens or client certificates (loopback only), every run is shown.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import mimetypes
import socket
import socketserver
import ssl
import threading
from collections.abc import Callable, Mapping
from http import HTTPStatus
from http.cookies import CookieError, SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from importlib.resources.abc import Traversable
from typing import Any, Literal
from urllib.parse import parse_qs, unquote, urlsplit

import structlog

from roard.collector.scopes import EVERYONE, Principal, Viewer, viewer_of
from roard.collector.storage import LineageStore, RunFilter
from roard.collector.transport import (
    Credentials,
    TlsFiles,
    check_exposure,
    is_loopback_host,
    split_host_port,
)
from roard.errors import ConfigError, NotFound, PermissionDenied, RoardError, UsageError
from roard.times import parse_time

__all__ = ["WebServer", "ssl_context"]

log = structlog.get_logger("roard.web")

COOKIE = "roard_token"
_STATIC_DIR = "web_static"
_MAX_LIMIT = 10_000
_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".md": "text/plain; charset=utf-8",
    ".txt": "text/plain; charset=utf-8",
}
# No inline script, nothing from elsewhere, no framing. The one inline style allowed is the
# rule cytoscape.js injects into the page (".__________cytoscape_container { position:
# relative; }"), by its hash (app.css sets the same, so the graph works without it too).
_CYTOSCAPE_STYLE = "'sha256-pgvDUBa4IjFA2yuSJ2cqcyxmNYJMborsd0ORcRv9vw8='"
_CSP = (
    f"default-src 'self'; script-src 'self'; style-src 'self' {_CYTOSCAPE_STYLE}; "
    "img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
_SECURITY_HEADERS = (
    ("Content-Security-Policy", _CSP),
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "no-referrer"),
)


def ssl_context(
    tls: TlsFiles, client_certs: Literal["none", "optional", "required"] = "none"
) -> ssl.SSLContext:
    """A server-side TLS context from the collector's PEM files. With `client_certs`
    "required" (mutual TLS), clients must present a certificate signed by `tls.ca`; with
    "optional", one that is presented must be, and counts as authentication (tokens remain
    for clients without one)."""
    if tls.cert is None or tls.key is None:
        raise ConfigError("the web UI's TLS needs both --tls-cert and --tls-key")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(str(tls.cert), str(tls.key))
        if tls.ca is not None:
            context.load_verify_locations(cafile=str(tls.ca))
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"web UI TLS files {tls.cert}, {tls.key}: {exc}") from None
    if client_certs != "none":
        if tls.ca is None:
            raise ConfigError("mutual TLS needs --tls-ca: the CA that signed the clients")
        context.verify_mode = ssl.CERT_REQUIRED if client_certs == "required" else ssl.CERT_OPTIONAL
    return context


def _cookie_value(token: str) -> str:
    """What the session cookie holds for `token`: a digest, never the token itself (and
    only characters a cookie may carry)."""
    return hashlib.sha256(b"roard-web-session\0" + token.encode()).hexdigest()


def _static_files() -> dict[str, tuple[str, bytes]]:
    """Every file under web_static/, by its relative path: the only files ever served."""
    files: dict[str, tuple[str, bytes]] = {}

    def walk(folder: Traversable, prefix: str) -> None:
        for entry in folder.iterdir():
            name = prefix + entry.name
            if entry.is_dir():
                walk(entry, name + "/")
            elif entry.is_file() and not entry.name.startswith("."):
                suffix = "." + entry.name.rsplit(".", 1)[-1] if "." in entry.name else ""
                kind = _TYPES.get(suffix) or mimetypes.guess_type(entry.name)[0]
                files[name] = (kind or "text/plain; charset=utf-8", entry.read_bytes())

    walk(resources.files("roard.collector").joinpath(_STATIC_DIR), "")
    return files


def _loopback_host(header: str) -> bool:
    """Whether a Host header names a loopback address (any port), or is absent."""
    host = header.strip().lower()
    if not host:
        return True  # HTTP/1.0 without Host: not a browser
    if host.startswith("["):
        name = host[1:].partition("]")[0]
    else:
        name = host.rpartition(":")[0] if ":" in host else host
    return is_loopback_host(name)


def _time_param(name: str, text: str) -> float:
    """An ISO 8601 time (naive means UTC) or seconds since the epoch."""
    try:
        return float(text)
    except ValueError:
        pass
    try:
        return parse_time(text)
    except ValueError as exc:
        raise UsageError(f"{name}: {exc}") from None


def _int_param(params: Mapping[str, list[str]], name: str, default: int) -> int:
    values = params.get(name)
    if not values or not values[-1]:
        return default
    try:
        return int(values[-1])
    except ValueError:
        raise UsageError(f"{name}={values[-1]!r}: give a whole number") from None


def _one(params: Mapping[str, list[str]], name: str) -> str | None:
    values = params.get(name)
    return values[-1] if values and values[-1] else None


class _Api:
    """The JSON endpoints: path and query in, a JSON-able document out."""

    def __init__(self, store: LineageStore) -> None:
        self._store = store

    def answer(self, path: str, params: Mapping[str, list[str]], viewer: Viewer) -> Any:
        """The document of one API request, as `viewer` may see it."""
        parts = [unquote(p) for p in path.split("/")[2:]]  # after "/api/"
        match parts:
            case ["runs"]:
                return self.runs(params, viewer)
            case ["runs", run] if run:
                return self._store.show(run, viewer)
            case ["artifacts"]:
                return self._store.artifact(self._query(params), _one(params, "host"), viewer)
            case ["lineage"]:
                return self.lineage(params, viewer)
            case ["graph", run] if run:
                return self._store.run_graph(
                    run,
                    _int_param(params, "depth", 0),
                    viewer,
                    _int_param(params, "max_nodes", 0),
                )
        raise NotFound(f"no API endpoint {path}")

    @staticmethod
    def _query(params: Mapping[str, list[str]]) -> str:
        query = _one(params, "q")
        if query is None:
            raise UsageError("give q=: a hash (blake3:<hex>), a hash prefix or an absolute path")
        return query

    def runs(self, params: Mapping[str, list[str]], viewer: Viewer) -> Any:
        labels: dict[str, str] = {}
        for pair in params.get("label", []):
            if not pair:
                continue
            key, sep, value = pair.partition("=")
            if not sep or not key:
                raise UsageError(f"label={pair!r}: expected KEY=VALUE")
            labels[key] = value
        limit = _int_param(params, "limit", 100)
        if not 1 <= limit <= _MAX_LIMIT:
            raise UsageError(f"limit={limit}: give a number between 1 and {_MAX_LIMIT}")
        since, until = _one(params, "since"), _one(params, "until")
        where = RunFilter(
            name=_one(params, "name"),
            labels=labels or None,
            host=_one(params, "host"),
            since=_time_param("since", since) if since else None,
            until=_time_param("until", until) if until else None,
            limit=limit,
            project=_one(params, "project"),
        )
        return self._store.runs(where, viewer)

    def lineage(self, params: Mapping[str, list[str]], viewer: Viewer) -> Any:
        direction = _one(params, "dir") or "up"
        if direction not in ("up", "down", "both"):
            raise UsageError(f"dir={direction!r}: choose up, down or both")
        return self._store.lineage(
            self._query(params),
            direction in ("up", "both"),
            direction in ("down", "both"),
            _int_param(params, "depth", 0),
            _one(params, "host"),
            viewer,
            _int_param(params, "max_nodes", 0),
        )


def _status_of(exc: RoardError) -> HTTPStatus:
    if isinstance(exc, NotFound):
        return HTTPStatus.NOT_FOUND
    if isinstance(exc, UsageError):
        return HTTPStatus.BAD_REQUEST
    if isinstance(exc, PermissionDenied):
        return HTTPStatus.FORBIDDEN
    return HTTPStatus.INTERNAL_SERVER_ERROR


class _Handler(BaseHTTPRequestHandler):
    """One request; the server (`_HttpServer`) carries the API, files and tokens."""

    server: _HttpServer
    server_version = "roard-web"
    sys_version = ""
    protocol_version = "HTTP/1.1"
    timeout = 60  # seconds a connection may stay silent

    # ------------------------------------------------------------------------ dispatch

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        params = parse_qs(url.query, keep_blank_values=True)
        path = url.path
        api = path.startswith("/api/")
        if not self._host_allowed():
            self._send_json(
                HTTPStatus.FORBIDDEN,
                {"error": "unexpected Host header: open the registry browser by its address"},
            )
            return
        found = self._authenticate(params)
        if found is None:
            self._refuse(api)
            return
        set_cookie, principal = found
        extra = [("Set-Cookie", set_cookie)] if set_cookie else []
        if api:
            viewer = viewer_of(principal, 0) if principal is not None else EVERYONE
            self._api(path, params, extra, viewer)
        elif path in ("/", "/index.html"):
            self._static("index.html", extra)
        elif path.startswith("/static/"):
            self._static(unquote(path[len("/static/") :]), extra)
        else:
            self._send_json(HTTPStatus.NOT_FOUND, {"error": f"no page {path}"}, extra)

    def _not_allowed(self) -> None:
        self._send_json(
            HTTPStatus.METHOD_NOT_ALLOWED,
            {"error": f"{self.command} not allowed: the registry browser is read-only"},
            [("Allow", "GET")],
            body=self.command != "HEAD",
        )

    do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _not_allowed  # noqa: N815
    do_TRACE = do_CONNECT = _not_allowed  # noqa: N815

    # -------------------------------------------------------------------- authentication

    def _host_allowed(self) -> bool:
        """Without TLS or tokens (loopback only), a request must name a loopback host: a
        web page elsewhere cannot read the registry through a name it points at 127.0.0.1
        (DNS rebinding)."""
        if self.server.tls is not None or self.server.credentials.tokens:
            return True
        return _loopback_host(self.headers.get("Host", ""))

    def _authenticate(self, params: Mapping[str, list[str]]) -> tuple[str, Principal | None] | None:
        """None when the request must be refused; else ("" or a Set-Cookie value when it
        brought its token in the URL, who it proved to be: None when nothing is checked)."""
        credentials = self.server.credentials
        certified = self._peer_host() if self.server.client_certs else None
        if certified is not None:
            return "", credentials.certified_host(certified)
        if not credentials.tokens:
            # No tokens: open (loopback or TLS), unless client certificates are the proof.
            return None if self.server.client_certs else ("", None)
        header = self.headers.get("Authorization", "")
        if header.startswith("Bearer "):
            principal = self._known(header.removeprefix("Bearer ").strip())
            if principal is not None:
                return "", principal
        cookie = self._cookie()
        if cookie is not None:
            principal = self._known(cookie, _cookie_value)
            if principal is not None:
                return "", principal
        given = _one(params, "token")
        principal = self._known(given) if given is not None else None
        if given is not None and principal is not None:
            secure = "; Secure" if self.server.tls else ""
            value = _cookie_value(given)
            return f"{COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict{secure}", principal
        return None

    def _known(self, given: str, form: Callable[[str], str] = lambda t: t) -> Principal | None:
        """Who the token `given` (in `form`) proves, comparing with every token in constant
        time: no early exit that would time the match."""
        found: Principal | None = None
        for token, principal in self.server.credentials.tokens.items():
            if hmac.compare_digest(form(token).encode(), given.encode()):
                found = principal
        return found

    def _cookie(self) -> str | None:
        raw = self.headers.get("Cookie")
        if not raw:
            return None
        jar: SimpleCookie = SimpleCookie()
        try:
            jar.load(raw)
        except CookieError:
            return None
        morsel = jar.get(COOKIE)
        return morsel.value if morsel is not None else None

    def _peer_host(self) -> str | None:
        """The common name of a verified client certificate (a host id), if any."""
        conn = self.connection
        if not isinstance(conn, ssl.SSLSocket):
            return None
        cert = conn.getpeercert()
        if not cert:
            return None
        names = [
            str(pair[1])
            for rdn in cert.get("subject", ())
            for pair in rdn
            if pair[0] == "commonName"
        ]
        return names[0] if names else ""

    def _refuse(self, api: bool) -> None:
        message = (
            "not authenticated: open the registry browser with ?token=TOKEN once (a token "
            "from the collector's --tokens file), or send Authorization: Bearer TOKEN"
        )
        headers = [("WWW-Authenticate", 'Bearer realm="roard"')]
        if api:
            self._send_json(HTTPStatus.UNAUTHORIZED, {"error": message}, headers)
        else:
            body = f"401 Unauthorized\n\n{message}\n".encode()
            self._send(HTTPStatus.UNAUTHORIZED, "text/plain; charset=utf-8", body, headers)

    # ------------------------------------------------------------------------- answers

    def _api(
        self,
        path: str,
        params: Mapping[str, list[str]],
        extra: list[tuple[str, str]],
        viewer: Viewer,
    ) -> None:
        try:
            doc = self.server.api.answer(path, params, viewer)
        except RoardError as exc:
            self._send_json(_status_of(exc), {"error": str(exc)}, extra)
            return
        except Exception as exc:
            log.exception("web query failed", path=path)
            self._send_json(
                HTTPStatus.INTERNAL_SERVER_ERROR, {"error": f"registry error: {exc}"}, extra
            )
            return
        self._send_json(HTTPStatus.OK, doc, extra)

    def _static(self, name: str, extra: list[tuple[str, str]]) -> None:
        found = self.server.files.get(name)
        if found is None:
            self._send_json(HTTPStatus.NOT_FOUND, {"error": f"no file {name}"}, extra)
            return
        kind, body = found
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        headers = [*extra, ("ETag", etag), ("Cache-Control", "no-cache")]
        if self.headers.get("If-None-Match") == etag:
            self._send(HTTPStatus.NOT_MODIFIED, kind, b"", headers, body=False)
            return
        self._send(HTTPStatus.OK, kind, body, headers)

    def _send_json(
        self,
        status: HTTPStatus,
        doc: Any,
        headers: list[tuple[str, str]] | None = None,
        body: bool = True,
    ) -> None:
        data = json.dumps(doc, separators=(",", ":")).encode()
        self._send(
            status,
            "application/json",
            data,
            [*(headers or []), ("Cache-Control", "no-store")],
            body=body,
        )

    def _send(
        self,
        status: HTTPStatus,
        kind: str,
        data: bytes,
        headers: list[tuple[str, str]],
        body: bool = True,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)) if body else "0")
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        if body and data:
            self.wfile.write(data)

    def end_headers(self) -> None:
        # On every answer, http.server's own error pages included.
        for name, value in _SECURITY_HEADERS:
            self.send_header(name, value)
        super().end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("web request", peer=self.client_address[0], line=format % args)


class _HttpServer(ThreadingHTTPServer):
    """The listener: accepts on one thread, handshakes TLS and answers on per-connection
    threads (a slow or silent client never holds up the others)."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(
        self,
        address: tuple[str, int],
        family: socket.AddressFamily,
        api: _Api,
        files: dict[str, tuple[str, bytes]],
        tls: ssl.SSLContext | None,
        credentials: Credentials,
    ) -> None:
        self.address_family = family
        self.api = api
        self.files = files
        self.tls = tls
        self.client_certs = tls is not None and tls.verify_mode != ssl.CERT_NONE
        self.credentials = credentials
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer's own would look up this host's FQDN: a DNS query, slow when offline.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = str(self.server_address[0]), self.server_address[1]

    def finish_request(self, request: Any, client_address: Any) -> None:
        if self.tls is None:
            super().finish_request(request, client_address)
            return
        request.settimeout(_Handler.timeout)
        try:
            wrapped = self.tls.wrap_socket(request, server_side=True)
        except (OSError, ssl.SSLError) as exc:
            log.debug("web TLS handshake failed", peer=client_address[0], error=str(exc))
            return
        try:
            super().finish_request(wrapped, client_address)
        finally:
            wrapped.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("web connection failed", peer=client_address[0], exc_info=True)


class WebServer:
    """The registry browser on `listen` (HOST:PORT; port 0 picks a free one, see `.port`),
    serving in a background thread from `start()` to `stop()`.

    Refuses (ConfigError) a non-loopback address without TLS or tokens, like the gRPC
    listener. `credentials` are the collector's tokens file (`parse_tokens`); `tls` is a server
    context (`ssl_context`); where it asks for client certificates, a verified one
    authenticates a request as a token does.
    """

    def __init__(
        self,
        store: LineageStore,
        listen: str,
        tls: ssl.SSLContext | None = None,
        credentials: Credentials | None = None,
    ) -> None:
        where = split_host_port(listen, listen=True)
        if where is None:
            raise ConfigError(
                f"web UI address {listen!r}: expected HOST:PORT (e.g. 127.0.0.1:8080)"
            )
        host, port = where
        client_certs = tls is not None and tls.verify_mode == ssl.CERT_REQUIRED
        credentials = credentials or Credentials()
        tokens = bool(credentials.tokens)
        check_exposure(listen, tls is not None, client_certs, tokens, "serve the web UI")
        try:
            info = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
            family, _, _, _, sockaddr = info[0]
            self._server = _HttpServer(
                (str(sockaddr[0]), port),
                family,
                _Api(store),
                _static_files(),
                tls,
                credentials,
            )
        except OSError as exc:
            raise ConfigError(
                f"cannot serve the web UI on {listen}: {exc.strerror or exc} "
                "(in use, or not this host's)"
            ) from None
        self.address = listen
        self.port: int = self._server.server_address[1]
        self.host = host
        self.tls = tls is not None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """Where a browser finds it."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}/"

    def start(self) -> None:
        """Serve in a background thread."""
        serve: Callable[[], None] = self._server.serve_forever
        self._thread = threading.Thread(target=serve, name="roard-web", daemon=True)
        self._thread.start()
        if not self.tls and not self._server.credentials.tokens:
            log.info("web UI serves unauthenticated requests on loopback only", url=self.url)

    def stop(self) -> None:
        """Stop serving and close the listening socket. Idempotent."""
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
            self._thread = None
        self._server.server_close()

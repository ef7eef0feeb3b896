"""How daemons and collectors reach each other: addresses, TLS, tokens.

A collector listens on a Unix socket (`unix:/path`) or TCP (`host:port`). Over TCP it
must either use TLS (optionally mutual: each host presents a client certificate whose
common name is its host id) or per-host bearer tokens, or listen on loopback only.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from roard.collector.scopes import DEFAULT_PROJECT, Principal
from roard.config import CollectorConfig
from roard.errors import ConfigError
from roard.v1 import MAX_MESSAGE_BYTES

TOKEN_HEADER = "authorization"
_MIN_TOKEN = 16
_PROJECT = re.compile(r"[A-Za-z0-9._-]+")


@dataclass(frozen=True)
class TlsFiles:
    """PEM files: `cert`/`key` are our own; `ca` verifies the other side."""

    cert: Path | None = None
    key: Path | None = None
    ca: Path | None = None

    def read(self, which: str) -> bytes | None:
        path: Path | None = getattr(self, which)
        if path is None:
            return None
        try:
            return path.read_bytes()
        except OSError as exc:
            raise ConfigError(f"cannot read TLS {which} file {path}: {exc.strerror}") from exc


@dataclass(frozen=True)
class CollectorTarget:
    """Where a daemon sends records and queries, and how it proves who it is."""

    address: str
    tls: TlsFiles | None = None
    token: str | None = None


def configured_target(conf: CollectorConfig) -> CollectorTarget:
    """The remote collector a daemon's [collector] section names (address must be set)."""
    tls = None
    if conf.tls_ca:
        tls = TlsFiles(
            cert=Path(conf.tls_cert) if conf.tls_cert else None,
            key=Path(conf.tls_key) if conf.tls_key else None,
            ca=Path(conf.tls_ca),
        )
    token = None
    if conf.token_file:
        try:
            token = Path(conf.token_file).read_text().strip()
        except OSError as exc:
            raise ConfigError(f"[collector] token_file {conf.token_file}: {exc.strerror}") from None
    return CollectorTarget(check_address(conf.address), tls=tls, token=token)


def is_loopback_host(host: str) -> bool:
    """True for "localhost" and loopback IP addresses (no port, no brackets)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_loopback(address: str) -> bool:
    """True for Unix sockets and addresses that only this host can reach."""
    if address.startswith("unix:"):
        return True
    return is_loopback_host(address.rsplit(":", 1)[0].strip("[]"))


def check_exposure(listen: str, tls: bool, mtls: bool, tokens: bool, what: str) -> None:
    """Off loopback, every caller must prove who it is (client certificates or tokens), and
    tokens must not cross the network in the clear. Raises ConfigError otherwise."""
    if is_loopback(listen):
        return
    if not (mtls or tokens):
        raise ConfigError(
            f"refusing to {what} on {listen} without client authentication: anyone could "
            "read and write lineage (TLS alone only encrypts). Give --mtls with "
            "--tls-cert/--tls-key/--tls-ca, or --tokens FILE, or listen on 127.0.0.1 or a "
            "unix: socket"
        )
    if tokens and not tls:
        raise ConfigError(
            f"refusing to {what} on {listen} with tokens but no TLS: the tokens would cross "
            "the network in the clear. Add --tls-cert and --tls-key"
        )


def split_host_port(address: str, listen: bool = False) -> tuple[str, int] | None:
    """(host, port) of a HOST:PORT address ([v6]:port too; with `listen`, port 0 means
    any free port), or None when `address` is not one."""
    host, sep, port = address.rpartition(":")
    host = host.strip("[]")
    if address.startswith("unix:") or not sep or not host or not port.isdigit():
        return None
    if not int(not listen) <= int(port) < 65536:
        return None
    return host, int(port)


def check_address(address: str, listen: bool = False) -> str:
    """Validates a connect (or, with `listen`, a listen: port 0 picks one) address;
    returns it unchanged."""
    if address.startswith("unix:"):
        if len(address) <= len("unix:"):
            raise ConfigError("collector address 'unix:' needs a socket path: unix:/path/sock")
        return address
    if split_host_port(address, listen) is None:
        raise ConfigError(
            f"collector address {address!r}: expected HOST:PORT (e.g. collector:7443) or "
            "unix:/path/to/socket"
        )
    return address


def _call_credentials(token: str) -> grpc.CallCredentials:
    def plugin(
        context: grpc.AuthMetadataContext, callback: grpc.AuthMetadataPluginCallback
    ) -> None:
        callback(((TOKEN_HEADER, f"Bearer {token}"),), None)

    return grpc.metadata_call_credentials(plugin, name="roard-token")


def client_channel(target: CollectorTarget) -> grpc.Channel:
    """A channel to the collector, with TLS and the host token when configured."""
    address = check_address(target.address)
    options = [
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        # Notice a dead peer within a minute even when the stream is idle.
        ("grpc.keepalive_time_ms", 20_000),
        ("grpc.keepalive_timeout_ms", 20_000),
        ("grpc.keepalive_permit_without_calls", 1),
    ]
    if target.tls is not None:
        creds = grpc.ssl_channel_credentials(
            root_certificates=target.tls.read("ca"),
            private_key=target.tls.read("key"),
            certificate_chain=target.tls.read("cert"),
        )
        if target.token:
            creds = grpc.composite_channel_credentials(creds, _call_credentials(target.token))
        return grpc.secure_channel(address, creds, options)
    if target.token:
        # gRPC refuses call credentials on plaintext channels except to local addresses.
        if not is_loopback(address):
            raise ConfigError(
                f"a token for collector {address} needs TLS: set [collector] tls_ca (the "
                "token would cross the network in the clear)"
            )
        creds = grpc.composite_channel_credentials(
            grpc.local_channel_credentials(
                grpc.LocalConnectionType.UDS
                if address.startswith("unix:")
                else grpc.LocalConnectionType.LOCAL_TCP
            ),
            _call_credentials(target.token),
        )
        return grpc.secure_channel(address, creds, options)
    return grpc.insecure_channel(address, options)


def server_credentials(tls: TlsFiles, require_client_cert: bool) -> grpc.ServerCredentials:
    """TLS for a collector's listener; with `require_client_cert`, mutual TLS."""
    cert, key = tls.read("cert"), tls.read("key")
    if cert is None or key is None:
        raise ConfigError("collector TLS needs both --tls-cert and --tls-key")
    ca = tls.read("ca")
    if require_client_cert and ca is None:
        raise ConfigError("mutual TLS needs --tls-ca: the CA that signed the hosts' certificates")
    return grpc.ssl_server_credentials(
        [(key, cert)], root_certificates=ca, require_client_auth=require_client_cert
    )


@dataclass(frozen=True)
class Credentials:
    """A collector's tokens file: bearer tokens -> who they prove, and the projects of
    hosts that prove themselves with a client certificate instead."""

    tokens: Mapping[str, Principal] = field(default_factory=dict)
    certified: Mapping[str, Principal] = field(default_factory=dict)

    def certified_host(self, host: str) -> Principal:
        """The principal of a host whose client certificate names `host`."""
        return self.certified.get(host) or Principal(host, frozenset({DEFAULT_PROJECT}))


_TOKENS_FORMS = (
    "expected 'HOST_ID TOKEN [PROJECT]' (a daemon), 'HOST_ID - PROJECT' (a host with a "
    "client certificate) or 'user:NAME TOKEN PROJECT[,PROJECT...]' (a person, queries only), "
    "with tokens of at least 16 characters (e.g. `openssl rand -hex 32`)"
)


def _project_names(text: str, where: str) -> frozenset[str]:
    names = text.split(",")
    if not all(_PROJECT.fullmatch(n) for n in names):
        raise ConfigError(
            f"{where}: project names are letters, digits, '.', '_' and '-' ({text!r})"
        )
    return frozenset(names)


def parse_tokens(text: str, source: str) -> Credentials:
    """A tokens file, `#` comments, one credential a line:

    `HOST_ID TOKEN` (a daemon in the default project), `HOST_ID TOKEN PROJECT` (a daemon in
    PROJECT), `HOST_ID - PROJECT` (a host proven by its client certificate, in PROJECT),
    `user:NAME TOKEN PROJECT[,PROJECT...]` (a person: queries within those projects)."""
    tokens: dict[str, Principal] = {}
    certified: dict[str, Principal] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        where = f"{source}:{number}"
        parts = raw.split("#", 1)[0].split()
        if not parts:
            continue
        user = parts[0].startswith("user:")
        if not (2 + user <= len(parts) <= 3) or (parts[1] != "-" and len(parts[1]) < _MIN_TOKEN):
            raise ConfigError(f"{where}: {_TOKENS_FORMS}")
        name, token = parts[0].removeprefix("user:") if user else parts[0], parts[1]
        projects = _project_names(parts[2], where) if len(parts) == 3 else None
        if user and not name:
            raise ConfigError(f"{where}: 'user:' needs a name: user:NAME TOKEN PROJECT")
        if not user and projects is not None and len(projects) != 1:
            raise ConfigError(f"{where}: a host belongs to one project ({parts[2]!r})")
        principal = Principal(name, projects or frozenset({DEFAULT_PROJECT}), user=user)
        if token == "-":
            if user or projects is None:
                raise ConfigError(
                    f"{where}: '-' (no token) is for hosts with a client certificate and "
                    "names their project: 'HOST_ID - PROJECT'"
                )
            if name in certified:
                raise ConfigError(f"{where}: host {name!r} listed twice with '-'")
            certified[name] = principal
            continue
        if token in tokens:
            raise ConfigError(f"{where}: token reused (hosts must not share tokens)")
        tokens[token] = principal
    return Credentials(tokens, certified)


def default_host_id() -> str:
    """This host's id when none is configured: its hostname."""
    return socket.gethostname()

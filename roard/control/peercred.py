"""Caller identity for the control socket.

gRPC does not expose a Unix socket's peer credentials, so the daemon accepts on the public
socket itself, reads SO_PEERCRED, and relays each connection to the gRPC server on a private
socket (one thread multiplexes them all) from a client socket bound to a one-off abstract
address. The gRPC handler sees that
address as its peer and looks the credentials up here. A connection that did not come
through the relay has no entry and is refused.

A connection that starts with roard.control.plain's MAGIC instead of the HTTP/2 preface is
not relayed: once its one request line is in, it goes to the plain-protocol handler with
its credentials.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import selectors
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from roard.control import plain
from roard.errors import PrerequisiteError

log = structlog.get_logger("roard.control")

_UCRED = struct.Struct("3i")


@dataclass(frozen=True)
class PeerCred:
    """The process at the other end of a Unix socket."""

    pid: int
    uid: int
    gid: int


def peer_cred(sock: socket.socket) -> PeerCred:
    """SO_PEERCRED of a connected Unix socket."""
    pid, uid, gid = _UCRED.unpack(
        sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
    )
    return PeerCred(pid, uid, gid)


@dataclass(frozen=True)
class RelayLimits:
    """What one client may hold of the relay, so that a flood cannot starve the others."""

    connections: int = 4096  # in all; beyond, new connections are closed at once
    per_user: int = 128  # per non-root uid
    quiet_seconds: float = 10.0  # a client that sends nothing this long after connecting
    buffer_bytes: int = 1 << 20  # per direction: past it, reading that side pauses


@dataclass
class _Link:
    """One relayed connection: the client, its upstream, and bytes not yet passed on."""

    name: str
    cred: PeerCred
    client: socket.socket
    upstream: socket.socket
    opened: float
    heard: bool = False  # the client has sent something
    to_upstream: bytearray = field(default_factory=bytearray)
    to_client: bytearray = field(default_factory=bytearray)
    client_eof: bool = False
    upstream_eof: bool = False
    plain: bool = False  # the client speaks the plain protocol: not relayed


@dataclass
class _PlainCall:
    """A plain-protocol connection whose request line is not all in yet."""

    cred: PeerCred
    opened: float
    data: bytearray


# Called with the client's socket (blocking, the relay's no more), its credentials and
# its request line; must not block the relay.
PlainHandler = Callable[[socket.socket, PeerCred, bytes], None]


class CredentialRelay:
    """Accepts on the public socket and relays to the private gRPC socket.

    One thread multiplexes every connection (epoll): idle, slow or garbage-sending clients
    cost two descriptors each, never a thread; the limits bound how many one user holds.
    """

    def __init__(self, public: Path, private: Path, limits: RelayLimits | None = None) -> None:
        self._public = public
        self._private = private
        self._limits = limits or RelayLimits()
        # Takes plain-protocol calls (the control server sets it; None: they are closed).
        self.on_plain: PlainHandler | None = None
        self._plain: dict[socket.socket, _PlainCall] = {}
        self._peers: dict[str, PeerCred] = {}
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._stopping = threading.Event()
        self._selector = selectors.DefaultSelector()
        # Written to by stop(): the loop's select returns at once, not at its timeout.
        self._wake_reader, self._waker = socket.socketpair()
        self._links: dict[socket.socket, _Link] = {}
        self._held: Counter[int] = Counter()  # connections per uid
        self._expired_at = 0.0
        self._thread: threading.Thread | None = None

    def lookup(self, grpc_peer: str) -> PeerCred | None:
        """Credentials for a gRPC peer string such as 'unix-abstract:roard-peer-…'."""
        name = grpc_peer.removeprefix("unix-abstract:")
        with self._lock:
            return self._peers.get(name)

    def start(self) -> None:
        """Bind the public socket (mode 0666: the daemon checks each caller) and serve."""
        if _answers(self._public):
            raise PrerequisiteError(
                f"another roard is serving on {self._public}: stop it, or use another --socket"
            )
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self._public.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(FileNotFoundError):
                self._public.unlink()
            listener.bind(str(self._public))
            os.chmod(self._public, 0o666)
        except OSError as exc:
            listener.close()
            raise PrerequisiteError(
                f"cannot create the control socket {self._public}: {exc.strerror or exc} "
                "(a path must be under 108 bytes, in a writable directory); use --socket"
            ) from None
        listener.listen(1024)
        listener.setblocking(False)
        self._listener = listener
        self._selector.register(listener, selectors.EVENT_READ)
        self._selector.register(self._wake_reader, selectors.EVENT_READ)
        self._thread = threading.Thread(target=self._loop, name="roard-relay", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop accepting, close every relayed connection and remove the public socket."""
        self._stopping.set()
        with contextlib.suppress(OSError):
            self._waker.send(b"x")
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._waker.close()
        with contextlib.suppress(FileNotFoundError):
            self._public.unlink()

    def _loop(self) -> None:
        assert self._listener is not None
        try:
            while not self._stopping.is_set():
                for key, mask in self._selector.select(timeout=1.0):
                    if key.fileobj is self._listener:
                        self._accept()
                    elif (link := self._links.get(key.fileobj)) is not None:  # type: ignore[call-overload]
                        self._service(link, mask)
                    elif (call := self._plain.get(key.fileobj)) is not None:  # type: ignore[call-overload]
                        self._read_plain(key.fileobj, call)  # type: ignore[arg-type]
                self._expire()
        except Exception:
            log.exception("control socket relay failed")
        finally:
            for link in {id(link): link for link in self._links.values()}.values():
                self._close(link)
            for sock in list(self._plain):
                self._drop_plain(sock)
            self._selector.close()
            self._listener.close()
            self._wake_reader.close()

    def _accept(self) -> None:
        """Take every pending connection (a burst must not wait a select round each)."""
        assert self._listener is not None
        for _ in range(256):
            try:
                client, _ = self._listener.accept()
            except BlockingIOError:
                return
            except OSError as exc:
                # Out of descriptors, say: keep serving those already connected.
                log.warning("control socket accept failed", error=str(exc))
                return
            try:
                self._open(client)
            except OSError as exc:
                log.warning("control connection failed", error=str(exc))
                client.close()

    def _open(self, client: socket.socket) -> None:
        cred = peer_cred(client)
        limits = self._limits
        if len(self._links) // 2 >= limits.connections or (
            cred.uid != 0 and self._held[cred.uid] >= limits.per_user
        ):
            client.close()  # not logged: a flood would flood the log too
            return
        name = f"roard-peer-{secrets.token_hex(8)}"
        upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            upstream.bind(b"\0" + name.encode())
            upstream.connect(str(self._private))
        except OSError:
            upstream.close()
            raise
        client.setblocking(False)
        upstream.setblocking(False)
        link = _Link(name, cred, client, upstream, time.monotonic())
        with self._lock:
            self._peers[name] = cred
        self._links[client] = self._links[upstream] = link
        self._held[cred.uid] += 1
        self._selector.register(client, selectors.EVENT_READ)
        self._selector.register(upstream, selectors.EVENT_READ)

    def _service(self, link: _Link, mask: int) -> None:
        """Move what is readable and writable on either side of `link`."""
        try:
            if mask & selectors.EVENT_READ:
                self._read(link)
            if link.plain:
                self._to_plain(link)
                return
            if link.heard:  # until then, which protocol the client speaks is not known
                self._write(link.client, link.to_client)
            self._write(link.upstream, link.to_upstream)
        except OSError:
            self._close(link)
            return
        if link.client_eof and link.upstream_eof and not link.to_client and not link.to_upstream:
            self._close(link)
            return
        # An end that closed and has nothing left to send ends the link: HTTP/2 never
        # half-closes, and the other side would otherwise linger until its own timeout.
        if (link.client_eof and not link.to_upstream) or (link.upstream_eof and not link.to_client):
            self._close(link)
            return
        self._watch(link)

    def _read(self, link: _Link) -> None:
        cap = self._limits.buffer_bytes
        for sock, into, side in (
            (link.client, link.to_upstream, "client"),
            (link.upstream, link.to_client, "upstream"),
        ):
            if len(into) >= cap or (link.client_eof if side == "client" else link.upstream_eof):
                continue
            try:
                data = sock.recv(65536)
            except BlockingIOError:
                continue
            if not data:
                if side == "client":
                    link.client_eof = True
                else:
                    link.upstream_eof = True
                continue
            if side == "client" and not link.heard:
                link.heard = True
                link.plain = data[:1] == plain.MAGIC[:1]  # gRPC's preface starts with "P"
                if link.plain:
                    into.extend(data)
                    return
            into.extend(data)

    @staticmethod
    def _write(sock: socket.socket, pending: bytearray) -> None:
        if not pending:
            return
        try:
            sent = sock.send(pending)
        except BlockingIOError:
            return
        del pending[:sent]

    def _watch(self, link: _Link) -> None:
        """Select on each side for what it can do now: read while its buffer has room and
        it has not closed, write while something waits for it (the client: once it has
        spoken, as gRPC's greeting must not reach a plain-protocol client)."""
        cap = self._limits.buffer_bytes
        for sock, out, into, eof in (
            (link.client, link.to_client if link.heard else b"", link.to_upstream, link.client_eof),
            (link.upstream, link.to_upstream, link.to_client, link.upstream_eof),
        ):
            events = (selectors.EVENT_READ if len(into) < cap and not eof else 0) | (
                selectors.EVENT_WRITE if out else 0
            )
            registered = sock in self._selector.get_map()
            if events and registered:
                self._selector.modify(sock, events)
            elif events:
                self._selector.register(sock, events)
            elif registered:
                # Nothing to do until the other side drains its buffer (which services
                # this link again).
                self._selector.unregister(sock)

    def _to_plain(self, link: _Link) -> None:
        """The client speaks the plain protocol: stop relaying, wait for its request."""
        self._close_upstream(link)
        self._links.pop(link.client, None)
        if link.client in self._selector.get_map():
            self._selector.modify(link.client, selectors.EVENT_READ)
        else:
            self._selector.register(link.client, selectors.EVENT_READ)
        self._plain[link.client] = _PlainCall(link.cred, link.opened, link.to_upstream)
        self._read_plain(link.client, self._plain[link.client], receive=False)

    def _read_plain(self, sock: socket.socket, call: _PlainCall, receive: bool = True) -> None:
        """Take in a plain call's bytes; hand it over once its request line is in."""
        if receive:
            try:
                data = sock.recv(65536)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                self._drop_plain(sock)
                return
            call.data.extend(data)
        head = bytes(call.data[: len(plain.MAGIC)])
        if not plain.MAGIC.startswith(head) or len(call.data) > len(plain.MAGIC) + plain.MAX_LINE:
            self._drop_plain(sock)  # not this protocol (or a line past any request's size)
            return
        end = call.data.find(b"\n", len(plain.MAGIC))
        if end < 0:
            return
        line = bytes(call.data[len(plain.MAGIC) : end])
        self._forget_plain(sock)
        if self.on_plain is None:
            sock.close()
            return
        sock.setblocking(True)
        self.on_plain(sock, call.cred, line)

    def _forget_plain(self, sock: socket.socket) -> None:
        """Stop watching a plain call's socket (handed over, or about to be closed)."""
        call = self._plain.pop(sock)
        self._held[call.cred.uid] -= 1
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(sock)

    def _drop_plain(self, sock: socket.socket) -> None:
        self._forget_plain(sock)
        sock.close()

    def _expire(self) -> None:
        """Close connections whose client said nothing since connecting (connected and
        left idle: they would hold descriptors for ever), and plain calls whose request is
        not in by then. After the first bytes, gRPC's own limits (handshake, idle
        connection) take over."""
        now = time.monotonic()
        if now - self._expired_at < 1.0:
            return
        self._expired_at = now
        quiet = self._limits.quiet_seconds
        for link in {id(link): link for link in self._links.values()}.values():
            if not link.heard and now - link.opened > quiet:
                self._close(link)
        for sock, call in list(self._plain.items()):
            if now - call.opened > quiet:
                self._drop_plain(sock)

    def _close(self, link: _Link) -> None:
        if self._links.get(link.client) is link:
            self._held[link.cred.uid] -= 1
        self._close_upstream(link)
        if self._links.pop(link.client, None) is not None:
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(link.client)
        link.client.close()

    def _close_upstream(self, link: _Link) -> None:
        """Close the link's gRPC side and forget its peer name."""
        if self._links.pop(link.upstream, None) is not None:
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(link.upstream)
        link.upstream.close()
        with self._lock:
            self._peers.pop(link.name, None)


def _answers(path: Path) -> bool:
    """Whether something accepts connections on the Unix socket at `path`."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except OSError:
        return False
    finally:
        probe.close()
    return True

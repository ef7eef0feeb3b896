"""Caller identity for the control socket.

gRPC does not expose a Unix socket's peer credentials, so the daemon accepts on the public
socket itself, reads SO_PEERCRED, and relays each connection to the gRPC server on a private
socket from a client socket bound to a one-off abstract address. The gRPC handler sees that
address as its peer and looks the credentials up here. A connection that did not come
through the relay has no entry and is refused.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import struct
import threading
from dataclasses import dataclass
from pathlib import Path

import structlog

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


class CredentialRelay:
    """Accepts on the public socket and relays to the private gRPC socket."""

    def __init__(self, public: Path, private: Path) -> None:
        self._public = public
        self._private = private
        self._peers: dict[str, PeerCred] = {}
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._stopping = threading.Event()

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
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept_loop, name="roard-relay", daemon=True).start()

    def stop(self) -> None:
        """Stop accepting and remove the public socket."""
        self._stopping.set()
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
        with contextlib.suppress(FileNotFoundError):
            self._public.unlink()

    def _accept_loop(self) -> None:
        assert self._listener is not None
        while not self._stopping.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._relay, args=(client,), daemon=True).start()

    def _relay(self, client: socket.socket) -> None:
        name = f"roard-peer-{secrets.token_hex(8)}"
        upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            cred = peer_cred(client)
            with self._lock:
                self._peers[name] = cred
            upstream.bind(b"\0" + name.encode())
            upstream.connect(str(self._private))
            back = threading.Thread(target=_pump, args=(upstream, client), daemon=True)
            back.start()
            _pump(client, upstream)
            back.join()
        except OSError as exc:
            log.warning("control connection failed", error=str(exc))
        finally:
            with self._lock:
                self._peers.pop(name, None)
            client.close()
            upstream.close()


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


def _pump(src: socket.socket, dst: socket.socket) -> None:
    """Copy bytes until src closes, then half-close dst."""
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    with contextlib.suppress(OSError):
        dst.shutdown(socket.SHUT_WR)

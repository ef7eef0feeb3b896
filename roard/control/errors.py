"""roard errors across gRPC (control socket and collector): one table, both sides."""

from __future__ import annotations

import grpc

from roard.errors import (
    CollectorUnavailable,
    DaemonUnavailable,
    NotFound,
    PermissionDenied,
    RoardError,
    UsageError,
)

_CODES: tuple[tuple[type[RoardError], grpc.StatusCode], ...] = (
    (NotFound, grpc.StatusCode.NOT_FOUND),
    (PermissionDenied, grpc.StatusCode.PERMISSION_DENIED),
    (UsageError, grpc.StatusCode.INVALID_ARGUMENT),
    (DaemonUnavailable, grpc.StatusCode.UNAVAILABLE),
    (CollectorUnavailable, grpc.StatusCode.UNAVAILABLE),
)


def status_code(error: RoardError) -> grpc.StatusCode:
    """The gRPC status that carries `error`."""
    for cls, code in _CODES:
        if isinstance(error, cls):
            return code
    return grpc.StatusCode.FAILED_PRECONDITION


def from_status(code: grpc.StatusCode, message: str) -> RoardError:
    """The roard error a gRPC status stands for."""
    for cls, known in _CODES:
        if code == known:
            return cls(message)
    return RoardError(message)

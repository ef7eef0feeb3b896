"""roard errors across the control socket and the collector: one table, both sides. Each
error travels as a gRPC status (or, on the control socket's plain protocol, its name)."""

from __future__ import annotations

from roard.errors import (
    CollectorUnavailable,
    DaemonUnavailable,
    NotFound,
    PermissionDenied,
    RoardError,
    UsageError,
)

TYPE_CHECKING = False  # not typing's: roarctl's tag form starts without typing (~8 ms)
if TYPE_CHECKING:
    import grpc

_CODES: tuple[tuple[type[RoardError], str], ...] = (
    (NotFound, "NOT_FOUND"),
    (PermissionDenied, "PERMISSION_DENIED"),
    (UsageError, "INVALID_ARGUMENT"),
    (DaemonUnavailable, "UNAVAILABLE"),
    (CollectorUnavailable, "UNAVAILABLE"),
)


def status_name(error: RoardError) -> str:
    """The name of the gRPC status that carries `error`."""
    for cls, name in _CODES:
        if isinstance(error, cls):
            return name
    return "FAILED_PRECONDITION"


def from_name(name: str, message: str) -> RoardError:
    """The roard error a gRPC status name stands for."""
    for cls, known in _CODES:
        if name == known:
            return cls(message)
    return RoardError(message)


def status_code(error: RoardError) -> grpc.StatusCode:
    """The gRPC status that carries `error`."""
    import grpc  # here: roarctl's plain protocol uses this module without gRPC

    return grpc.StatusCode[status_name(error)]


def from_status(code: grpc.StatusCode, message: str) -> RoardError:
    """The roard error a gRPC status stands for."""
    return from_name(code.name, message)

"""The one exception hierarchy. Every message tells the user what to do next."""

from __future__ import annotations


class RoardError(Exception):
    """Base of every error roard raises on purpose; printed as one line, no traceback."""

    exit_code = 1


class ConfigError(RoardError):
    """The configuration file or a flag is malformed."""

    exit_code = 2


class UsageError(RoardError):
    """A command was called with arguments that cannot work."""

    exit_code = 2


class PrerequisiteError(RoardError):
    """The host lacks something roard needs (privileges, BTF, bcc, tracefs, headers)."""


class KernelError(RoardError):
    """Compiling, loading or attaching the eBPF programs failed."""


class BtfError(PrerequisiteError):
    """The kernel's BTF is missing, unreadable or lacks a type roard needs."""


class DaemonUnavailable(RoardError):
    """roarctl could not reach the daemon's control socket."""


class NotFound(RoardError):
    """A run, process or artifact the user named does not exist (or is not visible)."""


class PermissionDenied(RoardError):
    """The caller may not act on that process or run."""


class CollectorUnavailable(RoardError):
    """The collector cannot be reached (records stay spooled and are sent later)."""


class StateDirError(PrerequisiteError):
    """The state dir (spool, hash cache, embedded registry) is read-only or full."""

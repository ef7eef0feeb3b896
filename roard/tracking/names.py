"""Run names given in the environment (ROARD_RUN): what a wrapper may set there.

`roarctl tag --name` keeps accepting any name, as it always has (users' scripts rely on
it); a name that arrives through the environment of any process on the host is held to a
strict rule instead."""

from __future__ import annotations

import re
from dataclasses import dataclass

from roard.errors import UsageError

RUN_NAME_MAX = 128
# Printable, shell- and URL-safe, no whitespace. '@' is kept out of names: ROARD_RUN
# reserves it to separate a name from an explicit run id (name@id, a later extension).
_RUN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/+-]*")


def check_run_name(name: str) -> str:
    """Return `name` if it is a valid run name; raise UsageError saying why not."""
    if not name:
        raise UsageError("a run name must not be empty")
    if len(name) > RUN_NAME_MAX:
        raise UsageError(f"run name {name[:40]!r}... is longer than {RUN_NAME_MAX} characters")
    if not _RUN_NAME.fullmatch(name):
        raise UsageError(
            f"run name {name!r} is not allowed: it must start with a letter or digit and "
            "contain only letters, digits and . _ : / + -"
        )
    return name


@dataclass(frozen=True)
class EnvRun:
    """What a ROARD_RUN value asks for."""

    name: str


def parse_env_run(value: str, truncated: bool = False) -> EnvRun:
    """Parse the value of ROARD_RUN (`truncated`: the kernel could not read all of it).

    The only syntax today is a bare run name. `name@id` is reserved for an explicit run
    id shared by the processes of a distributed job; it is refused until it is
    implemented, rather than read as a name."""
    if truncated:
        raise UsageError(f"ROARD_RUN value {value[:40]!r}... is too long")
    name, at, _run_id = value.partition("@")
    if at:
        raise UsageError(
            f"ROARD_RUN={value!r}: an explicit run id (NAME@ID) is not supported yet; "
            "give a run name only"
        )
    return EnvRun(check_run_name(name))

"""Run names given in the environment (ROARD_RUN): what a wrapper may set there.

`roarctl tag --name` keeps accepting any name, as it always has (users' scripts rely on
it); a name that arrives through the environment of any process on the host is held to a
strict rule instead."""

from __future__ import annotations

import re
from dataclasses import dataclass

from roard.errors import UsageError

RUN_NAME_MAX = 128  # and the longest run id to join
# Printable, shell- and URL-safe, no whitespace. '@' is kept out of names: ROARD_RUN
# uses it to separate a name from an explicit run id (NAME@ID).
_RUN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/+-]*")
# A run id several hosts share: no '/' (the daemon holds a part as "ID/PART") and no '@'.
_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]*")


def _checked(value: str, what: str, rule: re.Pattern[str], allowed: str, hint: str = "") -> str:
    """`value` if it is a valid `what` (a full match of `rule`, at most 128 characters);
    else UsageError saying why, with the characters `allowed`."""
    if not value:
        raise UsageError(f"a {what} must not be empty")
    if len(value) > RUN_NAME_MAX:
        raise UsageError(f"{what} {value[:40]!r}... is longer than {RUN_NAME_MAX} characters")
    if not rule.fullmatch(value):
        raise UsageError(
            f"{what} {value!r} is not allowed: it must start with a letter or digit and "
            f"contain only letters, digits and {allowed}{hint}"
        )
    return value


def check_run_name(name: str) -> str:
    """Return `name` if it is a valid run name; raise UsageError saying why not."""
    return _checked(name, "run name", _RUN_NAME, ". _ : / + -")


def check_run_id(run_id: str) -> str:
    """Return `run_id` if it may name a run several hosts join; raise UsageError why not."""
    return _checked(run_id, "run id to join", _RUN_ID, ". _ : -", " (e.g. slurm-$SLURM_JOB_ID)")


@dataclass(frozen=True)
class EnvRun:
    """What a ROARD_RUN value asks for: a new run named `name`, or, with `join`, one more
    part of the run with that id (shared by the hosts of a distributed job)."""

    name: str
    join: str | None = None


def parse_env_run(value: str, truncated: bool = False) -> EnvRun:
    """Parse the value of ROARD_RUN: NAME, or NAME@ID (`truncated`: the kernel could not
    read all of it)."""
    if truncated:
        raise UsageError(f"ROARD_RUN value {value[:40]!r}... is too long")
    name, at, run_id = value.partition("@")
    return EnvRun(check_run_name(name), check_run_id(run_id) if at else None)

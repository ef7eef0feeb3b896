"""Probes that describe a run's code and environment: the git work trees and installed
packages its inputs came from, and the host and container it ran on.

Each probe is a pure function of the paths a run read (and of the machine's state): it
never raises for what it finds broken, it leaves out what it cannot tell.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Mapping
from typing import Any


def as_json(value: Any) -> Any:
    """`value` as plain JSON data: dataclasses become dicts, tuples and lists become lists;
    str, int, bool and None are kept."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: as_json(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, list | tuple):
        return [as_json(v) for v in value]
    if isinstance(value, dict):
        return {str(k): as_json(v) for k, v in value.items()}
    return value


class Plain:
    """Gives a frozen dataclass `to_dict()`, its fields as plain JSON data."""

    def to_dict(self) -> dict[str, Any]:
        """The fields as a dict of str, int, bool and lists, ready for JSON."""
        result: dict[str, Any] = as_json(self)
        return result


# Absolute, normalized paths by their directory (by_directory): what the probes take.
Directories = Mapping[str, list[str]]


def by_directory(paths: Iterable[str]) -> dict[str, list[str]]:
    """The absolute ones of `paths`, normalized, by their directory: a run's thousands of
    inputs lie in a few directories, so the probes look each directory up once."""
    found: dict[str, list[str]] = {}
    for raw in paths:
        if raw.startswith("/"):
            # Clean already, as the daemon's paths are, unless it has "//", "/." or a final
            # "/" (normpath is the probes' cost per file otherwise).
            clean = "//" not in raw and "/." not in raw and not raw.endswith("/")
            path = raw if clean else os.path.normpath(raw)
            found.setdefault(path.rpartition("/")[0] or "/", []).append(path)
    return found

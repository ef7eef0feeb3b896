"""Which runs a `runs` query lists: shared by the registry, the collector, the daemon and
roarctl (a module of its own so that clients need not load the registry's SQL)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class RunFilter:
    """Which runs `runs()` lists; every given criterion must hold."""

    name: str | None = None
    labels: Mapping[str, str] | None = None
    host: str | None = None
    since: float | None = None  # started at or after
    until: float | None = None  # started before
    limit: int = 100
    link: str | None = None  # linked to this tracker run: RUN_ID or TRACKER=RUN_ID
    project: str | None = None

    @classmethod
    def of(cls, message: Any) -> RunFilter:
        """From a wire request with the same fields (RunsQuery, RunsRequest), where empty
        means "any"."""
        return cls(
            name=message.name or None,
            labels=dict(message.labels) or None,
            host=message.host or None,
            since=message.since or None,
            until=message.until or None,
            limit=message.limit or 100,
            link=message.link or None,
            project=message.project or None,
        )

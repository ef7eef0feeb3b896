"""Times as people and JSON documents write them (RFC 3339 / ISO 8601, UTC)."""

from __future__ import annotations

from datetime import UTC, datetime


def rfc3339(epoch_seconds: float) -> str:
    """Formats seconds since the epoch as RFC 3339 UTC with microseconds, e.g.
    "2026-11-26T06:11:28.123456Z"."""
    return datetime.fromtimestamp(epoch_seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: str) -> float:
    """An ISO 8601 time (a date alone is midnight; no zone means UTC) as seconds since the
    epoch. Raises ValueError with a message that shows the accepted forms."""
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"{text!r} is not an ISO 8601 time (e.g. 2026-11-26T08:00:00Z or 2026-11-26)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()

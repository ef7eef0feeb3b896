"""Opening the registry's storage from its URL (the collector's `database` setting)."""

from __future__ import annotations

import re
from pathlib import Path

from roard.collector.storage import SqlStore
from roard.errors import ConfigError

__all__ = ["open_store"]

_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:")
_FORMS = (
    "sqlite:///ABSOLUTE/PATH (or a plain file path) for the embedded SQLite registry, "
    "or postgresql://USER[:PASSWORD]@HOST[:PORT]/DBNAME for PostgreSQL"
)


def open_store(url: str) -> SqlStore:
    """Opens the registry `url` names: `sqlite:///abs/path` or a plain filesystem path (a
    SQLite file), or `postgresql://...` / `postgres://...` (a PostgreSQL database).

    Raises ConfigError for any other form, and whatever the store raises when it cannot
    open (PrerequisiteError for an unreachable PostgreSQL server).
    """
    text = url.strip()
    scheme, sep, rest = text.partition("://")
    if not sep:
        if not text or _SCHEME.match(text):
            raise ConfigError(f"registry database {url!r} is not understood: give {_FORMS}")
        from roard.collector.sqlite import SqliteStore

        return SqliteStore(Path(text).expanduser())
    scheme = scheme.lower()
    if scheme == "sqlite":
        # sqlite:///abs/path: an empty authority, then the absolute path.
        if not rest.startswith("/") or rest == "/":
            raise ConfigError(
                f"registry database {url!r}: a SQLite URL needs an absolute path after "
                f"three slashes (sqlite:///var/lib/roard/registry.db): give {_FORMS}"
            )
        from roard.collector.sqlite import SqliteStore

        return SqliteStore(Path(rest))
    if scheme in ("postgresql", "postgres"):
        from roard.collector.postgres import PostgresStore

        return PostgresStore(text)
    raise ConfigError(f"registry database {url!r} has unknown scheme {scheme!r}: give {_FORMS}")

"""Fixtures shared by all test directories."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.pgserver import PgServer, start_server


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PgServer]:
    """One private PostgreSQL server for the whole session (skips, or fails under
    ROARD_REQUIRE_BPF=1, where PostgreSQL is not installed)."""
    server = start_server()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def postgres_url(postgres_server: PgServer) -> str:
    """The URL of a fresh, empty database on the session's server."""
    return postgres_server.create_database()

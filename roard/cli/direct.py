"""roarctl's query commands answered by a collector directly, with a person's own token
(`roarctl --collector ADDR --token-file FILE`), instead of through the local daemon."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from roard.collector.filters import RunFilter
from roard.errors import ConfigError

if TYPE_CHECKING:
    from roard.collector.transport import CollectorTarget


class Queries(Protocol):
    """The questions roarctl's query commands ask (ControlClient and DirectQueries)."""

    def show(self, run: str) -> dict[str, Any]: ...
    def runs(self, where: RunFilter) -> list[dict[str, Any]]: ...
    def artifact(self, query: str, host: str | None = None) -> dict[str, Any]: ...
    def lineage(
        self,
        query: str,
        up: bool,
        down: bool,
        depth: int = 0,
        host: str | None = None,
        max_nodes: int = 0,
    ) -> dict[str, Any]: ...
    def run_graph(self, run: str, depth: int = 0, max_nodes: int = 0) -> dict[str, Any]: ...
    def export(self, run: str, fmt: str) -> Any: ...


def direct_target(
    address: str | None, token_file: Path | None, tls_ca: Path | None
) -> CollectorTarget | None:
    """The collector roarctl asks directly: flags first, then $ROARD_COLLECTOR and
    $ROARD_TOKEN_FILE; None when neither names a collector (ask the daemon)."""
    address = address or os.environ.get("ROARD_COLLECTOR") or None
    if address is None:
        return None
    # Imported here: roarctl loads this module for every command, and most ask the daemon.
    from roard.collector.transport import CollectorTarget, TlsFiles, check_address

    token_path = token_file or (
        Path(os.environ["ROARD_TOKEN_FILE"]) if os.environ.get("ROARD_TOKEN_FILE") else None
    )
    token = None
    if token_path is not None:
        try:
            token = token_path.read_text().strip()
        except OSError as exc:
            raise ConfigError(f"--token-file {token_path}: {exc.strerror}") from None
    tls = TlsFiles(ca=tls_ca) if tls_ca else None
    return CollectorTarget(check_address(address), tls=tls, token=token)


class DirectQueries:
    """Queries to a collector under the caller's own token: the token's projects scope
    every answer (the collector ignores uids for a person's token)."""

    def __init__(self, target: CollectorTarget) -> None:
        # Imported here: roarctl loads this module for every command, and the collector
        # client (its protobuf modules) only matters to the queries that use it.
        from roard.collector.client import CollectorClient

        self._client = CollectorClient(target)

    def show(self, run: str) -> dict[str, Any]:
        """A run by id, or a name meaning its latest visible run."""
        return self._client.show(run)

    def runs(self, where: RunFilter) -> list[dict[str, Any]]:
        """Visible runs, newest first, filtered by every criterion given."""
        return self._client.runs(where)

    def artifact(self, query: str, host: str | None = None) -> dict[str, Any]:
        """Artifacts by hash, hash prefix or absolute path."""
        return self._client.artifact(query, host)

    def lineage(
        self,
        query: str,
        up: bool,
        down: bool,
        depth: int = 0,
        host: str | None = None,
        max_nodes: int = 0,
    ) -> dict[str, Any]:
        """The lineage graph around an artifact."""
        return self._client.lineage(query, up, down, depth, host, None, max_nodes)

    def run_graph(self, run: str, depth: int = 0, max_nodes: int = 0) -> dict[str, Any]:
        """A run's DAG."""
        return self._client.run_graph(run, None, depth, max_nodes)

    def export(self, run: str, fmt: str) -> Any:
        """A run as OpenLineage events or a PROV-JSON document."""
        return self._client.export(run, fmt)

    def close(self) -> None:
        """Closes the channel."""
        self._client.close()

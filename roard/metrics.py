"""Health and Prometheus metrics over HTTP on loopback: GET /healthz and GET /metrics.

The figures come from the daemon's status document (the same one `roarctl status --json`
prints), rendered in the Prometheus text exposition format. Loopback only: the numbers
are harmless, but nobody else needs to reach a training host's daemon.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import structlog

from roard.collector.transport import is_loopback, split_host_port
from roard.errors import ConfigError

log = structlog.get_logger("roard.metrics")

Status = Mapping[str, Any]

_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _label(value: object) -> str:
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    # Exact: "%g" would round a byte counter past a million to six digits.
    return str(int(value)) if isinstance(value, int) else repr(float(value))


def _family(name: str, kind: str, text: str, samples: Mapping[str, float] | float) -> Iterator[str]:
    """One metric family: HELP, TYPE and its samples (a number, or {label value: number}
    where the label is named in `name` after a colon, e.g. "roard_events_total:type")."""
    metric, _, label = name.partition(":")
    yield f"# HELP {metric} {text}"
    yield f"# TYPE {metric} {kind}"
    if isinstance(samples, Mapping):
        for key, value in sorted(samples.items()):
            yield f'{metric}{{{label}="{_label(key)}"}} {_number(value)}'
    else:
        yield f"{metric} {_number(samples)}"


def render(status: Status, healthy: bool) -> str:
    """The Prometheus exposition of a daemon status document."""
    spool, collector, hashing, ring = (
        status["spool"], status["collector"], status["hash"], status["ring"]
    )  # fmt: skip
    families = [
        ("roard_up", "gauge", "1 while the ring-buffer reader is alive", int(healthy)),
        ("roard_events_total:type", "counter", "kernel events decoded, by type",
         status["events"]),
        ("roard_lost_events_total:category", "counter",
         "kernel events dropped (ring buffer or map full), by category", status["lost"]),
        ("roard_ring_fill_ratio", "gauge", "fraction of the events ring buffer in use",
         ring["fill_ratio"]),
        ("roard_ring_fill_max_ratio", "gauge",
         "highest fraction of the events ring buffer in use since start", ring["max_fill_ratio"]),
        ("roard_ring_size_bytes", "gauge", "size of the events ring buffer", ring["size_bytes"]),
        ("roard_runs_active", "gauge", "runs being tracked", len(status["runs"])),
        ("roard_tracked_processes", "gauge", "processes in the kernel's tracked map",
         status["kernel_tracked_processes"]),
        ("roard_unattributed_events_total", "counter",
         "events of runs already finalized", status["tracker"]["unattributed_events"]),
        ("roard_env_runs_started_total", "counter", "runs started by ROARD_RUN at exec",
         status["tracker"]["env_runs_started"]),
        ("roard_env_runs_rejected_total", "counter",
         "ROARD_RUN values that started no run (invalid)", status["tracker"]["env_runs_rejected"]),
        ("roard_env_runs_elsewhere_total", "counter",
         "ROARD_RUN jobs left to the other roard their ROARD_SOCKET names",
         status["tracker"]["env_runs_elsewhere"]),
        ("roard_hash_queue", "gauge", "files queued or being hashed", hashing["queue"]),
        ("roard_hashed_bytes_total", "counter", "bytes read to hash files",
         hashing["bytes_hashed"]),
        ("roard_hashed_files_total", "counter", "files hashed", hashing["files_hashed"]),
        ("roard_unhashed_files_total:reason", "counter",
         "files recorded without a hash, by reason (size, timeout, not_regular, ...)",
         hashing["unhashed"]),
        ("roard_hash_stuck_threads", "gauge",
         "hash threads written off at their deadline and still blocked", hashing["stuck_threads"]),
        ("roard_hash_refusing", "gauge",
         "1 while too many hash threads are stuck and new files are recorded unhashed",
         int(hashing["refusing"] is not None)),
        ("roard_hash_seconds_total", "counter",
         "seconds hash workers spent reading and hashing (throughput: rate of "
         "roard_hashed_bytes_total over rate of this)", hashing["seconds_hashing"]),
        ("roard_hash_cache_hits_total", "counter", "hashes answered from the cache",
         hashing["cache_hits"]),
        ("roard_hash_cache_misses_total", "counter", "hashes that needed a read",
         hashing["cache_misses"]),
        ("roard_records_spooled_total", "counter", "lineage records written to the spool",
         status["records_spooled"]),
        ("roard_spool_failures_total", "counter", "failed spool writes (retried)",
         status["spool_failures"]),
        ("roard_spool_records", "gauge", "records waiting for the collector",
         spool["records"]),
        ("roard_spool_bytes", "gauge", "bytes waiting for the collector", spool["bytes"]),
        ("roard_spool_oldest_age_seconds", "gauge", "age of the oldest waiting record",
         spool["oldest_age_seconds"]),
        ("roard_spool_shed_records_total", "counter",
         "records dropped because the spool (or, while the state dir could not be written,"
         " the memory backlog) was full", spool["shed_records"]),
        ("roard_spool_backlog_records", "gauge",
         "records waiting in memory because the state dir cannot be written",
         spool["backlog_records"]),
        ("roard_state_dir_writable", "gauge",
         "0 while the state dir (spool, hash cache) cannot be written: full or read-only",
         int(status["state_dir_error"] is None)),
        ("roard_collector_connected", "gauge", "1 while the collector stream is up",
         int(bool(collector["connected"]))),
        ("roard_collector_reconnects_total", "counter", "collector stream restarts",
         collector["reconnects"]),
        ("roard_collector_records_sent_total", "counter", "records sent to the collector",
         collector["records_sent"]),
        ("roard_uptime_seconds", "gauge", "seconds since the daemon started",
         status["uptime_seconds"]),
    ]  # fmt: skip
    lines = [line for family in families for line in _family(*family)]
    lines += _family("roard_info:version", "gauge", "roard version", {status["version"]: 1})
    return "\n".join(lines) + "\n"


class MetricsServer:
    """Serves /healthz and /metrics on a loopback HOST:PORT (port 0 picks one: `.port`)."""

    def __init__(
        self, listen: str, status: Callable[[], Status], healthy: Callable[[], bool]
    ) -> None:
        where = split_host_port(listen, listen=True)
        if where is None or not is_loopback(listen):
            raise ConfigError(
                f"[metrics] listen {listen!r}: give a loopback HOST:PORT such as "
                "127.0.0.1:9464 (metrics are served without authentication)"
            )
        handler = _handler(status, healthy)
        try:
            self._server = ThreadingHTTPServer(where, handler)
        except OSError as exc:
            raise ConfigError(f"[metrics] cannot listen on {listen}: {exc.strerror}") from None
        self._server.daemon_threads = True
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="roard-metrics", daemon=True
        )

    def start(self) -> None:
        """Serve in the background."""
        self._thread.start()

    def stop(self) -> None:
        """Stop serving."""
        self._server.shutdown()
        self._server.server_close()


def _problem(status: Callable[[], Status], healthy: Callable[[], bool]) -> str | None:
    """Why the daemon is unhealthy: a stalled ring reader, or a state dir it cannot write
    (records then wait in memory, and would be lost at a crash)."""
    if not healthy():
        return "ring reader stalled"
    state = status()["state_dir_error"]
    return None if state is None else str(state["message"])


def _handler(
    status: Callable[[], Status], healthy: Callable[[], bool]
) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/healthz":
                problem = _problem(status, healthy)
                self._reply(503 if problem else 200, f"{problem or 'ok'}\n")
            elif self.path == "/metrics":
                try:
                    self._reply(200, render(status(), healthy()), _CONTENT_TYPE)
                except Exception:
                    log.exception("rendering metrics failed")
                    self._reply(500, "metrics failed: see the daemon's log\n")
            else:
                self._reply(404, "try /metrics or /healthz\n")

        def _reply(self, code: int, body: str, kind: str = "text/plain; charset=utf-8") -> None:
            data = body.encode()
            self.send_response(code)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # scrapes every few seconds would drown the daemon's log

    return Handler

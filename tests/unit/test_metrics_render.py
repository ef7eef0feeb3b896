"""The Prometheus rendering of a status document, read back by the Prometheus client's parser."""

from __future__ import annotations

from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from roard.metrics import render


def status_document() -> dict[str, Any]:
    """A status document shaped like Daemon.status()'s, with distinct numbers."""
    return {
        "version": "0.1.0",
        "uptime_seconds": 12.5,
        "events": {"ExecEvent": 3, "CloseEvent": 40},
        "lost": {"ringbuf_file": 7, "ringbuf_proc": 0, "agg_full": 2},
        "ring": {
            "used_bytes": 1024,
            "size_bytes": 16 << 20,
            "fill_ratio": 1024 / (16 << 20),
            "max_fill_ratio": 0.75,
        },
        "hash": {
            "queue": 4,
            "files_hashed": 9,
            "bytes_hashed": 123_456_789_012,
            "seconds_hashing": 1.5,
            "cache_hits": 1,
            "cache_misses": 9,
            "unhashed": {"size": 1, "timeout": 2},
            "stuck_threads": 1,
            "refusing": None,
        },
        "tracker": {
            "unattributed_events": 0,
            "env_runs_started": 2,
            "env_runs_rejected": 1,
            "env_runs_elsewhere": 3,
        },
        "kernel_tracked_processes": 2,
        "records_spooled": 30,
        "spool_failures": 0,
        "spool": {
            "records": 5,
            "bytes": 500,
            "oldest_age_seconds": 3.5,
            "shed_records": 0,
            "backlog_records": 7,
        },
        "state_dir_error": None,
        "collector": {"connected": False, "reconnects": 2, "records_sent": 25},
        "runs": [{"run_id": "r1", "name": "a", "processes": 1}, {"run_id": "r2"}],
    }


def parse(text: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    found: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return found


def test_every_figure_of_the_issue_is_exposed() -> None:
    """Events by type, drops by category, ring fill, hash queue and throughput, spool depth
    and age, collector state and active runs, each with the status document's value."""
    m = parse(render(status_document(), healthy=True))
    assert m["roard_events_total"] == {(("type", "CloseEvent"),): 40, (("type", "ExecEvent"),): 3}
    assert m["roard_lost_events_total"] == {
        (("category", "agg_full"),): 2,
        (("category", "ringbuf_file"),): 7,
        (("category", "ringbuf_proc"),): 0,
    }
    assert m["roard_ring_fill_ratio"][()] == 1024 / (16 << 20)
    assert m["roard_ring_fill_max_ratio"][()] == 0.75
    assert m["roard_ring_size_bytes"][()] == 16 << 20
    assert m["roard_hash_queue"][()] == 4
    assert m["roard_hashed_bytes_total"][()] == 123_456_789_012  # every digit kept
    assert m["roard_hash_seconds_total"][()] == 1.5
    assert m["roard_spool_records"][()] == 5
    assert m["roard_spool_oldest_age_seconds"][()] == 3.5
    assert m["roard_collector_connected"][()] == 0
    assert m["roard_runs_active"][()] == 2
    assert m["roard_up"][()] == 1
    assert m["roard_info"] == {(("version", "0.1.0"),): 1}


def test_an_unhealthy_daemon_reports_down_and_labels_are_escaped() -> None:
    """roard_up follows the health check; odd characters in a label value stay parseable."""
    doc = status_document()
    doc["events"] = {'we"ird\\type\n': 1}
    m = parse(render(doc, healthy=False))
    assert m["roard_up"][()] == 0
    assert m["roard_events_total"] == {(("type", 'we"ird\\type\n'),): 1}

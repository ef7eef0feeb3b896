"""The daemon's /healthz and Prometheus /metrics on loopback, scraped while it works."""

from __future__ import annotations

import re
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.conftest import Roard, python3, start_roard, stop_roard


@pytest.fixture(scope="module")
def metered(
    _bpf_available: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Roard, str]]:
    daemon = start_roard(tmp_path_factory.mktemp("metered"), '[metrics]\nlisten = "127.0.0.1:0"\n')
    try:
        found = re.search(r'"port": (\d+)', daemon.log.read_text())
        assert found, daemon.log.read_text()[-3000:]
        yield daemon, f"http://127.0.0.1:{found.group(1)}"
    finally:
        stop_roard(daemon)


def scrape(base: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """Metric name -> {labels: value}, parsed by the Prometheus client's own parser."""
    with urllib.request.urlopen(base + "/metrics", timeout=10) as response:
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = response.read().decode()
    found: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return found


def test_healthz_and_metrics_follow_the_work(metered: tuple[Roard, str], workdir: Path) -> None:
    daemon, base = metered
    with urllib.request.urlopen(base + "/healthz", timeout=10) as response:
        assert response.status == 200 and response.read() == b"ok\n"
    before = scrape(base)
    assert before["roard_up"][()] == 1
    assert before["roard_collector_connected"][()] == 1
    (workdir / "a.txt").write_text("metrics\n")
    daemon.roarctl("tag", "--name", "m", "--", "cp", "a.txt", "b.txt", cwd=workdir)
    after = scrape(base)
    execs = (("type", "ExecEvent"),)
    assert after["roard_events_total"][execs] > before.get("roard_events_total", {}).get(execs, 0)
    assert after["roard_records_spooled_total"][()] > before["roard_records_spooled_total"][()]
    assert after["roard_spool_records"][()] >= 0 and "roard_spool_oldest_age_seconds" in after
    assert after["roard_hashed_files_total"][()] >= 1
    with pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(base + "/nothing", timeout=10)
    assert missing.value.code == 404


def test_ring_fill_rises_under_an_event_storm(metered: tuple[Roard, str], workdir: Path) -> None:
    """A tagged job that writes thousands of files fills the events ring for a moment: the
    high-water mark rises above zero, stays a fraction, and never falls afterwards."""
    daemon, base = metered
    (workdir / "storm.py").write_text(
        "for i in range(3000):\n    with open(f's{i}.out', 'w') as f:\n        f.write('x')\n"
    )
    daemon.roarctl("tag", "--name", "storm", "--", python3(), "storm.py", cwd=workdir)
    after = scrape(base)
    high = after["roard_ring_fill_max_ratio"][()]
    assert 0 < high <= 1
    assert 0 <= after["roard_ring_fill_ratio"][()] <= high
    assert after["roard_ring_size_bytes"][()] == 4096 * 4096  # [kernel] ring_pages default
    assert scrape(base)["roard_ring_fill_max_ratio"][()] >= high
    assert after["roard_hash_seconds_total"][()] > 0
    lost = after["roard_lost_events_total"]
    assert (("category", "ringbuf_file"),) in lost and (("category", "agg_full"),) in lost

"""Where tagged runs' time went, from a roard log (such as `peers.py --daemon-log`): the
job (tagged until its last process exited) and the run's end (finalization until the
records are spooled), medians by the number of records the run made (which tells the
workloads apart).

    .venv/bin/python bench/peers.py --daemon-log /tmp/roard.log ...
    .venv/bin/python bench/run_ends.py /tmp/roard.log
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict
from datetime import datetime
from pathlib import Path

_STARTS = ("run tagged", "run started by ROARD_RUN")


def _seconds(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def run_ends(lines: list[str]) -> dict[int, list[tuple[float, float]]]:
    """(job seconds, end seconds) of each finalized run, by its number of records."""
    started: dict[str, float] = {}
    ending: dict[str, float] = {}
    found: dict[int, list[tuple[float, float]]] = defaultdict(list)
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            continue  # not a structlog line (a warning printed by a library)
        run, event = entry.get("run_id"), entry.get("event")
        if run is None or "timestamp" not in entry:
            continue
        when = _seconds(entry["timestamp"])
        if event in _STARTS:
            started[run] = when
        elif event == "finalizing run":
            ending[run] = when
        elif event == "run finalized" and run in started and run in ending:
            found[entry["records"]].append((ending[run] - started[run], when - ending[run]))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("log", type=Path)
    args = parser.parse_args()
    found = run_ends(args.log.read_text(errors="replace").splitlines())
    print("| records | runs | job (median) | run's end (median) |")
    print("| --- | --- | --- | --- |")
    for records, runs in sorted(found.items()):
        job = statistics.median(j for j, _ in runs)
        end = statistics.median(e for _, e in runs)
        print(f"| {records} | {len(runs)} | {job:.3f} s | {end:.3f} s |")


if __name__ == "__main__":
    main()

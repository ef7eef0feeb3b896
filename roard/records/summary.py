"""A finalized run's account from the records the daemon spooled for it: what `roarctl tag`
prints once the run is spooled, without waiting for the collector to store it.

It counts what the collector's run summary counts (roard.collector.storage), from the same
records: file accesses and datasets by role and kind, the last record of a (role, path)
winning as it does in the registry.
"""

from __future__ import annotations

import signal
from collections.abc import Iterable
from typing import Any

from roard.artifacts.kinds import DATASET, SYSTEM
from roard.v1 import records_pb2 as pb

_ROLES: dict[int, str] = {pb.ROLE_INPUT: "inputs", pb.ROLE_OUTPUT: "outputs"}


def signal_name(number: int | None) -> str | None:
    """ "SIGKILL" for 9; None for 0 (no signal)."""
    if not number:
        return None
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"SIG{number}"


def finalized(run_id: str, name: str | None, records: Iterable[pb.Record]) -> dict[str, Any]:
    """The summary of run `run_id` (the id users see) from its finalization's `records`,
    which end with its RunFinished: header fields, counts of hashed inputs and outputs by
    kind (datasets as a kind of their own) and of unhashed ones that are not system files."""
    files: dict[tuple[int, str], tuple[str, bool]] = {}  # (role, path) -> (kind, unhashed)
    finished = pb.RunFinished()
    for record in records:
        body = record.WhichOneof("body")
        if body == "file_access":
            access = record.file_access
            files[(access.role, access.path)] = (access.kind, bool(access.unhashed))
        elif body == "dataset":
            found = record.dataset
            files[(found.role, found.path)] = (DATASET, bool(found.unhashed))
        elif body == "run_finished":
            finished = record.run_finished
    doc: dict[str, Any] = {
        "run_id": run_id,
        "name": name,
        "status": "finished",
        "exit_code": finished.exit_code if finished.has_exit_code else None,
        "signal": signal_name(finished.signal),
        "complete": finished.complete and finished.lost_events == 0,
        "lost_events": finished.lost_events,
        "inputs": {},
        "outputs": {},
        "unhashed": 0,
    }
    for (role, _), (kind, unhashed) in files.items():
        key = _ROLES.get(role)
        if key is None:
            continue  # deleted temporaries: neither input nor output
        if not unhashed:
            doc[key][kind] = doc[key].get(kind, 0) + 1
        elif kind != SYSTEM:  # unhashed system files are the kernel's /proc, /sys...
            doc["unhashed"] += 1
    return doc

"""Run ids as the daemon holds them.

A run of one host has one id everywhere. A part of a joined run (`roarctl tag --join`,
ROARD_RUN=NAME@ID) is held as "RUN_ID/PART": RUN_ID is shared by every daemon that joins,
PART (fresh per daemon-side run) keeps each part's records apart. Shared run ids never
contain "/" (`names.check_run_id`), so the split is unambiguous.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import blake3

from roard.v1 import records_pb2 as pb


def new_id() -> str:
    """A fresh id for a run of one host, or for a part of a joined run."""
    return uuid.uuid4().hex[:16]


def local_id(run_id: str, part: str) -> str:
    """The daemon-side id of a run (part empty) or of one part of a joined run."""
    return f"{run_id}/{part}" if part else run_id


def split(local: str) -> tuple[str, str]:
    """(run id, part) of a daemon-side id; part is empty for a run of one host."""
    run_id, _, part = local.partition("/")
    return run_id, part


def of_record(record: pb.Record) -> str:
    """The daemon-side id of the run (part) a record belongs to."""
    return local_id(record.run_id, record.part)


def content_key(fields: Sequence[str]) -> str:
    """A short stable key for a record whose id must change with its content."""
    return blake3.blake3("\0".join(fields).encode()).hexdigest()[:32]

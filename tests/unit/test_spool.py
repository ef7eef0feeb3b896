"""Tests for roard.records.spool: durable until acked, bounded by shedding what matters least."""

from __future__ import annotations

from pathlib import Path

from roard.records.spool import NEVER_SHED, PRIO_OUTPUT, PRIO_READ, PRIO_SUMMARY, Spool, priority
from roard.v1 import records_pb2 as pb


def access(seq: int, run: str, role: pb.Role, kind: str = "artifact", pad: int = 0) -> pb.Record:
    return pb.Record(
        id=f"{run}/{seq}",
        seq=seq,
        run_id=run,
        time=1.0,
        file_access=pb.FileAccess(path="/x" + "y" * pad, role=role, kind=kind),
    )


def test_records_survive_reopen_until_acked(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.db", 1 << 30)
    spool.append([access(i, "r", pb.ROLE_INPUT) for i in range(1, 6)], [], [])
    spool.close()
    spool = Spool(tmp_path / "s.db", 1 << 30)
    assert [r.seq for r in spool.after(0, 10)] == [1, 2, 3, 4, 5]
    assert [r.seq for r in spool.after(2, 2)] == [3, 4]
    assert spool.ack(3) == 3
    assert [r.seq for r in spool.after(0, 10)] == [4, 5]
    depth = spool.depth()
    assert depth.records == 2 and depth.bytes > 0 and depth.oldest == 1.0
    assert spool.last_seq() == 5


def test_priorities() -> None:
    assert priority(access(1, "r", pb.ROLE_INPUT, kind="system")) == PRIO_SUMMARY
    assert priority(access(1, "r", pb.ROLE_OUTPUT)) == PRIO_OUTPUT
    finished = pb.Record(id="f", run_id="r", run_finished=pb.RunFinished())
    assert priority(finished) == NEVER_SHED
    # A dataset weighs what its files do: an output's record is kept longer than a read's.
    for role, expected in ((pb.ROLE_INPUT, PRIO_READ), (pb.ROLE_OUTPUT, PRIO_OUTPUT)):
        dataset = pb.Record(id="d", run_id="r", dataset=pb.Dataset(path="/d", role=role))
        assert priority(dataset) == expected


def test_full_spool_sheds_least_valuable_first_and_notes_the_loss(tmp_path: Path) -> None:
    """Over budget, system reads go before outputs, the run's opening and closing records
    stay, and the run gets a delivery loss notice (so it will read as incomplete)."""
    spool = Spool(tmp_path / "s.db", max_bytes=1 << 20)
    tagged = pb.Record(id="r/t", seq=1, run_id="r", run_tagged=pb.RunTagged(name="n"))
    outputs = [access(i, "r", pb.ROLE_OUTPUT, pad=1000) for i in range(2, 402)]
    notices = spool.append([tagged, *outputs], ["r"], [])
    assert notices == []  # ~400 KiB: fits
    summaries = [access(i, "r", pb.ROLE_INPUT, kind="system", pad=1000) for i in range(402, 1402)]
    notices = spool.append(summaries, [], [])
    left = spool.after(0, 10_000)
    kinds = {(r.WhichOneof("body"), r.file_access.kind or "-") for r in left}
    assert ("run_tagged", "-") in kinds
    assert len([r for r in left if r.file_access.role == pb.ROLE_OUTPUT]) == 400  # kept
    assert spool.depth().bytes <= 1 << 20
    (notice,) = notices
    assert notice.run_id == "r" and notice.loss_notice.delivery
    shed = 1 + 400 + 1000 - len(left)
    assert notice.loss_notice.lost_events == shed == spool.shed_records > 0


def test_never_shed_records_are_kept_even_over_budget(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.db", max_bytes=1 << 20)
    big = [
        pb.Record(id=f"r{i}", seq=i, run_id=f"r{i}", run_tagged=pb.RunTagged(name="x" * 4000))
        for i in range(1, 400)
    ]
    assert spool.append(big, [], []) == []
    assert len(spool.after(0, 1000)) == 399

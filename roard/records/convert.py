"""Internal values to protobuf records: the only place that builds wire messages."""

from __future__ import annotations

import time
from typing import Any

from roard.artifacts.datasets import Dataset
from roard.artifacts.hasher import Digest, Unhashed
from roard.context.host import ProcessContext
from roard.context.trackers import TrackerLink
from roard.records import ids
from roard.tracking.processes import Process
from roard.tracking.runs import FileUse, Run
from roard.v1 import records_pb2 as pb


def text(value: str) -> str:
    """`value` as a protobuf string, which must be UTF-8. Names are bytes to the kernel:
    roard holds one that is not UTF-8 with its undecodable bytes as surrogate escapes, and
    sends each such byte as the four characters `\\xHH` (valid names are sent unchanged;
    README: "Names that are not UTF-8")."""
    try:
        value.encode()
    except UnicodeEncodeError:
        return value.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return value


# Role names as in record ids, without a descriptor lookup per file.
_ROLE_NAMES = {role: pb.Role.Name(role) for role in pb.Role.values()}


def _record(local: str, suffix: str, now: float, **body: Any) -> pb.Record:
    """A record of the run (or part of a joined run) the daemon holds as `local`; its id
    (that id + `suffix`) is stable across retries."""
    run_id, part = ids.split(local)
    return pb.Record(id=text(f"{local}/{suffix}"), run_id=run_id, part=part, time=now, **body)


def run_tagged(run: Run, host: str, now: float, placement: ProcessContext) -> pb.Record:
    """The record that opens a run, with where its root was (`placement`)."""
    return _record(
        run.run_id,
        "tagged",
        now,
        run_tagged=pb.RunTagged(
            name=run.name or "",
            labels=run.labels,
            host=host,
            uid=run.uid,
            how=run.how,
            root_pid=run.root_pid,
            started_at=run.started_at,
            cgroup=run.cgroup.path if run.cgroup else "",
            joined=run.joined,
            join_hosts=run.join_hosts,
            public=run.public,
            placement=pb.Placement(
                cgroup=placement.cgroup,
                container=placement.container,
                kubernetes_pod=placement.kubernetes_pod,
                kubernetes_pod_uid=placement.kubernetes_pod_uid,
            ),
        ),
    )


def process_started(proc: Process, now: float, generation: int) -> pb.Record:
    """A process of the run, as known now (re-sent after each exec: the latest wins)."""
    return _record(
        proc.run_id,
        f"proc/{proc.pid}-{proc.start_ticks}/start/{generation}",
        now,
        process_started=pb.ProcessStarted(
            pid=proc.pid,
            ppid=proc.ppid,
            start_ticks=proc.start_ticks,
            exe=text(proc.exe),
            argv=[text(a) for a in proc.argv],
            cwd=text(proc.cwd),
            uid=proc.uid,
            started_at=proc.started_at,
            env_hash=proc.env_hash,
        ),
    )


def environment(
    local: str, env_hash: str, env: dict[str, str], truncated: bool, now: float
) -> pb.Record:
    """A distinct (redacted) environment of the run's processes, sent once per run;
    `truncated`: only its start is known."""
    return _record(
        local,
        f"env/{env_hash}",
        now,
        environment=pb.Environment(
            hash=env_hash, vars={text(k): text(v) for k, v in env.items()}, truncated=truncated
        ),
    )


def process_exited(proc: Process, now: float) -> pb.Record:
    """A process of the run ended."""
    return _record(
        proc.run_id,
        f"proc/{proc.pid}-{proc.start_ticks}/exit",
        now,
        process_exited=pb.ProcessExited(
            pid=proc.pid,
            start_ticks=proc.start_ticks,
            exit_code=proc.exit_code or 0,
            ended_at=proc.ended_at or now,
            signal=proc.exit_signal,
        ),
    )


def file_access(
    run: Run,
    use: FileUse,
    outcome: Digest | Unhashed,
    kind: str,
    output: bool,
    now: float,
    location: str = "",
) -> pb.Record:
    """One input or output of a run: with its content hash, or unhashed with why;
    `location` names a file on a shared filesystem the same on every host."""
    role = pb.ROLE_OUTPUT if output else pb.ROLE_INPUT
    record = _record(run.run_id, f"file/{_ROLE_NAMES[role]}/{use.path}", now)
    access = record.file_access  # filled in place: a message passed to Record() is copied
    access.path = text(use.path)
    access.seen_path = text(use.seen)
    access.location = location
    access.role = role
    access.kind = kind
    access.bytes_read = use.bytes_read
    access.bytes_written = use.bytes_written
    access.read_too = output and use.read
    if isinstance(outcome, Digest):
        stamp = outcome.stamp
        access.hash, access.size, access.mtime_ns = outcome.hash, stamp.size, stamp.mtime_ns
        access.dev, access.ino = stamp.dev, stamp.ino
    else:
        access.size, access.dev, access.ino = outcome.size, use.dev, use.ino
        access.unhashed = text(str(outcome))
    return record


def file_deleted(run: Run, use: FileUse, kind: str, now: float) -> pb.Record:
    """A file the run wrote that did not survive it: recorded as such, not as an output."""
    return _record(
        run.run_id,
        f"file/{_ROLE_NAMES[pb.ROLE_DELETED]}/{use.path}",
        now,
        file_access=pb.FileAccess(
            path=text(use.path),
            role=pb.ROLE_DELETED,
            kind=kind,
            dev=use.dev,
            ino=use.ino,
            bytes_read=use.bytes_read,
            bytes_written=use.bytes_written,
        ),
    )


def dataset(run: Run, found: Dataset, output: bool, now: float) -> pb.Record:
    """Files of one directory the run read (or wrote) as one artifact."""
    role = pb.ROLE_OUTPUT if output else pb.ROLE_INPUT
    return _record(
        run.run_id,
        f"dataset/{_ROLE_NAMES[role]}/{found.path}",
        now,
        dataset=pb.Dataset(
            path=text(found.path),
            role=role,
            hash=found.hash,
            size=found.size,
            files=[
                pb.DatasetFile(path=text(m.path), hash=m.hash, size=m.size) for m in found.files
            ],
            unhashed=text(found.unhashed),
        ),
    )


def path_changed(
    run_id: str, pid: int, op: pb.PathChanged.Op, path: str, new: str, now: float
) -> pb.Record:
    """A tracked process renamed, swapped, linked or unlinked `path` (`new`: the other name,
    "" for unlink): history for the registry; the run's file accesses already carry the
    final names."""
    return _record(
        run_id,
        f"path/{pid}/{time.time_ns()}",
        now,
        path_changed=pb.PathChanged(op=op, path=text(path), new_path=text(new), pid=pid),
    )


def tracker_link(local: str, link: TrackerLink, now: float) -> pb.Record:
    """An experiment-tracker run the run belongs to. The id names the link's content: a
    retry repeats it, a richer sighting of the same tracker run is a new record."""
    fields = (link.tracker, link.run_id, link.project, link.url)
    return _record(
        local,
        "link/" + ids.content_key(fields),
        now,
        tracker_link=pb.TrackerLink(
            tracker=link.tracker,
            run_id=link.run_id,
            project=link.project,
            url=link.url,
            source=link.source,
        ),
    )


def run_context(run: Run, context: pb.RunContext, now: float) -> pb.Record:
    """What produced the run besides its files: code, packages, host."""
    return _record(run.run_id, "context", now, run_context=context)


def run_finished(run: Run, now: float) -> pb.Record:
    """The record that closes a run."""
    lost = run.lost_events
    return _record(
        run.run_id,
        "finished",
        now,
        run_finished=pb.RunFinished(
            has_exit_code=run.exit_code is not None,
            exit_code=run.exit_code or 0,
            ended_at=run.ended_at or now,
            complete=lost == 0,
            lost_events=lost,
            signal=run.exit_signal,
        ),
    )


def loss_notice(run_id: str, count: int, reason: str, now: float, serial: str) -> pb.Record:
    """Events of the run were lost (`serial` tells this notice from the run's others)."""
    return _record(
        run_id,
        f"loss/{serial}",
        now,
        loss_notice=pb.LossNotice(lost_events=count, reason=text(reason)),
    )


def run_interrupted(run_id: str, now: float) -> list[pb.Record]:
    """Close a run that a previous daemon left open: its end was not observed."""
    reason = "roard stopped while the run was tracked; its end was not observed"
    return [
        loss_notice(run_id, 1, reason, now, "interrupted"),
        _record(
            run_id,
            "finished",
            now,
            run_finished=pb.RunFinished(ended_at=now, complete=False, lost_events=1),
        ),
    ]

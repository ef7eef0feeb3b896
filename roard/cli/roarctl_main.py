"""`roarctl`: tag runs and ask the daemon about them."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from roard.artifacts.kinds import CODE, USER_KINDS
from roard.cli import render
from roard.cli.common import print_json, run_main
from roard.cli.direct import DirectQueries, Queries, direct_target
from roard.cli.tagging import noted_unhashed, parse_labels, spawn_tagged, summary
from roard.collector.filters import RunFilter
from roard.context.trackers import parse_links
from roard.control.address import socket_path
from roard.control.plain import OWN_RUN, JoinSpec, PlainClient
from roard.errors import NotFound, UsageError
from roard.times import parse_time
from roard.tracking.names import check_run_id

if TYPE_CHECKING:
    from roard.control.client import ControlClient


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="roarctl", description="control roard")
    parser.add_argument(
        "--socket",
        type=Path,
        help="daemon socket (default: $ROARD_SOCKET or /run/roard/roard.sock)",
    )
    parser.add_argument(
        "--collector",
        metavar="ADDR",
        help="ask this collector directly with your own token instead of the daemon (query "
        "commands only; default: $ROARD_COLLECTOR)",
    )
    parser.add_argument(
        "--token-file",
        type=Path,
        help="with --collector: file holding your token (default: $ROARD_TOKEN_FILE)",
    )
    parser.add_argument(
        "--tls-ca", type=Path, help="with --collector: CA file that verifies its TLS certificate"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    tag = sub.add_parser("tag", help="run CMD as a tagged run, or adopt --pid PID or --cgroup")
    tag.add_argument("--name", help="run name (show/runs accept it)")
    tag.add_argument("--label", action="append", default=[], metavar="K=V", help="a label")
    tag.add_argument(
        "--join",
        metavar="RUN_ID",
        help="be one more part of run RUN_ID, which several hosts share (a distributed job)",
    )
    tag.add_argument(
        "--hosts", type=_count, default=0, help="with --join: how many hosts' parts to expect"
    )
    tag.add_argument("--pid", type=int, help="adopt this running process and its descendants")
    tag.add_argument(
        "--cgroup",
        metavar="PATH",
        help="adopt every process in this cgroup directory (v1 or v2) and below it, now and "
        "moved in later; the run ends on untag or when the cgroup is removed",
    )
    tag.add_argument(
        "--link",
        action="append",
        default=[],
        metavar="TRACKER=RUN_ID",
        help="an experiment-tracker run this run belongs to: mlflow=[EXPERIMENT_ID/]RUN_ID, "
        "wandb=[[ENTITY/]PROJECT/]RUN_ID or neptune=[WORKSPACE/PROJECT/]RUN_ID (repeatable)",
    )
    tag.add_argument(
        "--json", action="store_true", help="with --pid/--cgroup: print the run as JSON"
    )
    tag.add_argument(
        "--public",
        action="store_true",
        help="let every project on the collector see this run (default: its project only)",
    )
    tag.add_argument("cmd", nargs=argparse.REMAINDER, help="-- CMD [ARG]...")

    untag = sub.add_parser("untag", help="stop tracking a run and finalize it")
    untag.add_argument("run")
    untag.add_argument("--json", action="store_true")

    runs = sub.add_parser("runs", help="list runs, newest first")
    runs.add_argument("--name")
    runs.add_argument("--label", action="append", default=[], metavar="K=V", help="must match")
    runs.add_argument("--host", help="only runs of this host")
    runs.add_argument("--project", help="only runs of this project")
    runs.add_argument("--since", type=_when, help="started at or after (ISO 8601 time)")
    runs.add_argument("--until", type=_when, help="started before (ISO 8601 time)")
    runs.add_argument("--limit", type=_count, default=50)
    runs.add_argument(
        "--link", metavar="RUN_ID", help="runs linked to this tracker run (or TRACKER=RUN_ID)"
    )
    runs.add_argument("--json", action="store_true")

    lineage = sub.add_parser("lineage", help="what produced an artifact, and what consumed it")
    lineage.add_argument("target", metavar="PATH_OR_HASH", help="a path, blake3:<hex> or prefix")
    direction = lineage.add_mutually_exclusive_group()
    direction.add_argument("--up", action="store_true", help="producers, recursively (default)")
    direction.add_argument("--down", action="store_true", help="consumers, recursively")
    direction.add_argument("--both", action="store_true", help="up and down")
    lineage.add_argument("--depth", type=_count, default=0, help="run levels to walk (default 5)")
    lineage.add_argument("--host", help="with a path: that host's file")
    lineage.add_argument(
        "--max-nodes", type=_count, default=0, help="the largest answer (default 500, max 20000)"
    )
    lineage.add_argument("--format", choices=render.FORMATS, default="tree")
    lineage.add_argument("--json", action="store_true", help="the same as --format json")

    artifact = sub.add_parser("artifact", help="an artifact's paths and runs")
    artifact.add_argument("target", metavar="PATH_OR_HASH")
    artifact.add_argument("--host")
    artifact.add_argument("--json", action="store_true")

    graph = sub.add_parser("graph", help="a run's DAG: upstream producers, downstream consumers")
    graph.add_argument("run")
    graph.add_argument("--depth", type=_count, default=0, help="run levels each way (default 5)")
    graph.add_argument("--max-nodes", type=_count, default=0, help="the largest answer (500)")
    graph.add_argument("--format", choices=render.FORMATS, default="tree")
    graph.add_argument("--json", action="store_true", help="the same as --format json")

    export = sub.add_parser("export", help="a run as OpenLineage events or W3C PROV-JSON")
    export.add_argument("run")
    export.add_argument("--format", required=True, choices=["openlineage", "prov"])

    show = sub.add_parser("show", help="one run: processes, inputs, outputs")
    show.add_argument("run", help="run id, or a name meaning its latest run")
    show.add_argument("--json", action="store_true")

    compare = sub.add_parser("diff", help="what changed between two runs")
    compare.add_argument("run_a", metavar="RUN_A", help="run id, or a name (its latest run)")
    compare.add_argument("run_b", metavar="RUN_B", help="run id, or a name (its latest run)")
    compare.add_argument("--json", action="store_true")
    compare.add_argument("--all", action="store_true", help="compare system and package files too")
    compare.add_argument(
        "--exit-code", action="store_true", help="exit 1 when the runs differ (as git diff)"
    )

    rebuild = sub.add_parser(
        "reproduce", help="a shell script (or --json plan) that rebuilds an artifact or a run"
    )
    rebuild.add_argument(
        "target",
        metavar="HASH_OR_RUN",
        help="blake3:<hex>, a hash prefix or a path (an artifact), or a run id or name",
    )
    rebuild.add_argument("--depth", type=_count, default=0, help="run levels to walk (default 5)")
    rebuild.add_argument(
        "--max-nodes", type=_count, default=0, help="the largest walk (default 500, max 20000)"
    )
    rebuild.add_argument("--json", action="store_true", help="the plan instead of the script")

    status = sub.add_parser("status", help="daemon health, tier and counters")
    status.add_argument("--json", action="store_true")
    return parser


def _count(text: str) -> int:
    """A whole number from 1 up (the wire fields are unsigned)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value < 1 << 31:
        raise argparse.ArgumentTypeError(f"{text!r}: give a whole number from 1")
    return value


def _when(text: str) -> float:
    """An ISO 8601 time (naive means UTC) as seconds since the epoch."""
    try:
        return parse_time(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _target(text: str) -> str:
    """A hash stays as given; a path is made absolute (the registry stores absolute paths)."""
    if text.startswith("blake3:") or not (os.sep in text or os.path.exists(text)):
        return text
    return os.path.realpath(text)


def _print_show(doc: dict[str, Any]) -> None:
    print(summary(doc))
    print(f"  host {doc['host']}, started {doc['started_at']}, ended {doc['ended_at'] or '-'}")
    if doc.get("cgroup"):
        print(f"  cgroup {doc['cgroup']}")
    placement = doc.get("placement") or {}
    container, pod_uid = placement.get("container"), placement.get("kubernetes_pod_uid")
    if container or pod_uid:
        inside = [f"container {container[:12]}"] if container else []
        pod = placement.get("kubernetes_pod") or pod_uid
        if pod:
            inside.append(f"pod {pod}")
        print(f"  in {', '.join(inside)}")
    for link in doc.get("links", []):
        project = f" in {link['project']}" if link["project"] else ""
        url = f"  {link['url']}" if link["url"] else ""
        print(f"  {link['tracker']} run {link['run_id']}{project} ({link['source']}){url}")
    for reason in doc.get("loss_reasons", []):
        print(f"  lost: {reason}")
    hosts = len(doc.get("hosts", ())) > 1
    for part in doc.get("parts", []):
        code = "" if part["exit_code"] is None else f", exit {part['exit_code']}"
        print(f"  part {part['part']} on {part['host']}: {part['status']}{code}")
    cut = doc.get("environments_truncated", [])
    if cut:
        print(
            f"  environments: {len(cut)} of {len(doc['environments'])} known only in part"
            " (cut in the kernel at exec, and the process gone before the rest was read)"
        )
    print("  processes:")
    for proc in doc["processes"]:
        where = f"{proc['host']}:" if hosts else ""
        command = " ".join(proc["argv"]) or proc["exe"]
        print(f"    {where}{proc['pid']} (ppid {proc['ppid']}) {command}")
    if doc.get("deleted"):
        print(f"  deleted before the run ended: {len(doc['deleted'])} files (--json lists them)")
    for role in ("inputs", "outputs"):
        files = doc[role]
        print(f"  {role}:")
        for f in (f for f in files if f["kind"] in USER_KINDS):
            where = f"{f['host']}:" if hosts else ""
            code = "  (code)" if f["kind"] == CODE else ""
            print(f"    {render.short_hash(f['hash'])}  {f['size']:>10}  {where}{f['path']}{code}")
        others = [f for f in files if f["kind"] not in USER_KINDS]
        if others:
            kinds = sorted({f["kind"] for f in others})
            print(f"    (+{len(others)} {'/'.join(kinds)} files: --json lists them)")
    if doc.get("datasets"):
        print("  datasets:")
        for d in doc["datasets"]:
            where = f"{d['host']}:" if hosts else ""
            digest = render.short_hash(d["hash"]) if d["hash"] else "(not hashed)"
            print(f"    {d['role']:<6}  {digest}  {d['file_count']:>5} files  {where}{d['path']}/")
    unhashed = noted_unhashed(doc.get("unhashed", []))
    if unhashed:
        print("  not hashed:")
        for f in unhashed:
            print(f"    {f['role']:<6}  {f['size']:>10}  {f['path']}: {f['reason']}")


def _print_graph(doc: dict[str, Any], fmt: str) -> None:
    if fmt == "json":
        print_json(doc)
        return
    for line in {"tree": render.tree, "dot": render.dot, "mermaid": render.mermaid}[fmt](doc):
        print(line)


def _lineage(client: Queries, args: argparse.Namespace) -> int:
    up, down = (True, True) if args.both else (not args.down, args.down)
    doc = client.lineage(_target(args.target), up, down, args.depth, args.host, args.max_nodes)
    fmt = "json" if args.json else args.format
    _print_graph(doc, fmt)
    if fmt == "tree" and doc.get("other_matches"):
        print(f"  ({len(doc['other_matches'])} other contents matched; --json lists them)")
    return 0


def _artifact(client: Queries, args: argparse.Namespace) -> int:
    doc = client.artifact(_target(args.target), args.host)
    if args.json:
        print_json(doc)
        return 0
    for a in doc["artifacts"]:
        print(f"{a['hash']}  {a['size']} bytes")
        for p in a["paths"]:
            print(f"  at {p['host']}:{p['path']}")
        for key, verb in (("produced_by", "produced by"), ("consumed_by", "consumed by")):
            for r in a[key]:
                print(f"  {verb} {render.run_label(r)}")
    return 0


def _graph(client: Queries, args: argparse.Namespace) -> int:
    doc = client.run_graph(args.run, args.depth, args.max_nodes)
    _print_graph(doc, "json" if args.json else args.format)
    return 0


def _export(client: Queries, args: argparse.Namespace) -> int:
    doc = client.export(args.run, args.format)
    if args.format == "openlineage":
        for event in doc:  # one RunEvent per line, as OpenLineage's file transport writes
            print(json.dumps(event, sort_keys=True))
    else:
        print_json(doc)
    return 0


def _diff(client: Queries, args: argparse.Namespace) -> int:
    from roard.cli import diff  # loaded by the commands that use it, for a faster start

    doc = diff.diff_runs(client.show(args.run_a), client.show(args.run_b), all_kinds=args.all)
    if args.json:
        print_json(doc)
    else:
        for line in diff.lines(doc):
            print(line)
    # Like `git diff --no-exit` by default: differing runs are a result, not a failure.
    return 1 if args.exit_code and not doc["same"] else 0


def _reproduce(client: Queries, args: argparse.Namespace) -> int:
    from roard.cli import reproduce  # loaded by the commands that use it, for a faster start

    text, first = args.target, None
    walk = (args.depth, args.max_nodes)
    # A hash or a path names an artifact; anything else is first taken as a run (run ids
    # look like hash prefixes: "blake3:" says a hash is meant).
    if text.startswith("blake3:") or os.sep in text:
        graph = client.lineage(_target(text), True, False, walk[0], None, walk[1])
    else:
        try:
            first = client.show(text)
        except NotFound as not_run:
            try:
                graph = client.lineage(_target(text), True, False, walk[0], None, walk[1])
            except (NotFound, UsageError):
                raise NotFound(f"no run or artifact {text!r} ({not_run})") from None
        else:
            graph = client.run_graph(first["run_id"], *walk)

    def show(run_id: str) -> dict[str, Any]:
        return first if first is not None and first["run_id"] == run_id else client.show(run_id)

    plan = reproduce.build_plan(text, graph, show, client.artifact)
    for warning in plan["warnings"]:
        print(f"roarctl: warning: {warning}", file=sys.stderr)
    if args.json:
        print_json(plan)
    else:
        sys.stdout.write(reproduce.script(plan))
    return 0


_QUERIES = {
    "lineage": _lineage,
    "artifact": _artifact,
    "graph": _graph,
    "export": _export,
    "diff": _diff,
    "reproduce": _reproduce,
}
# What roarctl may ask a collector directly (`--collector`): every query, nothing else.
_DIRECT = frozenset({"show", "runs", *_QUERIES})


def _run(args: argparse.Namespace) -> int:
    direct = direct_target(args.collector, args.token_file, args.tls_ca)
    if direct is not None:
        if args.command not in _DIRECT:
            raise UsageError(
                f"`roarctl {args.command}` needs the local daemon (its socket): drop "
                "--collector (and unset ROARD_COLLECTOR); only show, runs, artifact, lineage,"
                " graph, export, diff and reproduce ask a collector directly"
            )
        with contextlib.closing(DirectQueries(direct)) as queries:
            return _answer(queries, args)
    return _control(Path(socket_path(str(args.socket) if args.socket else None)), args)


def _grpc_client(socket: Path) -> ControlClient:
    """The daemon's gRPC client, for every command but tagging (imported here: gRPC and
    protobuf are most of roarctl's start, which every tagged run would wait for)."""
    from roard.control.client import ControlClient

    return ControlClient(socket)


def _answer(client: Queries, args: argparse.Namespace) -> int:
    """The query commands, through the daemon or straight to a collector."""
    if args.command == "show":
        doc = client.show(args.run)
        print_json(doc) if args.json else _print_show(doc)
        return 0
    if args.command in _QUERIES:
        return _QUERIES[args.command](client, args)
    where = RunFilter(
        name=args.name,
        labels=parse_labels(args.label),
        host=args.host,
        since=args.since,
        until=args.until,
        limit=args.limit,
        project=args.project,
        link=args.link,
    )
    runs = client.runs(where)
    if args.json:
        print_json(runs)
    else:
        for r in runs:
            state = "ok" if r["complete"] else "incomplete"
            print(
                f"{r['run_id']}  {r['started_at']}  {r['status']:<8}  exit "
                f"{r['exit_code']!s:<4}  {state:<10}  {r.get('project', '')}  {r['name'] or ''}"
            )
    return 0


def _control(socket: Path, args: argparse.Namespace) -> int:
    """Commands that need the daemon, and the queries asked through it."""
    if args.command in _DIRECT:
        return _answer(_grpc_client(socket), args)
    if args.command == "tag":
        cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
        labels = parse_labels(args.label)
        parse_links(args.link)  # before anything runs: a typo must not cost a job
        if args.hosts and args.join is None:
            raise UsageError("--hosts goes with --join RUN_ID")
        join = JoinSpec(check_run_id(args.join), args.hosts) if args.join is not None else OWN_RUN
        if args.pid is not None or args.cgroup is not None:
            if cmd or (args.pid is not None and args.cgroup is not None):
                raise UsageError("give one of --pid PID, --cgroup PATH or -- CMD")
            tagger = PlainClient(socket)
            if args.cgroup is not None:
                # The daemon resolves it: an absolute path means the same there.
                path = os.path.abspath(args.cgroup)
                tagged = tagger.tag_cgroup(path, args.name, labels, join, args.link, args.public)
            else:
                tagged = tagger.tag(
                    args.pid,
                    args.name,
                    labels,
                    spawned=False,
                    join=join,
                    links=args.link,
                    public=args.public,
                )
            if tagged.warning:
                print(f"roarctl: warning: {tagged.warning}", file=sys.stderr)
            if args.json and tagged.warning:  # not in the registry yet: what is known
                print_json({"run_id": tagged.shown, "status": "running", "waiting": True})
            elif args.json:
                print_json(_grpc_client(socket).show(tagged.shown))
            else:
                print(tagged.shown)
            return 0
        if not cmd:
            raise UsageError("nothing to run: roarctl tag [--name NAME] -- CMD [ARG]...")
        return spawn_tagged(
            PlainClient(socket), cmd, args.name, labels, join, args.link, args.public
        )
    client = _grpc_client(socket)
    if args.command == "untag":
        doc = client.untag(args.run)
        print_json(doc) if args.json else print(summary(doc))
        return 0
    doc = client.status()
    if args.json:
        print_json(doc)
    else:
        print(
            f"roard {doc['version']} pid {doc['pid']}, up {doc['uptime_seconds']}s, "
            f"tier {doc['tier']} ({doc['tier_reason']})"
        )
        for other in doc.get("other_daemons", []):
            print(
                f"  ANOTHER ROARD is running here (pid {other['pid']}: {other['command']}): "
                "every process pays both daemons' hooks; stop one unless that is meant"
            )
        if doc.get("state_dir_error"):
            problem = doc["state_dir_error"]
            print(f"  STATE DIR PROBLEM: {problem['message']}")
            print(f"    {doc['spool']['backlog_records']} records waiting in memory")
        print(
            f"  probes: {len(doc['probes'])} attached; missing: {doc['probes_missing'] or 'none'}"
        )
        print(f"  events: {doc['events']}; lost: {doc['lost_total']} {doc['lost']}")
        ring = doc["ring"]
        print(
            f"  ring buffer: {ring['fill_ratio']:.1%} of {ring['size_bytes']} bytes in use, "
            f"at most {ring['max_fill_ratio']:.1%} since start"
        )
        print(f"  hashing: {doc['hash']}")
        print(f"  active runs: {len(doc['runs'])}; tracker: {doc['tracker']}")
        c, spool = doc["collector"], doc["spool"]
        state = "connected" if c["connected"] else f"NOT connected ({c['last_error'] or '-'})"
        print(f"  collector {c['address']} as host {c['host_id']}: {state}")
        print(
            f"  spool: {spool['records']} records ({spool['bytes']} bytes) waiting, oldest "
            f"{spool['oldest_age_seconds']}s; {spool['shed_records']} shed"
        )
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of `roarctl`."""
    args = _parser().parse_args(argv)
    with contextlib.suppress(BrokenPipeError):
        return run_main("roarctl", lambda: _run(args))
    return 1


if __name__ == "__main__":
    sys.exit(main())

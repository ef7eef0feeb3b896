"""`roarctl`: tag runs and ask the daemon about them."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
from pathlib import Path
from typing import Any

from roard.cli.common import print_json, run_main
from roard.config import socket_path
from roard.control.client import ControlClient
from roard.errors import RoardError, UsageError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="roarctl", description="control roard")
    parser.add_argument(
        "--socket",
        type=Path,
        help="daemon socket (default: $ROARD_SOCKET or /run/roard/roard.sock)",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    tag = sub.add_parser("tag", help="run CMD as a tagged run, or adopt --pid PID")
    tag.add_argument("--name", help="run name (show/runs accept it)")
    tag.add_argument("--label", action="append", default=[], metavar="K=V", help="a label")
    tag.add_argument("--pid", type=int, help="adopt this running process and its descendants")
    tag.add_argument("--json", action="store_true", help="with --pid: print the run as JSON")
    tag.add_argument("cmd", nargs=argparse.REMAINDER, help="-- CMD [ARG]...")

    untag = sub.add_parser("untag", help="stop tracking a run and finalize it")
    untag.add_argument("run")
    untag.add_argument("--json", action="store_true")

    runs = sub.add_parser("runs", help="list runs, newest first")
    runs.add_argument("--name")
    runs.add_argument("--limit", type=int, default=50)
    runs.add_argument("--json", action="store_true")

    show = sub.add_parser("show", help="one run: processes, inputs, outputs")
    show.add_argument("run", help="run id, or a name meaning its latest run")
    show.add_argument("--json", action="store_true")

    status = sub.add_parser("status", help="daemon health, tier and counters")
    status.add_argument("--json", action="store_true")
    return parser


def _labels(pairs: list[str]) -> dict[str, str]:
    labels = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"--label {pair!r}: expected KEY=VALUE")
        labels[key] = value
    return labels


def _spawn_tagged(
    client: ControlClient, cmd: list[str], name: str | None, labels: dict[str, str]
) -> int:
    """Fork, have the daemon tag the child while it waits, then let it exec CMD."""
    go_r, go_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(go_w)
        if os.read(go_r, 1) != b"g":
            os._exit(125)  # tagging failed; the parent reports why
        os.close(go_r)
        try:
            os.execvp(cmd[0], cmd)
        except OSError as exc:
            print(f"roarctl: cannot run {cmd[0]!r}: {exc.strerror}", file=sys.stderr)
            os._exit(127 if isinstance(exc, FileNotFoundError) else 126)
    os.close(go_r)
    try:
        run_id = client.tag(pid, name, labels, spawned=True)
    except BaseException:
        os.close(go_w)
        os.waitpid(pid, 0)
        raise
    # Like time(1): the terminal's signals are the child's to act on, and a termination
    # request sent to roarctl (a scheduler cancelling the job) is passed on to it.
    previous = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGQUIT)}
    for sig in (signal.SIGTERM, signal.SIGHUP):
        previous[sig] = signal.signal(sig, lambda signum, _frame: os.kill(pid, signum))
    os.write(go_w, b"g")
    os.close(go_w)
    _, status = os.waitpid(pid, 0)
    for sig, handler in previous.items():
        signal.signal(sig, handler)
    code = os.waitstatus_to_exitcode(status)
    code = 128 - code if code < 0 else code
    try:
        doc = client.finish(run_id, code)
    except RoardError as exc:
        # The command ran; its status is still the caller's to see.
        print(f"roarctl: run {run_id} was not finalized: {exc}", file=sys.stderr)
        return code
    print(f"roarctl: {_summary(doc)}", file=sys.stderr)
    return code


def _kind_counts(files: list[dict[str, Any]] | dict[str, int]) -> dict[str, int]:
    """show lists files; finish/untag summaries count them by kind already."""
    if isinstance(files, dict):
        return files
    counts: dict[str, int] = {}
    for f in files:
        counts[f["kind"]] = counts.get(f["kind"], 0) + 1
    return counts


def _summary(doc: dict[str, Any]) -> str:
    name = f" ({doc['name']})" if doc.get("name") else ""
    complete = "complete" if doc["complete"] else f"INCOMPLETE: {doc['lost_events']} events lost"
    inputs, outputs = _kind_counts(doc["inputs"]), _kind_counts(doc["outputs"])
    return (
        f"run {doc['run_id']}{name} {doc['status']}, exit {doc['exit_code']}: "
        f"{inputs.get('artifact', 0)} input and {outputs.get('artifact', 0)} output artifacts "
        f"({sum(inputs.values())}/{sum(outputs.values())} files in all), {complete}"
    )


def _print_show(doc: dict[str, Any]) -> None:
    print(_summary(doc))
    print(f"  host {doc['host']}, started {doc['started_at']}, ended {doc['ended_at'] or '-'}")
    for reason in doc.get("loss_reasons", []):
        print(f"  lost: {reason}")
    print("  processes:")
    for proc in doc["processes"]:
        print(f"    {proc['pid']} (ppid {proc['ppid']}) {' '.join(proc['argv']) or proc['exe']}")
    if doc.get("deleted"):
        print(f"  deleted before the run ended: {len(doc['deleted'])} files (--json lists them)")
    for role in ("inputs", "outputs"):
        files = doc[role]
        print(f"  {role}:")
        for f in (f for f in files if f["kind"] == "artifact"):
            print(f"    {f['hash'][:19]}…  {f['size']:>10}  {f['path']}")
        others = [f for f in files if f["kind"] != "artifact"]
        if others:
            kinds = sorted({f["kind"] for f in others})
            print(f"    (+{len(others)} {'/'.join(kinds)} files: --json lists them)")


def _run(args: argparse.Namespace) -> int:
    client = ControlClient(socket_path(str(args.socket) if args.socket else None))
    if args.command == "tag":
        cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
        labels = _labels(args.label)
        if args.pid is not None:
            if cmd:
                raise UsageError("give either --pid PID or -- CMD, not both")
            run_id = client.tag(args.pid, args.name, labels, spawned=False)
            if args.json:
                print_json(client.show(run_id))
            else:
                print(run_id)
            return 0
        if not cmd:
            raise UsageError("nothing to run: roarctl tag [--name NAME] -- CMD [ARG]...")
        return _spawn_tagged(client, cmd, args.name, labels)
    if args.command == "untag":
        doc = client.untag(args.run)
        print_json(doc) if args.json else print(_summary(doc))
        return 0
    if args.command == "show":
        doc = client.show(args.run)
        print_json(doc) if args.json else _print_show(doc)
        return 0
    if args.command == "runs":
        runs = client.runs(args.name, args.limit)
        if args.json:
            print_json(runs)
        else:
            for r in runs:
                state = "ok" if r["complete"] else "incomplete"
                print(
                    f"{r['run_id']}  {r['started_at']}  {r['status']:<8}  exit "
                    f"{r['exit_code']!s:<4}  {state:<10}  {r['name'] or ''}"
                )
        return 0
    doc = client.status()
    if args.json:
        print_json(doc)
    else:
        print(
            f"roard {doc['version']} pid {doc['pid']}, up {doc['uptime_seconds']}s, "
            f"tier {doc['tier']} ({doc['tier_reason']})"
        )
        print(
            f"  probes: {len(doc['probes'])} attached; missing: {doc['probes_missing'] or 'none'}"
        )
        print(f"  events: {doc['events']}; lost: {doc['lost_total']} {doc['lost']}")
        print(f"  hashing: {doc['hash']}")
        print(f"  active runs: {len(doc['runs'])}; tracker: {doc['tracker']}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of `roarctl`."""
    args = _parser().parse_args(argv)
    with contextlib.suppress(BrokenPipeError):
        return run_main("roarctl", lambda: _run(args))
    return 1


if __name__ == "__main__":
    sys.exit(main())

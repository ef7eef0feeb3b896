"""`roarctl tag -- CMD`: run a command as a tagged run, and say how the run ended.

Kept light (no argparse, gRPC or query modules): roard.cli.roarctl runs the plain form
`roarctl [--socket PATH] tag [--name NAME] [--label K=V]... [--public] -- CMD` from here
alone, since every tagged run waits for roarctl's start and exit."""

from __future__ import annotations

import _thread
import math
import os
import sys
import time

from roard.artifacts.kinds import DATASET, SYSTEM
from roard.control.address import socket_path
from roard.control.plain import OWN_RUN, JoinSpec, PlainClient, Value
from roard.errors import DaemonUnavailable, RoardError, UsageError

# Only C modules of the standard library here, as in roard.control.plain: the signal and
# threading packages import enum and more, typing imports re (~5 ms of a tagged run's start).
TYPE_CHECKING = False
if TYPE_CHECKING:
    import signal as _signal  # the same calls, typed
    from collections.abc import Mapping
    from typing import Any
else:
    import _signal  # loaded with the interpreter already


class PlainTag(Value):
    """The plain form of `roarctl tag -- CMD`, parsed."""

    __slots__ = ("cmd", "labels", "name", "public", "socket")

    def __init__(
        self, socket: str | None, name: str | None, labels: list[str], public: bool, cmd: list[str]
    ) -> None:
        self.socket = socket  # --socket, before `tag`
        self.name = name
        self.labels = labels  # K=V, as given
        self.public = public
        self.cmd = cmd


def plain_tag(argv: list[str], environ: Mapping[str, str]) -> PlainTag | None:
    """`argv` (roarctl's arguments) as the plain tag form; None for any other command line,
    which roard.cli.roarctl_main's parser takes, with its checks and messages."""
    if environ.get("ROARD_COLLECTOR"):
        return None  # tag needs the local daemon: the full parser says so
    socket, i = None, 0
    while i < len(argv) and argv[i] != "tag":
        option = _option(argv, i, ("--socket",))
        if option is None:
            return None
        _, socket, i = option
    name, labels, public = None, [], False
    i += 1
    while i < len(argv) and argv[i] != "--":
        if argv[i] == "--public":
            public, i = True, i + 1
            continue
        option = _option(argv, i, ("--name", "--label"))
        if option is None:
            return None
        flag, value, i = option
        if flag == "--name":
            name = value
        else:
            labels.append(value)
    cmd = argv[i + 1 :]
    return PlainTag(socket, name, labels, public, cmd) if cmd else None


def _option(argv: list[str], i: int, flags: tuple[str, ...]) -> tuple[str, str, int] | None:
    """The option at argv[i] (`--flag VALUE` or `--flag=VALUE`, one of `flags`): the flag,
    its value and the index after it; None for anything else, or a value that looks like
    an option (argparse has its own rules for those)."""
    flag, eq, value = argv[i].partition("=")
    if flag not in flags:
        return None
    if eq:
        return flag, value, i + 1
    if i + 1 < len(argv) and not argv[i + 1].startswith("-"):
        return flag, argv[i + 1], i + 2
    return None


def run_plain(tag: PlainTag) -> int:
    """Run the plain tag form, as roard.cli.roarctl_main runs `tag -- CMD`."""
    client = PlainClient(socket_path(tag.socket))
    return spawn_tagged(
        client, tag.cmd, tag.name, parse_labels(tag.labels), OWN_RUN, [], tag.public
    )


def parse_labels(pairs: list[str]) -> dict[str, str]:
    """`--label K=V` flags as a dict; a UsageError for one without "=" or a key."""
    labels = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"--label {pair!r}: expected KEY=VALUE")
        labels[key] = value
    return labels


def spawn_tagged(
    client: PlainClient,
    cmd: list[str],
    name: str | None,
    labels: dict[str, str],
    join: JoinSpec,
    links: list[str],
    public: bool,
) -> int:
    """Fork, have the daemon tag the child while it waits, then let it exec CMD."""
    waits = Waits.of(os.environ)  # before anything runs: a typo must not cost a job
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
        tagged = client.tag(pid, name, labels, spawned=True, join=join, links=links, public=public)
    except BaseException:
        os.close(go_w)
        os.waitpid(pid, 0)
        raise
    run_id = tagged.run_id
    if tagged.warning:  # the command runs anyway; the user should know why
        print(f"roarctl: warning: {tagged.warning}", file=sys.stderr, flush=True)
    # Like time(1): the terminal's signals are the child's to act on, and a termination
    # request sent to roarctl (a scheduler cancelling the job) is passed on to it.
    previous = {s: _signal.signal(s, _signal.SIG_IGN) for s in (_signal.SIGINT, _signal.SIGQUIT)}
    for sig in (_signal.SIGTERM, _signal.SIGHUP):
        previous[sig] = _signal.signal(sig, lambda signum, _frame: os.kill(pid, signum))
    os.write(go_w, b"g")
    os.close(go_w)
    _, status = os.waitpid(pid, 0)
    for sig, handler in previous.items():
        _signal.signal(sig, handler)
    code = os.waitstatus_to_exitcode(status)
    code = 128 - code if code < 0 else code
    try:
        doc = _finish_showing_progress(client, run_id, code, waits)
    except RoardError as exc:
        # The command ran; its status is still the caller's to see.
        print(f"roarctl: run {tagged.shown} was not finalized: {exc}", file=sys.stderr)
        return code
    print(f"roarctl: {summary(doc)}", file=sys.stderr)
    return code


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{n:.0f} B"
        n /= 1024
    raise AssertionError("unreachable")


def progress_line(doc: dict[str, Any]) -> str | None:
    """What `roarctl tag` says while the daemon hashes a run's outputs; None when there is
    nothing worth saying."""
    if doc.get("phase") != "finalizing" or not doc["bytes"]:
        return None
    done, total, seconds = doc["bytes_done"], doc["bytes"], max(doc["seconds"], 1e-3)
    rate = done / seconds
    eta = f", about {(total - done) / rate:.0f} s left" if rate > 0 and done < total else ""
    return (
        f"finalizing: hashed {_size(done)} of {_size(total)} ({100 * done / total:.0f}%, "
        f"{doc['files_done']}/{doc['files']} files), {_size(rate)}/s{eta}"
    )


class Waits(Value):
    """How `roarctl tag -- CMD` waits once CMD has exited."""

    __slots__ = ("progress_after", "progress_every", "reconnect")

    def __init__(
        self, progress_after: float = 2.0, reconnect: float = 120.0, progress_every: float = 1.0
    ) -> None:
        # Say nothing for short finalizations (ROARCTL_PROGRESS_AFTER); then refresh a
        # terminal every ROARCTL_PROGRESS_EVERY seconds, a log every 10 seconds.
        self.progress_after = progress_after
        self.progress_every = progress_every
        # How long to wait for a restarting roard to finish the run
        # (ROARCTL_RECONNECT_SECONDS): the new roard re-adopts the run and can finish it.
        self.reconnect = reconnect

    @classmethod
    def of(cls, environ: Mapping[str, str]) -> Waits:
        """The waits `environ` sets; a UsageError naming a malformed one."""
        default = cls()
        return cls(
            _seconds(environ, "ROARCTL_PROGRESS_AFTER", default.progress_after),
            _seconds(environ, "ROARCTL_RECONNECT_SECONDS", default.reconnect),
            _seconds(environ, "ROARCTL_PROGRESS_EVERY", default.progress_every),
        )


def _seconds(environ: Mapping[str, str], name: str, default: float) -> float:
    """The seconds variable `name` of `environ` sets (`default` when unset)."""
    text = environ.get(name)
    if text is None:
        return default
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 <= value < math.inf:
        raise UsageError(f"{name}={text!r}: give a number of seconds (0 or more), or unset it")
    return value


def _finish_across_restarts(
    client: PlainClient, run_id: str, code: int, patience: float
) -> dict[str, Any]:
    """Finish the run, waiting up to `patience` seconds for roard to come back if it is
    restarting."""
    deadline = time.monotonic() + patience
    told = False
    while True:
        try:
            return client.finish(run_id, code)
        except DaemonUnavailable:
            if time.monotonic() >= deadline:
                raise
            if not told:
                print(
                    f"roarctl: roard is not answering (restarting?): waiting up to "
                    f"{patience:.0f} s to finish run {run_id}",
                    file=sys.stderr,
                    flush=True,
                )
                told = True
            time.sleep(1.0)


def _finish_showing_progress(
    client: PlainClient, run_id: str, code: int, waits: Waits
) -> dict[str, Any]:
    """Finish the run, showing hashing progress on stderr while it takes long."""
    outcome: dict[str, Any] = {}
    done = _thread.allocate_lock()  # held until the call returns
    done.acquire()

    def finish() -> None:
        try:
            outcome["doc"] = _finish_across_restarts(client, run_id, code, waits.reconnect)
        except BaseException as exc:
            outcome["error"] = exc
        finally:
            done.release()

    started = time.monotonic()
    _thread.start_new_thread(finish, ())
    tty = sys.stderr.isatty()
    shown = False
    last_log = 0.0
    while not done.acquire(timeout=waits.progress_every):
        now = time.monotonic()
        if now - started < waits.progress_after:
            continue
        try:
            line = progress_line(client.progress(run_id))
        except RoardError:
            line = None
        if line is None:
            continue
        if tty:
            print(f"\rroarctl: {line}\x1b[K", end="", file=sys.stderr, flush=True)
            shown = True
        elif now - last_log >= 10:
            print(f"roarctl: {line}", file=sys.stderr, flush=True)
            last_log = now
    if shown:
        print("\r\x1b[K", end="", file=sys.stderr, flush=True)
    if "error" in outcome:
        raise outcome["error"]
    doc: dict[str, Any] = outcome["doc"]
    return doc


def _kind_counts(files: list[dict[str, Any]] | dict[str, int]) -> dict[str, int]:
    """show lists files; finish/untag summaries count them by kind already."""
    if isinstance(files, dict):
        return dict(files)
    counts: dict[str, int] = {}
    for f in files:
        counts[f["kind"]] = counts.get(f["kind"], 0) + 1
    return counts


def summary(doc: dict[str, Any]) -> str:
    """A run's one-line summary, from Finish, Untag or Show."""
    if doc.get("waiting"):
        return (
            f"run {doc['run_id']} finished, but its records are not spooled yet: "
            f"{doc['waiting']}; they are recorded once it is writable again (`roarctl show` "
            "will have the run then; `roarctl status` shows the condition)"
        )
    if doc.get("delivered") is False:
        return (
            f"run {doc['run_id']} finished and is spooled, but the collector has not stored it "
            "yet (unreachable?): `roarctl show` will have it once it is delivered; "
            "`roarctl status` shows the collector connection"
        )
    name = f" ({doc['name']})" if doc.get("name") else ""
    if doc.get("joined") and doc["status"] == "running" and "parts" not in doc:
        return (
            f"this host's part of run {doc['run_id']}{name} is recorded; the run goes on "
            f"until every host's part ends (`roarctl show {doc['run_id']}` lists them)"
        )
    complete = "complete" if doc["complete"] else f"INCOMPLETE: {doc['lost_events']} events lost"
    inputs, outputs = _kind_counts(doc["inputs"]), _kind_counts(doc["outputs"])
    killed = f" ({doc['signal']})" if doc.get("signal") else ""
    # Summaries count datasets as a kind of their own; show lists them apart.
    sets = [inputs.pop(DATASET, 0), outputs.pop(DATASET, 0)]
    for d in doc.get("datasets", []):
        sets[d["role"] == "output"] += 1
    datasets = f" and {sets[0]}/{sets[1]} datasets" if any(sets) else ""
    return (
        f"run {doc['run_id']}{name} {doc['status']}, exit {doc['exit_code']}{killed}: "
        f"{inputs.get('artifact', 0)} input and {outputs.get('artifact', 0)} output artifacts "
        f"({sum(inputs.values())}/{sum(outputs.values())} files in all{datasets}), {complete}"
        f"{_unhashed_note(doc.get('unhashed'))}{_undelivered_note(doc.get('collector'))}"
    )


def _undelivered_note(problem: str | None) -> str:
    """Finish summaries of a run spooled while the collector is unreachable say so."""
    if not problem:
        return ""
    return (
        f"; spooled, not yet delivered: the collector is unreachable ({problem}): "
        "`roarctl show` will have the run once it is; `roarctl status` shows the connection"
    )


def noted_unhashed(unhashed: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The unhashed files (show's list) worth telling a user about: not system files, of
    which the kernel's /proc and /sys files are never hashed."""
    return [f for f in unhashed if f["kind"] != SYSTEM]


def _unhashed_note(unhashed: list[dict[str, Any]] | int | None) -> str:
    """show lists unhashed files; finish/untag summaries count them (see noted_unhashed)."""
    count = len(noted_unhashed(unhashed)) if isinstance(unhashed, list) else unhashed or 0
    return f"; {count} files not hashed (`roarctl show` says why)" if count else ""

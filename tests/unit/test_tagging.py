"""Tests for roard.cli.tagging's plain form: the command lines `roarctl tag` runs without
its full parser must mean what that parser makes of them; every other line goes to it."""

from __future__ import annotations

import pytest

from roard.cli import roarctl_main
from roard.cli.tagging import PlainTag, Waits, plain_tag, summary
from roard.errors import UsageError

PLAIN = [
    ["tag", "--", "cp", "a", "b"],
    ["tag", "--name", "n", "--label", "a=1", "--label=b=2", "--public", "--", "python3", "-c", "x"],
    ["--socket", "/x.sock", "tag", "--name=n=1", "--", "sh", "-c", "roarctl tag --pid 1"],
    ["--socket=/x.sock", "tag", "--name", "", "--", "x", "--name", "y"],
    ["tag", "--name", "tag", "--name", "last", "--", "--"],
    ["tag", "--label", "bad", "--", "x"],  # the same UsageError, from the same check
]

NOT_PLAIN = [
    [],
    ["--help"],
    ["tag"],
    ["tag", "--"],
    ["tag", "-h"],
    ["tag", "cp", "a", "b"],
    ["tag", "--json", "--", "x"],
    ["tag", "--pid", "3"],
    ["tag", "--cgroup", "/sys/fs/cgroup/job"],
    ["tag", "--join", "r1", "--hosts", "2", "--", "x"],
    ["tag", "--link", "mlflow=1", "--", "x"],
    ["tag", "--name", "--", "x"],
    ["tag", "--name", "-n", "--", "x"],
    ["tag", "--na", "x", "--", "y"],
    ["tag", "--socket", "/x.sock", "--", "x"],
    ["--sock", "/x.sock", "tag", "--", "x"],
    ["--collector", "host:1", "tag", "--", "x"],
    ["show", "--", "x"],
    ["runs"],
]


def _full(argv: list[str]) -> PlainTag:
    """What roarctl_main's parser makes of a tag command line, in PlainTag's terms."""
    args = roarctl_main._parser().parse_args(argv)
    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    socket = str(args.socket) if args.socket else None
    return PlainTag(socket, args.name, args.label, args.public, cmd)


@pytest.mark.parametrize("argv", PLAIN)
def test_plain_command_lines_mean_what_the_full_parser_says(argv: list[str]) -> None:
    """Socket, name (the last one given), labels, --public and the command, as argparse."""
    assert plain_tag(argv, {}) == _full(argv)


@pytest.mark.parametrize("argv", NOT_PLAIN)
def test_every_other_command_line_goes_to_the_full_parser(argv: list[str]) -> None:
    """Other options, abbreviations, values that look like options, no command: None."""
    assert plain_tag(argv, {}) is None


def test_a_collector_in_the_environment_goes_to_the_full_parser() -> None:
    """ROARD_COLLECTOR makes `tag` a usage error, which the full path explains."""
    assert plain_tag(["tag", "--", "x"], {"ROARD_COLLECTOR": "host:1"}) is None
    assert plain_tag(["tag", "--", "x"], {"ROARD_COLLECTOR": ""}) is not None


def test_waits_come_from_the_environment_and_a_bad_one_is_named() -> None:
    """ROARCTL_PROGRESS_AFTER, ROARCTL_RECONNECT_SECONDS and ROARCTL_PROGRESS_EVERY:
    seconds, defaults when unset; anything else is a UsageError that names the variable
    (checked before CMD runs)."""
    assert Waits.of({}) == Waits(2.0, 120.0, 1.0)
    given = {
        "ROARCTL_PROGRESS_AFTER": "0",
        "ROARCTL_RECONNECT_SECONDS": "2.5",
        "ROARCTL_PROGRESS_EVERY": "0.1",
    }
    assert Waits.of(given) == Waits(0.0, 2.5, 0.1)
    for name in ("ROARCTL_RECONNECT_SECONDS", "ROARCTL_PROGRESS_EVERY"):
        for bad in ("soon", "", "-1", "nan", "inf"):
            with pytest.raises(UsageError, match=f"{name}={bad!r}"):
                Waits.of({name: bad})


def test_summary_notes_unhashed_files_except_the_kernels() -> None:
    """The one-line summary (from show's document) notes files left unhashed, but not the
    kernel's /proc and /sys files, which are never hashed: every job reads some."""
    doc = {
        "run_id": "r1",
        "status": "finished",
        "exit_code": 0,
        "complete": True,
        "inputs": [],
        "outputs": [],
        "unhashed": [{"kind": "system", "path": "/proc/meminfo"}],
    }
    assert "not hashed" not in summary(doc)
    doc["unhashed"].append({"kind": "artifact", "path": "/data/huge.bin"})
    assert summary(doc).endswith("; 1 files not hashed (`roarctl show` says why)")


def test_summary_of_a_run_spooled_while_the_collector_is_down() -> None:
    """Finish answers once the run is spooled; with the collector unreachable the line
    says the run is not delivered yet, and why, after its counts."""
    doc = {
        "run_id": "r1",
        "name": None,
        "status": "finished",
        "exit_code": 3,
        "complete": True,
        "inputs": {"artifact": 1},
        "outputs": {"artifact": 1},
        "unhashed": 0,
    }
    line = summary(doc)
    assert line.startswith("run r1 finished, exit 3: 1 input and 1 output artifacts")
    assert "spooled" not in line
    doc["collector"] = "UNAVAILABLE: connection refused"
    assert summary(doc).startswith(line)
    assert "; spooled, not yet delivered: the collector is unreachable (UNAVAILABLE" in summary(doc)

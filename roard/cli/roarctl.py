"""The `roarctl` command. The plain `tag -- CMD` form runs from roard.cli.tagging alone:
every tagged run waits for roarctl's start and exit, and the rest of roarctl (argparse,
the query commands, their modules) would double its start. Every other command line goes
to roard.cli.roarctl_main."""

from __future__ import annotations

import os
import sys

from roard.cli.common import run_main
from roard.cli.tagging import plain_tag, run_plain


def main() -> int:
    """Entry point of `roarctl`."""
    argv = sys.argv[1:]
    tag = plain_tag(argv, os.environ)
    if tag is None:
        from roard.cli import roarctl_main

        return roarctl_main.main(argv)
    try:
        code = run_main("roarctl", lambda: run_plain(tag))
        sys.stdout.flush()
        sys.stderr.flush()
    except BrokenPipeError:  # as roarctl_main.main
        code = 1
    # Skip the interpreter's teardown (a few ms): nothing is left to flush or join.
    os._exit(code)

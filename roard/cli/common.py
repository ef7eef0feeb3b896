"""What both command-line tools share: error reporting and JSON output."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

from roard.errors import RoardError


def run_main(prog: str, body: Callable[[], int]) -> int:
    """Run a command; a RoardError becomes one line on stderr and its exit code."""
    try:
        return body()
    except RoardError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


def print_json(doc: Any) -> None:
    """Exactly one JSON document on stdout."""
    json.dump(doc, sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")

"""What both command-line tools share: error reporting and JSON output. (`roarctl tag`
starts from here too: json is imported where it is used, and typing not at all.)"""

from __future__ import annotations

import sys

from roard.errors import RoardError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any


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
    import json

    json.dump(doc, sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")

"""Classify paths as system, package, code or artifact files, to keep noise out of the
lineage and tell a run's code from its data."""

from __future__ import annotations

import os
from collections.abc import Collection, Sequence

from roard.artifacts.kinds import (
    ARTIFACT,
    CODE,
    DATASET,
    LINEAGE_KINDS,
    PACKAGE,
    SYSTEM,
    USER_KINDS,
)
from roard.config import ClassifyRules

__all__ = [
    "ARTIFACT",
    "CODE",
    "DATASET",
    "LINEAGE_KINDS",
    "PACKAGE",
    "SYSTEM",
    "USER_KINDS",
    "classify",
    "interpreted_script",
]
# Interpreter options followed by a value, not the script (python -X dev, -W error; sh -o).
_VALUE_OPTIONS = frozenset({"-X", "-W", "-o"})


def classify(
    path: str, rules: ClassifyRules, scripts: Collection[str] = (), executed: bool = False
) -> str:
    """The kind of file at `path` (absolute, normalized). `scripts` are paths the run ran
    through an interpreter (`python3 prep`, a shebang script), and an `executed` file was
    mapped executable (a shared library): code whatever their name."""
    if any(marker in path for marker in rules.package_markers):
        return PACKAGE
    if path.startswith(rules.system_prefixes) and not path.startswith(rules.user_prefixes):
        return SYSTEM
    if executed or path in scripts or path.endswith(rules.code_suffixes):
        return CODE
    return ARTIFACT


def interpreted_script(argv: Sequence[str], exe: str, cwd: str, rules: ClassifyRules) -> str | None:
    """The script an interpreter process runs: the first argument after its options, as
    an absolute path; None when `exe` is not an interpreter or it runs no file (`-c`).
    After a shebang exec the kernel has put the interpreter first and the script after."""
    if os.path.basename(exe).rstrip("0123456789.") not in rules.interpreters:
        return None
    args = iter(argv[1:])
    for arg in args:
        if arg in ("-c", "-m", "-e", "--eval", "--command"):
            return None  # code on the command line, or a module found on sys.path
        if arg in _VALUE_OPTIONS:
            next(args, None)
        elif arg and not arg.startswith("-"):
            return os.path.normpath(os.path.join(cwd, arg))
    return None

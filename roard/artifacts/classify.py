"""Classify paths as system, package or artifact files, to keep noise out of the lineage."""

from __future__ import annotations

from roard.config import ClassifyRules

SYSTEM = "system"
PACKAGE = "package"
ARTIFACT = "artifact"


def classify(path: str, rules: ClassifyRules) -> str:
    """The kind of file at `path` (absolute, normalized)."""
    if any(marker in path for marker in rules.package_markers):
        return PACKAGE
    if any(path.startswith(prefix) for prefix in rules.system_prefixes):
        return SYSTEM
    return ARTIFACT

"""Lineage graphs (the collector's nodes-and-edges documents) as text: an indented tree for
people, Graphviz DOT and Mermaid for design docs and notebooks."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

Graph = dict[str, Any]

FORMATS = ("tree", "json", "dot", "mermaid")


def run_label(run: dict[str, Any]) -> str:
    """One line naming a run: id, name, host, start, and whether it is incomplete."""
    name = f" {run['name']}" if run.get("name") else ""
    state = "" if run["complete"] else " INCOMPLETE"
    return f"run {run['run_id']}{name} ({run['host']}, {run['started_at'][:19]}Z){state}"


def short_hash(digest: str) -> str:
    """A content hash cut to its algorithm and first 12 hex digits, for people."""
    return f"{digest[:19]}…"


def artifact_label(node: dict[str, Any]) -> str:
    """One line naming an artifact: short hash and its first path."""
    paths = node.get("paths") or []
    where = paths[0] if paths else "?"
    more = f" (+{len(paths) - 1} paths)" if len(paths) > 1 else ""
    return f"{short_hash(node['hash'])}  {where}{more}"


def _adjacency(doc: Graph) -> dict[str, dict[str, list[str]]]:
    """For each direction of travel, node -> neighbours ("up": towards producers)."""
    up: dict[str, list[str]] = {}
    down: dict[str, list[str]] = {}
    for e in doc["edges"]:
        down.setdefault(e["from"], []).append(e["to"])
        up.setdefault(e["to"], []).append(e["from"])
    return {"up": up, "down": down}


def tree(doc: Graph) -> Iterator[str]:
    """The graph as indented lines from its root, following edges away from it."""
    artifacts = {a["hash"]: a for a in doc["artifacts"]}
    runs = {r["run_id"]: r for r in doc["runs"]}
    adjacency = _adjacency(doc)

    def walk(node: str, way: str, indent: int, seen: set[str]) -> Iterator[str]:
        label = run_label(runs[node]) if node in runs else artifact_label(artifacts[node])
        arrow = ("<- " if way == "up" else "-> ") if indent > 1 else ""
        if node in seen:
            yield f"{'  ' * indent}{arrow}{label} (see above)"
            return
        yield f"{'  ' * indent}{arrow}{label}"
        seen.add(node)
        for nxt in sorted(adjacency[way].get(node, [])):
            yield from walk(nxt, way, indent + 1, seen)

    root = doc["root"]
    start = root["run_id"] if root["type"] == "run" else root["hash"]
    direction = doc.get("direction", "both")
    if direction in ("up", "both"):
        yield "upstream (what produced it):"
        yield from walk(start, "up", 1, set())
    if direction in ("down", "both"):
        yield "downstream (what consumed it):"
        yield from walk(start, "down", 1, set())
    yield from _notes(doc, "  (", ")")


def _notes(doc: Graph, before: str, after: str) -> Iterator[str]:
    # Where the walk stopped at runs the caller may not see ("2 upstream runs in projects
    # you cannot see"); a collector without projects only gives the total.
    hidden = doc.get("hidden") or {}
    for direction in ("upstream", "downstream"):
        if direction in hidden:
            yield f"{before}lineage stops here: {hidden[direction]['message']}{after}"
    if doc["hidden_runs"] and not hidden:
        yield f"{before}{doc['hidden_runs']} more runs you may not see{after}"
    if doc["truncated"]:
        yield f"{before}graph cut at --max-nodes: raise it, or lower --depth{after}"


def _short(node: dict[str, Any], is_run: bool) -> tuple[str, str]:
    """(title, detail) for a node's label in DOT and Mermaid."""
    if is_run:
        return node.get("name") or f"run {node['run_id']}", f"{node['run_id']} @ {node['host']}"
    paths = node.get("paths") or []
    return (os.path.basename(paths[0]) if paths else "?"), short_hash(node["hash"])


def _dot_quote(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def dot(doc: Graph) -> Iterator[str]:
    """Graphviz DOT: runs are boxes, artifacts ellipses; `dot -Tsvg` lays it out."""
    yield "digraph lineage {"
    yield "  rankdir=LR;"
    yield '  node [fontname="Helvetica", fontsize=10];'
    for is_run, nodes, key in ((True, doc["runs"], "run_id"), (False, doc["artifacts"], "hash")):
        for node in nodes:
            title, detail = _short(node, is_run)
            shape = (
                'shape=box, style="rounded,filled", fillcolor="#dbe8f7"'
                if is_run
                else ('shape=ellipse, style=filled, fillcolor="#f3f3f3"')
            )
            if is_run and not node["complete"]:
                shape += ', color="#c0392b"'
            label = _dot_quote(f"{title}\n{detail}")
            yield f"  {_dot_quote(node[key])} [label={label}, {shape}];"
    for e in doc["edges"]:
        yield f"  {_dot_quote(e['from'])} -> {_dot_quote(e['to'])};"
    yield from _notes(doc, "  // ", "")
    yield "}"


def _mermaid_text(text: str) -> str:
    # Mermaid labels are quoted strings: quotes become entity codes, markup-like
    # characters too so a path cannot inject HTML.
    for char, code in (('"', "#quot;"), ("<", "#lt;"), (">", "#gt;")):
        text = text.replace(char, code)
    return text


def mermaid(doc: Graph) -> Iterator[str]:
    """Mermaid flowchart: runs are rectangles, artifacts stadiums; node ids are generated
    (r1, a1, ...) because hashes and paths are not valid Mermaid ids."""
    yield "flowchart LR"
    ids: dict[str, str] = {}
    for i, run in enumerate(doc["runs"], start=1):
        ids[run["run_id"]] = f"r{i}"
        title, detail = _short(run, True)
        yield f'  r{i}["{_mermaid_text(title)}<br/>{_mermaid_text(detail)}"]'
    for i, artifact in enumerate(doc["artifacts"], start=1):
        ids[artifact["hash"]] = f"a{i}"
        title, detail = _short(artifact, False)
        yield f'  a{i}(["{_mermaid_text(title)}<br/>{_mermaid_text(detail)}"])'
    for e in doc["edges"]:
        yield f"  {ids[e['from']]} --> {ids[e['to']]}"
    yield "  classDef run fill:#dbe8f7,stroke:#2c5d8f"
    yield "  classDef artifact fill:#f3f3f3,stroke:#777"
    if doc["runs"]:
        yield f"  class {','.join(ids[r['run_id']] for r in doc['runs'])} run"
    if doc["artifacts"]:
        yield f"  class {','.join(ids[a['hash']] for a in doc['artifacts'])} artifact"
    yield from _notes(doc, "  %% ", "")

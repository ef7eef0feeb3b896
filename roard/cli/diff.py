"""`roarctl diff`: what changed between two runs, computed from their `show` documents.

Pure functions on show documents (no daemon calls), like roard.cli.render:
`diff_runs()` builds the JSON document, `lines()` turns it into a short summary.

Files are keyed by path alone when each run ran on one host (a rerun on another node
compares), and by (host, path) when either run spans several hosts (a joined run), since
the same path on two nodes is then two files. Only the user's own files (kinds "artifact"
and "code") count unless `all_kinds`. Datasets (directories of many files used as one) are
compared by tree hash under `datasets`, each changed one once with its changed, added and
removed files; their files are then left out of `inputs` and `outputs`. The `context`
sections (code, packages, environment, host) are compared only when both documents carry
them; otherwise their keys are absent from the result.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Hashable, Iterator, Mapping
from typing import Any, TypeVar

from roard.artifacts.classify import USER_KINDS
from roard.cli.render import run_label, short_hash

Doc = dict[str, Any]
K = TypeVar("K", bound=Hashable)

# The fields of a git root that say which code ran; `modified` is compared apart.
_GIT_FIELDS = ("remote", "branch", "commit", "dirty", "diff_hash")


def _split(a: Mapping[K, Any], b: Mapping[K, Any]) -> tuple[list[K], list[K], list[K]]:
    """(changed, added, removed) keys between two mappings, each sorted."""
    changed = sorted((k for k in a if k in b and a[k] != b[k]), key=str)
    added = sorted((k for k in b if k not in a), key=str)
    removed = sorted((k for k in a if k not in b), key=str)
    return changed, added, removed


def _by_host(a: Doc, b: Doc) -> bool:
    """Whether files are keyed by (host, path): only when either run spans several hosts."""
    return len(a.get("hosts") or [a["host"]]) > 1 or len(b.get("hosts") or [b["host"]]) > 1


def _key(f: Doc, by_host: bool) -> Any:
    return (f["host"], f["path"]) if by_host else f["path"]


def _datasets(doc: Doc, role: str, by_host: bool) -> dict[Any, Doc]:
    """A run's datasets of a role ("inputs" or "outputs"), keyed like files."""
    wanted = role.removesuffix("s")
    return {_key(d, by_host): d for d in doc.get("datasets", []) if d["role"] == wanted}


def _in_datasets(a: Doc, b: Doc, role: str, by_host: bool) -> set[Any]:
    """The keys of the files of either run's datasets of `role`."""
    return {
        _key({"host": d["host"], "path": f"{d['path']}/{f['path']}"}, by_host)
        for doc in (a, b)
        for d in _datasets(doc, role, by_host).values()
        for f in d["files"]
    }


def _files(doc: Doc, role: str, by_host: bool, all_kinds: bool, skip: set[Any]) -> dict[Any, Doc]:
    """A run's inputs or outputs, keyed by path or (host, path), but for those in `skip`."""
    files = (f for f in doc[role] if all_kinds or f["kind"] in USER_KINDS)
    return {k: f for f in files if (k := _key(f, by_host)) not in skip}


def _diff_datasets(a: Doc, b: Doc, role: str, by_host: bool) -> Doc:
    """Datasets changed (same key, different tree hash, with their files' changes),
    added and removed."""
    da, db = _datasets(a, role, by_host), _datasets(b, role, by_host)
    changed, added, removed = _split(
        {k: d["hash"] for k, d in da.items()}, {k: d["hash"] for k, d in db.items()}
    )
    entries = []
    for key in changed:
        x, y = da[key], db[key]
        fa, fb = ({f["path"]: f for f in d["files"]} for d in (x, y))
        names_changed, names_added, names_removed = _split(
            {k: f["hash"] for k, f in fa.items()}, {k: f["hash"] for k, f in fb.items()}
        )
        entry: Doc = {"path": x["path"]}
        if by_host:
            entry["host"] = x["host"]
        entry.update(a=x["hash"], b=y["hash"], file_count_a=x["file_count"])
        entry["file_count_b"] = y["file_count"]
        entry["files"] = {
            "changed": [{"path": k, "a": fa[k]["hash"], "b": fb[k]["hash"]} for k in names_changed],
            "added": [fb[k] for k in names_added],
            "removed": [fa[k] for k in names_removed],
        }
        entries.append(entry)
    brief = ("path", "host", "hash", "file_count", "size")
    return {
        "changed": entries,
        "added": [{f: db[k][f] for f in brief} for k in added],
        "removed": [{f: da[k][f] for f in brief} for k in removed],
    }


def _diff_files(a: Doc, b: Doc, role: str, by_host: bool, all_kinds: bool) -> Doc:
    """changed (same key, different hash), added (only in b), removed (only in a), but
    for the files of datasets (compared by _diff_datasets)."""
    skip = _in_datasets(a, b, role, by_host)
    fa, fb = _files(a, role, by_host, all_kinds, skip), _files(b, role, by_host, all_kinds, skip)
    # "Changed" is about content: metadata such as bytes_read may differ between runs.
    hash_a = {k: f["hash"] for k, f in fa.items()}
    hash_b = {k: f["hash"] for k, f in fb.items()}
    changed, added, removed = _split(hash_a, hash_b)
    entries = []
    for key in changed:
        x, y = fa[key], fb[key]
        entry: Doc = {"path": x["path"]}
        if by_host:
            entry["host"] = x["host"]
        entry.update(a=x["hash"], b=y["hash"], size_a=x["size"], size_b=y["size"])
        entries.append(entry)
    return {
        "changed": entries,
        "added": [fb[k] for k in added],
        "removed": [fa[k] for k in removed],
    }


def _root(doc: Doc) -> Doc | None:
    """The run's root process: the first one to start (show lists unknown starts last)."""
    procs = [p for p in doc["processes"] if p.get("started_at")] or doc["processes"]
    return min(procs, key=lambda p: p.get("started_at") or "", default=None)


def _command(a: Doc, b: Doc) -> Doc | None:
    """The root processes' argv (and cwd when it differs); None when both are the same."""
    ra, rb = _root(a) or {}, _root(b) or {}
    argv_a, argv_b = ra.get("argv", []), rb.get("argv", [])
    cwd_a, cwd_b = ra.get("cwd"), rb.get("cwd")
    if argv_a == argv_b and cwd_a == cwd_b:
        return None
    out: Doc = {"a": argv_a, "b": argv_b}
    if cwd_a != cwd_b:
        out["cwd"] = {"a": cwd_a, "b": cwd_b}
    return out


def _processes(a: Doc, b: Doc) -> Doc | None:
    """Process counts, and executables that ran in one run only; None when alike."""
    exes_a = {p["exe"] for p in a["processes"] if p.get("exe")}
    exes_b = {p["exe"] for p in b["processes"] if p.get("exe")}
    count_a, count_b = len(a["processes"]), len(b["processes"])
    if count_a == count_b and exes_a == exes_b:
        return None
    return {
        "a": count_a,
        "b": count_b,
        "exes_only_a": sorted(exes_a - exes_b),
        "exes_only_b": sorted(exes_b - exes_a),
    }


def _code(ga: list[Doc], gb: list[Doc]) -> list[Doc]:
    """Per git root (sorted), the roots whose checkout differs or exists on one side only."""
    ra, rb = {g["root"]: g for g in ga}, {g["root"]: g for g in gb}
    out = []
    for root in sorted(ra.keys() | rb.keys()):
        x, y = ra.get(root), rb.get(root)
        state_a = {f: x.get(f) for f in _GIT_FIELDS} if x else None
        state_b = {f: y.get(f) for f in _GIT_FIELDS} if y else None
        mod_a = sorted((x or {}).get("modified") or [])
        mod_b = sorted((y or {}).get("modified") or [])
        if state_a == state_b and mod_a == mod_b:
            continue
        entry: Doc = {"root": root, "a": state_a, "b": state_b}
        if mod_a != mod_b:
            entry.update(modified_a=mod_a, modified_b=mod_b)
        out.append(entry)
    return out


def _pep503(name: str) -> str:
    # Distribution names compare normalized: "Foo_Bar" and "foo-bar" are one package.
    return re.sub(r"[-_.]+", "-", name).lower()


def _package_key(eco: str, p: Doc) -> tuple[str, str]:
    """What identifies a package within an ecosystem."""
    if eco == "python":
        # Distribution names compare normalized: "Foo_Bar" and "foo-bar" are one package.
        return ("", re.sub(r"[-_.]+", "-", p["name"]).lower())
    return (p.get("manager", ""), p["name"])


def _packages(pa: Doc, pb: Doc) -> Doc:
    """Per ecosystem present on both sides: changed versions, added and removed packages."""
    out: Doc = {}
    for eco in sorted(pa.keys() & pb.keys()):
        xa = {_package_key(eco, p): p for p in pa[eco]}
        xb = {_package_key(eco, p): p for p in pb[eco]}
        changed, added, removed = _split(
            {k: p.get("version") for k, p in xa.items()},
            {k: p.get("version") for k, p in xb.items()},
        )
        entries = []
        for k in changed:
            entry: Doc = {
                "name": xa[k]["name"],
                "a": xa[k].get("version"),
                "b": xb[k].get("version"),
            }
            if "manager" in xa[k]:
                entry["manager"] = xa[k]["manager"]
            entries.append(entry)
        out[eco] = {
            "changed": entries,
            "added": [xb[k] for k in added],
            "removed": [xa[k] for k in removed],
        }
    return out


def _environment(ea: Mapping[str, str], eb: Mapping[str, str]) -> Doc:
    """Changed, added and removed variables (values as recorded: secrets stay redacted)."""
    changed, added, removed = _split(ea, eb)
    return {
        "changed": [{"key": k, "a": ea[k], "b": eb[k]} for k in changed],
        "added": [{"key": k, "value": eb[k]} for k in added],
        "removed": [{"key": k, "value": ea[k]} for k in removed],
    }


def _host(ha: Mapping[str, Any], hb: Mapping[str, Any]) -> Doc:
    """Host facts that differ, a missing fact being None."""
    return {
        f: {"a": ha.get(f), "b": hb.get(f)}
        for f in sorted(ha.keys() | hb.keys())
        if ha.get(f) != hb.get(f)
    }


def _root_environment(doc: Doc) -> Mapping[str, str] | None:
    """The environment the run's root process exec'd with (redacted), if recorded."""
    root = _root(doc) or {}
    return (doc.get("environments") or {}).get(root.get("env_hash") or "")


def _context(a: Doc, b: Doc) -> Doc:
    """The context sections present in both documents, compared."""
    ca, cb = a.get("context") or {}, b.get("context") or {}
    ea, eb = _root_environment(a), _root_environment(b)
    if ea is not None and eb is not None:  # what show records today: per process
        ca, cb = {"environment": ea, **ca}, {"environment": eb, **cb}
    out: Doc = {}
    if "git" in ca and "git" in cb:
        out["code"] = _code(ca["git"], cb["git"])
    if "packages" in ca and "packages" in cb:
        out["packages"] = _packages(ca["packages"], cb["packages"])
    if "environment" in ca and "environment" in cb:
        out["environment"] = _environment(ca["environment"], cb["environment"])
    if isinstance(ca.get("host"), dict) and isinstance(cb.get("host"), dict):  # one host each
        out["host"] = _host(ca["host"], cb["host"])
    return out


def _header(doc: Doc) -> Doc:
    """Which run a side is (with what run_label needs to name it)."""
    return {k: doc.get(k) for k in ("run_id", "name", "started_at", "host", "complete")}


def _lists_empty(section: Doc | list[Any]) -> bool:
    """Whether a changed/added/removed section (nested dicts of lists) is empty."""
    if isinstance(section, dict):
        return all(_lists_empty(v) for v in section.values())
    return not section


def diff_runs(a: Doc, b: Doc, *, all_kinds: bool = False) -> Doc:
    """What changed from run `a` to run `b`, both `roarctl show --json` documents.

    Sections that always appear: a, b, keyed_by ("path" or "host+path"), same, inputs,
    outputs, datasets ({"inputs": ..., "outputs": ...}), command (None when equal).
    processes, exit_code and complete appear only when they differ; code, packages,
    environment and host only when both runs carry that context. `all_kinds` compares
    system and package files too, not just artifacts.
    """
    by_host = _by_host(a, b)
    out: Doc = {
        "a": _header(a),
        "b": _header(b),
        "keyed_by": "host+path" if by_host else "path",
        "inputs": _diff_files(a, b, "inputs", by_host, all_kinds),
        "outputs": _diff_files(a, b, "outputs", by_host, all_kinds),
        "datasets": {role: _diff_datasets(a, b, role, by_host) for role in ("inputs", "outputs")},
        "command": _command(a, b),
    }
    processes = _processes(a, b)
    if processes is not None:
        out["processes"] = processes
    for field in ("exit_code", "complete"):
        if a.get(field) != b.get(field):
            out[field] = {"a": a.get(field), "b": b.get(field)}
    context = _context(a, b)
    out.update(context)
    out["same"] = (
        _lists_empty(out["inputs"])
        and _lists_empty(out["outputs"])
        and _lists_empty(out["datasets"])
        and out["command"] is None
        and not {"processes", "exit_code", "complete"} & out.keys()
        # code and host list only what differs, so any entry is a difference (even a
        # fact going from None to 0); the others are changed/added/removed lists.
        and not context.get("code")
        and not context.get("host")
        and _lists_empty(context.get("packages", {}))
        and _lists_empty(context.get("environment", {}))
    )
    return out


def _where(f: Doc, by_host: bool) -> str:
    return f"{f['host']}:{f['path']}" if by_host else f["path"]


def _counts(title: str, section: Doc) -> str:
    parts = ", ".join(f"{len(section[k])} {k}" for k in ("changed", "added", "removed"))
    return f"{title}: {parts}"


def _file_lines(title: str, section: Doc, by_host: bool) -> Iterator[str]:
    if _lists_empty(section):
        return
    yield _counts(title, section)
    for c in section["changed"]:
        yield f"  ~ {_where(c, by_host)}  {short_hash(c['a'])} -> {short_hash(c['b'])}"
    for sign, key in (("+", "added"), ("-", "removed")):
        for f in section[key]:
            yield f"  {sign} {_where(f, by_host)}"


def _dataset_lines(title: str, section: Doc, by_host: bool) -> Iterator[str]:
    if _lists_empty(section):
        return
    yield _counts(title, section)
    for c in section["changed"]:
        hashes = f"{short_hash(c['a'])} -> {short_hash(c['b'])}"
        yield f"  ~ {_where(c, by_host)}/  {hashes} ({c['file_count_b']} files)"
        for f in c["files"]["changed"]:
            yield f"      ~ {f['path']}  {short_hash(f['a'])} -> {short_hash(f['b'])}"
        for sign, key in (("+", "added"), ("-", "removed")):
            for f in c["files"][key]:
                yield f"      {sign} {f['path']}"
    for sign, key in (("+", "added"), ("-", "removed")):
        for d in section[key]:
            yield f"  {sign} {_where(d, by_host)}/ ({d['file_count']} files)"


def _package_lines(eco: str, section: Doc) -> Iterator[str]:
    if _lists_empty(section):
        return
    yield _counts(f"packages ({eco})", section)
    for c in section["changed"]:
        yield f"  ~ {c['name']} {c['a']} -> {c['b']}"
    for sign, key in (("+", "added"), ("-", "removed")):
        for p in section[key]:
            yield f"  {sign} {p['name']} {p.get('version')}"


def lines(diff: Doc) -> Iterator[str]:
    """The diff document as a short summary for people ("no differences" when same)."""
    yield f"a: {run_label(diff['a'])}"
    yield f"b: {run_label(diff['b'])}"
    if diff["same"]:
        yield "no differences"
        return
    by_host = diff["keyed_by"] == "host+path"
    for role in ("inputs", "outputs"):
        yield from _file_lines(role, diff[role], by_host)
        yield from _dataset_lines(
            f"{role.removesuffix('s')} datasets", diff["datasets"][role], by_host
        )
    if command := diff["command"]:
        if command["a"] != command["b"]:
            yield f"command: {shlex.join(command['a'])} -> {shlex.join(command['b'])}"
        if "cwd" in command:
            yield f"cwd: {command['cwd']['a']} -> {command['cwd']['b']}"
    if procs := diff.get("processes"):
        exes = [f"+{e}" for e in procs["exes_only_b"]] + [f"-{e}" for e in procs["exes_only_a"]]
        extra = f" ({', '.join(exes)})" if exes else ""
        yield f"processes: {procs['a']} -> {procs['b']}{extra}"
    if code := diff.get("exit_code"):
        yield f"exit code: {code['a']} -> {code['b']}"
    if complete := diff.get("complete"):
        yield f"complete: {complete['a']} -> {complete['b']}"
    for repo in diff.get("code", []):
        x, y = repo["a"] or {}, repo["b"] or {}
        changes = [f"{f} {x.get(f)} -> {y.get(f)}" for f in _GIT_FIELDS if x.get(f) != y.get(f)]
        yield f"code {repo['root']}: {'; '.join(changes) or 'modified files differ'}"
        if "modified_a" in repo:
            yield f"  modified: {len(repo['modified_a'])} -> {len(repo['modified_b'])} files"
    for eco, section in diff.get("packages", {}).items():
        yield from _package_lines(eco, section)
    env = diff.get("environment")
    if env and not _lists_empty(env):
        yield _counts("environment", env)
        for c in env["changed"]:
            yield f"  ~ {c['key']}={c['a']} -> {c['b']}"
        for sign, key in (("+", "added"), ("-", "removed")):
            for v in env[key]:
                yield f"  {sign} {v['key']}={v['value']}"
    for fact, values in diff.get("host", {}).items():
        yield f"host {fact}: {values['a']} -> {values['b']}"

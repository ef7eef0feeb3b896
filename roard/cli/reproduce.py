"""`roarctl reproduce`: the recipe that rebuilds an artifact, from recorded lineage.

Pure functions over the daemon's documents, like roard.cli.diff: `build_plan()` turns a
lineage graph (`lineage` of a hash, or `run_graph` of a run) and the `show` documents of
the runs it needs into a plan; `script()` renders the plan as a POSIX shell script.

The plan (`roarctl reproduce --json`), keys always present unless said otherwise:

- `target`: `{type: "artifact"|"run", query, hash|run_id, verify: [file]}`; `verify` lists
  the files the script checks last (the artifact's path as its producer wrote it, or every
  output of the target run).
- `steps`: the runs to re-run, each producer before its consumers (ties by start time):
  `{step (1-based), run_id, name, host, started_at, complete, exit_code, how,
  command: {argv, cwd, rebuild_cwd, env, secrets}|null, processes: [{host, argv, cwd}],
  git: [tree], python_packages: ["name==version"], system_packages: [{manager, name,
  version, arch}], inputs: [file + {source, step}], outputs: [file]}`. `command` is the
  root process's (null when the run has no single root: adopted by --pid or cgroup,
  joined across hosts, or its root's exec was not seen); `processes` then lists the
  top-level processes (else it is empty). `env` holds the variables the root exec'd with
  that the rebuild sets again (not those of the login session: HOME, USER, SSH_*...,
  nor ROARD_*); `secrets` names what was redacted: an environment variable of that name,
  or `REPRODUCE_SECRET_<n>` for the n-th redacted argument (1-based), which the script
  requires from its caller's environment.
- `clones`: one per (remote, commit): `{dir, url, remote, commit, branch, roots}`; `dir`
  is relative to the destination directory, `url` what is cloned (the remote, else the
  recorded root on this host), `roots` the recorded work-tree roots it stands for.
- `fetch`: inputs no step produces and no clone provides: `file + {steps}`.
- `warnings`: sentences (dirty trees, incomplete runs, unknown commands, unhashed
  inputs, a cut walk, a target no run produced, ...).

A `file` is `{path, hash, kind, rebuild_path}`: `path` as recorded, `hash` "blake3:<hex>"
(null for an input roard could not hash), `rebuild_path` where the rebuild has it:
relative paths are under the destination directory (the file lies in a cloned tree),
absolute ones are the recorded path. An input's `source` is "step" (`step` names the
producing step and `produced_at` the `rebuild_path` it writes that content to, which the
script copies when it differs), "checkout" (a file of a cloned tree at its commit) or
"fetch" (`step` is null). A `tree` is a git work tree from the run's context: `{root,
remote, branch, commit, dirty, diff_hash, modified, clone}`, `clone` being the clone's `dir`
or null for a tree the run's files do not need (an interpreter's own repository, say). Paths under a
cloned tree's root are rewritten to the clone: cwd, files, and argv elements that start
with the root.
"""

from __future__ import annotations

import heapq
import os
import re
import shlex
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from roard.artifacts.classify import USER_KINDS
from roard.cli.render import run_label
from roard.context.environment import REDACTED

Doc = dict[str, Any]

# How many modified paths a dirty-tree warning names.
_NAMED = 5
# Variables of the session, the host or roard, not of the job: a rebuild keeps its own.
_SESSION_VARS = frozenset(
    {"HOME", "USER", "LOGNAME", "PWD", "OLDPWD", "SHLVL", "_", "SHELL", "TERM", "HOSTNAME",
     "MAIL", "DISPLAY", "LS_COLORS", "COLUMNS", "LINES", "PS1", "TMPDIR", "COLORTERM"}
)  # fmt: skip
_SHELL_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SESSION_PREFIXES = ("SSH_", "XDG_", "TMUX", "ROARD_", "DBUS_", "WAYLAND_", "TERM_")


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def _owner(path: str, roots: Iterable[str]) -> str | None:
    """The innermost of `roots` that holds `path` (nested trees: the submodule)."""
    return max((r for r in roots if _under(path, r)), key=len, default=None)


def _relocate(path: str, clones: Mapping[str, str]) -> str:
    """`path` in the rebuild: under its clone's directory when a cloned root holds it."""
    root = _owner(path, clones)
    if root is None:
        return path
    rest = path[len(root) :].lstrip("/")
    return f"{clones[root]}/{rest}" if rest else clones[root]


def _job_env(doc: Doc, proc: Doc) -> tuple[dict[str, str], list[str]]:
    """The variables process `proc` exec'd with that a rebuild sets again, and the names
    of those that were redacted (the caller must supply them)."""
    recorded: Mapping[str, str] = doc.get("environments", {}).get(proc.get("env_hash"), {})
    env, secrets = {}, []
    for name, value in sorted(recorded.items()):
        if name in _SESSION_VARS or name.startswith(_SESSION_PREFIXES):
            continue
        if value == REDACTED:
            if _SHELL_NAME.fullmatch(name):  # (the script can only ask for those by name)
                secrets.append(name)
        else:
            env[name] = value
    return env, secrets


def _command(doc: Doc) -> tuple[Doc | None, list[Doc]]:
    """(the root process's argv, cwd and environment, or None; the top-level processes
    when None)."""
    procs = doc["processes"]
    root = next((p for p in procs if p["pid"] == doc.get("root_pid")), None)
    # A spawned or ROARD_RUN run started at its root's exec; an adopted process, a cgroup
    # or a joined run's parts were already running, so no one command re-creates them.
    single = doc.get("how") not in ("pid", "cgroup") and not doc.get("joined")
    if single and root is not None and root.get("argv") and root.get("cwd"):
        env, secrets = _job_env(doc, root)
        secrets += [f"REPRODUCE_SECRET_{n}" for n in range(1, root["argv"].count(REDACTED) + 1)]
        return {"argv": root["argv"], "cwd": root["cwd"], "env": env, "secrets": secrets}, []
    pids = {(p.get("host"), p["pid"]) for p in procs}
    top = [p for p in procs if (p.get("host"), p["ppid"]) not in pids]
    return None, [{"host": p.get("host"), "argv": p["argv"], "cwd": p["cwd"]} for p in top]


def _pick(candidates: Iterable[str], runs: Mapping[str, Doc], before: str | None) -> str | None:
    """The producer to re-run among `candidates`: the latest that started before the
    consumer (`before`, its start time; None: the latest of all), else the earliest."""
    order = sorted(candidates, key=lambda r: (runs[r]["started_at"], r))
    earlier = [r for r in order if before is None or runs[r]["started_at"] < before]
    if earlier:
        return earlier[-1]
    return order[0] if order else None


def _edges(graph: Doc) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """(hash -> runs that generated it, run -> hashes it used), visible runs only."""
    made_by: dict[str, list[str]] = {}
    used: dict[str, list[str]] = {}
    runs = {r["run_id"] for r in graph["runs"]}
    for e in graph["edges"]:
        if e["kind"] == "generated" and e["from"] in runs:
            made_by.setdefault(e["to"], []).append(e["from"])
        elif e["kind"] == "used" and e["to"] in runs:
            used.setdefault(e["to"], []).append(e["from"])
    return made_by, used


def _levels(
    graph: Doc, made_by: Mapping[str, list[str]], used: Mapping[str, list[str]]
) -> dict[str, int]:
    """Each run's distance from the root in walk steps, as the daemon's walk counts depth:
    a target run is 0, a target artifact's producers 1, their inputs' producers 2..."""
    root = graph["root"]
    if root["type"] == "run":
        level = {root["run_id"]: 0}
    else:
        level = dict.fromkeys(made_by.get(root["hash"], []), 1)
    frontier = list(level)
    while frontier:
        nxt = []
        for run in frontier:
            for file_hash in used.get(run, []):
                for producer in made_by.get(file_hash, []):
                    if producer not in level:
                        level[producer] = level[run] + 1
                        nxt.append(producer)
        frontier = nxt
    return level


def _order(docs: Mapping[str, Doc], after: Mapping[str, set[str]]) -> tuple[list[str], bool]:
    """Runs with every producer before its consumers, ties by start time; (order, whether
    a cycle had to be broken by start time)."""
    key = {r: (d["started_at"], r) for r, d in docs.items()}
    waiting = {r: set(after.get(r, ())) for r in docs}
    ready = [key[r] for r, deps in waiting.items() if not deps]
    heapq.heapify(ready)
    order: list[str] = []
    while ready:
        _, run = heapq.heappop(ready)
        order.append(run)
        for other, deps in waiting.items():
            if run in deps:
                deps.discard(run)
                if not deps:
                    heapq.heappush(ready, key[other])
    cycle = sorted((r for r in docs if r not in order), key=key.__getitem__)
    return order + cycle, bool(cycle)


def _inputs(doc: Doc) -> list[Doc]:
    """The run's data and source inputs, hashed or not (hash None, with the reason)."""
    hashed = [f for f in doc["inputs"] if f["kind"] in USER_KINDS]
    unhashed = [
        {**f, "hash": None}
        for f in doc.get("unhashed", [])
        if f["role"] == "input" and f["kind"] in USER_KINDS
    ]
    return sorted(hashed + unhashed, key=lambda f: f["path"])


def _outputs(doc: Doc) -> list[Doc]:
    return sorted((f for f in doc["outputs"] if f["kind"] in USER_KINDS), key=lambda f: f["path"])


def _needed_roots(doc: Doc, command: Doc | None) -> set[str]:
    """The git roots the run's own files (and cwd) lie in: those trees get cloned."""
    roots = [t["root"] for t in doc.get("context", {}).get("git", [])]
    paths = [f["path"] for f in _inputs(doc) + _outputs(doc)]
    if command:
        paths.append(command["cwd"])
    return {r for r in (_owner(p, roots) for p in paths) if r is not None}


def _clone_dir(root: str, commit: str, taken: set[str]) -> str:
    """A directory under the destination for a clone: the root's basename, made unique."""
    base = os.path.basename(root.rstrip("/")) or "tree"
    name, n = base, 1
    while name in taken:
        name = f"{base}-{commit[:12]}" if n == 1 else f"{base}-{commit[:12]}-{n}"
        n += 1
    taken.add(name)
    return name


class _Planner:
    """The state of one plan being built (clones, fetches, warnings, step numbers)."""

    def __init__(self, graph: Doc, docs: Mapping[str, Doc], order: list[str]) -> None:
        self.graph = graph
        self.docs = docs
        self.number = {run: i for i, run in enumerate(order, start=1)}
        self.clones: dict[tuple[str, str], Doc] = {}
        self.fetch: dict[tuple[str, str | None], Doc] = {}
        self.warnings: list[str] = []
        self._taken: set[str] = set()
        self._levels = _levels(graph, *_edges(graph))
        self._made: dict[tuple[str, str | None], list[str]] = {}  # (run, hash) -> paths

    def _clone(self, tree: Doc) -> str:
        """The clone directory standing for `tree`, made on first use."""
        url = tree.get("remote") or tree["root"]
        key = (url, tree["commit"])
        if key not in self.clones:
            self.clones[key] = {
                "dir": _clone_dir(tree["root"], tree["commit"], self._taken),
                "url": url,
                "remote": tree.get("remote") or None,
                "commit": tree["commit"],
                "branch": tree.get("branch") or None,
                "roots": [],
            }
        clone = self.clones[key]
        if tree["root"] not in clone["roots"]:
            clone["roots"].append(tree["root"])
        dir_name: str = clone["dir"]
        return dir_name

    def step(
        self, run: str, source: Mapping[tuple[str, str | None], str], produced: set[str]
    ) -> Doc:
        """The plan's step for `run`: `source` maps (run, input hash) to the producing run,
        `produced` holds every path the plan's steps write."""
        doc, i = self.docs[run], self.number[run]
        label = f"step {i} (run {run})"
        command, processes = _command(doc)
        needed = _needed_roots(doc, command)
        trees, clones = [], {}
        for tree in doc.get("context", {}).get("git", []):
            clone = self._clone(tree) if tree["root"] in needed else None
            if clone is not None:
                clones[tree["root"]] = clone
            trees.append(
                {
                    **{k: tree.get(k) for k in ("root", "remote", "branch", "commit")},
                    "dirty": bool(tree.get("dirty")),
                    "diff_hash": tree.get("diff_hash") or None,
                    "modified": list(tree.get("modified") or []),
                    "clone": clone,
                }
            )
            lost = [
                m
                for m in tree.get("modified") or []
                if f"{tree['root'].rstrip('/')}/{m}" not in produced
            ]
            if clone is not None and tree.get("dirty") and lost:
                named = ", ".join(lost[:_NAMED]) + (", ..." if len(lost) > _NAMED else "")
                self.warnings.append(
                    f"{label}: {tree['root']} had uncommitted changes (diff "
                    f"{tree.get('diff_hash') or '?'}) that no step re-creates ({named}): they "
                    "cannot be restored, only their hash is known; those the run read are to "
                    "fetch"
                )
        if command is not None:
            command = {**command, "rebuild_cwd": _relocate(command["cwd"], clones)}
        else:
            self.warnings.append(
                f"{label}: no single command re-creates it (how: {doc.get('how')}"
                f"{', joined' if doc.get('joined') else ''}); its top-level processes are "
                "listed: run them by hand"
            )
        if not doc["complete"]:
            self.warnings.append(
                f"{label} is incomplete ({doc['lost_events']} events lost): its recorded "
                "inputs and outputs may be partial"
            )
        inputs = [self._input(run, f, clones, doc, source) for f in _inputs(doc)]
        outputs = [_file(f, clones) for f in _outputs(doc)]
        for f in outputs:
            self._made.setdefault((run, f["hash"]), []).append(f["rebuild_path"])
            if f["rebuild_path"].startswith("/"):
                self.warnings.append(
                    f"{label} writes {f['path']} outside the cloned trees: the rebuild "
                    "replaces the file there"
                )
        packages = doc.get("context", {}).get("packages", {})
        return {
            "step": i,
            **{k: doc.get(k) for k in ("run_id", "name", "host", "started_at", "how")},
            "complete": doc["complete"],
            "exit_code": doc.get("exit_code"),
            "command": command,
            "processes": processes,
            "git": trees,
            "python_packages": [f"{p['name']}=={p['version']}" for p in packages.get("python", [])],
            "system_packages": [
                {k: p.get(k) for k in ("manager", "name", "version", "arch")}
                for p in packages.get("system", [])
            ],
            "inputs": inputs,
            "outputs": outputs,
        }

    def _input(
        self,
        run: str,
        f: Doc,
        clones: Mapping[str, str],
        doc: Doc,
        source: Mapping[tuple[str, str | None], str],
    ) -> Doc:
        """One input of `run` with where the rebuild gets it (and the fetch list updated)."""
        label = f"step {self.number[run]} (run {run})"
        entry = _file(f, clones)
        producer = source.get((run, f["hash"]))
        # (Nothing when the producer comes later: a cycle broken by start time.)
        made = self._made.get((producer, f["hash"]), []) if producer else []
        if producer and made:
            at = entry["rebuild_path"] if entry["rebuild_path"] in made else made[0]
            return {**entry, "source": "step", "step": self.number[producer], "produced_at": at}
        if f["hash"] is None:
            self.warnings.append(
                f"{label}: input {f['path']} has no hash ({f.get('reason', 'not hashed')}): "
                "only its presence is checked"
            )
        root = _owner(f["path"], clones)
        trees = {t["root"]: t for t in doc.get("context", {}).get("git", [])}
        if root is not None:
            rel = f["path"][len(root) :].lstrip("/")
            if rel not in (trees[root].get("modified") or []):
                return {**entry, "source": "checkout", "step": None}
        self._cut(run, f)
        fetched = self.fetch.setdefault((entry["rebuild_path"], f["hash"]), {**entry, "steps": []})
        fetched["steps"].append(self.number[run])
        return {**entry, "source": "fetch", "step": None}

    def _cut(self, run: str, f: Doc) -> None:
        """Warn when the walk stopped at `run`, so `f` may have a producer beyond it."""
        depth = self.graph.get("depth")
        if f["hash"] is not None and depth and self._levels.get(run, 0) >= depth:
            self.warnings.append(
                f"step {self.number[run]} (run {run}): input {f['path']} may have a producer "
                f"beyond the walk's depth ({depth}): raise --depth"
            )


def _file(f: Doc, clones: Mapping[str, str]) -> Doc:
    return {
        "path": f["path"],
        "hash": f["hash"],
        "kind": f["kind"],
        "rebuild_path": _relocate(f["path"], clones),
    }


def build_plan(
    query: str, graph: Doc, show: Callable[[str], Doc], artifact: Callable[[str], Doc]
) -> Doc:
    """The plan (see the module docstring) that rebuilds `graph`'s root.

    `graph` is the daemon's `lineage` (upward) of an artifact or `run_graph` of a run;
    `show(run_id)` returns a run's `show` document and is called once for each run the
    plan needs; `artifact(hash)` (the `artifact` query) only when no visible run produced
    the target artifact, to say where it was seen.
    """
    runs = {r["run_id"]: r for r in graph["runs"]}
    made_by, _ = _edges(graph)
    root = graph["root"]
    warnings: list[str] = []
    if root["type"] == "run":
        start: str | None = root["run_id"]
        target: Doc = {"type": "run", "query": query, "run_id": root["run_id"]}
    else:
        start = _pick(made_by.get(root["hash"], []), runs, None)
        target = {"type": "artifact", "query": query, "hash": root["hash"]}
    docs: dict[str, Doc] = {}
    source: dict[tuple[str, str | None], str] = {}
    todo = [start] if start else []
    while todo:
        run = todo.pop()
        doc = docs[run] = show(run)
        for f in _inputs(doc):
            producer = _pick(
                (r for r in made_by.get(f["hash"], []) if r != run), runs, doc["started_at"]
            )
            if producer is not None:
                source[(run, f["hash"])] = producer
                if producer not in docs and producer not in todo:
                    todo.append(producer)
    after: dict[str, set[str]] = {}
    for (consumer, _), producer in source.items():
        after.setdefault(consumer, set()).add(producer)
    order, cycle = _order(docs, after)
    if cycle:
        warnings.append("the runs' inputs and outputs form a cycle: ordered by start time")
    planner = _Planner(graph, docs, order)
    produced = {f["path"] for d in docs.values() for f in _outputs(d)}
    steps = [planner.step(run, source, produced) for run in order]
    if start is None:
        found = artifact(root["hash"])["artifacts"]
        paths = [p["path"] for a in found[:1] for p in a["paths"]]
        entry = {"path": paths[0] if paths else None, "hash": root["hash"], "kind": "artifact"}
        entry["rebuild_path"] = entry["path"]
        target["verify"] = [entry] if paths else []
        planner.fetch[(entry["path"], root["hash"])] = {**entry, "steps": []}
        warnings.append(
            f"no run you may see produced {root['hash']}"
            f"{' (seen at ' + ', '.join(paths) + ')' if paths else ''}: it can only be fetched"
        )
    elif root["type"] == "run":
        target["verify"] = steps[order.index(start)]["outputs"]
    else:
        outputs = steps[order.index(start)]["outputs"]
        target["verify"] = [f for f in outputs if f["hash"] == root["hash"]]
    if graph.get("truncated"):
        warnings.append("the lineage walk was cut at --max-nodes: producers may be missing")
    hidden = graph.get("hidden") or {}
    if "upstream" in hidden:
        # The walk stopped there: those producers' steps cannot be in the script.
        message = hidden["upstream"]["message"]
        warnings.append(f"{message}: their steps are left out; their outputs must exist")
    elif graph.get("hidden_runs"):
        warnings.append(f"{graph['hidden_runs']} runs you may not see are left out")
    return {
        "target": target,
        "steps": steps,
        "clones": list(planner.clones.values()),
        "fetch": list(planner.fetch.values()),
        "warnings": warnings + planner.warnings,
    }


# ------------------------------------------------------------------------------- script

# The script's helpers. `got` is left set by verify, for the callers' messages.
_PRELUDE = r"""set -eu
DEST=$(mkdir -p "${1:-.}" && cd "${1:-.}" && pwd)

say() { printf 'reproduce: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

# b3 FILE: its content hash as blake3:<hex>; nothing when no tool can compute it.
b3() {
    if command -v b3sum >/dev/null 2>&1; then
        printf 'blake3:%s\n' "$(b3sum --no-names "$1")"
    elif python3 -c 'import blake3' >/dev/null 2>&1; then
        python3 -c 'import sys, blake3
h = blake3.blake3()
with open(sys.argv[1], "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
        h.update(block)
print("blake3:" + h.hexdigest())' "$1"
    fi
}

# verify FILE HASH: 0 when FILE has content HASH, 1 when it is missing or differs, 2 when
# nothing here can hash it (a warning).
verify() {
    [ -f "$1" ] || { got=missing; return 1; }
    got=$(b3 "$1")
    if [ -z "$got" ]; then
        [ -n "${unchecked:-}" ] || say "warning: file contents are not checked:" \
            "install b3sum or the blake3 Python module"
        unchecked=1
        return 2
    fi
    [ "$got" = "$2" ]
}

# need FILE HASH HINT: stop unless FILE exists with content HASH.
need() {
    [ -f "$1" ] || die "missing $1 (expected $2): $3"
    verify "$1" "$2" || [ $? -eq 2 ] || die "$1 has $got, expected $2: $3"
}

# clone URL DIR COMMIT: DIR holds URL checked out at COMMIT (detached); an existing
# clone is reused, so the script can be run again.
clone() {
    [ -d "$2/.git" ] || git clone -q --no-checkout "$1" "$2" || die "cannot clone $1 into $2"
    git -C "$2" checkout -q --detach "$3" || die "commit $3 is not in $1 (never pushed?)"
}

# pycheck NAME==VERSION...: warn about each distribution python3 lacks at that version.
pycheck() {
    python3 - "$@" <<'EOF' || say "warning: could not check Python packages with python3"
import sys
from importlib import metadata
for spec in sys.argv[1:]:
    name, version = spec.split("==", 1)
    try:
        have = metadata.version(name)
    except metadata.PackageNotFoundError:
        have = "not installed"
    if have != version:
        print(f"reproduce: warning: {name} {have} (recorded: {version})", file=sys.stderr)
EOF
}

# debcheck NAME VERSION: warn when the Debian package is missing or at another version.
debcheck() {
    command -v dpkg-query >/dev/null 2>&1 || return 0
    have=$(dpkg-query -W -f '${Version}' "$1" 2>/dev/null) || have=
    [ "$have" = "$2" ] || say "warning: system package $1 ${have:-not installed} (recorded: $2)"
}

# rebuilt FILE HASH: OK or MISMATCH for a file the script set out to rebuild.
mismatches=0
rebuilt() {
    status=0
    verify "$1" "$2" || status=$?
    case $status in
    0) echo "OK: $1 has $2" ;;
    2) say "rebuilt $1; its content was not checked" ;;
    *) echo "MISMATCH: $1 has $got, expected $2" >&2; mismatches=$((mismatches + 1)) ;;
    esac
}
"""


def _sh(path: str) -> str:
    """A rebuild path as one shell word: relative paths are under "$DEST"."""
    return shlex.quote(path) if path.startswith("/") else f'"$DEST"/{shlex.quote(path)}'


def _word(value: str, clones: Mapping[str, str]) -> str:
    """A recorded string as one shell word, rewritten to its clone when a cloned tree's
    root starts it."""
    return _sh(_relocate(value, clones)) if _owner(value, clones) else shlex.quote(value)


def _argv(argv: list[str], clones: Mapping[str, str]) -> str:
    """argv as shell words: elements naming a cloned tree's files rewritten to the clone,
    redacted ones taken from $REPRODUCE_SECRET_1, _2..."""
    secrets = iter(range(1, len(argv) + 1))
    return " ".join(
        f'"$REPRODUCE_SECRET_{next(secrets)}"' if a == REDACTED else _word(a, clones) for a in argv
    )


def _env(env: Mapping[str, str], clones: Mapping[str, str]) -> str:
    """`env NAME=VALUE...` setting the job's variables again ("" when there are none);
    values starting with a cloned tree's root point into the clone."""
    if not env:
        return ""
    assigns = [shlex.quote(f"{name}=") + _word(value, clones) for name, value in env.items()]
    # One variable a line: a recorded environment is long, and read when a rebuild fails.
    return "env \\\n        " + " \\\n        ".join(assigns) + " \\\n        "


def _comment(text: str) -> str:
    # A recorded string may hold a newline: it must not end the comment.
    return "# " + text.replace("\n", "\\n")


def _dq(text: str) -> str:
    """`text` for inside a double-quoted shell string (where "$got" and the like expand)."""
    for char in ("\\", '"', "$", "`"):
        text = text.replace(char, "\\" + char)
    return text


def _need(f: Doc, hint: str) -> str:
    """The check that stops the script unless input `f` is in place."""
    where = _sh(f["rebuild_path"])
    if f["hash"] is None:
        return f'[ -f {where} ] || die "missing {_dq(f["rebuild_path"])}: {_dq(hint)}"'
    return f"need {where} {f['hash']} {shlex.quote(hint)}"


def _step_lines(step: Doc, steps: list[Doc], checked: set[tuple[str, str]]) -> Iterator[str]:
    """One step: what it was, its package checks, its inputs staged, its command run.
    `checked` holds the packages earlier steps check (and gains this step's)."""
    i, run = step["step"], step["run_id"]
    yield ""
    yield _comment(f"step {i} of {len(steps)}: {run_label(step)}, exit {step['exit_code']}")
    for t in step["git"]:
        dirty = f", dirty (diff {t['diff_hash']})" if t["dirty"] else ""
        where = f"in clone {t['clone']}" if t["clone"] else "not cloned: no file of the run in it"
        yield _comment(f"  git {t['root']}: {t['remote']} {t['branch']} {t['commit']}{dirty}")
        yield _comment(f"    ({where})")
    for f in step["inputs"]:
        via = f"step {f['step']}" if f["source"] == "step" else f["source"]
        yield _comment(f"  input  {f['hash'] or 'unhashed'}  {f['path']} ({via})")
    for f in step["outputs"]:
        yield _comment(f"  output {f['hash']}  {f['path']}")
    new = [p for p in step["python_packages"] if ("python", p) not in checked]
    checked.update(("python", p) for p in new)
    if new:  # (packages an earlier step had are checked or installed already)
        specs = " ".join(shlex.quote(p) for p in new)
        yield 'if [ "${REPRODUCE_INSTALL:-0}" = 1 ]; then'
        yield f"    python3 -m pip install {specs}"
        yield "else"
        yield f"    pycheck {specs}"
        yield "fi"
    for p in step["system_packages"]:
        if p["manager"] == "dpkg" and (p["name"], p["version"]) not in checked:
            checked.add((p["name"], p["version"]))
            yield f"debcheck {shlex.quote(p['name'])} {shlex.quote(p['version'])}"
        else:  # another manager, or checked for an earlier step
            yield _comment(f"  system package ({p['manager']}) {p['name']} {p['version']}")
    for f in step["inputs"]:
        if f["source"] == "step" and f["produced_at"] != f["rebuild_path"]:
            yield f'mkdir -p "$(dirname {_sh(f["rebuild_path"])})"'
            yield f"cp {_sh(f['produced_at'])} {_sh(f['rebuild_path'])}"
    command = step["command"]
    if command is None:
        yield _comment("  no single command re-creates this run; its top-level processes were:")
        for p in step["processes"]:
            yield _comment(f"    on {p['host']}, in {p['cwd']}: {shlex.join(p['argv'])}")
        checks = [
            f"{{ verify {_sh(f['rebuild_path'])} {f['hash']} || [ $? -eq 2 ]; }}"
            for f in step["outputs"]
        ]
        message = (
            f"step {i} (run {run}) has no single command: run its processes (listed above) by "
            "hand so that its outputs are in place, then run this script again"
        )
        yield f"{' && '.join(checks) or 'false'} || die {shlex.quote(message)}"
        return
    clones = {t["root"]: t["clone"] for t in step["git"] if t["clone"]}
    for name in command["secrets"]:
        yield (
            f': "${{{name}:?step {i} (run {_dq(run)}) was given a secret that roard '
            f'redacted: set {name} to it}}"'
        )
    code = step["exit_code"] or 0
    yield "status=0"
    env, argv = _env(command["env"], clones), _argv(command["argv"], clones)
    yield f"(cd {_sh(command['rebuild_cwd'])} && exec {env}{argv}) || status=$?"
    yield (
        f'[ "$status" -eq {code} ] || die "step {i} (run {_dq(run)}) exited with status '
        f'$status (recorded: {code})"'
    )
    # Outputs later steps consume are compared now: a difference is worth knowing early
    # (the step is not deterministic), though later steps go on with what it made.
    consumed = {x["produced_at"] for s in steps for x in s["inputs"] if x.get("step") == i}
    for f in step["outputs"]:
        if f["rebuild_path"] in consumed:
            yield (
                f"verify {_sh(f['rebuild_path'])} {f['hash']} || [ $? -eq 2 ] || say "
                f'"warning: step {i} rebuilt {_dq(f["rebuild_path"])} as $got, recorded '
                f'{f["hash"]}: later steps use it as rebuilt"'
            )


def script(plan: Doc) -> str:
    """The plan as a POSIX sh script: `sh SCRIPT [DEST]` clones, checks, re-runs each step
    and verifies the target under DEST (default: the current directory)."""
    target = plan["target"]
    what = target.get("hash") or f"run {target.get('run_id')}"
    out = [
        "#!/bin/sh",
        _comment(f"Rebuilds {what} from roard's lineage (roarctl reproduce {target['query']})."),
        "# Usage: sh THIS_SCRIPT [DEST]: clones and rebuilds under DEST (default: the current",
        "# directory). REPRODUCE_INSTALL=1 in the environment installs the recorded Python",
        "# package versions with pip; otherwise they are only checked.",
    ]
    out += [_comment(f"WARNING: {w}") for w in plan["warnings"]]
    out.append(_PRELUDE.rstrip("\n"))
    if plan["clones"]:
        out += ["", "# git trees, each at the commit the runs used"]
    for c in plan["clones"]:
        if c["remote"] is None:
            out.append(_comment(f"no remote was recorded: cloned from {c['url']} on this host"))
        out.append(_comment(f"{', '.join(c['roots'])} (branch {c['branch']})"))
        out.append(f"clone {shlex.quote(c['url'])} {_sh(c['dir'])} {c['commit']}")
    checkout = {
        (f["rebuild_path"], f["hash"]): f
        for s in plan["steps"]
        for f in s["inputs"]
        if f["source"] == "checkout"
    }
    if checkout:
        out += ["", "# inputs that come with the clones"]
    for f in checkout.values():
        out.append(_need(f, "it should come with the git checkout"))
    if plan["fetch"]:
        out += ["", "# inputs no step produces: fetch each to its path before running"]
    for f in plan["fetch"]:
        moved = f" (recorded at {f['path']})" if f["rebuild_path"] != f["path"] else ""
        out.append(_need(f, f"fetch it{moved}"))
    checked: set[tuple[str, str]] = set()
    for step in plan["steps"]:
        out += _step_lines(step, plan["steps"], checked)
    out += ["", "# the target"]
    out += [f"rebuilt {_sh(f['rebuild_path'])} {f['hash']}" for f in target["verify"]]
    out.append('[ "$mismatches" -eq 0 ] || exit 1')
    return "\n".join(out) + "\n"

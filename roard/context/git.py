"""Which git work trees a run's inputs lie in, and what state each tree was in.

The daemon runs as root and probes users' repositories, so git is run with care:

* as the owner of the repository's `.git` (when roard is root and someone else owns it):
  a repository's own config can name commands (core.fsmonitor, diff drivers, clean
  filters) and those must never run as root; as its owner they run with the rights that
  owner already has;
* with `safe.directory=*`, no system or global config (so root's config does not change
  what is reported), external diff and textconv off, fsmonitor off;
* with GIT_CEILING_DIRECTORIES, so it reads only the tree found, never an enclosing one;
* with GIT_OPTIONAL_LOCKS=0, so a probe never takes index.lock from under the user's git;
* with a timeout, killing git's whole process group when it runs out.

diff_hash is "blake3:" + the BLAKE3 of, in order: the output of `git diff HEAD --binary
--no-ext-diff --no-textconv` (against the empty tree while there are no commits), then for
each untracked file in sorted order: b"\\0untracked\\0", its path, b"\\0", and either its
content's BLAKE3 (a regular file up to UNTRACKED_FILE_LIMIT bytes that the tree's owner
may read), the target of a symlink, or its size and mtime (anything else, or a larger
file). It is "" for a clean tree.
"""

from __future__ import annotations

import contextlib
import os
import signal
import stat
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import blake3
import structlog

from roard.artifacts.filesystems import relative_path
from roard.context import Directories, Plain
from roard.errors import RoardError

log = structlog.get_logger("roard.context.git")

MODIFIED_LIMIT = 1000  # paths listed in GitTree.modified
UNTRACKED_FILE_LIMIT = 16 << 20  # larger untracked files add their size, not content
UNTRACKED_TOTAL_LIMIT = 256 << 20  # bytes of untracked content hashed per tree

_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LC_ALL": "C",
    "HOME": "/nonexistent",
    "GIT_OPTIONAL_LOCKS": "0",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": "/dev/null",
    "GIT_TERMINAL_PROMPT": "0",
}
# Overrides of what a repository's config may set (command-line -c wins over it).
_SAFE_CONFIG = (
    "safe.directory=*",
    "core.fsmonitor=false",
    "core.untrackedCache=false",
    "color.ui=false",
)

_STATUS = ("status", "--porcelain=v2", "--branch", "-z", "--untracked-files=all")
_REMOTES = ("config", "-z", "--get-regexp", r"^remote\..*\.url$")


@dataclass(frozen=True)
class GitTree(Plain):
    """A git work tree that some of a run's inputs lie in, as found at probe time."""

    root: str  # work tree root, absolute
    remote: str  # URL of "origin" (else the first remote), credentials removed; "" if none
    branch: str  # "" when HEAD is detached
    commit: str  # full hex HEAD; "" while the repository has no commits
    dirty: bool  # anything modified, staged, deleted or untracked (not ignored)
    diff_hash: str  # "blake3:<hex>" of the changes (module docstring); "" when clean
    modified: tuple[str, ...]  # changed and untracked paths, relative to root, sorted
    modified_truncated: bool  # more than MODIFIED_LIMIT paths changed
    files_read: tuple[str, ...]  # the run's paths in this tree, relative to root, sorted


class _GitFailed(RoardError):
    """git exited non-zero or ran out of time (internal: the tree is skipped)."""


@dataclass(frozen=True)
class _Owner:
    uid: int
    gid: int


def _owner(dot_git: str) -> _Owner | None:
    """Who git must run as: None to stay as we are (we are not root, or root owns it)."""
    if os.geteuid() != 0:
        return None
    st = os.lstat(dot_git)
    return None if st.st_uid == 0 else _Owner(st.st_uid, st.st_gid)


def _start(root: str, owner: _Owner | None, args: Sequence[str]) -> subprocess.Popen[bytes]:
    """git running `args` in the tree at `root`; raises _GitFailed when it cannot start."""
    cmd = ["git", "-C", root]
    for item in _SAFE_CONFIG:
        cmd += ["-c", item]
    cmd += args
    kwargs: dict[str, object] = {}
    if owner is not None:
        kwargs = {"user": owner.uid, "group": owner.gid, "extra_groups": []}
    try:
        proc: subprocess.Popen[bytes] = subprocess.Popen(  # type: ignore[call-overload]
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            # The ceiling: a broken repository must not make git report the one around it.
            env=_ENV | {"GIT_CEILING_DIRECTORIES": os.path.dirname(root)},
            cwd="/",
            start_new_session=True,  # its own group, so a timeout kills hooks' children too
            **kwargs,
        )
    except OSError as e:
        raise _GitFailed(f"cannot run git: {e}") from None
    return proc


def _output(
    proc: subprocess.Popen[bytes], what: str, timeout: float, ok: Sequence[int] = (0,)
) -> bytes:
    """The stdout of git `proc` (started for command `what`); raises _GitFailed. Past
    `timeout` its whole process group is killed."""
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        # A child that left the group may still hold the pipes: do not wait for it.
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.communicate(timeout=1.0)
        raise _GitFailed(f"git {what} timed out after {timeout}s") from None
    if proc.returncode not in ok:
        message = err.decode(errors="replace").strip().splitlines()
        raise _GitFailed(f"git {what} exited {proc.returncode}: {' '.join(message[:3])}")
    return out


def _git(
    root: str, owner: _Owner | None, args: Sequence[str], timeout: float, ok: Sequence[int] = (0,)
) -> bytes:
    """git's stdout; raises _GitFailed."""
    return _output(_start(root, owner, args), args[0], timeout, ok)


def strip_credentials(url: str) -> str:
    """`url` without the user name and password a URL with a scheme may carry
    (https://user:token@host/x -> https://host/x); scp-like "git@host:x" is kept."""
    if "://" not in url:
        return url
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if "@" not in parts.netloc:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


def _tree_root(directory: str, cache: dict[str, str | None]) -> str | None:
    """The nearest directory at or above `directory` holding a `.git` (a directory, or the
    file a linked worktree or submodule has), memoised for every directory walked."""
    walked = []
    current = directory
    found: str | None = None
    while True:
        if current in cache:
            found = cache[current]
            break
        walked.append(current)
        if os.path.lexists(os.path.join(current, ".git")):
            found = current
            break
        parent = os.path.dirname(current)
        if parent == current:
            break
        current = parent
    for d in walked:
        cache[d] = found
    return found


def _group_by_tree(directories: Directories) -> dict[str, set[str]]:
    """Work tree root -> the paths under it, relative; paths in a .git are left out."""
    cache: dict[str, str | None] = {}
    trees: dict[str, set[str]] = {}
    for directory, files in directories.items():
        if ".git" in directory.split("/"):  # git's own files are not the tree's content
            continue
        root = _tree_root(directory, cache)
        if root is None or (below := relative_path(directory, root)) is None:
            continue
        prefix = f"{below}/" if below else ""
        trees.setdefault(root, set()).update(
            prefix + name for name in (f.rpartition("/")[2] for f in files) if name != ".git"
        )
    return trees


@dataclass(frozen=True)
class _Status:
    commit: str
    branch: str
    changed: list[str]  # tracked paths changed, staged or not (both names of a rename)
    untracked: list[str]


def _parse_status(out: bytes) -> _Status:
    """`git status --porcelain=v2 --branch -z` output."""
    commit = branch = ""
    changed: list[str] = []
    untracked: list[str] = []
    records = iter(out.split(b"\0"))
    for raw in records:
        record = raw.decode("utf-8", errors="surrogateescape")
        if record.startswith("# branch.oid "):
            oid = record.split(" ", 2)[2]
            commit = "" if oid == "(initial)" else oid
        elif record.startswith("# branch.head "):
            head = record.split(" ", 2)[2]
            branch = "" if head == "(detached)" else head
        elif record.startswith("1 "):
            changed.append(record.split(" ", 8)[8])
        elif record.startswith("2 "):
            changed.append(record.split(" ", 9)[9])
            changed.append(next(records, b"").decode("utf-8", errors="surrogateescape"))
        elif record.startswith("u "):
            changed.append(record.split(" ", 10)[10])
        elif record.startswith("? "):
            untracked.append(record[2:])
    return _Status(commit, branch, changed, untracked)


def _remote(root: str, proc: subprocess.Popen[bytes], timeout: float) -> str:
    """origin's URL, else the first remote's, credentials removed; "" if none (`proc`: git
    started with _REMOTES)."""
    try:
        out = _output(proc, "config", timeout, (0, 1))
    except _GitFailed as e:
        log.info("git remote unknown", root=root, error=str(e))
        return ""
    urls: dict[str, str] = {}
    for entry in out.decode(errors="replace").split("\0"):
        key, _, url = entry.partition("\n")
        if key.startswith("remote.") and key.endswith(".url"):
            urls.setdefault(key[len("remote.") : -len(".url")], url)
    if not urls:
        return ""
    return strip_credentials(urls.get("origin") or next(iter(urls.values())))


def _hash_untracked(
    hasher: blake3.blake3, root: str, rel: str, owner: _Owner | None, budget: list[int]
) -> None:
    """Add one untracked file to the diff hash (see the module docstring)."""
    path = os.path.join(root, rel)
    hasher.update(b"\0untracked\0" + os.fsencode(rel) + b"\0")
    try:
        st = os.lstat(path)
        if stat.S_ISLNK(st.st_mode):
            hasher.update(b"link\0" + os.fsencode(os.readlink(path)))
            return
        # Content only of a regular file its owner could read: root must not turn a
        # hard link to a file the user may not read into a hash of that file.
        readable = owner is None or st.st_uid == owner.uid or st.st_mode & stat.S_IROTH
        if (
            stat.S_ISREG(st.st_mode)
            and readable
            and st.st_size <= min(UNTRACKED_FILE_LIMIT, budget[0])
        ):
            # O_NONBLOCK|O_NOFOLLOW: never hang on a FIFO nor follow a swapped-in link.
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
            with os.fdopen(fd, "rb") as f:
                if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                    raise OSError("not a regular file")
                content = blake3.blake3()
                while chunk := f.read(1 << 20):
                    content.update(chunk)
                    budget[0] -= len(chunk)
            hasher.update(b"content\0" + content.digest())
            return
        hasher.update(f"size\0{st.st_size}\0{st.st_mtime_ns}".encode())
    except OSError:
        hasher.update(b"unreadable")


def _diff_hash(root: str, owner: _Owner | None, status: _Status, timeout: float) -> str:
    base = status.commit
    if not base:  # no commits yet: diff against the empty tree (of this repo's hash kind)
        base = (
            _git(root, owner, ["hash-object", "-t", "tree", "/dev/null"], timeout).decode().strip()
        )
    hasher = blake3.blake3()
    hasher.update(
        _git(
            root,
            owner,
            ["diff", base, "--binary", "--no-ext-diff", "--no-textconv", "--no-color"],
            timeout,
        )
    )
    budget = [UNTRACKED_TOTAL_LIMIT]
    for rel in sorted(status.untracked):
        _hash_untracked(hasher, root, rel, owner, budget)
    return "blake3:" + hasher.hexdigest()


def _probe(root: str, files: set[str], timeout: float) -> GitTree:
    """One tree's state; raises _GitFailed or OSError when it cannot be read."""
    owner = _owner(os.path.join(root, ".git"))
    # Both at once: each git is a few ms, most of a run's context.
    status_proc = _start(root, owner, _STATUS)
    try:
        remotes = _start(root, owner, _REMOTES)
    except _GitFailed:
        status_proc.kill()
        status_proc.communicate()
        raise
    try:
        status = _parse_status(_output(status_proc, "status", timeout))
    finally:
        remote = _remote(root, remotes, timeout)
    modified = sorted(set(status.changed) | set(status.untracked))
    dirty = bool(modified)
    return GitTree(
        root=root,
        remote=remote,
        branch=status.branch,
        commit=status.commit,
        dirty=dirty,
        diff_hash=_diff_hash(root, owner, status, timeout) if dirty else "",
        modified=tuple(modified[:MODIFIED_LIMIT]),
        modified_truncated=len(modified) > MODIFIED_LIMIT,
        files_read=tuple(sorted(files)),
    )


def work_trees(directories: Directories, timeout: float = 10.0) -> list[GitTree]:
    """The git work trees that any of the paths a run read (by_directory) lie in, sorted by
    root. Each path counts for its nearest enclosing tree (a submodule or linked worktree
    is a tree of its own); paths inside a `.git` and outside any tree are ignored. `timeout`
    bounds each git command; a tree git cannot read is logged and left out."""
    found = []
    for root, files in sorted(_group_by_tree(directories).items()):
        try:
            found.append(_probe(root, files, timeout))
        except (_GitFailed, OSError) as e:
            log.warning("git work tree skipped", root=root, error=str(e))
    return found

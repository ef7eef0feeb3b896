"""Dataset composites: many files of one directory, used by a run in one role, as one
artifact with a tree hash.

A run that reads 2,000 shards, the parts of a partitioned parquet table or a checkpoint
directory uses one thing, not 2,000. At finalization the daemon groups such files into a
`Dataset` per directory and role (input or output), keeping the component list; each
component keeps its own FileAccess record as well. Pure functions over plain values: the
caller decides which files take part (hashed or not, existing artifacts of one role).

Grouping rule. Let F be the run's files of one role, and for a directory D let direct(D)
be the files of F directly in D, subs(D) its subdirectories holding files of F, and n(D)
the number of files of F anywhere under D. D is *data-like* when
  (a) subs(D) is empty: a flat directory of files (shards, a checkpoint's parts); or
  (b) D is not a stop, no directory in subs(D) is a stop, every one is data-like, and
      - either direct(D) is empty and subs(D) has one member (a plain step up: the same
        files), or subs(D) has two members or more, all at or above `min_files` files
        (sibling shard directories, splits) or all below it (partitions such as
        `year=2024/month=01/`, a class per directory), with fewer files directly in D
        than under subs(D) (side files such as `_SUCCESS` or `dataset_dict.json`).
A dataset is a data-like D with n(D) >= min_files whose parent is not data-like (the
highest one), over all of its files. Its path is then the deepest directory holding all of
them, moved up past Hive-style partition directories (`key=value`) to the partitioned
table's root. A directory that is not data-like but holds at least `min_files` files
directly is a dataset of those files alone (a checkpoint directory with a `logs/` beside
its shards); its subdirectories are then considered on their own.

Stops are directories a dataset never spans from below: "/", the run's working
directories, the git work trees of its inputs and the user's home. So a job reading a
config file and a shard directory in its repository (or home) yields the shard
directory, never the repository; a config next to a single shard subdirectory is left
out of it (one subdirectory with side files is not a layout, see (b)), and so is a small
directory beside a big one (mixed sizes).

Tree hash: BLAKE3 over the lines `relpath + "\\0" + file_hash + "\\n"`, one per component,
UTF-8 encoded (undecodable names as the bytes they were, i.e. surrogateescape), sorted
bytewise and concatenated; relpath is relative to the dataset's directory with "/"
separators, file_hash the component's "blake3:<hex>". Written "blake3:<hex>" like a file
hash. If any component has no hash, the dataset has none either (never a partial one):
`Dataset.unhashed` says why.
"""

from __future__ import annotations

import posixpath
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import blake3

__all__ = ["DEFAULT_MIN_FILES", "Dataset", "Member", "group", "tree_hash"]

DEFAULT_MIN_FILES = 8


class Member(NamedTuple):
    """A file the run used in the role being grouped; `hash` is empty when it could not be
    hashed, and `unhashed` then says why. (A named tuple: a run's thousands of files are
    each made twice at its end.)"""

    path: str  # absolute, normalized
    hash: str
    size: int
    unhashed: str = ""


@dataclass(frozen=True)
class Dataset:
    """Files of one directory taken as one artifact; `files` hold paths relative to it."""

    path: str
    hash: str  # the tree hash; empty when a component has none
    size: int  # the components' sizes summed
    files: tuple[Member, ...]
    unhashed: str = ""


def tree_hash(files: Iterable[tuple[str, str]]) -> str:
    """The tree hash of (relative path, file hash) pairs (see the module docstring)."""
    lines = sorted(
        rel.encode("utf-8", "surrogateescape") + b"\0" + digest.encode() + b"\n"
        for rel, digest in files
    )
    hasher = blake3.blake3()
    for line in lines:
        hasher.update(line)
    return f"blake3:{hasher.hexdigest()}"


@dataclass
class _Dir:
    """A directory of the tree the run's files span."""

    path: str
    direct: list[Member] = field(default_factory=list)
    subs: dict[str, _Dir] = field(default_factory=dict)
    count: int = 0  # files anywhere below
    data_like: bool = False


def group(
    members: Sequence[Member], min_files: int = DEFAULT_MIN_FILES, stops: Collection[str] = ()
) -> list[Dataset]:
    """The datasets among the files one run used in one role, by path (see the module
    docstring for the rule); files in no dataset are left out."""
    root = _tree(members)
    stop = {posixpath.normpath(s) for s in stops} | {"/"}
    _mark(root, min_files, stop)
    found: list[Dataset] = []
    _collect(root, min_files, found)
    return sorted(found, key=lambda d: d.path)


def _tree(members: Sequence[Member]) -> _Dir:
    by_dir: dict[str, list[Member]] = {}  # a run's files lie in few directories
    for member in members:
        by_dir.setdefault(member.path.rpartition("/")[0], []).append(member)
    root = _Dir("/")
    for directory, direct in by_dir.items():
        node = root
        node.count += len(direct)
        for part in directory.split("/"):
            if not part:
                continue
            child = node.subs.get(part)
            if child is None:
                child = node.subs[part] = _Dir(posixpath.join(node.path, part))
            node = child
            node.count += len(direct)
        node.direct += direct
    return root


def _mark(node: _Dir, min_files: int, stops: set[str]) -> None:
    """Sets `data_like` bottom-up (rule (a)/(b) of the module docstring)."""
    for sub in node.subs.values():
        _mark(sub, min_files, stops)
    subs = list(node.subs.values())
    if not subs:
        node.data_like = True
        return
    if node.path in stops or any(s.path in stops or not s.data_like for s in subs):
        return
    if len(subs) == 1:
        node.data_like = not node.direct
        return
    big = [s.count >= min_files for s in subs]
    below = sum(s.count for s in subs)
    node.data_like = (all(big) or not any(big)) and len(node.direct) < below


def _collect(node: _Dir, min_files: int, found: list[Dataset]) -> None:
    """Adds the highest qualifying directories at or below `node`."""
    if node.data_like and node.count >= min_files:
        files: list[Member] = []
        _files(node, files)
        found.append(_dataset(node.path, files))
        return
    if len(node.direct) >= min_files:
        found.append(_dataset(node.path, node.direct))
    for sub in node.subs.values():
        _collect(sub, min_files, found)


def _dataset(floor: str, files: list[Member]) -> Dataset:
    """The dataset of `files`, all under the directory `floor`."""
    top = posixpath.commonpath({m.path.rpartition("/")[0] or "/" for m in files})
    # A partition directory is part of its table: root the dataset at the table.
    while top != floor and "=" in posixpath.basename(top):
        top = posixpath.dirname(top)
    cut = len(top.rstrip("/")) + 1  # top is above every file: no relpath (5 us a file)
    rel = sorted(
        (Member(m.path[cut:], m.hash, m.size, m.unhashed) for m in files),
        key=lambda m: m.path.encode("utf-8", "surrogateescape"),
    )
    size = sum(m.size for m in rel)
    missing = [m for m in rel if not m.hash]
    if missing:
        first = missing[0]
        reason = f"{len(missing)} of {len(rel)} files unhashed ({first.path}: {first.unhashed})"
        return Dataset(top, "", size, tuple(rel), reason)
    return Dataset(top, tree_hash((m.path, m.hash) for m in rel), size, tuple(rel))


def _files(node: _Dir, into: list[Member]) -> None:
    """Adds every file at or below `node` to `into`."""
    into += node.direct
    for sub in node.subs.values():
        _files(sub, into)

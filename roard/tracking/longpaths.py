"""Complete a path the in-kernel walk cut short (more components than ROARD_PATH_DEPTH):
the kernel sends the components it reached, leaf side first; the directory it stopped at
is found among the directories the process still holds (its cwd, its open directory
descriptors), read from /proc only: a stat(2) could block on a hung mount."""

from __future__ import annotations

import os


def complete(pid: int, partial: str) -> str | None:
    """The full path whose last components are `partial` ("/a/b/leaf", as cut by the
    kernel), through a directory `pid` holds that ends where `partial` starts from the
    top; the candidate overlapping `partial` the most wins. None when no held directory
    fits (the process is gone, or holds nothing on the way)."""
    parts = partial.strip("/").split("/")
    best: tuple[int, str] | None = None
    for held in _held_directories(pid):
        # `held` is an ancestor of the file if it ends with the first j components of
        # `partial` (j >= 1: with none in common, any directory would fit).
        for j in range(len(parts) - 1, 0, -1):
            if held.endswith("/" + "/".join(parts[:j])) and (best is None or j > best[0]):
                best = (j, held + "/" + "/".join(parts[j:]))
                break
    return best[1] if best else None


def _held_directories(pid: int) -> list[str]:
    """The cwd and the targets of the open descriptors of `pid` (files too: they never
    end with a directory name of `partial`... unless named like one, which the overlap
    check then treats as an ancestor: rare enough, and the hash records what was read)."""
    found = []
    for link in [f"/proc/{pid}/cwd", *_fd_links(pid)]:
        try:
            target = os.readlink(link)
        except OSError:  # gone, or a path longer than PATH_MAX
            continue
        if target.startswith("/") and not target.endswith(" (deleted)"):
            found.append(target)
    return found


def _fd_links(pid: int) -> list[str]:
    try:
        return [f"/proc/{pid}/fd/{fd}" for fd in os.listdir(f"/proc/{pid}/fd")]
    except OSError:
        return []

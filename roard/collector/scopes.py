"""Who may see which runs: projects, public runs and the per-user scoping, in one place.

A collector's credentials prove a `Principal`: a host (its records create runs in its
project) or a person (queries only, in one or more projects). A query runs for a `Viewer`,
the principal's projects plus the local user's uid that the daemon relays; `Viewer.sql`
and `Viewer.sees` are the only statements of the rule.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# The project of hosts named without one (2-column tokens-file lines, certificate hosts
# not listed, unauthenticated collectors) and of every run stored before projects existed.
DEFAULT_PROJECT = "default"


@dataclass(frozen=True)
class Principal:
    """What a credential proves: a host (`user` False; exactly one project, its runs') or a
    person (`user` True; may query the runs of `projects`, never stream records).
    `projects` None means every project (the embedded registry's own web token)."""

    name: str
    projects: frozenset[str] | None
    user: bool = False

    @property
    def project(self) -> str:
        """The project a host's records create runs in."""
        return next(iter(sorted(self.projects or {DEFAULT_PROJECT})))


@dataclass(frozen=True)
class Viewer:
    """Whose runs a query may show. `uid` None (or 0, root): every user's; `projects`
    None: every project's. Public runs are visible to every viewer."""

    uid: int | None = None
    projects: frozenset[str] | None = None

    @property
    def everything(self) -> bool:
        """True when nothing is hidden from this viewer."""
        return not self.uid and self.projects is None

    def sql(self, alias: str = "r") -> tuple[str, tuple[Any, ...]]:
        """SQL condition on the runs table `alias` (never NULL, so it may be negated)
        that holds for the runs this viewer may see, and its parameters."""
        if self.everything:
            return "1 = 1", ()
        conds: list[str] = []
        params: list[Any] = []
        if self.uid:
            # An untagged run (RunTagged not yet arrived) has no owner yet: root only.
            conds.append(f"{alias}.tagged_seq IS NOT NULL AND COALESCE({alias}.uid, -1) = ?")
            params.append(self.uid)
        if self.projects is not None:
            if self.projects:
                marks = ", ".join("?" * len(self.projects))
                conds.append(f"{alias}.project IN ({marks})")
                params += sorted(self.projects)
            else:
                conds.append("1 = 0")
        public = f"{alias}.tagged_seq IS NOT NULL AND {alias}.public = 1"
        return f"(({' AND '.join(conds)}) OR ({public}))", tuple(params)

    def sees(self, row: Mapping[str, Any]) -> bool:
        """The same rule as `sql`, for a runs row already fetched."""
        if self.everything:
            return True
        tagged = row["tagged_seq"] is not None
        if tagged and row["public"]:
            return True
        if self.uid and not (tagged and row["uid"] == self.uid):
            return False
        return self.projects is None or row["project"] in self.projects

    def outside(self, project: str) -> bool:
        """Whether `project` is one this viewer cannot see into (public runs aside)."""
        return self.projects is not None and project not in self.projects


EVERYONE = Viewer()


def viewer_of(principal: Principal | None, uid: int) -> Viewer:
    """The viewer of a query: a person's token sees its projects (every user's runs in
    them); a host relays its local caller's `uid` (0: root) within the host's project;
    without authentication (a loopback collector), `uid` alone scopes."""
    if principal is None:
        return Viewer(uid=uid or None)
    if principal.user:
        return Viewer(projects=principal.projects)
    return Viewer(uid=uid or None, projects=principal.projects)

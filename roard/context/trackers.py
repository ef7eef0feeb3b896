"""Links from a run to the experiment-tracker runs it belongs to (W&B, MLflow, Neptune).

Found without any change to the user's code: in the environment a process exec'd with
(the variables the trackers document), in the paths of files the run wrote in a tracker's
local layout, or given by the user (`roarctl tag --link TRACKER=RUN_ID`). Only ids, project
names and URLs are ever taken: never a credential (WANDB_API_KEY, NEPTUNE_API_TOKEN...).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from urllib.parse import urlsplit

from roard.errors import UsageError

WANDB = "wandb"
MLFLOW = "mlflow"
NEPTUNE = "neptune"
TRACKERS = (MLFLOW, NEPTUNE, WANDB)

# Where a link was found.
ENV = "env"
FILES = "files"
USER = "user"

# Longest id or project name kept (trackers' own ids are far shorter; anything longer is not
# one of theirs), and longest URL.
MAX_VALUE = 256
MAX_URL = 1024
MAX_USER_LINKS = 32  # --link values one tagging may give

_WANDB_CLOUD = "https://wandb.ai"
_NEPTUNE_APP = "https://app.neptune.ai"
# wandb/run-20240102_030405-abcd1234 and wandb/offline-run-...: the id follows the fixed-width
# time stamp (a user-chosen id may itself contain "-").
_WANDB_DIR = re.compile(r"(?:offline-)?run-\d{8}_\d{6}-(?P<id>[^/]+)")
# MLflow's file store: mlruns/<experiment id>/<run id>/<one of these>.
_MLFLOW_RUN = re.compile(r"[0-9a-f]{32}")
_MLFLOW_RUN_PARTS = frozenset({"meta.yaml", "metrics", "params", "tags", "artifacts", "inputs"})
# neptune-client's .neptune/{async,offline}/run__<uuid>[__<pid>__<key>] (older: no pid/key).
_NEPTUNE_DIR = re.compile(
    r"run__(?P<id>[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})(?:__\d+__\w+)?"
)
_NEPTUNE_MODES = frozenset({"async", "offline", "sync"})
# A Neptune run's own id (sys/id), e.g. "CLS-123": the app's URL names runs by it.
_NEPTUNE_SYS_ID = re.compile(r"[A-Z0-9]+-\d+")
_PLAIN = re.compile(r"[^\s\x00-\x1f\x7f]+")  # no whitespace or control characters


@dataclass(frozen=True)
class TrackerLink:
    """One tracker run a roard run belongs to; empty strings for what is not known."""

    tracker: str  # "wandb", "mlflow" or "neptune"
    run_id: str  # the tracker's run id
    project: str = ""  # W&B: ENTITY/PROJECT (or PROJECT); MLflow: experiment; Neptune: WS/PROJ
    url: str = ""
    source: str = ""  # where it was first found: "env", "files" or "user"

    @property
    def key(self) -> tuple[str, str]:
        """What tells links apart: one link per (tracker, run id) per roard run."""
        return self.tracker, self.run_id

    def completed(self, other: TrackerLink) -> TrackerLink:
        """This link with the fields it lacks taken from `other` (a later sighting of the
        same tracker run); the first sighting's source stays."""
        return replace(self, project=self.project or other.project, url=self.url or other.url)


class Links:
    """A run's links, one per (tracker, run id): later, richer sightings complete earlier
    ones."""

    def __init__(self) -> None:
        self._by_key: dict[tuple[str, str], TrackerLink] = {}

    def add(self, links: Iterable[TrackerLink]) -> list[TrackerLink]:
        """Notes `links`; returns those that are new or now know more (to be sent)."""
        changed: dict[tuple[str, str], TrackerLink] = {}
        for link in links:
            known = self._by_key.get(link.key)
            merged = link if known is None else known.completed(link)
            if merged != known:
                self._by_key[link.key] = changed[link.key] = merged
        return list(changed.values())

    def all(self) -> list[TrackerLink]:
        """Every link, sorted by tracker and run id."""
        return [self._by_key[k] for k in sorted(self._by_key)]


def from_environment(env: Mapping[str, str]) -> list[TrackerLink]:
    """The tracker runs an environment names (the trackers' documented variables)."""
    found = [_wandb_env(env), _mlflow_env(env), _neptune_env(env)]
    return [link for link in found if link is not None]


def _wandb_env(env: Mapping[str, str]) -> TrackerLink | None:
    run_id = _value(env.get("WANDB_RUN_ID", ""))
    if not run_id:
        return None
    entity = _value(env.get("WANDB_ENTITY", ""))
    project = _value(env.get("WANDB_PROJECT", ""))
    return _wandb(run_id, entity, project, env.get("WANDB_BASE_URL", ""), ENV)


def _wandb(run_id: str, entity: str, project: str, base_url: str, source: str) -> TrackerLink:
    """A W&B link; its URL only when both entity and project are known."""
    url = ""
    if entity and project:
        url = f"{_wandb_app(base_url)}/{entity}/{project}/runs/{run_id}"
    named = f"{entity}/{project}" if entity and project else project
    return TrackerLink(WANDB, run_id, named, _url(url), source)


def _wandb_app(base_url: str) -> str:
    """The W&B app's address: WANDB_BASE_URL's scheme and host (the API's address; on W&B's
    cloud the app lives at wandb.ai, not api.wandb.ai)."""
    parts = urlsplit(base_url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return _WANDB_CLOUD
    if parts.hostname == "api.wandb.ai":
        return _WANDB_CLOUD
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname}{port}"


def _mlflow_env(env: Mapping[str, str]) -> TrackerLink | None:
    run_id = _value(env.get("MLFLOW_RUN_ID", ""))
    if not run_id:
        return None
    experiment_id = _value(env.get("MLFLOW_EXPERIMENT_ID", ""))
    project = experiment_id or _value(env.get("MLFLOW_EXPERIMENT_NAME", ""))
    url = ""
    uri = env.get("MLFLOW_TRACKING_URI", "").strip()
    parts = urlsplit(uri)
    # The UI's address is only known for a tracking server (not a file or database store),
    # and its run page needs the experiment's id (a name will not do).
    if parts.scheme in ("http", "https") and parts.hostname and experiment_id:
        url = f"{uri.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"
        # A password in the URI must not end up in a link.
        if parts.password is not None or parts.username is not None:
            url = ""
    return TrackerLink(MLFLOW, run_id, project, _url(url), ENV)


def _neptune_env(env: Mapping[str, str]) -> TrackerLink | None:
    run_id = _value(env.get("NEPTUNE_CUSTOM_RUN_ID", ""))
    if not run_id:
        return None
    # A custom run id is not the run's sys/id, which the app's URL needs: no URL.
    return TrackerLink(NEPTUNE, run_id, _value(env.get("NEPTUNE_PROJECT", "")), "", ENV)


def from_path(path: str) -> TrackerLink | None:
    """The tracker run whose local files `path` (absolute) lies in, if any: W&B's
    wandb/[offline-]run-<time>-<id>/, MLflow's mlruns/<experiment>/<run>/ (file store),
    neptune-client's .neptune/<mode>/run__<uuid>.../."""
    parts = path.split("/")
    for i, name in enumerate(parts[:-1]):
        below = parts[i + 1]
        if name == "wandb":
            match = _WANDB_DIR.fullmatch(below)
            if match and _value(match["id"]):
                return TrackerLink(WANDB, match["id"], source=FILES)
        elif name == "mlruns" and i + 3 < len(parts):
            experiment, run, inside = parts[i + 1 : i + 4]
            if experiment.isdigit() and _MLFLOW_RUN.fullmatch(run) and inside in _MLFLOW_RUN_PARTS:
                return TrackerLink(MLFLOW, run, experiment, source=FILES)
        elif name == ".neptune" and below in _NEPTUNE_MODES and i + 2 < len(parts):
            match = _NEPTUNE_DIR.fullmatch(parts[i + 2])
            if match:
                return TrackerLink(NEPTUNE, match["id"], source=FILES)
    return None


def from_paths(paths: Iterable[str]) -> list[TrackerLink]:
    """The tracker runs whose local files lie among `paths`, each once."""
    found = Links()
    found.add(link for link in map(from_path, paths) if link is not None)
    return found.all()


def parse_link(text: str) -> TrackerLink:
    """A link the user gave (`--link`): TRACKER=RUN_ID, or with where the run lives:
    wandb=[ENTITY/]PROJECT/RUN_ID, mlflow=EXPERIMENT_ID/RUN_ID,
    neptune=WORKSPACE/PROJECT/RUN_ID. Raises UsageError saying what is wrong."""
    tracker, sep, value = text.partition("=")
    tracker = tracker.strip().lower()
    forms = (
        "wandb=[[ENTITY/]PROJECT/]RUN_ID, mlflow=[EXPERIMENT_ID/]RUN_ID,"
        " neptune=[WORKSPACE/PROJECT/]RUN_ID"
    )
    if not sep:
        raise UsageError(f"--link {text!r}: expected TRACKER=RUN_ID, e.g. {forms}")
    if tracker not in TRACKERS:
        raise UsageError(
            f"--link {text!r}: unknown tracker {tracker!r}; use one of {', '.join(TRACKERS)}"
        )
    fields = value.split("/")
    most = {WANDB: 3, MLFLOW: 2, NEPTUNE: 3}[tracker]
    if len(fields) > most or (tracker == NEPTUNE and len(fields) == 2):
        raise UsageError(f"--link {text!r}: too many '/'-separated parts; the forms are {forms}")
    for field in fields:
        if not field:
            raise UsageError(f"--link {text!r}: an empty run id or project; the forms are {forms}")
        if len(field) > MAX_VALUE:
            raise UsageError(f"--link {text!r}: a part longer than {MAX_VALUE} characters")
        if not _PLAIN.fullmatch(field):
            raise UsageError(f"--link {text!r}: spaces or control characters are not allowed")
    *where, run_id = fields
    if tracker == WANDB:
        entity, project = (where[0], where[1]) if len(where) == 2 else ("", "".join(where))
        return _wandb(run_id, entity, project, "", USER)
    project = "/".join(where)
    url = ""
    if tracker == NEPTUNE and project and _NEPTUNE_SYS_ID.fullmatch(run_id):
        url = f"{_NEPTUNE_APP}/{project}/e/{run_id}"
    return TrackerLink(tracker, run_id, project, url, USER)


def parse_links(texts: Iterable[str]) -> list[TrackerLink]:
    """The links of `roarctl tag --link ...` (see parse_link), each tracker run once."""
    texts = list(texts)
    if len(texts) > MAX_USER_LINKS:
        raise UsageError(f"{len(texts)} --link values: give at most {MAX_USER_LINKS}")
    links = Links()
    links.add(parse_link(text) for text in texts)
    return links.all()


def parse_query(text: str) -> tuple[str | None, str]:
    """(tracker or None for any, tracker run id) for `roarctl runs --link`: RUN_ID or
    TRACKER=RUN_ID; a value with "/" (as --link takes it) means its last part."""
    tracker, sep, value = text.partition("=")
    if sep and tracker.strip().lower() in TRACKERS:
        return tracker.strip().lower(), value.rsplit("/", 1)[-1]
    return None, text.rsplit("/", 1)[-1]


def _value(text: str) -> str:
    """An id or project name as found, or "" when it cannot be one (too long, spaces)."""
    text = text.strip()
    return text if len(text) <= MAX_VALUE and _PLAIN.fullmatch(text) else ""


def _url(url: str) -> str:
    return url if len(url) <= MAX_URL and _PLAIN.fullmatch(url) else ""

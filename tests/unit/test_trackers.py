"""Tests for roard.context.trackers: tracker runs found in environments, paths and --link."""

from __future__ import annotations

import pytest

from roard.context.trackers import (
    MAX_USER_LINKS,
    MAX_VALUE,
    Links,
    TrackerLink,
    from_environment,
    from_path,
    from_paths,
    parse_link,
    parse_links,
    parse_query,
)
from roard.errors import UsageError

MLFLOW_RUN = "1b7fc29a6fdd4d0391f370289d3fb565"
NEPTUNE_UUID = "9f3e1234-1234-4234-9234-123456789abc"


def test_wandb_environment_gives_the_run_page_and_never_the_key() -> None:
    env = {
        "WANDB_RUN_ID": "3kx9q2ab",
        "WANDB_PROJECT": "resnet",
        "WANDB_ENTITY": "vision-team",
        "WANDB_API_KEY": "0123456789abcdef0123456789abcdef01234567",
    }
    [link] = from_environment(env)
    assert link == TrackerLink(
        "wandb",
        "3kx9q2ab",
        "vision-team/resnet",
        "https://wandb.ai/vision-team/resnet/runs/3kx9q2ab",
        "env",
    )
    assert env["WANDB_API_KEY"] not in repr(link)


def test_wandb_without_entity_has_no_url() -> None:
    [link] = from_environment({"WANDB_RUN_ID": "abc", "WANDB_PROJECT": "resnet"})
    assert (link.project, link.url) == ("resnet", "")


@pytest.mark.parametrize(
    ("base_url", "app"),
    [
        ("https://api.wandb.ai", "https://wandb.ai"),
        ("https://wandb.corp.example:8443/", "https://wandb.corp.example:8443"),
        ("not a url", "https://wandb.ai"),
    ],
)
def test_wandb_base_url_names_the_app(base_url: str, app: str) -> None:
    env = {
        "WANDB_RUN_ID": "r1",
        "WANDB_PROJECT": "p",
        "WANDB_ENTITY": "e",
        "WANDB_BASE_URL": base_url,
    }
    assert from_environment(env)[0].url == f"{app}/e/p/runs/r1"


def test_no_tracker_variables_no_links() -> None:
    assert (
        from_environment({"PATH": "/usr/bin", "WANDB_PROJECT": "p", "NEPTUNE_PROJECT": "a/b"}) == []
    )


@pytest.mark.parametrize(
    ("uri", "url"),
    [
        (
            "http://mlflow.internal:5000/",
            f"http://mlflow.internal:5000/#/experiments/7/runs/{MLFLOW_RUN}",
        ),
        ("https://mlflow.example", f"https://mlflow.example/#/experiments/7/runs/{MLFLOW_RUN}"),
        ("file:///srv/mlruns", ""),
        ("sqlite:///mlflow.db", ""),
        ("https://user:hunter2@mlflow.example", ""),  # never a password in a link
        ("", ""),
    ],
)
def test_mlflow_url_only_for_a_tracking_server(uri: str, url: str) -> None:
    env = {"MLFLOW_RUN_ID": MLFLOW_RUN, "MLFLOW_EXPERIMENT_ID": "7", "MLFLOW_TRACKING_URI": uri}
    [link] = from_environment(env)
    assert (link.tracker, link.run_id, link.project, link.url) == ("mlflow", MLFLOW_RUN, "7", url)


def test_mlflow_experiment_name_when_no_id() -> None:
    env = {
        "MLFLOW_RUN_ID": MLFLOW_RUN,
        "MLFLOW_EXPERIMENT_NAME": "churn",
        "MLFLOW_TRACKING_URI": "http://mlflow:5000",
    }
    [link] = from_environment(env)
    assert (link.project, link.url) == ("churn", "")  # the UI's run page needs the id


def test_neptune_custom_run_id_and_project_never_the_token() -> None:
    env = {
        "NEPTUNE_CUSTOM_RUN_ID": "sweep-17",
        "NEPTUNE_PROJECT": "ml-team/classification",
        "NEPTUNE_API_TOKEN": "eyJhcGlfYWRkcmVzcyI6Imh0dHBzOi8vYXBwLm5lcHR1bmUuYWkifQ==",
    }
    assert from_environment(env) == [
        TrackerLink("neptune", "sweep-17", "ml-team/classification", "", "env")
    ]


def test_over_long_or_spaced_ids_are_not_links() -> None:
    assert from_environment({"WANDB_RUN_ID": "x" * (MAX_VALUE + 1)}) == []
    assert from_environment({"MLFLOW_RUN_ID": "two words"}) == []


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (
            "/home/u/job/wandb/run-20240102_030405-3kx9q2ab/files/config.yaml",
            TrackerLink("wandb", "3kx9q2ab", source="files"),
        ),
        (
            "/home/u/job/wandb/offline-run-20240102_030405-my-run-1/run-my-run-1.wandb",
            TrackerLink("wandb", "my-run-1", source="files"),
        ),
        (
            f"/srv/exp/mlruns/0/{MLFLOW_RUN}/metrics/loss",
            TrackerLink("mlflow", MLFLOW_RUN, "0", source="files"),
        ),
        (
            f"/srv/exp/mlruns/412345678901234567/{MLFLOW_RUN}/artifacts/model/model.pkl",
            TrackerLink("mlflow", MLFLOW_RUN, "412345678901234567", source="files"),
        ),
        (
            f"/w/.neptune/async/run__{NEPTUNE_UUID}__4242__a1b2c3d4/data-1.log",
            TrackerLink("neptune", NEPTUNE_UUID, source="files"),
        ),
        (
            f"/w/.neptune/offline/run__{NEPTUNE_UUID}/operations-0.log",
            TrackerLink("neptune", NEPTUNE_UUID, source="files"),
        ),
    ],
)
def test_tracker_files(path: str, expected: TrackerLink) -> None:
    assert from_path(path) == expected


@pytest.mark.parametrize(
    "path",
    [
        "/home/u/wandb/debug.log",  # W&B's own log, not a run's
        "/home/u/wandb/latest-run",
        "/home/u/notwandb/run-20240102_030405-abc/x",
        "/home/u/wandb/run-2024_030405-abc/x",  # not W&B's time stamp
        "/srv/mlruns/0/meta.yaml",  # the experiment's, not a run's
        f"/srv/mlruns/0/{MLFLOW_RUN}",  # no file of the run's layout below it
        f"/srv/mlruns/0/{MLFLOW_RUN}/notes.txt",
        f"/srv/mlruns/models/{MLFLOW_RUN}/meta.yaml",
        f"/srv/mlruns/0/{MLFLOW_RUN.upper()}/meta.yaml",
        f"/srv/mlruns/0/{MLFLOW_RUN[:-1]}/meta.yaml",
        f"/srv/other/0/{MLFLOW_RUN}/meta.yaml",
        f"/w/.neptune/async/model__{NEPTUNE_UUID}__1__x/data-1.log",
        f"/w/.neptune/elsewhere/run__{NEPTUNE_UUID}/data-1.log",
        "/w/.neptune/async/run__not-a-uuid/data-1.log",
    ],
)
def test_paths_that_only_look_similar(path: str) -> None:
    assert from_path(path) is None


def test_many_files_of_one_run_are_one_link() -> None:
    base = f"/srv/mlruns/3/{MLFLOW_RUN}"
    paths = [f"{base}/meta.yaml", f"{base}/metrics/loss", f"{base}/params/lr", "/srv/out/model.pt"]
    assert from_paths(paths) == [TrackerLink("mlflow", MLFLOW_RUN, "3", source="files")]


def test_a_later_sighting_completes_an_earlier_one() -> None:
    links = Links()
    first = TrackerLink("wandb", "r1", source="files")
    assert links.add([first]) == [first]
    assert links.add([first]) == []  # nothing new
    richer = TrackerLink("wandb", "r1", "e/p", "https://wandb.ai/e/p/runs/r1", "env")
    assert links.add([richer]) == [TrackerLink("wandb", "r1", "e/p", richer.url, "files")]
    assert links.add([TrackerLink("wandb", "r1", "other/p", "", "user")]) == []
    assert links.all() == [TrackerLink("wandb", "r1", "e/p", richer.url, "files")]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("mlflow=" + MLFLOW_RUN, TrackerLink("mlflow", MLFLOW_RUN, "", "", "user")),
        ("MLflow=3/" + MLFLOW_RUN, TrackerLink("mlflow", MLFLOW_RUN, "3", "", "user")),
        ("wandb=abc", TrackerLink("wandb", "abc", "", "", "user")),
        ("wandb=resnet/abc", TrackerLink("wandb", "abc", "resnet", "", "user")),
        (
            "wandb=team/resnet/abc",
            TrackerLink(
                "wandb", "abc", "team/resnet", "https://wandb.ai/team/resnet/runs/abc", "user"
            ),
        ),
        ("neptune=sweep-17", TrackerLink("neptune", "sweep-17", "", "", "user")),
        (
            "neptune=ml-team/cls/CLS-12",
            TrackerLink(
                "neptune",
                "CLS-12",
                "ml-team/cls",
                "https://app.neptune.ai/ml-team/cls/e/CLS-12",
                "user",
            ),
        ),
    ],
)
def test_user_links(text: str, expected: TrackerLink) -> None:
    assert parse_link(text) == expected


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("abc", "expected TRACKER=RUN_ID"),
        ("comet=abc", "unknown tracker 'comet'"),
        ("mlflow=", "empty"),
        ("wandb=team//abc", "empty"),
        ("wandb=a/b/c/d", "too many"),
        ("mlflow=1/2/3", "too many"),
        ("neptune=ws/run", "too many"),
        ("wandb=" + "x" * (MAX_VALUE + 1), f"longer than {MAX_VALUE}"),
        ("wandb=two words", "spaces"),
    ],
)
def test_bad_user_links_say_what_is_wrong(text: str, says: str) -> None:
    with pytest.raises(UsageError, match=says):
        parse_link(text)


def test_user_links_are_counted_and_deduplicated() -> None:
    assert parse_links(["wandb=abc", "wandb=p/abc"]) == [
        TrackerLink("wandb", "abc", "p", "", "user")
    ]
    with pytest.raises(UsageError, match=f"at most {MAX_USER_LINKS}"):
        parse_links([f"wandb=r{i}" for i in range(MAX_USER_LINKS + 1)])


@pytest.mark.parametrize(
    ("text", "query"),
    [
        ("abc", (None, "abc")),
        ("wandb=abc", ("wandb", "abc")),
        ("wandb=team/resnet/abc", ("wandb", "abc")),
        ("x=y", (None, "x=y")),
    ],
)
def test_runs_link_query(text: str, query: tuple[str | None, str]) -> None:
    assert parse_query(text) == query

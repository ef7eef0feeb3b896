"""Tests for roard.tracking.names: run names, and the ROARD_RUN value that carries one."""

from __future__ import annotations

import pytest

from roard.errors import UsageError
from roard.tracking.names import RUN_NAME_MAX, EnvRun, check_run_name, parse_env_run


@pytest.mark.parametrize("name", ["train", "prep-e2e", "stage.2", "team/model:v1+fix", "7"])
def test_valid_names_pass_unchanged(name: str) -> None:
    """Letters, digits and . _ : / + - (not first) make a name."""
    assert check_run_name(name) == name


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("", "empty"),
        ("x" * (RUN_NAME_MAX + 1), "longer than"),
        ("two words", "not allowed"),
        ("-flag", "not allowed"),
        (".hidden", "not allowed"),
        ("tab\tname", "not allowed"),
        ("a;rm -rf", "not allowed"),
        ("bob@host", "not allowed"),
        ("naïve", "not allowed"),
    ],
)
def test_invalid_names_say_why(name: str, why: str) -> None:
    """Each refusal is a UsageError naming the problem."""
    with pytest.raises(UsageError, match=why):
        check_run_name(name)


def test_env_value_is_a_run_name() -> None:
    """A bare name starts a run of its own."""
    assert parse_env_run("train") == EnvRun(name="train")
    assert parse_env_run("x" * RUN_NAME_MAX).name == "x" * RUN_NAME_MAX


@pytest.mark.parametrize("value", ["", " train", "train\n", "a b", "-x"])
def test_env_value_that_is_no_valid_name_is_refused(value: str) -> None:
    """The value is held to the same rule as `roarctl tag --name`."""
    with pytest.raises(UsageError):
        parse_env_run(value)


@pytest.mark.parametrize(
    ("value", "join"),
    [("train@42", "42"), ("train@slurm-1234", "slurm-1234"), ("t@job:7.a_b", "job:7.a_b")],
)
def test_name_at_id_joins_that_run(value: str, join: str) -> None:
    """NAME@ID: one more part of the run ID that several hosts share."""
    assert parse_env_run(value) == EnvRun(name=value.partition("@")[0], join=join)


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("train@", "must not be empty"),
        ("@42", "must not be empty"),
        ("a@b@c", "not allowed"),
        ("a@b/c", "not allowed"),
        ("a@-b", "not allowed"),
        ("a@" + "x" * 129, "longer than"),
    ],
)
def test_bad_explicit_run_id_is_refused_not_read_as_a_name(value: str, why: str) -> None:
    """A malformed NAME@ID starts nothing, and says what is wrong."""
    with pytest.raises(UsageError, match=why):
        parse_env_run(value)


def test_a_value_the_kernel_cut_short_is_refused() -> None:
    """Only the start of an over-long value reached userspace: never a run of that name."""
    with pytest.raises(UsageError, match="too long"):
        parse_env_run("train", truncated=True)

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
    """A bare name is the whole syntax today."""
    assert parse_env_run("train") == EnvRun(name="train")
    assert parse_env_run("x" * RUN_NAME_MAX).name == "x" * RUN_NAME_MAX


@pytest.mark.parametrize("value", ["", " train", "train\n", "a b", "-x"])
def test_env_value_that_is_no_valid_name_is_refused(value: str) -> None:
    """The value is held to the same rule as `roarctl tag --name`."""
    with pytest.raises(UsageError):
        parse_env_run(value)


@pytest.mark.parametrize("value", ["train@42", "train@", "@42", "a@b@c"])
def test_explicit_run_id_syntax_is_refused_not_read_as_a_name(value: str) -> None:
    """NAME@ID is reserved for distributed jobs: refused, saying it is not supported yet."""
    with pytest.raises(UsageError, match="explicit run id"):
        parse_env_run(value)


def test_a_value_the_kernel_cut_short_is_refused() -> None:
    """Only the start of an over-long value reached userspace: never a run of that name."""
    with pytest.raises(UsageError, match="too long"):
        parse_env_run("train", truncated=True)

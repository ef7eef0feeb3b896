"""Secrets out of recorded environments and command lines (roard.context.environment)."""

from __future__ import annotations

import os
import subprocess
import time

import pytest

from roard.config import ConfigError, parse
from roard.context.environment import REDACTED, Redactor, digest, read_environ

R = Redactor()


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("API_TOKEN", "abc"),
        ("MY_PASSWORD", "hunter2"),
        ("AWS_SECRET_ACCESS_KEY", "wJalr"),
        ("HF_TOKEN", "x"),
        ("HTTP_AUTHORIZATION", "Bearer x"),
        ("DB_PWD", "y"),
        ("ANYTHING", "ghp_" + "a" * 36),
        ("ANYTHING", "AKIAABCDEFGHIJKLMNOP"),
        ("ANYTHING", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NSJ9.sig"),
        ("KEYFILE", "-----BEGIN RSA PRIVATE KEY-----\nMII..."),
    ],
)
def test_secret_values_are_redacted(name: str, value: str) -> None:
    assert R.environment({name: value}) == {name: REDACTED}


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("PWD", "/home/me"),
        ("GIT_AUTHOR_NAME", "Ada"),
        ("PATH", "/usr/bin:/bin"),
        ("CUDA_VISIBLE_DEVICES", "0,1"),
        ("MY_PASSWORD", ""),  # nothing to hide; that it was empty is worth knowing
    ],
)
def test_ordinary_values_are_kept(name: str, value: str) -> None:
    assert R.environment({name: value}) == {name: value}


def test_url_passwords_go_and_the_rest_of_the_url_stays() -> None:
    env = R.environment({"DATABASE_URL": "postgresql://ml:s3cr3t@db:5432/x"})
    assert env == {"DATABASE_URL": f"postgresql://ml:{REDACTED}@db:5432/x"}


def test_argv_forms() -> None:
    argv = [
        "python3", "train.py", "--token", "abc", "--lr=0.1", "--api-key=xyz",
        "--password", "-v", "WANDB_API_KEY=k", "s3://u:pw@bucket/x", "hf_" + "b" * 30,
    ]  # fmt: skip
    assert R.argv(argv) == (
        "python3", "train.py", "--token", REDACTED, "--lr=0.1", f"--api-key={REDACTED}",
        "--password", "-v", f"WANDB_API_KEY={REDACTED}", f"s3://u:{REDACTED}@bucket/x",
        REDACTED,
    )  # fmt: skip


def test_digest_names_the_content() -> None:
    a = digest({"A": "1", "B": "2"})
    assert a == digest({"B": "2", "A": "1"})
    assert a != digest({"A": "1", "B": "3"})
    assert a.startswith("blake3:") and len(a) == 7 + 64


def test_read_environ_of_a_real_process() -> None:
    proc = subprocess.Popen(["sleep", "30"], env={"ROARD_TEST_VAR": "x"})
    try:
        deadline = time.monotonic() + 5  # until it has exec'd (before, it has ours)
        while read_environ(proc.pid) != {"ROARD_TEST_VAR": "x"} and time.monotonic() < deadline:
            time.sleep(0.01)
        assert read_environ(proc.pid) == {"ROARD_TEST_VAR": "x"}
    finally:
        proc.kill()
        proc.wait()
    assert read_environ(proc.pid) is None  # gone
    assert read_environ(os.getpid()) is not None


def test_config_patterns_replace_the_defaults_and_bad_ones_are_refused() -> None:
    config = parse('[context]\nsecret_names = ["^INTERNAL_"]\nsecret_values = []\n')
    redactor = config.context.redactor()
    assert redactor.environment({"INTERNAL_X": "1", "API_TOKEN": "t"}) == {
        "INTERNAL_X": REDACTED,
        "API_TOKEN": "t",
    }
    with pytest.raises(ConfigError, match="not a valid regular expression"):
        parse('[context]\nsecret_names = ["(unclosed"]\n')

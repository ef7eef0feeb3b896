"""Tests for roard.config (TOML, environment) and roard.artifacts.classify (path kinds)."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from roard.artifacts.classify import (
    ARTIFACT,
    CODE,
    PACKAGE,
    SYSTEM,
    classify,
    interpreted_script,
)
from roard.config import ClassifyRules, Config, HashLimits, load, parse
from roard.control.address import socket_path
from roard.errors import ConfigError

VALID = """
state_dir = "/srv/roard"
socket = "/tmp/r.sock"
hash_workers = 8
hash_max_bytes = 1048576
hash_timeout_seconds = 3
hash_stuck_max = 2
linger_seconds = 5

[kernel]
ring_pages = 1024
tracked_max = 100

[classify]
system_prefixes = ["/opt/sys/"]
package_markers = ["/pkgs/"]
"""


def test_empty_config_is_all_defaults() -> None:
    """Every key is optional: an empty file gives the defaults."""
    assert parse("") == Config()


def test_valid_config() -> None:
    """Top-level keys and the [kernel]/[classify] sections are read and typed."""
    config = parse(VALID)
    assert config.state_dir == Path("/srv/roard")
    assert config.socket == Path("/tmp/r.sock")
    assert config.hash_workers == 8
    assert config.hash_limits() == HashLimits(1 << 20, 3.0, 2)
    assert config.linger_seconds == 5.0
    assert isinstance(config.linger_seconds, float)
    assert (config.kernel.ring_pages, config.kernel.tracked_max) == (1024, 100)
    assert config.kernel.fdagg_max == Config().kernel.fdagg_max
    assert config.classify == ClassifyRules(("/opt/sys/",), ("/pkgs/",))


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("bogus = 1", "bogus"),
        ("[kernel]\nring_pagez = 1", "ring_pagez"),
        ("[classify]\nsystem = []", "system"),
        ("[extra]\na = 1", "extra"),
    ],
)
def test_unknown_keys_are_rejected(text: str, needle: str) -> None:
    """An unknown key or section is an error that names it."""
    with pytest.raises(ConfigError, match=needle):
        parse(text)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ('hash_workers = "4"', "hash_workers"),
        ("hash_workers = true", "hash_workers"),
        ("hash_workers = 1.5", "hash_workers"),
        ("linger_seconds = true", "linger_seconds"),
        ("state_dir = 3", "state_dir"),
        ("[kernel]\nring_pages = true", r"\[kernel\] ring_pages"),
        ('[kernel]\nring_pages = "big"', r"\[kernel\] ring_pages"),
        ("[classify]\nsystem_prefixes = [1, 2]", r"\[classify\] system_prefixes"),
        ('[classify]\nsystem_prefixes = "/usr/"', r"\[classify\] system_prefixes"),
        ("kernel = 3", r"\[kernel\]"),
    ],
)
def test_wrong_types_name_the_key(text: str, needle: str) -> None:
    """A value of the wrong type is an error naming the key."""
    with pytest.raises(ConfigError, match=needle):
        parse(text)


def test_invalid_toml_names_the_source() -> None:
    """Unparseable TOML is a ConfigError naming the file."""
    with pytest.raises(ConfigError, match=r"/etc/x\.toml is not valid TOML"):
        parse("state_dir = [", "/etc/x.toml")


def test_missing_explicit_config_is_an_error(tmp_path: Path) -> None:
    """A config file named explicitly (argument or ROARD_CONFIG) must exist."""
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError, match="does not exist"):
        load(missing, environ={})
    with pytest.raises(ConfigError, match="does not exist"):
        load(environ={"ROARD_CONFIG": str(missing)})


def test_load_reads_the_file(tmp_path: Path) -> None:
    """load() parses the given file; ROARD_CONFIG names one too."""
    path = tmp_path / "roard.toml"
    path.write_text("hash_workers = 2\n")
    assert load(path, environ={}).hash_workers == 2
    assert load(environ={"ROARD_CONFIG": str(path)}).hash_workers == 2


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    """ROARD_STATE_DIR and ROARD_SOCKET win over the file's values."""
    path = tmp_path / "roard.toml"
    path.write_text('state_dir = "/from/file"\nsocket = "/from/file.sock"\n')
    env = {"ROARD_STATE_DIR": str(tmp_path / "state"), "ROARD_SOCKET": str(tmp_path / "s")}
    config = load(path, environ=env)
    assert (config.state_dir, config.socket) == (tmp_path / "state", tmp_path / "s")
    assert load(path, environ={}).state_dir == Path("/from/file")


def test_socket_path_precedence() -> None:
    """roarctl's socket: flag, then ROARD_SOCKET, then the default."""
    env = {"ROARD_SOCKET": "/env.sock"}
    assert socket_path("/flag.sock", env) == "/flag.sock"
    assert socket_path(None, env) == "/env.sock"
    assert socket_path(None, {}) == "/run/roard/roard.sock"


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        ("/usr/lib/x86_64-linux-gnu/libc.so.6", SYSTEM),
        ("/etc/hosts", SYSTEM),
        ("/proc/self/status", SYSTEM),
        ("/home/u/.venv/lib/python3.11/site-packages/torch/__init__.py", PACKAGE),
        ("/opt/conda/lib/python3.11/site-packages/numpy/core.py", PACKAGE),
        ("/usr/lib/python3/dist-packages/yaml/__init__.py", PACKAGE),
        ("/data/x", ARTIFACT),
        ("/home/u/proj/train.py", CODE),
        ("/home/u/proj/run.sh", CODE),
        ("/home/u/proj/notebook.ipynb", CODE),
        ("/home/u/proj/config.yaml", ARTIFACT),
        ("/home/u/proj/data.pyc", ARTIFACT),
        ("/tmp/model.pt", ARTIFACT),
        ("/usrdata/x", ARTIFACT),
        ("/usr/bin/script.py", SYSTEM),
        ("/dev/null", SYSTEM),
        ("/dev/shm/train.bin", ARTIFACT),
        ("/dev/shm/prep.py", CODE),
        ("/dev/shm/env/site-packages/x.py", PACKAGE),
    ],
)
def test_classify_default_rules(path: str, kind: str) -> None:
    """Default rules: package markers beat system prefixes, both beat source suffixes
    (code); everything else is an artifact. /dev/shm holds the user's files (a dataset
    staged in memory), not the system's."""
    assert classify(path, ClassifyRules()) == kind


def test_classify_custom_rules() -> None:
    """Configured rules replace the defaults."""
    rules = parse(
        '[classify]\nsystem_prefixes = ["/opt/sys/"]\npackage_markers = []\ncode_suffixes = [".m"]'
    ).classify
    assert classify("/opt/sys/lib.so", rules) == SYSTEM
    assert classify("/usr/lib/libc.so", rules) == ARTIFACT
    assert classify("/x/site-packages/y.py", rules) == ARTIFACT
    assert classify("/x/model.m", rules) == CODE


def test_user_prefixes_take_paths_out_of_the_system_prefixes() -> None:
    """A configured user prefix makes its files artifacts; an empty list restores /dev/shm
    to the system files."""
    rules = parse('[classify]\nuser_prefixes = ["/run/user/"]').classify
    assert classify("/run/user/1000/data.csv", rules) == ARTIFACT
    assert classify("/run/lock/x", rules) == SYSTEM
    assert classify("/dev/shm/x", rules) == SYSTEM


def test_scripts_run_by_an_interpreter_are_code_whatever_their_name() -> None:
    """A file the run executed through an interpreter is code even without a suffix."""
    assert classify("/repo/prepare", ClassifyRules(), {"/repo/prepare"}) == CODE
    assert classify("/repo/data", ClassifyRules(), {"/repo/prepare"}) == ARTIFACT


def test_files_run_as_programs_or_libraries_are_code_unless_system_or_package() -> None:
    """An executed file (an exe, a library mapped executable) is code wherever the user
    keeps it; the system's and packages' own stay what their place says."""
    rules = ClassifyRules()
    assert classify("/repo/build/libops.so", rules, executed=True) == CODE
    assert classify("/repo/build/libops.so", rules) == ARTIFACT
    assert classify("/usr/lib/x86_64-linux-gnu/libz.so.1", rules, executed=True) == SYSTEM
    assert classify("/v/site-packages/torch/lib/libc10.so", rules, executed=True) == PACKAGE


@pytest.mark.parametrize(
    ("argv", "exe", "script"),
    [
        (["python3", "prep"], "/usr/bin/python3.11", "/w/prep"),
        (["python3", "-u", "-X", "dev", "../t/x"], "/usr/bin/python3", "/t/x"),
        (["/bin/sh", "./steps"], "/usr/bin/dash", "/w/steps"),  # after a shebang exec
        (["bash", "/abs/run"], "/usr/bin/bash", "/abs/run"),
        (["python3", "-c", "print(1)"], "/usr/bin/python3", None),
        (["python3", "-m", "pkg.main"], "/usr/bin/python3", None),
        (["python3"], "/usr/bin/python3", None),
        (["cp", "a", "b"], "/usr/bin/cp", None),  # not an interpreter: a is data
    ],
)
def test_interpreted_script(argv: list[str], exe: str, script: str | None) -> None:
    """The script of an interpreter process: its first argument after options."""
    assert interpreted_script(argv, exe, "/w", ClassifyRules()) == script


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("hash_workers = 0", "hash_workers"),
        ("hash_workers = -2", "hash_workers"),
        ("hash_max_bytes = -1", "hash_max_bytes"),
        ('hash_max_bytes = "64G"', "hash_max_bytes"),
        ("hash_timeout_seconds = 0", "hash_timeout_seconds must be positive"),
        ("hash_stuck_max = 0", "hash_stuck_max must be at least 1"),
        ("[kernel]\nring_pages = 1000", "ring_pages"),
        ("[collector]\nspool_max_bytes = 1000", "spool_max_bytes"),
        ("[collector]\ndelivery_wait_seconds = -1", "delivery_wait_seconds"),
        ("[collector]\nreconnect_max_seconds = 0", "reconnect_max_seconds"),
        ('[collector]\ntls_cert = "/c.pem"', "tls_cert"),
        ('[collector]\nadress = "x:1"', "adress"),
        ("[collector]\naddress = 7443", "address"),
        ("[datasets]\nmin_files = 1", r"\[datasets\] min_files must be at least 2"),
        ("[datasets]\nmin_files = 8.0", r"\[datasets\] min_files"),
        ('[datasets]\nenabled = "no"', r"\[datasets\] enabled"),
        ("[datasets]\nmin_file = 3", r"unknown config key \[datasets\] min_file"),
    ],
)
def test_out_of_range_values_are_config_errors(text: str, needle: str) -> None:
    """Values that cannot work are rejected at parse time, naming the key."""
    with pytest.raises(ConfigError, match=needle):
        parse(text)


def test_datasets_section() -> None:
    conf = parse("[datasets]\nmin_files = 2\nenabled = false\n")
    assert (conf.datasets.min_files, conf.datasets.enabled) == (2, False)
    assert (Config().datasets.min_files, Config().datasets.enabled) == (8, True)


def test_collector_section() -> None:
    conf = parse(
        '[collector]\naddress = "collector:7443"\nhost_id = "gpu-17"\n'
        'tls_ca = "/ca.pem"\ntls_cert = "/h.pem"\ntls_key = "/h.key"\n'
        "spool_max_bytes = 2097152\ndelivery_wait_seconds = 3"
    ).collector
    assert (conf.address, conf.host_id, conf.spool_max_bytes) == (
        "collector:7443",
        "gpu-17",
        1 << 21,
    )
    assert conf.delivery_wait_seconds == 3.0 and conf.tls_key == "/h.key"


def test_collector_addresses() -> None:
    from roard.collector.transport import check_address, is_loopback

    assert check_address("collector:7443") == "collector:7443"
    assert check_address("0.0.0.0:0", listen=True) == "0.0.0.0:0"
    for bad in ("collector", "collector:0", "collector:99999", "unix:", ":80"):
        with pytest.raises(ConfigError, match=r"HOST:PORT|socket path"):
            check_address(bad)
    assert is_loopback("127.0.0.1:1") and is_loopback("unix:/x") and is_loopback("[::1]:5")
    assert not is_loopback("10.0.0.1:1") and not is_loopback("collector:7443")


def test_the_example_config_documents_every_key_with_its_default() -> None:
    """deploy/roard.toml.example parses, sets every key there is, to the default value."""
    example = Path(__file__).resolve().parents[2] / "deploy" / "roard.toml.example"
    text = example.read_text()
    assert parse(text, str(example)) == Config()
    defaults = Config()
    for field in dataclasses.fields(Config):
        value = getattr(defaults, field.name)
        keys = (
            [f.name for f in dataclasses.fields(value)]
            if dataclasses.is_dataclass(value)
            else [field.name]
        )
        for key in keys:
            assert re.search(rf"^{key} = ", text, re.M), f"{key} is not in {example.name}"

"""Tests for roard.control.plain's JSON, which roarctl's tag form writes and reads without the
json package: it must be the json package's JSON, both ways."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from roard.control.plain import JoinSpec, Tagged, dumps, loads

DOCS: list[Any] = [
    {},
    [],
    "",
    0,
    -7,
    2**70,
    0.1,
    -2.5e-308,
    1e300,
    True,
    False,
    None,
    {"method": "Tag", "request": {"pid": 4242, "spawned": True, "labels": {"k": "v=1"}}},
    {"links": ["mlflow=abc", "wandb=e/p/r"], "timeout": 30.0, "join": "", "join_hosts": 0},
    {"path": "/data/caf\u00e9/\u65e5\u672c/\U0001f600", "ctl": '\x00\x01\t\n\r"\\/\x7f'},
    {"surrogate": "bad \udcff byte", "nested": [[{"a": [None, 1, "x"]}], {"b": {}}]},
    {"reply": {"json": json.dumps({"run_id": "r1", "inputs": {"artifact": 2}})}},
    ("tuple", 1),
]


@pytest.mark.parametrize("doc", DOCS, ids=range(len(DOCS)))
def test_dumps_writes_what_json_writes_and_loads_reads_it_back(doc: Any) -> None:
    written = dumps(doc)
    assert written == json.dumps(doc, separators=(",", ":"))
    expected = list(doc) if isinstance(doc, tuple) else doc
    assert loads(written) == expected
    assert loads(written.encode() + b"\n") == expected


def test_non_finite_floats_as_json_writes_them() -> None:
    for value in (math.inf, -math.inf):
        assert dumps(value) == json.dumps(value)
        assert loads(dumps(value)) == value
    assert dumps(math.nan) == "NaN" and math.isnan(loads("NaN"))


@pytest.mark.parametrize(
    "text", ["", "  ", "{", '{"a":1', '{"a":1}x', '{"a":1} {}', "[1,]", '"\\x"', "tru", b"\xff"]
)
def test_loads_refuses_what_is_not_one_json_document(text: str | bytes) -> None:
    with pytest.raises(ValueError):
        json.loads(text)  # the reference refuses it too
    with pytest.raises(ValueError):
        loads(text)


def test_loads_takes_the_whitespace_json_allows() -> None:
    assert loads(' \t{"a": [1, 2]}\r\n') == {"a": [1, 2]}


@pytest.mark.parametrize("value", [{1: "x"}, {"a": object()}, {"s": {1, 2}}, b"bytes"])
def test_dumps_refuses_what_is_not_json(value: Any) -> None:
    with pytest.raises(TypeError):
        dumps(value)


def test_values_are_equal_by_fields_and_say_what_they_hold() -> None:
    assert JoinSpec("r1", 2) == JoinSpec("r1", 2) != JoinSpec("r1", 3)
    assert JoinSpec() != Tagged("", "")
    assert repr(Tagged("r/1", "", "r")) == "Tagged(run_id='r/1', shared_run_id='r', warning='')"
    assert Tagged("r/1", "", "r").shown == "r" and Tagged("r", "").shown == "r"

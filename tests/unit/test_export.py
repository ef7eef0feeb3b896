"""Tests for roard.collector.export: OpenLineage events and PROV-JSON, validated offline
against the published schemas vendored in tests/data (see tests/data/README.md)."""

from __future__ import annotations

import copy
import json
import re
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.validators import validator_for
from referencing import Registry, Resource

from roard.collector.export import (
    OPENLINEAGE_SCHEMA_URL,
    ROARD_FACETS_SCHEMA,
    openlineage_events,
    prov_document,
    run_uuid,
)

DATA = Path(__file__).resolve().parent.parent / "data"
PRODUCER = "https://example.org/roard/0.1.0"
HASH_A = "blake3:" + "a" * 64
HASH_B = "blake3:" + "b" * 64
HASH_S = "blake3:" + "5" * 64


def _load(path: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(path.read_text())
    return doc


def _registry() -> Registry:
    """Every OpenLineage schema under its `$id`, plus roard's custom facets: `$ref`s resolve
    to these and nothing else (a Registry without `retrieve` never goes to the network)."""
    schemas = [_load(p) for p in sorted((DATA / "openlineage").rglob("*.json"))]
    schemas.append(ROARD_FACETS_SCHEMA)
    for schema in schemas:
        Draft202012Validator.check_schema(schema)  # ours above all: a typo would accept anything
    return Registry().with_resources((s["$id"], Resource.from_contents(s)) for s in schemas)


REGISTRY = _registry()
PROV_SCHEMA = _load(DATA / "prov" / "prov-json.schema.json")

# jsonschema checks "date-time" and "uri" only with optional packages that roard does not
# depend on; without these checkers both formats would pass anything.
FORMATS = FormatChecker()


def _is_date_time(value: object) -> bool:
    if not isinstance(value, str):
        return True
    return "T" in value and datetime.fromisoformat(value).tzinfo is not None


def _is_uri(value: object) -> bool:
    return not isinstance(value, str) or (bool(urlsplit(value).scheme) and " " not in value)


FORMATS.checks("date-time", raises=ValueError)(_is_date_time)
FORMATS.checks("uri")(_is_uri)


def _errors(instance: Any, schema_url: str) -> list[str]:
    validator = Draft202012Validator(
        {"$ref": schema_url}, registry=REGISTRY, format_checker=FORMATS
    )
    return [f"{schema_url}: {e.message}" for e in validator.iter_errors(instance)]


def _facets(event: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield from event["run"].get("facets", {}).values()
    yield from event["job"].get("facets", {}).values()
    for dataset in event["inputs"] + event["outputs"]:
        for key in ("facets", "inputFacets", "outputFacets"):
            yield from dataset.get(key, {}).values()


def openlineage_errors(event: dict[str, Any]) -> list[str]:
    """Errors of the event against the RunEvent definition and of each facet against the
    schema its own `_schemaURL` names (the RunEvent schema checks only the base facet)."""
    errors = _errors(event, OPENLINEAGE_SCHEMA_URL)
    for facet in _facets(event):
        errors += _errors(facet, facet.get("_schemaURL", "#/missing-schemaURL"))
    return errors


def prov_errors(doc: dict[str, Any]) -> list[str]:
    validator = validator_for(PROV_SCHEMA)(PROV_SCHEMA, format_checker=FORMATS)
    return [e.message for e in validator.iter_errors(doc)]


def make_run(**overrides: Any) -> dict[str, Any]:
    """A finished `roarctl show --json` document: python reads a.csv (an artifact) and libc,
    writes m.pt and deletes a scratch file."""
    run: dict[str, Any] = {
        "run_id": "r-3f2a9c",
        "name": "train",
        "status": "finished",
        "exit_code": 0,
        "host": "hostA",
        "started_at": "2026-11-26T06:11:28.123456Z",
        "ended_at": "2026-11-26T06:12:01.000001Z",
        "complete": True,
        "lost_events": 0,
        "uid": 1000,
        "labels": {"team": "ml"},
        "loss_reasons": [],
        "processes": [
            {
                "pid": 4242,
                "ppid": 1,
                "exe": "/usr/bin/python3",
                "argv": ["python3", "train.py"],
                "cwd": "/home/u/p",
                "uid": 1000,
                "started_at": "2026-11-26T06:11:28.123456Z",
                "ended_at": "2026-11-26T06:12:01.000001Z",
                "exit_code": 0,
                "start_ticks": 123,
            }
        ],
        "inputs": [
            {
                "path": "/data/a.csv",
                "hash": HASH_A,
                "size": 10,
                "kind": "artifact",
                "bytes_read": 10,
            },
            {
                "path": "/usr/lib/libc.so.6",
                "hash": HASH_S,
                "size": 99,
                "kind": "system",
                "bytes_read": 99,
            },
        ],
        "outputs": [
            {
                "path": "/out/m.pt",
                "hash": HASH_B,
                "size": 20,
                "kind": "artifact",
                "bytes_written": 20,
                "read_too": False,
            }
        ],
        "deleted": [{"path": "/tmp/scratch file.", "kind": "artifact", "bytes_written": 5}],
    }
    run.update(overrides)
    return run


def by_name(datasets: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {d["name"]: d for d in datasets}


# ------------------------------------------------------------------------- OpenLineage


@pytest.mark.parametrize(
    "overrides",
    [{}, {"exit_code": 2, "name": None}, {"status": "running", "ended_at": None}],
    ids=["complete", "fail", "running"],
)
def test_events_validate_against_runevent_and_facet_schemas(overrides: dict[str, Any]) -> None:
    for event in openlineage_events(make_run(**overrides), PRODUCER):
        assert openlineage_errors(event) == []


@pytest.mark.parametrize(
    "break_it",
    [
        lambda e: e["run"].pop("runId"),
        lambda e: e["run"].update(runId="r-3f2a9c"),  # not a UUID
        lambda e: e.update(eventType="DONE"),
        lambda e: e.update(eventTime="yesterday"),
        lambda e: e["outputs"][0]["facets"]["version"].pop("datasetVersion"),
        lambda e: e["run"]["facets"]["roard"].pop("_producer"),
        lambda e: e["run"]["facets"]["roard"].update(lostEvents="none"),
    ],
    ids=["no-runId", "runId", "eventType", "eventTime", "version", "producer", "custom-facet"],
)
def test_a_broken_event_fails_validation(break_it: Any) -> None:
    event = copy.deepcopy(openlineage_events(make_run(), PRODUCER)[-1])
    break_it(event)
    assert openlineage_errors(event) != []


def test_content_hash_is_the_dataset_version() -> None:
    _, final = openlineage_events(make_run(), PRODUCER)
    inputs, outputs = by_name(final["inputs"]), by_name(final["outputs"])
    assert inputs["/data/a.csv"]["facets"]["version"]["datasetVersion"] == HASH_A
    assert outputs["/out/m.pt"]["facets"]["version"]["datasetVersion"] == HASH_B
    assert outputs["/out/m.pt"]["outputFacets"]["outputStatistics"]["size"] == 20
    assert {d["namespace"] for d in final["inputs"] + final["outputs"]} == {"file://hostA"}


@pytest.mark.parametrize(("exit_code", "final"), [(0, "COMPLETE"), (1, "FAIL"), (None, "FAIL")])
def test_start_then_complete_or_fail(exit_code: int | None, final: str) -> None:
    run = make_run(exit_code=exit_code)
    start, end = openlineage_events(run, PRODUCER)
    assert (start["eventType"], start["eventTime"]) == ("START", run["started_at"])
    assert (end["eventType"], end["eventTime"]) == (final, run["ended_at"])
    assert start["outputs"] == [] and by_name(end["inputs"]) == by_name(start["inputs"])


def test_a_running_run_gives_only_start() -> None:
    events = openlineage_events(make_run(status="running", ended_at=None), PRODUCER)
    assert [e["eventType"] for e in events] == ["START"]


def test_run_id_is_a_stable_uuid() -> None:
    first = openlineage_events(make_run(), PRODUCER)
    again = openlineage_events(make_run(), PRODUCER, namespace="elsewhere")
    run_ids = {e["run"]["runId"] for e in first + again}
    assert run_ids == {run_uuid("r-3f2a9c")} and uuid.UUID(run_ids.pop())
    assert run_uuid("r-other") != run_uuid("r-3f2a9c")
    given = str(uuid.uuid4())
    assert openlineage_events(make_run(run_id=given), PRODUCER)[0]["run"]["runId"] == given


def test_job_is_the_run_name_in_the_host_namespace() -> None:
    assert openlineage_events(make_run(), PRODUCER)[0]["job"] == {
        "namespace": "roard://hostA",
        "name": "train",
    }
    job = openlineage_events(make_run(name=None), PRODUCER, namespace="ns")[0]["job"]
    assert job == {"namespace": "ns", "name": "r-3f2a9c"}


def test_only_artifacts_by_default() -> None:
    _, final = openlineage_events(make_run(), PRODUCER)
    assert list(by_name(final["inputs"])) == ["/data/a.csv"]
    # the deleted scratch file is an output whose lifecycle ended
    dropped = by_name(final["outputs"])["/tmp/scratch file."]
    assert dropped["facets"]["lifecycleStateChange"]["lifecycleStateChange"] == "DROP"

    kinds = frozenset({"artifact", "system"})
    _, final = openlineage_events(make_run(), PRODUCER, include_kinds=kinds)
    assert list(by_name(final["inputs"])) == ["/data/a.csv", "/usr/lib/libc.so.6"]
    assert openlineage_errors(final) == []


def test_processes_and_completeness_ride_in_the_roard_run_facet() -> None:
    run = make_run(complete=False, lost_events=3)
    facet = openlineage_events(run, PRODUCER)[0]["run"]["facets"]["roard"]
    assert (facet["complete"], facet["lostEvents"]) == (False, 3)
    assert facet["processes"][0]["argv"] == ["python3", "train.py"]
    assert facet["processes"][0]["exe"] == "/usr/bin/python3"


# ------------------------------------------------------------------------------- PROV

# PROV-N's QUALIFIED_NAME (https://www.w3.org/TR/prov-n/#prod-QUALIFIED_NAME), ASCII part.
_OTHERS = r"(?:[/@~&+*?#$!]|%[0-9A-Fa-f]{2}|\\[=\'(),\-:;\[\].])"
_FIRST = rf"(?:[A-Za-z_0-9]|{_OTHERS})"  # no "-" or "." first
_LAST = rf"(?:[A-Za-z_0-9\-]|{_OTHERS})"  # no "." last
_LOCAL = rf"{_FIRST}(?:(?:{_LAST}|\.)*{_LAST})?"
QNAME = re.compile(rf"(?P<prefix>[A-Za-z](?:[A-Za-z_0-9\-.]*[A-Za-z_0-9\-])?):{_LOCAL}")


def test_prov_document_validates_and_names_everything_with_qnames() -> None:
    doc = prov_document(make_run())
    assert prov_errors(doc) == []
    declared = {*doc["prefix"], "prov"}
    names = [*doc["entity"], *doc["activity"], *doc["agent"]]
    for relation in ("used", "wasGeneratedBy", "wasInvalidatedBy", "wasAssociatedWith"):
        for key, record in doc[relation].items():
            assert key.startswith("_:")  # PROV-JSON's blank node: a relation without an id
            names += [v for k, v in record.items() if k != "prov:time" and k.startswith("prov:")]
    for name in names:
        match = QNAME.fullmatch(name)
        assert match and match["prefix"] in declared, name


def test_prov_links_inputs_and_outputs_to_the_run() -> None:
    doc = prov_document(make_run())
    [activity] = doc["activity"]
    assert doc["activity"][activity]["prov:startTime"] == "2026-11-26T06:11:28.123456Z"
    assert doc["activity"][activity]["prov:endTime"] == "2026-11-26T06:12:01.000001Z"
    used = [(r["prov:activity"], r["prov:entity"]) for r in doc["used"].values()]
    generated = [(r["prov:activity"], r["prov:entity"]) for r in doc["wasGeneratedBy"].values()]
    assert used == [(activity, "blake3:" + "a" * 64)]
    assert generated == [(activity, "blake3:" + "b" * 64)]
    assert doc["entity"]["blake3:" + "b" * 64] == {"roard:path": ["/out/m.pt"], "roard:size": 20}
    [invalidated] = doc["wasInvalidatedBy"].values()
    assert invalidated["prov:entity"] == "path:/tmp/scratch%20file%2E"
    [association] = doc["wasAssociatedWith"].values()
    assert association == {"prov:activity": activity, "prov:agent": "user:1000"}


def test_prov_one_entity_per_content() -> None:
    # a copy: the same bytes read at one path and written at another are one entity
    copied = {**make_run()["outputs"][0], "path": "/out/copy.pt", "hash": HASH_A}
    doc = prov_document(make_run(outputs=[copied]))
    assert doc["entity"]["blake3:" + "a" * 64]["roard:path"] == ["/data/a.csv", "/out/copy.pt"]
    assert prov_errors(doc) == []


@pytest.mark.parametrize(
    "break_it",
    [
        lambda d: d["used"]["_:used1"].pop("prov:entity"),
        lambda d: d.update(wasGeneratedby=d.pop("wasGeneratedBy")),  # not a PROV relation
        lambda d: d["entity"]["blake3:" + "a" * 64].update({"roard:size": None}),
    ],
    ids=["no-entity", "unknown-relation", "null-attribute"],
)
def test_a_broken_prov_document_fails_validation(break_it: Any) -> None:
    doc = prov_document(make_run())
    break_it(doc)
    assert prov_errors(doc) != []

"""Export a run description (the `roarctl show RUN --json` document) to open lineage formats.

- `openlineage_events`: OpenLineage RunEvents (spec 2-0-2): START, then COMPLETE or FAIL.
- `prov_document`: a W3C PROV-JSON document (https://www.w3.org/submissions/prov-json/).

Pure functions: a dict in, JSON-ready dicts out; no I/O, no clock, no randomness, so exporting
the same run twice gives the same documents (and the same OpenLineage runId).

roard's own terms (the custom OpenLineage facets and the PROV attribute names) live under
`ROARD_URI`. Nothing is served there yet: it is one constant to change once roard has a home,
and `ROARD_FACETS_SCHEMA` is the schema to publish at `ROARD_FACETS_SCHEMA_URL`.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Iterable, Mapping
from typing import Any, Final
from urllib.parse import quote

from roard import __version__

__all__ = [
    "DEFAULT_KINDS",
    "OPENLINEAGE_SCHEMA_URL",
    "ROARD_FACETS_SCHEMA",
    "ROARD_FACETS_SCHEMA_URL",
    "ROARD_URI",
    "openlineage_events",
    "prov_document",
    "run_uuid",
]

#: Base URI of roard's vocabularies (a reserved, unresolvable domain until one is chosen).
ROARD_URI: Final = "https://roard.invalid/"

#: The OpenLineage spec version whose RunEvent we emit (current as of OpenLineage 1.x).
OPENLINEAGE_SPEC: Final = "https://openlineage.io/spec/2-0-2/OpenLineage.json"
OPENLINEAGE_SCHEMA_URL: Final = OPENLINEAGE_SPEC + "#/$defs/RunEvent"
_FACETS: Final = "https://openlineage.io/spec/facets/"

#: Only data and code by default: system files and installed packages would swamp the graph.
DEFAULT_KINDS: Final = frozenset({"artifact"})

ROARD_FACETS_SCHEMA_URL: Final = ROARD_URI + "spec/facets/1-0-0/RoardFacets.json"

_NULLABLE_INT: Final = {"type": ["integer", "null"]}
_NULLABLE_STR: Final = {"type": ["string", "null"]}

#: JSON Schema of roard's custom facets, which OpenLineage requires to be described by one.
ROARD_FACETS_SCHEMA: Final[dict[str, Any]] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": ROARD_FACETS_SCHEMA_URL,
    "$defs": {
        "RoardRunFacet": {
            "description": "What roard saw of the run: its processes, how complete the record is.",
            "allOf": [
                {"$ref": OPENLINEAGE_SPEC + "#/$defs/RunFacet"},
                {
                    "type": "object",
                    "properties": {
                        "runId": {"type": "string", "description": "roard's own run id"},
                        "host": {"type": "string"},
                        "uid": _NULLABLE_INT,
                        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                        "exitCode": _NULLABLE_INT,
                        "complete": {"type": "boolean", "description": "no event was lost"},
                        "lostEvents": {"type": "integer", "minimum": 0},
                        "lossReasons": {"type": "array", "items": {"type": "string"}},
                        "trackerLinks": {
                            "description": "experiment-tracker runs (W&B, MLflow, Neptune)"
                            " the run belongs to",
                            "type": "array",
                            "items": {
                                "type": "object",
                                "properties": {
                                    "tracker": {"type": "string"},
                                    "project": {"type": "string"},
                                    "runId": {"type": "string"},
                                    "url": {"type": "string"},
                                    "source": {"enum": ["env", "files", "user"]},
                                },
                                "required": ["tracker", "runId"],
                            },
                        },
                        "processes": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "properties": {
                                    "pid": {"type": "integer"},
                                    "ppid": _NULLABLE_INT,
                                    "exe": _NULLABLE_STR,
                                    "argv": {"type": "array", "items": {"type": "string"}},
                                    "cwd": _NULLABLE_STR,
                                    "uid": _NULLABLE_INT,
                                    "exitCode": _NULLABLE_INT,
                                },
                                "required": ["pid", "argv"],
                            },
                        },
                    },
                    "required": ["runId", "complete", "lostEvents", "processes"],
                },
            ],
        },
        "RoardFileDatasetFacet": {
            "description": "The file behind a dataset: its size when hashed and roard's kind.",
            "allOf": [
                {"$ref": OPENLINEAGE_SPEC + "#/$defs/DatasetFacet"},
                {
                    "type": "object",
                    "properties": {
                        "size": {"type": "integer", "minimum": 0},
                        "kind": {"enum": ["artifact", "code", "system", "package"]},
                        "readToo": {"type": "boolean"},
                    },
                    "required": ["kind"],
                },
            ],
        },
    },
}


# ------------------------------------------------------------------------- OpenLineage


def run_uuid(run_id: str) -> str:
    """The OpenLineage runId of a roard run: `run_id` itself when it is a UUID, else a UUIDv5
    of it, so every export of one run names the same OpenLineage run."""
    try:
        return str(uuid.UUID(run_id))
    except ValueError:
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{ROARD_URI}run/{run_id}"))


def openlineage_events(
    run: Mapping[str, Any],
    producer: str,
    namespace: str | None = None,
    include_kinds: frozenset[str] = DEFAULT_KINDS,
) -> list[dict[str, Any]]:
    """OpenLineage RunEvents for `run`: START (at started_at, with the inputs) and, once the
    run is finished, COMPLETE (exit code 0) or FAIL (any other or unknown exit code) at
    ended_at, with inputs and outputs.

    `producer` is the URI identifying this roard (OpenLineage puts it on every event and
    facet). The job is `namespace` (default `roard://<host>`) / the run's name, or its id when
    unnamed. Files become datasets `file://<host>` / path, their content hash the dataset
    version; only files whose kind is in `include_kinds` are exported.
    """
    job = {"namespace": namespace or f"roard://{run['host']}", "name": run["name"] or run["run_id"]}
    run_part = {"runId": run_uuid(run["run_id"]), "facets": _run_facets(run, producer)}
    inputs = [_input(f, run["host"], producer) for f in _kinds(run["inputs"], include_kinds)]
    start = _event("START", run["started_at"], producer, run_part, job, inputs, [])
    if run["status"] != "finished":
        return [start]
    if run["ended_at"] is None:
        raise ValueError(f"run {run['run_id']} is finished but has no ended_at")
    outputs = [_output(f, run["host"], producer) for f in _kinds(run["outputs"], include_kinds)]
    outputs += [
        _dropped(f, run["host"], producer) for f in _kinds(run.get("deleted", []), include_kinds)
    ]
    final = "COMPLETE" if run["exit_code"] == 0 else "FAIL"
    return [start, _event(final, run["ended_at"], producer, run_part, job, inputs, outputs)]


def _kinds(files: Iterable[Mapping[str, Any]], kinds: frozenset[str]) -> list[Mapping[str, Any]]:
    return [f for f in files if f["kind"] in kinds]


def _event(
    event_type: str,
    time: str,
    producer: str,
    run: dict[str, Any],
    job: dict[str, Any],
    inputs: list[dict[str, Any]],
    outputs: list[dict[str, Any]],
) -> dict[str, Any]:
    return {
        "eventType": event_type,
        "eventTime": time,
        "producer": producer,
        "schemaURL": OPENLINEAGE_SCHEMA_URL,
        # copies: the events share these parts, and a caller editing one must not edit both
        **copy.deepcopy({"run": run, "job": job, "inputs": inputs, "outputs": outputs}),
    }


def _facet(producer: str, schema_url: str, **fields: Any) -> dict[str, Any]:
    """A facet: its fields plus the `_producer` and `_schemaURL` every facet must carry."""
    return {"_producer": producer, "_schemaURL": schema_url, **fields}


def _standard(name: str, version: str) -> str:
    """The `_schemaURL` of a standard facet, e.g. `.../facets/1-0-1/X.json#/$defs/X`."""
    return f"{_FACETS}{version}/{name}.json#/$defs/{name}"


def _roard(name: str) -> str:
    return f"{ROARD_FACETS_SCHEMA_URL}#/$defs/{name}"


def _run_facets(run: Mapping[str, Any], producer: str) -> dict[str, Any]:
    processes = [
        {
            "pid": p["pid"],
            "ppid": p["ppid"],
            "exe": p["exe"],
            "argv": p["argv"],
            "cwd": p["cwd"],
            "uid": p["uid"],
            "exitCode": p["exit_code"],
        }
        for p in run.get("processes", [])
    ]
    roard = _facet(
        producer,
        _roard("RoardRunFacet"),
        runId=run["run_id"],
        host=run["host"],
        uid=run.get("uid"),
        labels=run.get("labels", {}),
        exitCode=run["exit_code"],
        complete=run["complete"],
        lostEvents=run["lost_events"],
        lossReasons=run.get("loss_reasons", []),
        trackerLinks=[
            {
                "tracker": x["tracker"],
                "project": x["project"],
                "runId": x["run_id"],
                "url": x["url"],
                "source": x["source"],
            }
            for x in run.get("links", [])
        ],
        processes=processes,
    )
    engine = _facet(
        producer, _standard("ProcessingEngineRunFacet", "1-1-1"), name="roard", version=__version__
    )
    return {"processing_engine": engine, "roard": roard}


def _dataset(file: Mapping[str, Any], host: str, producer: str) -> dict[str, Any]:
    """The dataset of one file; its content hash ("blake3:<hex>") is the dataset version."""
    facets = {"roard": _facet(producer, _roard("RoardFileDatasetFacet"), kind=file["kind"])}
    if file.get("size") is not None:
        facets["roard"]["size"] = file["size"]
    if file.get("read_too"):
        facets["roard"]["readToo"] = True
    if file.get("hash"):  # an output that vanished before it could be hashed has none
        version = _standard("DatasetVersionDatasetFacet", "1-0-1")
        facets["version"] = _facet(producer, version, datasetVersion=file["hash"])
    return {"namespace": f"file://{host}", "name": file["path"], "facets": facets}


def _input(file: Mapping[str, Any], host: str, producer: str) -> dict[str, Any]:
    stats = _standard("InputStatisticsInputDatasetFacet", "1-0-0")
    return {
        **_dataset(file, host, producer),
        "inputFacets": {
            "inputStatistics": _facet(producer, stats, size=file["bytes_read"], fileCount=1)
        },
    }


def _output(file: Mapping[str, Any], host: str, producer: str) -> dict[str, Any]:
    stats = _standard("OutputStatisticsOutputDatasetFacet", "1-0-2")
    return {
        **_dataset(file, host, producer),
        "outputFacets": {
            "outputStatistics": _facet(producer, stats, size=file["bytes_written"], fileCount=1)
        },
    }


def _dropped(file: Mapping[str, Any], host: str, producer: str) -> dict[str, Any]:
    """A file the run deleted: an output whose lifecycle changed to DROP (no content left)."""
    dataset = _dataset(file, host, producer)
    change = _standard("LifecycleStateChangeDatasetFacet", "1-0-1")
    dataset["facets"]["lifecycleStateChange"] = _facet(
        producer, change, lifecycleStateChange="DROP"
    )
    return dataset


# ------------------------------------------------------------------------------- PROV


def prov_document(
    run: Mapping[str, Any], include_kinds: frozenset[str] = DEFAULT_KINDS
) -> dict[str, Any]:
    """A PROV-JSON document for `run`: the run is an activity associated with the agent of
    its user (uid on host); each file content is an entity named by its hash (`blake3:<hex>`,
    so the output of one run and the input of another are the same entity), which the run
    `used` (inputs) or which `wasGeneratedBy` it (outputs); deleted files, which have no
    content left, are entities named by path that `wasInvalidatedBy` the run.

    Relations have no identifier of their own, so they get PROV-JSON blank-node keys (`_:`).
    """
    host = run["host"]
    activity = f"run:{_local(run['run_id'])}"
    doc: dict[str, Any] = {
        "prefix": {
            "roard": f"{ROARD_URI}ns#",  # attribute names
            "blake3": "urn:blake3:",  # file contents
            "run": f"roard://{host}/run/",  # the same namespace as the OpenLineage job's
            "user": f"roard://{host}/uid/",
            "path": f"file://{host}",  # files known by path only (a QName local starts with /)
        },
        "activity": {activity: _activity_attributes(run)},
        "entity": {},
    }
    for f in _kinds(run["inputs"], include_kinds):
        attrs = {"roard:path": f["path"], "roard:bytesRead": f["bytes_read"]}
        _relate(doc, "used", _content_entity(doc, f), activity, attrs)
    for f in _kinds(run["outputs"], include_kinds):
        attrs = {"roard:path": f["path"], "roard:bytesWritten": f["bytes_written"]}
        _relate(doc, "wasGeneratedBy", _content_entity(doc, f), activity, attrs, run["ended_at"])
    for f in _kinds(run.get("deleted", []), include_kinds):
        entity = _path_entity(doc, f)
        _relate(doc, "wasInvalidatedBy", entity, activity, {}, run["ended_at"])
    if run.get("uid") is not None:
        agent = f"user:{run['uid']}"
        doc["agent"] = {agent: {"roard:uid": run["uid"], "roard:host": host}}
        association = {"prov:activity": activity, "prov:agent": agent}
        doc["wasAssociatedWith"] = {"_:wasAssociatedWith1": association}
    return doc


def _local(text: str) -> str:
    """`text` as the local part of a PROV QName: percent-encoded except for the characters
    PROV-N allows unescaped (letters, digits, `_ - . / ~`), and never ending in `.`."""
    local = quote(text, safe="/~")
    return local[:-1] + "%2E" if local.endswith(".") else local


def _activity_attributes(run: Mapping[str, Any]) -> dict[str, Any]:
    attrs = {
        "prov:startTime": run["started_at"],
        "prov:endTime": run["ended_at"],
        "prov:label": run["name"],
        "roard:runId": run["run_id"],
        "roard:status": run["status"],
        "roard:exitCode": run["exit_code"],
        "roard:complete": run["complete"],
        "roard:lostEvents": run["lost_events"],
    }
    return {k: v for k, v in attrs.items() if v is not None}  # PROV has no null values


def _content_entity(doc: dict[str, Any], file: Mapping[str, Any]) -> str:
    """The entity of a file's content, created or extended with one more path."""
    if not file.get("hash"):  # never hashed (it vanished first): all we know is its path
        return _path_entity(doc, file)
    algorithm, _, digest = file["hash"].partition(":")
    if algorithm != "blake3" or not digest:
        raise ValueError(f"{file['path']}: unsupported hash {file['hash']!r}")
    entity = f"blake3:{digest}"
    attrs = doc["entity"].setdefault(entity, {"roard:path": []})
    if file.get("size") is not None:
        attrs["roard:size"] = file["size"]
    if file["path"] not in attrs["roard:path"]:
        attrs["roard:path"].append(file["path"])  # the same content under several paths
    return entity


def _path_entity(doc: dict[str, Any], file: Mapping[str, Any]) -> str:
    entity = f"path:{_local(file['path'])}"
    doc["entity"].setdefault(entity, {"roard:path": [file["path"]]})
    return entity


def _relate(
    doc: dict[str, Any],
    relation: str,
    entity: str,
    activity: str,
    attrs: dict[str, Any],
    time: str | None = None,
) -> None:
    """Adds an entity-activity relation under the next blank-node id of its kind."""
    records = doc.setdefault(relation, {})
    record = {"prov:entity": entity, "prov:activity": activity, **attrs}
    if time is not None:
        record["prov:time"] = time
    records[f"_:{relation}{len(records) + 1}"] = record

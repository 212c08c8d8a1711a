"""The DAG-workflow part of the OpenAPI document says what the handlers send and accept.

Every property controller/api/dag_serialize.py writes, for rows built here by hand the way
the repositories return them, must be named by the documented response schema (validators
let extra keys through, so that is checked separately), and the JSON must validate against
it. Request bodies must list exactly the fields common/defspec.py accepts, and documented
limits must be where the validators draw the line. No PostgreSQL and no server are needed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import common
from common import defspec, jobspec
from common.dag import CycleError, EdgeKind
from common.errors import ValidationError
from common.states import RunState
from controller.api import dag_runs as dag_runs_api
from controller.api import openapi, openapi_dags
from controller.api.dag_serialize import (
    dag_job_json,
    dag_json,
    dag_run_json,
    definition_json,
    edge_json,
    namespace_json,
)
from controller.api.errors import error_response
from controller.api.serialize import job_json

T0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
MIGRATION = Path(common.__file__).parent / "sql" / "migrations" / "0003_dags.sql"


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    return openapi.build_document()


def resolve(doc: dict[str, Any], node: Any) -> Any:
    while isinstance(node, dict) and "$ref" in node:
        target: Any = doc
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def undocumented_keys(doc: dict[str, Any], schema: Any, value: Any, at: str = "") -> list[str]:
    """Keys the value carries that its schema (and the schemas below it) do not name."""
    schema = resolve(doc, schema)
    found: list[str] = []
    if isinstance(value, dict) and "properties" in schema:
        props = schema["properties"]
        found += [f"{at}.{key}" for key in value if key not in props]
        for key, item in value.items():
            if key in props:
                found += undocumented_keys(doc, props[key], item, f"{at}.{key}")
    elif isinstance(value, list) and "items" in schema:
        for item in value:
            found += undocumented_keys(doc, schema["items"], item, f"{at}[]")
    return found


def check_against(doc: dict[str, Any], schema: dict[str, Any], value: Any) -> None:
    assert undocumented_keys(doc, schema, value) == []
    oas = pytest.importorskip("openapi_schema_validator")
    oas.OAS30Validator({**schema, "components": doc["components"]}).validate(value)


# ----- rows as the repositories return them -----


def namespace_row(counts: bool) -> dict[str, Any]:
    row: dict[str, Any] = {"name": "etl", "description": "", "created_at": T0}
    if counts:  # namespace_get counts what the namespace holds
        row.update(definitions=2, dags=1, jobs=3)
    return row


def definition_row(body: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        **defspec.validate_definition(body),
        "id": 5,
        "version": 2,
        "created_at": T0,
        "deleted_at": None,
        **extra,
    }


CMD = {"name": "extract", "command": "./extract.sh", "args": ["--day", "1"], "timeout": "5m"}
HTTP = {"name": "ping", "kind": "http", "http": {"url": "https://example.com/health"}}


def dag_job_row(**extra: Any) -> dict[str, Any]:
    spec = definition_row(CMD)
    return {
        **{k: spec[k] for k in defspec.SPEC_COLUMNS},
        "id": 11,
        "name": "extract",
        "namespace": "default",
        "role": "dag",
        "definition_id": 5,
        "definition_version": 2,
        "priority": 10,
        "payload": {"region": "eu"},
        "deleted_at": None,
        "created_at": T0,
        **extra,
    }


def edge_row(**extra: Any) -> dict[str, Any]:
    return {
        "id": 1,
        "dag_id": 3,
        "parent_job_id": 11,
        "parent_name": "extract",
        "child_job_id": 12,
        "child_name": "load",
        "dependency_type": EdgeKind.DATA.value,
        "created_at": T0,
        **extra,
    }


def dag_row(**extra: Any) -> dict[str, Any]:
    return {
        **defspec.validate_dag({"name": "nightly", "schedule": "0 2 * * *"}),
        "id": 3,
        "version": 4,
        "catchup_window_seconds": 60.0,
        "next_fire_at": T0 + timedelta(days=1),
        "one_shot": False,
        "created_at": T0,
        "updated_at": T0,
        "deleted_at": None,
        **extra,
    }


def node_row(job_id: int, state: str, **extra: Any) -> dict[str, Any]:
    """A row of the dag_run_nodes query, with the parents dag_runs.get adds."""
    return {
        "run_id": 100 + job_id,
        "job_id": job_id,
        "name": f"job-{job_id}",
        "state": state,
        "attempt": 1,
        "max_retries": 2,
        "not_before": None,
        "dispatched_at": None,
        "started_at": None,
        "finished_at": None,
        "exit_code": None,
        "output": None,
        "output_truncated": False,
        "error": None,
        "worker_id": None,
        "idempotency_key": None,
        "reused_run_id": None,
        "cancel_requested": False,
        "delay_interval_seconds": 0.0,
        "kind": "cmd",
        "parents": [],
        **extra,
    }


def dag_run_row(**extra: Any) -> dict[str, Any]:
    return {
        "id": 4,
        "dag_id": 3,
        "dag_version": 4,
        "namespace": "default",
        "state": "running",
        "trigger": "manual",
        "idempotency_key": None,
        "request_hash": None,
        "error": None,
        "scheduled_for": T0,
        "created_at": T0,
        "finished_at": None,
        **extra,
    }


def dag_run_detail_row() -> dict[str, Any]:
    done = T0 + timedelta(seconds=3)
    return dag_run_row(
        dag_name="nightly",
        edges=[[11, 12, EdgeKind.DATA.value], [11, 13, EdgeKind.ORDER_ONLY.value]],
        nodes=[
            node_row(
                11,
                "succeeded",
                dispatched_at=T0,
                started_at=T0,
                finished_at=done,
                exit_code=0,
                output="rows: 10\n",
                worker_id="w1",
                idempotency_key="extract-2026-11-23",
            ),
            node_row(12, "waiting", parents=[11], delay_interval_seconds=30.0, kind="http"),
            node_row(13, "succeeded", parents=[11], reused_run_id=90, finished_at=done),
        ],
    )


SERIALIZED: list[tuple[str, str, Callable[[], dict[str, Any]]]] = [
    ("namespace created", "Namespace", lambda: namespace_json(namespace_row(counts=False))),
    ("namespace with counts", "Namespace", lambda: namespace_json(namespace_row(counts=True))),
    ("cmd definition", "Definition", lambda: definition_json(definition_row(CMD))),
    ("http definition", "Definition", lambda: definition_json(definition_row(HTTP))),
    (
        "pruned definition",
        "Definition",
        lambda: definition_json(definition_row(CMD, deleted_at=T0, pruned=True)),
    ),
    (
        "definition written with a schedule",
        "DefinitionWritten",
        lambda: {
            **definition_json(
                definition_row({**CMD, "cron_spec": "0 3 * * *"}, scheduled_job_id=9)
            ),
            "outcome": "updated",
        },
    ),
    (
        "definition written without a schedule",
        "DefinitionWritten",
        lambda: {
            **definition_json(definition_row(HTTP, scheduled_job_id=None)),
            "outcome": "created",
        },
    ),
    ("dag job read alone", "DagJob", lambda: dag_job_json(dag_job_row(dag_ids=[3, 8]))),
    (
        "workflow node job",
        "DagJob",
        lambda: dag_job_json(
            dag_job_row(definition_id=None, definition_version=None, payload=None, deleted_at=T0)
        ),
    ),
    ("edge", "Edge", lambda: edge_json(edge_row())),
    (
        "pruned edge",
        "Edge",
        lambda: edge_json(
            edge_row(
                parent_name=None,
                child_name=None,
                dependency_type=EdgeKind.ORDER_ONLY.value,
                pruned=True,
            )
        ),
    ),
    (
        "dag in a list",
        "Dag",
        lambda: dag_json(
            dag_row(
                latest_run_id=4,
                latest_run_state="failed",
                latest_run_created_at=T0,
                latest_run_finished_at=T0,
            )
        ),
    ),
    (
        "dag in a list, never run",
        "Dag",
        lambda: dag_json(
            dag_row(
                latest_run_id=None,
                latest_run_state=None,
                latest_run_created_at=None,
                latest_run_finished_at=None,
            )
        ),
    ),
    (
        "dag read alone",
        "Dag",
        lambda: dag_json(
            dag_row(
                jobs=[dag_job_row(), dag_job_row(id=12, name="load")],
                dependencies=[edge_row()],
                latest_run={"id": 4, "state": "running", "created_at": T0, "finished_at": None},
            )
        ),
    ),
    (
        "deleted dag, never run",
        "Dag",
        lambda: dag_json(
            dag_row(
                schedule=None,
                next_fire_at=None,
                deleted_at=T0,
                pruned=True,
                jobs=[],
                dependencies=[],
                latest_run=None,
            )
        ),
    ),
    ("dag run in a list", "DagRun", lambda: dag_run_json(dag_run_row())),
    (
        "skipped scheduled dag run",
        "DagRun",
        lambda: dag_run_json(
            dag_run_row(state="skipped", trigger="catchup", error="missed", finished_at=T0)
        ),
    ),
    ("dag run read alone", "DagRunDetail", lambda: dag_run_json(dag_run_detail_row())),
]


@pytest.mark.parametrize(
    ("schema", "build"), [(s, b) for _, s, b in SERIALIZED], ids=[i for i, _, _ in SERIALIZED]
)
def test_every_field_dag_serialize_writes_is_documented(
    doc: dict[str, Any], schema: str, build: Callable[[], dict[str, Any]]
) -> None:
    check_against(doc, openapi.ref(schema), build())


def test_get_job_documents_a_cron_job_or_a_dag_job(doc: dict[str, Any]) -> None:
    """GET /api/v1/jobs/{ref} answers either shape; oneOf needs exactly one to match."""
    op = doc["paths"]["/api/v1/jobs/{ref}"]["get"]
    schema = op["responses"]["200"]["content"]["application/json"]["schema"]
    cron = {
        **jobspec.validate_job({"name": "backup", "schedule": "@hourly", "command": "echo"}),
        "id": 7,
        "next_fire_at": T0,
        "version": 1,
        "missed_count": 0,
        "skipped_overlap_count": 0,
        "buffer_dropped_count": 0,
        "created_at": T0,
        "updated_at": T0,
    }
    oas = pytest.importorskip("openapi_schema_validator")
    validator = oas.OAS30Validator({**schema, "components": doc["components"]})
    validator.validate(job_json(cron))
    validator.validate(dag_job_json(dag_job_row(dag_ids=[3])))


def test_a_cycle_answer_matches_the_documented_409(doc: dict[str, Any]) -> None:
    workflow = {
        "nodes": [
            {"id": "extract", "command": "true", "depends_on": ["load"]},
            {"id": "load", "command": "true", "depends_on": ["extract"]},
        ]
    }
    with pytest.raises(CycleError) as err:
        defspec.validate_workflow(workflow)
    exc = err.value
    body = json.loads(error_response(409, exc.code, exc.message, exc.field, cycle=exc.cycle).text)
    assert body["error"]["cycle"] == ["extract", "load"]
    for path in (
        "/api/v1/dags/{id}/dependencies",
        "/api/v1/dags/{id}/dependencies/bulk",
        "/api/v1/workflows",
    ):
        response = doc["paths"][path]["post"]["responses"]["409"]
        check_against(doc, response["content"]["application/json"]["schema"], body)


# ----- request bodies match the validators -----


def accepted_fields(validate: Callable[[Any], Any], base: dict[str, Any] | None = None) -> set[str]:
    """The field names a defspec validator allows, read from its unknown-field error."""
    with pytest.raises(ValidationError) as err:
        validate({**(base or {}), "zz_not_a_field": 1})
    found = re.search(r"allowed: ([^)]*)\)", err.value.message)
    assert found, err.value.message
    return set(found.group(1).split(", "))


BODIES: list[tuple[str, Callable[[], set[str]]]] = [
    ("NamespaceCreate", lambda: accepted_fields(defspec.validate_namespace)),
    ("DefinitionCreate", lambda: set(defspec.DEFINITION_FIELDS)),
    ("DefinitionBulk", lambda: accepted_fields(defspec.validate_bulk_definitions)),
    ("DagCreate", lambda: accepted_fields(defspec.validate_dag)),
    ("DagJobCreate", lambda: accepted_fields(defspec.validate_job_placement)),
    ("EdgeCreate", lambda: accepted_fields(defspec.validate_edge)),
    ("EdgeBulk", lambda: accepted_fields(defspec.validate_edges_bulk)),
    ("DagRunRequest", lambda: accepted_fields(defspec.validate_run_request)),
    ("Workflow", lambda: accepted_fields(defspec.validate_workflow)),
    ("WorkflowNode", lambda: set(defspec.NODE_FIELDS)),
]


@pytest.mark.parametrize(("schema", "fields"), BODIES, ids=[b for b, _ in BODIES])
def test_request_bodies_list_exactly_the_accepted_fields(
    doc: dict[str, Any], schema: str, fields: Callable[[], set[str]]
) -> None:
    body = doc["components"]["schemas"][schema]
    assert set(body["properties"]) == fields()
    assert body["additionalProperties"] is False


def with_node(field: str, value: Any) -> Any:
    return defspec.validate_workflow({"nodes": [{"id": "a", "command": "true", field: value}]})


def with_http(field: str, value: Any) -> Any:
    http = {"url": "https://example.com", field: value}
    return defspec.validate_definition({"name": "ping", "kind": "http", "http": http})


def at_top(validate: Callable[[Any], Any], base: dict[str, Any]) -> Callable[[str, Any], Any]:
    return lambda field, value: validate({**base, field: value})


NULLS: list[tuple[str, tuple[str, ...], Callable[[str, Any], Any]]] = [
    ("NamespaceCreate", ("name",), at_top(defspec.validate_namespace, {"name": "etl"})),
    (
        "DefinitionCreate",
        ("name", "command"),
        at_top(defspec.validate_definition, {"name": "x", "command": "true"}),
    ),
    ("DagCreate", ("name",), at_top(defspec.validate_dag, {"name": "x"})),
    ("DagJobCreate", ("definition",), at_top(defspec.validate_job_placement, {"definition": "x"})),
    (
        "EdgeCreate",
        ("parent", "child"),
        at_top(defspec.validate_edge, {"parent": "a", "child": "b"}),
    ),
    ("DagRunRequest", (), at_top(defspec.validate_run_request, {})),
    (
        "Workflow",
        ("nodes",),
        at_top(defspec.validate_workflow, {"nodes": [{"id": "a", "command": "true"}]}),
    ),
    ("WorkflowNode", ("id", "command"), with_node),
]


@pytest.mark.parametrize(("schema", "given", "validate"), NULLS, ids=[n for n, _, _ in NULLS])
def test_documented_nullable_fields_are_those_the_validators_take_null_for(
    doc: dict[str, Any],
    schema: str,
    given: tuple[str, ...],
    validate: Callable[[str, Any], Any],
) -> None:
    props = doc["components"]["schemas"][schema]["properties"]
    cases = [(field, prop, validate) for field, prop in props.items() if field not in given]
    if schema == "DefinitionCreate":
        http = props["http"]["properties"]
        cases += [(f, p, with_http) for f, p in http.items() if f != "url"]
    wrong = []
    for field, prop, check in cases:
        documented = bool(
            prop.get("nullable") or any(o.get("nullable") for o in prop.get("oneOf", []))
        )
        try:
            check(field, None)
            accepted = True
        except ValidationError:
            accepted = False
        if accepted != documented:
            wrong.append(f"{field}: null is {'accepted' if accepted else 'refused'}")
    assert wrong == []


def test_http_request_fields_match_the_validator(doc: dict[str, Any]) -> None:
    documented = doc["components"]["schemas"]["DefinitionCreate"]["properties"]["http"]
    allowed = accepted_fields(
        lambda b: defspec.validate_definition({"name": "ping", "kind": "http", "http": b}),
        {"url": "https://example.com"},
    )
    assert set(documented["properties"]) == allowed
    assert documented["required"] == ["url"]


def test_documented_examples_are_accepted(doc: dict[str, Any]) -> None:
    schemas = doc["components"]["schemas"]
    defspec.validate_definition(schemas["DefinitionCreate"]["example"])
    defspec.validate_job_placement(schemas["DagJobCreate"]["example"])
    defspec.validate_edge(schemas["EdgeCreate"]["example"])
    workflow = defspec.validate_workflow(schemas["Workflow"]["example"])
    assert [n.node_id for n in workflow.nodes] == ["extract", "load"]


def test_documented_list_limits_are_where_the_validators_draw_the_line(
    doc: dict[str, Any],
) -> None:
    schemas = doc["components"]["schemas"]

    def nodes(n: int) -> dict[str, Any]:
        return {"nodes": [{"id": f"n{i}", "command": "true"} for i in range(n)]}

    def definitions(n: int) -> dict[str, Any]:
        return {"definitions": [{"name": f"d{i}", "command": "true"} for i in range(n)]}

    def edges(n: int) -> dict[str, Any]:
        return {"dependencies": [{"parent_job_id": i + 1, "child": "x"} for i in range(n)]}

    for validate, build, limit in (
        (defspec.validate_workflow, nodes, schemas["Workflow"]["properties"]["nodes"]),
        (
            defspec.validate_bulk_definitions,
            definitions,
            schemas["DefinitionBulk"]["properties"]["definitions"],
        ),
        (defspec.validate_edges_bulk, edges, schemas["EdgeBulk"]["properties"]["dependencies"]),
    ):
        validate(build(limit["maxItems"]))
        with pytest.raises(ValidationError):
            validate(build(limit["maxItems"] + 1))
        with pytest.raises(ValidationError):
            validate(build(limit["minItems"] - 1))


def test_documented_value_limits_are_where_the_validators_draw_the_line(
    doc: dict[str, Any],
) -> None:
    schemas = doc["components"]["schemas"]
    priority = schemas["DagJobCreate"]["properties"]["priority"]
    for value in (priority["minimum"], priority["maximum"]):
        assert defspec.validate_job_placement({"definition": "x", "priority": value})
    for value in (priority["minimum"] - 1, priority["maximum"] + 1):
        with pytest.raises(ValidationError):
            defspec.validate_job_placement({"definition": "x", "priority": value})

    key = schemas["DagRunRequest"]["properties"]["idempotency_key"]
    assert defspec.validate_run_request({"idempotency_key": "k" * key["maxLength"]})
    with pytest.raises(ValidationError):
        defspec.validate_run_request({"idempotency_key": "k" * (key["maxLength"] + 1)})

    namespace = re.compile(schemas["NamespaceCreate"]["properties"]["name"]["pattern"])
    for name in ("etl", "team-a_1", "A", "-x", "a" * 64, "ns/x"):
        try:
            defspec.validate_namespace({"name": name})
            accepted = True
        except ValidationError:
            accepted = False
        assert bool(namespace.search(name)) == accepted, name


# ----- enums without a Python constant, and the merge -----


def migration_check(table: str, column: str) -> list[str]:
    """The values of a ``CHECK (column IN (...))`` in the CREATE TABLE of migration 0003."""
    body = re.search(rf"CREATE TABLE {table} \((.*?)\n\);", MIGRATION.read_text(), re.S)
    assert body, table
    values = re.search(rf"CHECK \({column} IN \(([^)]*)\)\)", body.group(1))
    assert values, column
    return [v.strip().strip("'") for v in values.group(1).split(",")]


def test_dag_run_enums_match_the_database_and_the_handlers(doc: dict[str, Any]) -> None:
    run = doc["components"]["schemas"]["DagRun"]["properties"]
    assert sorted(run["trigger"]["enum"]) == sorted(migration_check("dag_runs", "trigger"))
    assert sorted(run["state"]["enum"]) == sorted(migration_check("dag_runs", "state"))
    assert set(run["state"]["enum"]) == dag_runs_api.DAG_RUN_STATES
    node = doc["components"]["schemas"]["DagRunNode"]["properties"]
    assert node["state"]["enum"] == [s.value for s in RunState]
    trigger = doc["components"]["schemas"]["Run"]["properties"]["trigger"]["enum"]
    assert "dag" in trigger  # the runs of DAG nodes are listed by /api/v1/runs too


def test_the_dag_parts_overwrite_nothing_of_the_cron_document(doc: dict[str, Any]) -> None:
    assert set(openapi_dags.schemas()) & set(openapi.schemas()) == set()
    assert set(openapi_dags.parameters()) & set(openapi.parameters()) == set()
    assert set(openapi_dags.paths()) & set(openapi.paths()) == set()
    assert set(openapi_dags.paths()) <= set(doc["paths"])
    tags = [t["name"] for t in doc["tags"]]
    assert len(tags) == len(set(tags))
    used = {op["tags"][0] for item in doc["paths"].values() for op in item.values()}
    assert used <= set(tags)

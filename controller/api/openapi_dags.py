"""The DAG-workflow part of the OpenAPI document: namespaces, definitions, DAGs, DAG runs,
the operator actions on DAG jobs, and the admin routes.

It lives in its own module so the cron-side document in controller/api/openapi.py stays
readable; it is built with that module's helpers and merged by its ``build_document``. As
there, limits, enums and patterns are read from the code that enforces them
(common.defspec, common.jobspec, common.states, common.dag, the handlers), so the document
cannot drift from the validation. tests/unit/test_openapi_dags.py checks that every field
controller/api/dag_serialize.py writes is documented and that every body field the
validators accept is listed.

Nullable objects are written out inline rather than as a ``$ref``: OpenAPI 3.0 ignores
``nullable`` next to a ``$ref``, and an ``allOf`` wrapper would refuse the null.
"""

from __future__ import annotations

from typing import Any

from common import defspec, jobspec
from common.dag import EdgeKind
from common.repo import prune as prune_repo
from common.states import MANUAL_ACTIONS, RunState
from controller.api import dag_runs as dag_runs_api
from controller.api.openapi import (
    BODY,
    DB,
    Schema,
    duration,
    integer,
    job_input_properties,
    json_response,
    masked_secrets,
    obj,
    operation,
    page_of,
    ref,
    string,
    string_map,
    timestamp,
)

# Mirrors of values that are string literals where they are written (SQL, repositories,
# handlers), for want of a Python constant to read.
DAG_RUN_TRIGGERS = ("manual", "schedule", "catchup", "workflow")
"""The CHECK on dag_runs.trigger in common/sql/migrations/0003_dags.sql (test_openapi_dags
reads it from there)."""
UPSERT_OUTCOMES = ("created", "updated", "unchanged")
"""What common/repo/definitions.upsert reports for each definition."""
CANCELLING = "cancelling"
"""What a node action answers for an active node that its worker is asked to stop."""

DAG_RUN_STATES = sorted(dag_runs_api.DAG_RUN_STATES)
NODE_STATES = [s.value for s in RunState]
EDGE_KINDS = [k.value for k in EdgeKind]
KINDS = list(defspec.KINDS)

TAGS = [
    {"name": "namespaces", "description": "Folders of definitions, DAGs and their jobs."},
    {
        "name": "definitions",
        "description": "Immutable, versioned job definitions (cmd, http, binary).",
    },
    {
        "name": "dags",
        "description": "DAGs: jobs placed from definitions and the dependency edges between them.",
    },
    {
        "name": "dag-runs",
        "description": "Runs of DAGs and of one-shot workflows, and operator actions on their "
        "jobs (complete, fail, retry, cancel).",
    },
    {"name": "admin", "description": "Prune to history; reload the leader's schedules."},
]


# ----- shared pieces -----


def _seconds(description: str = "") -> Schema:
    return {"type": "number", "description": f"{description} Seconds.".strip()}


def _nullable(schema: Schema, description: str) -> Schema:
    return {**schema, "nullable": True, "description": description}


def _array(items: Schema, description: str = "", **extra: Any) -> Schema:
    return {
        "type": "array",
        "items": items,
        **({"description": description} if description else {}),
        **extra,
    }


def _namespace_input() -> Schema:
    return string(
        "Namespace (it must exist); null means `default`.",
        pattern=defspec.NAMESPACE_RE.pattern,
        default=defspec.DEFAULT_NAMESPACE,
        nullable=True,
    )


def _name_input(description: str, **extra: Any) -> Schema:
    return string(
        f"{description} Letters, digits, `.`, `_`, `-`; not all digits.",
        pattern=jobspec.NAME_RE.pattern,
        **extra,
    )


def _idempotency_key(description: str) -> Schema:
    return string(description, minLength=1, maxLength=defspec.MAX_IDEMPOTENCY_KEY, nullable=True)


def _http_spec() -> Schema:
    """A stored HTTP request, as defspec normalises it (every field present)."""
    return obj(
        {
            "method": string(enum=list(defspec.HTTP_METHODS)),
            "url": string(format="uri"),
            "headers": {"type": "object", "additionalProperties": string()},
            "body": string(),
            "expected_status": integer("0 means any 2xx."),
        }
    )


def _exec_input() -> dict[str, Schema]:
    """What a definition and an inline workflow node both accept (defspec's exec spec)."""
    job = job_input_properties()  # the fields validated exactly like a cron job's
    return {
        "kind": string(
            "What the worker runs: a shell command or argv (`cmd`), an HTTP request (`http`), "
            "or an executable with `args` and never a shell (`binary`). Null means `cmd`.",
            enum=KINDS,
            default="cmd",
            nullable=True,
        ),
        "command": string(
            "Required unless `kind` is `http` (then absent or empty). Run by `/bin/sh -c` "
            "when `args` is null, else the executable.",
            maxLength=jobspec.MAX_COMMAND,
            example="./extract.sh",
        ),
        "args": _array(
            string(maxLength=jobspec.MAX_VALUE),
            "Arguments of `command`, no shell; null runs `command` in a shell "
            "(`binary` always runs without one).",
            maxItems=jobspec.MAX_ARGS,
            nullable=True,
        ),
        "env": job["env"],
        "secret_env": {
            **string_map(
                "Like `env`, but passed only to the process and shown as `***` in every "
                "answer. In a new version of a definition, `***` keeps the value of that name "
                "from the live version (so a definition read from the API can be sent back); "
                "a workflow node has no stored value to keep. A name may not be in both `env` "
                f"and `secret_env`; together at most {jobspec.MAX_ENV} entries.",
                jobspec.ENV_KEY_RE.pattern,
                jobspec.MAX_ENV,
            ),
            "nullable": True,
        },
        "cwd": string(
            "Absolute working directory; null means the worker's.", pattern="^/", nullable=True
        ),
        "http": _nullable(
            {
                **obj(
                    {
                        "method": string(
                            "Case-insensitive; null means GET.",
                            enum=list(defspec.HTTP_METHODS),
                            default="GET",
                            nullable=True,
                        ),
                        "url": string(
                            "Absolute http:// or https:// URL.",
                            format="uri",
                            maxLength=jobspec.MAX_VALUE,
                        ),
                        "headers": {
                            "type": "object",
                            "additionalProperties": string(maxLength=jobspec.MAX_VALUE),
                            "nullable": True,
                        },
                        "body": string(maxLength=defspec.MAX_HTTP_BODY, nullable=True),
                        "expected_status": integer(
                            "The status that counts as success; 0 means any 2xx.", default=0
                        ),
                    },
                    required=("url",),
                ),
                "additionalProperties": False,
            },
            "The request to send; required when `kind` is `http`, refused otherwise.",
        ),
        "timeout": job["timeout"],
        "max_retries": job["max_retries"],
        "retry_backoff": job["retry_backoff"],
        "delay_interval": duration(
            "In a DAG run, wait this long after the last parent finished before starting.",
            defspec.MAX_DELAY,
            "0",
        ),
    }


def _strict(schema: Schema, description: str, **extra: Any) -> Schema:
    """A request body: unknown fields are refused with a 400 naming them. OpenAPI 3.0 wants
    ``required`` left out rather than empty."""
    body = {**schema, "additionalProperties": False, "description": description, **extra}
    if not body["required"]:
        del body["required"]
    return body


def _list_of(item: str) -> Schema:
    return obj({"items": _array(ref(item)), "total": integer("Items in this answer.")})


# ----- schemas -----


def _request_schemas() -> dict[str, Schema]:
    exec_input = _exec_input()
    definition = {
        "namespace": _namespace_input(),
        "name": _name_input(
            "Unique in its namespace among live definitions; sending it again with a different "
            "spec makes the next version.",
            example="extract",
        ),
        "description": string("Free text; null means empty.", nullable=True),
        **exec_input,
        "cron_spec": string(
            "Also run the newest version on this schedule, as a cron job named `name` "
            "(`namespace.name` outside `default`); null: only placed in DAGs. Same syntax as a "
            "job's `schedule`.",
            nullable=True,
            example="0 3 * * *",
        ),
        "timezone": string(
            "IANA time zone of `cron_spec`; null means UTC.", default="UTC", nullable=True
        ),
        "labels": {
            **string_map(
                "Worker selector: every pair must match the worker's labels.",
                jobspec.LABEL_RE.pattern,
                jobspec.MAX_LABELS,
            ),
            "nullable": True,
        },
    }
    node = {
        "id": _name_input("Node id, unique in the workflow; the job's name."),
        **exec_input,
        "retries": integer(
            "Alias of `max_retries` (give one).",
            minimum=0,
            maximum=jobspec.MAX_RETRIES,
            nullable=True,
        ),
        "timeout_seconds": duration("Alias of `timeout` (give one).", jobspec.MAX_TIMEOUT, "0"),
        "idempotency_key": _idempotency_key(
            "A key that already succeeded in this namespace reuses that result instead of "
            "running (`reused_run_id`); 409 while that run is still active."
        ),
        "depends_on": _array(
            string(pattern=jobspec.NAME_RE.pattern),
            "Ids of the nodes this one waits for.",
            nullable=True,
        ),
        "dependency_type": string(
            "Kind of the edges from `depends_on`: `data` passes the parents' output, "
            "`order-only` only orders (`order_only` is accepted too). Null means `data`.",
            enum=EDGE_KINDS,
            default=EdgeKind.DATA.value,
            nullable=True,
        ),
    }
    edge = {
        "parent_job_id": integer("The parent by job id.", minimum=1, nullable=True),
        "parent": string(
            "The parent by job name in this DAG.", pattern=jobspec.NAME_RE.pattern, nullable=True
        ),
        "child_job_id": integer("The child by job id.", minimum=1, nullable=True),
        "child": string(
            "The child by job name in this DAG.", pattern=jobspec.NAME_RE.pattern, nullable=True
        ),
        "dependency_type": string(
            "`data` (the child receives the parent's output) or `order-only`; `order_only` is "
            "accepted too. Null means `data`.",
            enum=EDGE_KINDS,
            default=EdgeKind.DATA.value,
            nullable=True,
        ),
    }
    return {
        "NamespaceCreate": _strict(
            obj(
                {
                    "name": string(
                        "Lowercase letters, digits, `_`, `-`; starts with a letter or digit.",
                        pattern=defspec.NAMESPACE_RE.pattern,
                        example="etl",
                    ),
                    "description": string("Free text; null means empty.", nullable=True),
                },
                required=("name",),
            ),
            "A new namespace.",
        ),
        "DefinitionCreate": _strict(
            obj(definition, required=("name",)),
            "A job definition. Writing a name again with a different spec makes version N+1 "
            "and retires version N; the same spec changes nothing (200, `unchanged`).",
            example={
                "namespace": "etl",
                "name": "extract",
                "command": "./extract.sh",
                "timeout": "10m",
                "max_retries": 2,
            },
        ),
        "DefinitionBulk": _strict(
            obj(
                {
                    "definitions": _array(
                        ref("DefinitionCreate"), minItems=1, maxItems=defspec.MAX_BULK
                    )
                }
            ),
            "Definitions written in one transaction: all or none. A name may appear once.",
        ),
        "DagCreate": _strict(
            obj(
                {
                    "namespace": _namespace_input(),
                    "name": _name_input(
                        "Unique in its namespace among live DAGs.", example="nightly"
                    ),
                    "description": string("Free text; null means empty.", nullable=True),
                    "schedule": string(
                        "Start a run per slot of this cron schedule (one run per slot, missed "
                        "slots caught up like a job's); null: runs start only by request.",
                        nullable=True,
                        example="0 2 * * *",
                    ),
                    "timezone": string(
                        "IANA time zone of `schedule`; null means UTC.",
                        default="UTC",
                        nullable=True,
                    ),
                    "paused": {"type": "boolean", "default": False},
                },
                required=("name",),
            ),
            "A new DAG, empty until jobs are placed in it.",
        ),
        "DagJobCreate": _strict(
            obj(
                {
                    "definition_id": integer(
                        "Place this definition version (it stays on this version).",
                        minimum=1,
                        nullable=True,
                    ),
                    "definition": _name_input(
                        "Place the newest version of the live definition of this name in the "
                        "DAG's namespace.",
                        nullable=True,
                    ),
                    "job_id": integer(
                        "Share this live DAG job of the same namespace with this DAG (it keeps "
                        "its name, priority and payload).",
                        minimum=1,
                        nullable=True,
                    ),
                    "name": _name_input(
                        "The job's name in the DAG, unique there; null means the definition's.",
                        nullable=True,
                    ),
                    "priority": integer(
                        "Higher starts first among ready jobs.",
                        minimum=-defspec.MAX_PRIORITY,
                        maximum=defspec.MAX_PRIORITY,
                        default=0,
                    ),
                    "payload": {
                        "description": "Any JSON, kept with the job; at most "
                        f"{defspec.MAX_PAYLOAD} bytes serialised.",
                        "nullable": True,
                    },
                },
                required=(),
            ),
            "Give exactly one of `definition_id`, `definition` or `job_id`.",
            example={"definition": "extract", "name": "extract-eu"},
        ),
        "EdgeCreate": _strict(
            obj(edge, required=()),
            "`child` runs after `parent`. Give each end once, by id or by name.",
            example={"parent": "extract", "child": "load"},
        ),
        "EdgeBulk": _strict(
            obj(
                {"dependencies": _array(ref("EdgeCreate"), minItems=1, maxItems=defspec.MAX_EDGES)}
            ),
            "Edges inserted all or none: one cycle anywhere refuses the request (409).",
        ),
        "DagRunRequest": _strict(
            obj(
                {
                    "idempotency_key": _idempotency_key(
                        "A key this DAG already ran under returns that run (200), not a new one."
                    )
                },
                required=(),
            ),
            "Optional; an empty body starts a run.",
        ),
        "WorkflowNode": _strict(
            obj(node, required=("id",)),
            "One job of an inline workflow.",
        ),
        "Workflow": _strict(
            obj(
                {
                    "namespace": _namespace_input(),
                    "name": _name_input(
                        "Name of the one-shot DAG; null makes `workflow-<random>`.",
                        nullable=True,
                    ),
                    "idempotency_key": _idempotency_key(
                        "Per namespace: the same key with the same body returns the existing run "
                        "(200); with another body it is a 409."
                    ),
                    "nodes": _array(
                        ref("WorkflowNode"),
                        f"`depends_on` adds up to at most {defspec.MAX_EDGES} edges.",
                        minItems=1,
                        maxItems=defspec.MAX_DAG_NODES,
                    ),
                },
                required=("nodes",),
            ),
            "A one-shot DAG built and started in one transaction; a cycle is a 409.",
            example={
                "namespace": "etl",
                "idempotency_key": "2026-11-23",
                "nodes": [
                    {"id": "extract", "command": "./extract.sh"},
                    {"id": "load", "command": "./load.sh", "depends_on": ["extract"]},
                ],
            },
        ),
        "NodeActionRequest": _strict(
            obj(
                {
                    "dag_run_id": integer(
                        "The DAG run whose instance of the job is meant; null means the newest "
                        "DAG run holding the job.",
                        minimum=1,
                        nullable=True,
                    )
                },
                required=(),
            ),
            "Optional; an empty body means the newest DAG run.",
        ),
    }


def _response_schemas() -> dict[str, Schema]:
    definition = {
        "id": integer("Id of this version."),
        "namespace": string(),
        "name": string(),
        "version": integer("From 1; never reused, also after prune."),
        "kind": string(enum=KINDS),
        "description": string(),
        "command": string(),
        "args": _array(string(), nullable=True),
        "env": {"type": "object", "additionalProperties": string()},
        "secret_env": masked_secrets(),
        "cwd": string(nullable=True),
        "http": _nullable(_http_spec(), "Set when `kind` is `http`."),
        "timeout_seconds": _seconds("0 means no timeout."),
        "max_retries": integer(),
        "retry_backoff_seconds": _seconds(),
        "delay_interval_seconds": _seconds(),
        "cron_spec": string(nullable=True),
        "timezone": string(),
        "labels": {"type": "object", "additionalProperties": string()},
        "deleted": {"type": "boolean", "description": "Retired by a newer version, or deleted."},
        "pruned": {"type": "boolean", "description": "Read back from history after prune."},
        "created_at": timestamp(),
        "deleted_at": timestamp(nullable=True),
        "scheduled_job_id": integer(
            "The cron job that runs `cron_spec` (null without one); in answers to a write "
            "that made a new version only.",
            nullable=True,
        ),
    }
    definition_required = tuple(k for k in definition if k != "scheduled_job_id")
    written = {
        **definition,
        "outcome": string(
            "`created` (version 1), `updated` (version N+1) or `unchanged` (same spec).",
            enum=list(UPSERT_OUTCOMES),
        ),
    }
    dag_job = {
        "id": integer("Job id; the same id space as cron jobs (GET /api/v1/jobs/{id})."),
        "name": string(),
        "namespace": string(),
        "role": string("`dag`: a job placed in DAGs (cron jobs are the `Job` schema)."),
        "kind": string(enum=KINDS),
        "definition_id": integer(
            "The definition version it was built from; null for a workflow node.",
            nullable=True,
        ),
        "definition_version": integer(nullable=True),
        "dag_ids": _array(
            integer(),
            "The DAGs that hold the job (filled when one job is read or placed; empty in a "
            "DAG's job list).",
        ),
        "priority": integer(),
        "payload": {"description": "The JSON given when it was placed.", "nullable": True},
        "command": string(),
        "args": _array(string(), nullable=True),
        "env": {"type": "object", "additionalProperties": string()},
        "secret_env": masked_secrets(),
        "http": _nullable(_http_spec(), "Set when `kind` is `http`."),
        "timeout_seconds": _seconds("0 means no timeout."),
        "max_retries": integer(),
        "retry_backoff_seconds": _seconds(),
        "delay_interval_seconds": _seconds(),
        "deleted": {"type": "boolean"},
        "created_at": timestamp(),
    }
    edge = {
        "id": integer(),
        "dag_id": integer(),
        "parent_job_id": integer(),
        "parent_name": string("Null once pruned to history.", nullable=True),
        "child_job_id": integer(),
        "child_name": string("Null once pruned to history.", nullable=True),
        "dependency_type": string(enum=EDGE_KINDS),
        "pruned": {"type": "boolean"},
        "created_at": timestamp(),
    }
    dag_core = {
        "id": integer(),
        "namespace": string(),
        "name": string(),
        "version": integer("Incremented by every change of its jobs or edges."),
        "description": string(),
        "schedule": string(nullable=True),
        "timezone": string(),
        "paused": {"type": "boolean"},
        "next_run_at": timestamp("Next scheduled slot; null without one.", nullable=True),
        "one_shot": {"type": "boolean", "description": "Made by POST /api/v1/workflows."},
        "pruned": {"type": "boolean", "description": "Read back from history after prune."},
        "created_at": timestamp(),
        "updated_at": timestamp(),
        "deleted_at": timestamp(nullable=True),
    }
    dag_run = {
        "id": integer(),
        "dag_id": integer(),
        "dag_name": string("Null in lists.", nullable=True),
        "dag_version": integer("The DAG's version when the run started (its graph is kept)."),
        "namespace": string(),
        "state": string(enum=DAG_RUN_STATES),
        "trigger": string(enum=list(DAG_RUN_TRIGGERS)),
        "idempotency_key": string(nullable=True),
        "error": string("E.g. why a slot was skipped.", nullable=True),
        "scheduled_for": timestamp("The slot, or when it was requested."),
        "created_at": timestamp(),
        "finished_at": timestamp(nullable=True),
    }
    node = {
        "job_id": integer(),
        "name": string(),
        "run_id": integer("The node's run (GET /api/v1/runs/{id} has its attempts)."),
        "state": string(enum=NODE_STATES),
        "attempt": integer(),
        "max_retries": integer(),
        "parents": _array(integer(), "Job ids this node waits for."),
        "exit_code": integer(nullable=True),
        "output": string("Last bytes of the output.", nullable=True),
        "output_truncated": {"type": "boolean"},
        "error": string(nullable=True),
        "worker_id": string(nullable=True),
        "idempotency_key": string(nullable=True),
        "reused_run_id": integer(
            "The earlier run whose success this node reused (same idempotency key).",
            nullable=True,
        ),
        "cancel_requested": {"type": "boolean"},
        "delay_interval_seconds": _seconds(),
        "kind": string(enum=KINDS),
        "not_before": timestamp("Not started before this (delay or back-off).", nullable=True),
        "dispatched_at": timestamp(nullable=True),
        "started_at": timestamp(nullable=True),
        "finished_at": timestamp(nullable=True),
    }
    return {
        "Namespace": obj(
            {
                "name": string(),
                "description": string(),
                "created_at": timestamp(),
                "counts": obj(
                    {
                        "definitions": integer("Live definitions."),
                        "dags": integer("Live DAGs."),
                        "jobs": integer("Live jobs."),
                    }
                ),
            },
            required=("name", "description", "created_at"),
        ),
        "NamespaceList": page_of("Namespace"),
        "NamespaceDeleted": obj({"deleted": string("Name of the deleted namespace.")}),
        "Definition": obj(definition, required=definition_required),
        "DefinitionWritten": obj(written, required=(*definition_required, "outcome")),
        "DefinitionBulkResult": obj(
            {
                "items": _array(ref("DefinitionWritten")),
                **{o: integer(f"Definitions {o}.") for o in UPSERT_OUTCOMES},
            }
        ),
        "DefinitionList": page_of("Definition"),
        "DagJob": obj(dag_job),
        "DagJobList": _list_of("DagJob"),
        "Edge": obj(edge),
        "EdgeList": _list_of("Edge"),
        "Dag": obj(
            {
                **dag_core,
                "latest_run": _nullable(
                    obj(
                        {
                            "id": integer(),
                            "state": string(enum=DAG_RUN_STATES),
                            "created_at": timestamp(),
                            "finished_at": timestamp(nullable=True),
                        }
                    ),
                    "Newest run; null before any.",
                ),
                "jobs": _array(ref("DagJob"), "In answers about one DAG."),
                "dependencies": _array(ref("Edge"), "In answers about one DAG."),
            },
            required=tuple(dag_core),
        ),
        "DagList": page_of("Dag"),
        "DagDeleted": obj({"deleted": integer("Id of the deleted DAG; its runs stay.")}),
        "DagRun": obj(dag_run),
        "DagRunDetail": obj(
            {
                **dag_run,
                "nodes": _array(ref("DagRunNode")),
                "edges": _array(
                    obj(
                        {
                            "parent_job_id": integer(),
                            "child_job_id": integer(),
                            "dependency_type": string(enum=EDGE_KINDS),
                        }
                    ),
                    "The graph as it was when the run started.",
                ),
                "node_states": {
                    "type": "object",
                    "description": "How many nodes are in each state (states with none left out).",
                    "additionalProperties": integer(),
                },
            }
        ),
        "DagRunNode": obj(node),
        "DagRunList": page_of("DagRun"),
        "NodeActionResult": obj(
            {
                "job_id": integer(),
                "dag_run_id": integer(),
                "run_id": integer("The node's run."),
                "action": string(enum=list(MANUAL_ACTIONS)),
                "state": string(
                    f"Where the node went; `{CANCELLING}` while its worker stops it.",
                    enum=sorted({target.value for _, target in MANUAL_ACTIONS.values()})
                    + [CANCELLING],
                ),
                "dag_run": ref("DagRunDetail"),
            }
        ),
        "PruneResult": obj(
            {
                "moved": obj({table: integer() for table, _ in prune_repo.STEPS}),
                "total": integer(),
            }
        ),
        "SchedulerReload": obj(
            {
                "requested": {"type": "boolean"},
                "raft_leader": string("The leader this node knows of.", nullable=True),
                "term": integer("Raft term on this node."),
            }
        ),
        "CycleConflict": obj(
            {
                "error": obj(
                    {
                        "code": string(
                            "`cycle`, or `conflict` for a reused idempotency key.",
                            example="cycle",
                        ),
                        "message": string(
                            example="dependencies: would form a cycle extract → load → extract"
                        ),
                        "field": string(),
                        "cycle": _array(
                            string(),
                            "The cycle's jobs in order, each depending on the one before and the "
                            "first on the last.",
                        ),
                    },
                    required=("code", "message"),
                )
            }
        ),
    }


def schemas() -> dict[str, Schema]:
    return {**_request_schemas(), **_response_schemas()}


# ----- parameters -----


def parameters() -> dict[str, Schema]:
    def path(description: str, schema: Schema, name: str = "id") -> Schema:
        return {
            "name": name,
            "in": "path",
            "required": True,
            "description": description,
            "schema": schema,
        }

    def query(name: str, description: str, schema: Schema) -> Schema:
        return {
            "name": name,
            "in": "query",
            "required": False,
            "description": description,
            "schema": schema,
        }

    flag = {"type": "boolean", "default": False}
    return {
        "ns": path(
            "Namespace name.",
            string(pattern=defspec.NAMESPACE_RE.pattern, example="etl"),
            name="ns",
        ),
        "definition_id": path("Definition version id.", integer(minimum=0)),
        "dag_id": path("DAG id.", integer(minimum=0)),
        "dag_run_id": path("DAG run id.", integer(minimum=0)),
        "dag_job_id": path("Id of a job placed in a DAG.", integer(minimum=0)),
        "namespace_filter": query(
            "namespace", "Only this namespace.", string(pattern=defspec.NAMESPACE_RE.pattern)
        ),
        "definition_name": query(
            "name", "Only definitions of this name.", string(pattern=jobspec.NAME_RE.pattern)
        ),
        "include_deleted": query(
            "include_deleted",
            "Also retired versions and deleted definitions (`true`/`false`, `1`/`0`, `yes`/`no`).",
            flag,
        ),
        "include_history": query(
            "include_history",
            "Also rows prune moved to history (`true`/`false`, `1`/`0`, `yes`/`no`).",
            flag,
        ),
        "dag_run_state": query(
            "state", "Only DAG runs in this state.", string(enum=DAG_RUN_STATES)
        ),
    }


# ----- paths -----


def _optional_body(op: Schema) -> Schema:
    op["requestBody"]["required"] = False
    return op


def _cycle_conflict(description: str) -> Schema:
    response = json_response(description, ref("CycleConflict"))
    response["content"]["application/json"]["example"] = {
        "error": {
            "code": "cycle",
            "message": "dependencies: would form a cycle extract → load → extract",
            "field": "dependencies",
            "cycle": ["extract", "load"],
        }
    }
    return response


def paths() -> dict[str, Schema]:
    return {**_namespace_paths(), **_definition_paths(), **_dag_paths(), **_run_paths()}


def _namespace_paths() -> dict[str, Schema]:
    tag = "namespaces"
    namespace = json_response("The namespace.", ref("Namespace"))
    return {
        "/api/v1/namespaces": {
            "post": operation(
                "createNamespace",
                tag,
                "Create a namespace (a deleted one may be created again).",
                {"201": namespace},
                body="NamespaceCreate",
                errors=(*BODY, 409, *DB),
            ),
            "get": operation(
                "listNamespaces",
                tag,
                "List namespaces by name.",
                {"200": json_response("A page of namespaces.", ref("NamespaceList"))},
                params=("limit", "offset"),
                errors=(400, *DB),
            ),
        },
        "/api/v1/namespaces/{ns}": {
            "get": operation(
                "getNamespace",
                tag,
                "One namespace, with counts of what it holds.",
                {"200": namespace},
                params=("ns",),
                errors=(400, 404, *DB),
            ),
            "delete": operation(
                "deleteNamespace",
                tag,
                "Delete an empty namespace (409 while it holds anything, and for `default`).",
                {"200": json_response("Deleted.", ref("NamespaceDeleted"))},
                params=("ns",),
                errors=(400, 404, 409, *DB),
            ),
        },
    }


def _definition_paths() -> dict[str, Schema]:
    tag = "definitions"
    written = ref("DefinitionWritten")
    return {
        "/api/v1/definitions": {
            "post": operation(
                "createDefinition",
                tag,
                "Create a definition, or its next version when the spec differs.",
                {
                    "200": json_response("Unchanged: the same spec is already current.", written),
                    "201": json_response("Created (version 1) or updated (version N+1).", written),
                },
                body="DefinitionCreate",
                errors=(*BODY, 404, 409, *DB),
            ),
            "get": operation(
                "listDefinitions",
                tag,
                "List definitions by namespace, name and version.",
                {"200": json_response("A page of definitions.", ref("DefinitionList"))},
                params=(
                    "limit",
                    "offset",
                    "namespace_filter",
                    "definition_name",
                    "include_deleted",
                    "include_history",
                ),
                errors=(400, *DB),
            ),
        },
        "/api/v1/definitions/bulk": {
            "post": operation(
                "bulkDefinitions",
                tag,
                "Create or update many definitions in one transaction: all or none.",
                {"200": json_response("Each definition's outcome.", ref("DefinitionBulkResult"))},
                body="DefinitionBulk",
                errors=(*BODY, 404, 409, *DB),
            ),
        },
        "/api/v1/definitions/{id}": {
            "get": operation(
                "getDefinition",
                tag,
                "One definition version (also a retired or pruned one).",
                {"200": json_response("The definition.", ref("Definition"))},
                params=("definition_id",),
                errors=(400, 404, *DB),
            ),
        },
    }


def _dag_paths() -> dict[str, Schema]:
    tag = "dags"
    dag = json_response("The DAG with its jobs, edges and latest run.", ref("Dag"))
    cycle = _cycle_conflict("The edges would close a cycle; `cycle` lists it. Nothing written.")
    return {
        "/api/v1/dags": {
            "post": operation(
                "createDag",
                tag,
                "Create a DAG.",
                {"201": dag},
                body="DagCreate",
                errors=(*BODY, 404, 409, *DB),
            ),
            "get": operation(
                "listDags",
                tag,
                "List DAGs by id (one-shot workflow DAGs are not listed).",
                {"200": json_response("A page of DAGs.", ref("DagList"))},
                params=("limit", "offset", "namespace_filter", "include_history"),
                errors=(400, *DB),
            ),
        },
        "/api/v1/dags/{id}": {
            "get": operation(
                "getDag",
                tag,
                "One DAG (also a deleted or pruned one).",
                {"200": dag},
                params=("dag_id",),
                errors=(400, 404, *DB),
            ),
            "delete": operation(
                "deleteDag",
                tag,
                "Delete a DAG and those of its jobs no other live DAG shares; runs stay.",
                {"200": json_response("Deleted.", ref("DagDeleted"))},
                params=("dag_id",),
                errors=(400, 404, *DB),
            ),
        },
        "/api/v1/dags/{id}/jobs": {
            "post": operation(
                "addDagJob",
                tag,
                "Place a definition version in the DAG as a job, or share an existing DAG job.",
                {"201": json_response("The job.", ref("DagJob"))},
                params=("dag_id",),
                body="DagJobCreate",
                errors=(*BODY, 404, 409, *DB),
            ),
            "get": operation(
                "listDagJobs",
                tag,
                "The DAG's jobs by id.",
                {"200": json_response("Every job of the DAG.", ref("DagJobList"))},
                params=("dag_id",),
                errors=(400, 404, *DB),
            ),
        },
        "/api/v1/dags/{id}/dependencies": {
            "post": operation(
                "addDagDependency",
                tag,
                "Add an edge; refused when it would close a cycle (also across DAGs sharing jobs).",
                {
                    "201": json_response("The edge (new or already there).", ref("Edge")),
                    "409": cycle,
                },
                params=("dag_id",),
                body="EdgeCreate",
                errors=(*BODY, 404, *DB),
            ),
            "get": operation(
                "listDagDependencies",
                tag,
                "The DAG's edges by id.",
                {"200": json_response("Every edge of the DAG.", ref("EdgeList"))},
                params=("dag_id", "include_history"),
                errors=(400, 404, *DB),
            ),
        },
        "/api/v1/dags/{id}/dependencies/bulk": {
            "post": operation(
                "addDagDependencies",
                tag,
                "Add many edges in one transaction: all or none.",
                {
                    "201": json_response(
                        "The edges named (new or already there).", ref("EdgeList")
                    ),
                    "409": cycle,
                },
                params=("dag_id",),
                body="EdgeBulk",
                errors=(*BODY, 404, *DB),
            ),
        },
    }


def _run_paths() -> dict[str, Schema]:
    tag = "dag-runs"
    detail = ref("DagRunDetail")
    paths: dict[str, Schema] = {
        "/api/v1/dags/{id}/runs": {
            "post": _optional_body(
                operation(
                    "startDagRun",
                    tag,
                    "Start a run of the DAG now (trigger `manual`).",
                    {
                        "201": json_response("The new run.", detail),
                        "200": json_response("The run this idempotency key started.", detail),
                    },
                    params=("dag_id",),
                    body="DagRunRequest",
                    errors=(*BODY, 404, *DB),
                )
            ),
            "get": operation(
                "listDagRuns",
                tag,
                "The DAG's runs, newest first.",
                {"200": json_response("A page of DAG runs.", ref("DagRunList"))},
                params=("dag_id", "limit", "offset", "dag_run_state"),
                errors=(400, 404, *DB),
            ),
        },
        "/api/v1/dag-runs/{id}": {
            "get": operation(
                "getDagRun",
                tag,
                "One DAG run with its nodes and graph.",
                {"200": json_response("The DAG run.", detail)},
                params=("dag_run_id",),
                errors=(400, 404, *DB),
            ),
        },
        "/api/v1/dag-runs/{id}/cancel": {
            "post": operation(
                "cancelDagRun",
                tag,
                "Cancel a running DAG run: waiting nodes at once, active ones are asked to stop.",
                {"200": json_response("The DAG run.", detail)},
                params=("dag_run_id",),
                errors=(400, 404, 409, *DB),
            ),
        },
        "/api/v1/workflows": {
            "post": operation(
                "startWorkflow",
                tag,
                "Build a one-shot DAG from inline nodes and start it, in one transaction.",
                {
                    "201": json_response("The new run.", detail),
                    "200": json_response("The run this idempotency key started.", detail),
                    "409": _cycle_conflict(
                        "`depends_on` closes a cycle (`cycle` lists it), the idempotency key was "
                        "used for another workflow, or a node's key belongs to an active run."
                    ),
                },
                body="Workflow",
                errors=(*BODY, 404, *DB),
            ),
        },
    }
    summaries = {
        "complete": "Mark the job's instance succeeded (its waiting descendants can start).",
        "fail": "Mark the job's unfinished instance failed.",
        "retry": "Run a failed, timed-out or cancelled instance again as a new attempt.",
        "cancel": "Cancel the job's unfinished instance (an active one is asked to stop).",
    }
    for action, summary in summaries.items():
        paths[f"/api/v1/jobs/{{id}}/{action}"] = {
            "post": _optional_body(
                operation(
                    f"{action}DagJob",
                    tag,
                    summary,
                    {
                        "200": json_response(
                            "What happened, and the DAG run.", ref("NodeActionResult")
                        )
                    },
                    params=("dag_job_id",),
                    body="NodeActionRequest",
                    errors=(*BODY, 404, 409, *DB),
                )
            ),
        }
    paths["/api/v1/admin/prune"] = {
        "post": operation(
            "pruneHistory",
            "admin",
            "Move deleted, finished, unreferenced DAGs, edges, jobs and definition versions to "
            "the history tables, in one transaction.",
            {"200": json_response("Rows moved per table.", ref("PruneResult"))},
            errors=DB,
        ),
    }
    paths["/api/v1/scheduler/reload"] = {
        "post": operation(
            "reloadScheduler",
            "admin",
            "Ask the leader to rebuild its schedules from PostgreSQL (from any controller).",
            {"202": json_response("Requested.", ref("SchedulerReload"))},
            errors=DB,
        ),
    }
    return paths

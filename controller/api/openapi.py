"""The OpenAPI document of the REST API, and the Swagger UI page that renders it.

Why the document is built from Python rather than kept as a JSON file: its limits and enums
are read from the modules that enforce them (common.jobspec, common.states, common.catchup),
so the document cannot drift from the validation, and tests/unit/test_openapi.py fails when
a route of the router is missing here or a documented route no longer exists.

OpenAPI 3.0.3 rather than 3.1 because the Swagger UI we ship (the ``swagger-ui-bundle``
package, Swagger UI 4) renders 3.0 documents only. The UI's files are served from the
installed package, so the page needs no network at install or run time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aiohttp import web

from common import jobspec
from common.catchup import CatchupMode
from common.states import OverlapPolicy, RunState
from common.version import version
from controller.api import access

OPENAPI_PATH = "/api/v1/openapi.json"
DOCS_PATH = "/api/docs"

Schema = dict[str, Any]

# Mirrors of controller/api/params.py and jobs.py; test_openapi checks the handlers agree.
PAGE_LIMIT_DEFAULT, PAGE_LIMIT_MAX, PAGE_OFFSET_MAX = 100, 1000, 10_000_000
BACKFILL_MAX_SLOTS, BACKFILL_RATE_DEFAULT, BACKFILL_RATE_MAX = 10_000, 10, 1000
RUN_TRIGGERS = ("schedule", "catchup", "manual", "backfill", "dag")
OVERLAP_ALIASES = ("forbid", "replace")

DURATION_PATTERN = r"^((\d+(\.\d*)?|\.\d+)|((\d+(\.\d*)?|\.\d+)(ms|d|h|m|s))+)$"
TIME_EXAMPLE = "2026-11-23T10:00:00Z"


# ----- schema helpers -----


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def obj(properties: dict[str, Schema], required: tuple[str, ...] | None = None) -> Schema:
    """An object; every property is required (always present) unless ``required`` says."""
    return {
        "type": "object",
        "properties": properties,
        "required": sorted(properties if required is None else required),
    }


def string(description: str = "", **extra: Any) -> Schema:
    return {"type": "string", **({"description": description} if description else {}), **extra}


def integer(description: str = "", **extra: Any) -> Schema:
    return {"type": "integer", **({"description": description} if description else {}), **extra}


def timestamp(description: str = "", nullable: bool = False) -> Schema:
    """RFC 3339 with an offset, as serialize.iso writes it."""
    extra: dict[str, Any] = {"nullable": True} if nullable else {}
    return string(description, format="date-time", **extra)


def string_map(description: str, key_pattern: str, max_items: int) -> Schema:
    return {
        "type": "object",
        "description": f"{description} Keys match `{key_pattern}`; at most {max_items} entries.",
        "additionalProperties": {"type": "string", "maxLength": jobspec.MAX_VALUE},
        "maxProperties": max_items,
    }


def page_of(item: str) -> Schema:
    """A list answer (params.page_json): one page of ``item`` and where it lies."""
    return obj(
        {
            "items": {"type": "array", "items": ref(item)},
            "total": integer(
                "Matches across all pages; null only for an empty page past the first (the "
                "count is read together with the page). Histories (runs, DAG runs, audit "
                "entries) count up to 10,000 or the end of the page asked for, whichever is "
                "further; past that, see `total_exact`.",
                nullable=True,
            ),
            "total_exact": {
                "type": "boolean",
                "description": "False when the count stopped early: more than `total` match.",
            },
            "limit": integer(),
            "offset": integer(),
        }
    )


def masked_secrets() -> Schema:
    """``secret_env`` in an answer: names only, every value the mask."""
    return {
        "type": "object",
        "description": "Names of the secret variables; every value is `***`.",
        "additionalProperties": string(enum=[jobspec.SECRET_MASK]),
    }


def duration(description: str, maximum: float, default: str) -> Schema:
    """Seconds as a number, or a Go-style string (``90s``, ``5m``, ``1h30m``, ``250ms``)."""
    return {
        "description": (
            f"{description} A duration: seconds as a number, or a string such as `90s`, `5m`, "
            f"`1h30m` (units d, h, m, s, ms). At most {maximum:g} s. Default {default}; "
            "null means the default."
        ),
        "oneOf": [
            {"type": "number", "minimum": 0, "maximum": maximum, "nullable": True},
            {"type": "string", "pattern": DURATION_PATTERN, "example": "90s"},
        ],
    }


def job_input_properties() -> dict[str, Schema]:
    """The fields common/jobspec.validate_job accepts, with its limits."""
    return {
        "name": string(
            "Unique among live jobs. Letters, digits, `.`, `_`, `-`; not all digits.",
            pattern=jobspec.NAME_RE.pattern,
            maxLength=200,
            example="backup",
        ),
        "description": string("Free text; null means empty.", maxLength=2000, nullable=True),
        "schedule": string(
            "5-field cron, 6-field cron with seconds first, a macro (`@hourly`, `@daily`, "
            "`@weekly`, `@monthly`, `@yearly`, `@minutely`, `@secondly`) or `@every <duration>`.",
            minLength=1,
            maxLength=200,
            example="*/30 * * * * *",
        ),
        "timezone": string(
            "IANA time zone of the schedule; null or empty means UTC.",
            nullable=True,
            maxLength=jobspec.MAX_TIMEZONE,
            default="UTC",
            example="Europe/Berlin",
        ),
        "command": string(
            "Run by `/bin/sh -c` when `args` is absent, else the executable. With "
            "CHRONORAFT_ALLOWED_COMMANDS set, the executable (or the shell command's first "
            "word) must match the namespace's allowlist, and a shell command may not chain "
            "commands; otherwise 400 naming `command`.",
            minLength=1,
            maxLength=jobspec.MAX_COMMAND,
            example="echo backing up $CHRONORAFT_RUN_ID",
        ),
        "args": {
            "type": "array",
            "description": "Arguments of `command`, no shell; null runs `command` in a shell.",
            "items": {"type": "string", "maxLength": jobspec.MAX_VALUE},
            "maxItems": jobspec.MAX_ARGS,
            "nullable": True,
        },
        "env": {
            **string_map(
                "Added to a minimal environment.", jobspec.ENV_KEY_RE.pattern, jobspec.MAX_ENV
            ),
            "nullable": True,
        },
        "secret_env": {
            **string_map(
                "Like `env`, but stored apart, passed only to the process and shown as `***` "
                "in every answer. Sending `***` keeps the stored value of that name (so a "
                "job read from the API can be written back). A name may not be in both `env` "
                f"and `secret_env`; together at most {jobspec.MAX_ENV} entries.",
                jobspec.ENV_KEY_RE.pattern,
                jobspec.MAX_ENV,
            ),
            "nullable": True,
        },
        "cwd": string(
            "Absolute working directory; null means the worker's.",
            pattern="^/",
            maxLength=4096,
            nullable=True,
        ),
        "timeout": duration(
            "Kill the run after this; 0 means no timeout.", jobspec.MAX_TIMEOUT, "0"
        ),
        "max_retries": integer(
            "Retries after a failed or timed-out attempt.",
            minimum=0,
            maximum=jobspec.MAX_RETRIES,
            default=0,
            nullable=True,
        ),
        "retry_backoff": duration(
            "Base of the exponential back-off between attempts.", jobspec.MAX_BACKOFF, "10"
        ),
        "labels": {
            **string_map(
                "Worker selector: every pair must match the worker's labels.",
                jobspec.LABEL_RE.pattern,
                jobspec.MAX_LABELS,
            ),
            "nullable": True,
        },
        "paused": {"type": "boolean", "default": False},
        "catchup_window": duration(
            "Missed slots younger than this run late; older ones are recorded `skipped`.",
            jobspec.MAX_CATCHUP,
            "CHRONORAFT_DEFAULT_CATCHUP_WINDOW (60)",
        ),
        "overlap": string(
            "What a new slot does while an earlier run is active: run anyway (`allow`), be "
            "recorded skipped (`skip`, alias `forbid`), wait keeping only the newest waiting "
            "slot (`buffer_one`), wait in slot order (`buffer_all`), or cancel the active run "
            "(`cancel_other`, alias `replace`). Case-insensitive; null means `allow`.",
            enum=[p.value for p in OverlapPolicy] + list(OVERLAP_ALIASES),
            default=OverlapPolicy.ALLOW.value,
            nullable=True,
        ),
        "catchup": string(
            "Inside the catch-up window: replay every missed slot, only the newest, or none.",
            enum=[m.value for m in CatchupMode],
            default=CatchupMode.ALL.value,
            nullable=True,
        ),
        "max_concurrency": integer(
            "Active runs of this job at once (with `allow`); 0 means no cap.",
            minimum=0,
            maximum=jobspec.MAX_CONCURRENCY,
            default=0,
            nullable=True,
        ),
    }


def job_output_properties() -> dict[str, Schema]:
    """The fields of common/jobspec.to_api: durations come back as seconds."""
    seconds = {"type": "number", "description": "Seconds."}
    return {
        "name": string(),
        "description": string(),
        "schedule": string(),
        "timezone": string(),
        "command": string(),
        "args": {"type": "array", "items": string(), "nullable": True},
        "env": {"type": "object", "additionalProperties": string()},
        "secret_env": masked_secrets(),
        "cwd": string(nullable=True),
        "timeout": seconds,
        "max_retries": integer(),
        "retry_backoff": seconds,
        "labels": {"type": "object", "additionalProperties": string()},
        "paused": {"type": "boolean"},
        "catchup_window": seconds,
        "overlap": string(enum=[p.value for p in OverlapPolicy]),
        "catchup": string(enum=[m.value for m in CatchupMode]),
        "max_concurrency": integer(),
    }


RUN_STATES = [s.value for s in RunState]


def schemas() -> dict[str, Schema]:
    job_input = job_input_properties()
    run_props: dict[str, Schema] = {
        "id": integer(),
        "job_id": integer(),
        "job_name": string(),
        "trigger": string(enum=list(RUN_TRIGGERS)),
        "state": string(enum=RUN_STATES),
        "late": {"type": "boolean", "description": "Fired after its slot (catch-up)."},
        "attempt": integer("Current attempt, from 1."),
        "max_retries": integer(),
        "worker_id": string(nullable=True),
        "epoch": integer("Leadership epoch that dispatched it.", nullable=True),
        "exit_code": integer(nullable=True),
        "output_truncated": {"type": "boolean"},
        "error": string(nullable=True),
        "scheduled_for": timestamp("The slot."),
        "created_at": timestamp(),
        "dispatched_at": timestamp(nullable=True),
        "started_at": timestamp(nullable=True),
        "finished_at": timestamp(nullable=True),
        "duration_seconds": {"type": "number", "nullable": True},
        "dag_run_id": integer("Its DAG run, when it is a DAG node.", nullable=True),
    }
    attempt_props: dict[str, Schema] = {
        "attempt": integer(),
        "worker_id": string(nullable=True),
        "epoch": integer(nullable=True),
        "state": string(),
        "dispatched_at": timestamp(nullable=True),
        "started_at": timestamp(nullable=True),
        "finished_at": timestamp(nullable=True),
        "exit_code": integer(nullable=True),
        "output": string("Last bytes of the output.", nullable=True),
        "output_truncated": {"type": "boolean"},
        "error": string(nullable=True),
    }
    worker_props: dict[str, Schema] = {
        "id": string(),
        "address": string(),
        "labels": {"type": "object", "additionalProperties": string()},
        "capacity": integer(),
        "running": integer(),
        "version": string(),
        "draining": {"type": "boolean"},
        "allowed_commands": {
            "type": "array",
            "items": string(),
            "nullable": True,
            "description": (
                "The worker's command allowlist (CHRONORAFT_WORKER_ALLOWED_COMMANDS) as its "
                "last heartbeat reported it; the leader places a cmd run only on a worker "
                "whose list allows its command. null: no allowlist, every command runs there."
            ),
        },
        "alive": {"type": "boolean", "description": "Heartbeat within the worker lease."},
        "registered_at": timestamp(),
        "last_heartbeat": timestamp(),
    }

    return {
        "Error": obj(
            {
                "error": obj(
                    {
                        "code": string(
                            "Stable machine-readable code, e.g. invalid_field, not_found, "
                            "conflict, invalid_transition, body_too_large, unauthorized, "
                            "forbidden, database_unavailable, invalid_value, internal_error.",
                            example="invalid_field",
                        ),
                        "message": string("For people; starts with the field when one is."),
                        "field": string("The offending field or parameter, when one is."),
                    },
                    required=("code", "message"),
                )
            }
        ),
        "JobCreate": {
            **obj(job_input, required=jobspec.REQUIRED),
            "additionalProperties": False,
            "description": "A whole job definition (POST, PUT). Unknown fields are refused.",
            "example": {
                "name": "backup",
                "schedule": "*/30 * * * * *",
                "command": "echo backing up $CHRONORAFT_RUN_ID",
                "timeout": "5m",
                "max_retries": 2,
                "retry_backoff": "10s",
            },
        },
        "JobPatch": {
            "type": "object",
            "properties": job_input,
            "minProperties": 1,
            "additionalProperties": False,
            "description": "Fields merged over the stored job (PATCH); null resets a field "
            "to its default.",
            "example": {"schedule": "@every 1m"},
        },
        "Job": obj(
            {
                "id": integer(),
                **job_output_properties(),
                "next_run_at": timestamp("Next slot; null while paused.", nullable=True),
                "version": integer("Incremented by every write."),
                "counters": obj(
                    {
                        "missed": integer(
                            "Slots skipped by the catch-up rules or not started within the "
                            "catch-up window."
                        ),
                        "skipped_by_overlap": integer(),
                        "buffer_dropped": integer(),
                    }
                ),
                "created_at": timestamp(),
                "updated_at": timestamp(),
                "last_run": {
                    **obj(
                        {
                            "id": integer(),
                            "state": string(enum=RUN_STATES),
                            "finished_at": timestamp(nullable=True),
                        }
                    ),
                    "nullable": True,
                    "description": "Newest run, in list responses only; null before any run.",
                },
            },
            required=tuple(
                ["id", *job_output_properties(), "next_run_at", "version", "counters"]
                + ["created_at", "updated_at"]
            ),
        ),
        "JobList": page_of("Job"),
        "JobDeleted": obj({"deleted": integer("Id of the deleted job; its runs stay.")}),
        "BackfillRequest": {
            **obj(
                {
                    "start": timestamp("First instant of the range (RFC 3339 with an offset)."),
                    "end": timestamp("Last instant; after start and not in the future."),
                    "rate": {
                        "type": "number",
                        "exclusiveMinimum": True,
                        "minimum": 0,
                        "maximum": BACKFILL_RATE_MAX,
                        "default": BACKFILL_RATE_DEFAULT,
                        "description": "Runs started per second at most.",
                    },
                },
                required=("start", "end"),
            ),
            "additionalProperties": False,
            "description": f"Every slot of [start, end] once; at most {BACKFILL_MAX_SLOTS} slots.",
        },
        "BackfillResult": obj(
            {
                "job_id": integer(),
                "slots": integer("Slots in the range."),
                "created": integer("Runs created now."),
                "existing": integer("Slots that already had a run (left alone)."),
                "rate": {"type": "number"},
            }
        ),
        "Run": obj(run_props),
        "RunDetail": obj(
            {
                **run_props,
                "output": string("Last bytes of the latest attempt's output.", nullable=True),
                "cancel_requested": {"type": "boolean"},
                "attempts": {"type": "array", "items": ref("Attempt")},
            }
        ),
        "Attempt": obj(attempt_props),
        "RunList": page_of("Run"),
        "CancelResult": obj(
            {
                "id": integer(),
                "state": string(
                    "`cancelled` at once for a pending run; `cancelling` while the leader "
                    "kills an active one.",
                    enum=["cancelled", "cancelling"],
                ),
            }
        ),
        "Worker": obj(worker_props),
        "WorkerList": obj({"items": {"type": "array", "items": ref("Worker")}}),
        "Cluster": obj(
            {
                "node": obj(
                    {
                        "id": string(),
                        "role": string(enum=["leader", "follower", "candidate"]),
                        "pid": integer(),
                        "version": string(),
                        "started_at": timestamp(),
                        "http": string(),
                        "grpc": string(),
                        "raft": string(),
                        "leading_epoch": integer(nullable=True),
                    }
                ),
                "raft": obj(
                    {
                        "role": string(enum=["leader", "follower", "candidate"]),
                        "term": integer(),
                        "leader": string(nullable=True),
                        "has_quorum": {"type": "boolean"},
                    }
                ),
                "leader": obj(
                    {
                        "node_id": string(nullable=True),
                        "epoch": integer(nullable=True),
                        "since": timestamp(nullable=True),
                    }
                ),
                "epoch": integer("Current leadership epoch per PostgreSQL.", nullable=True),
                "peers": {
                    "type": "array",
                    "items": obj({"raft": string(), "connected": {"type": "boolean"}}),
                },
                "workers": {"type": "array", "items": ref("Worker")},
                "workers_lost": {"type": "array", "items": ref("Worker")},
                "leadership_history": {
                    "type": "array",
                    "items": obj(
                        {"epoch": integer(), "node_id": string(), "claimed_at": timestamp()}
                    ),
                },
            }
        ),
        "Health": obj({"status": string(enum=["ok"]), "node_id": string()}),
        "Ready": obj(
            {
                "status": string(enum=["ready", "not ready"]),
                "checks": obj(
                    {
                        "database": string("`ok` or `unavailable: <reason>`."),
                        "raft": string("`ok` or `no leader known`."),
                    }
                ),
            }
        ),
    }


# ----- parameters, responses, operations -----


def parameters() -> dict[str, Schema]:
    def query(name: str, description: str, schema: Schema) -> Schema:
        return {
            "name": name,
            "in": "query",
            "required": False,
            "description": description,
            "schema": schema,
        }

    return {
        "ref": {
            "name": "ref",
            "in": "path",
            "required": True,
            "description": "Job id (all digits) or job name.",
            "schema": string(example="backup"),
        },
        "id": {
            "name": "id",
            "in": "path",
            "required": True,
            "description": "Run id.",
            "schema": integer(minimum=0),
        },
        "limit": query(
            "limit",
            "Page size.",
            integer(minimum=1, maximum=PAGE_LIMIT_MAX, default=PAGE_LIMIT_DEFAULT),
        ),
        "offset": query(
            "offset", "Items to skip.", integer(minimum=0, maximum=PAGE_OFFSET_MAX, default=0)
        ),
        "job_status": query(
            "status", "Only active or only paused jobs.", string(enum=["active", "paused"])
        ),
        "q": query("q", "Substring of the job name (case-insensitive).", string()),
        "job_id": query("job_id", "Runs of this job id.", integer(minimum=1, maximum=2**62)),
        "run_status": query("status", "Runs in this state.", string(enum=RUN_STATES)),
        "run_state": query(
            "state", "Alias of `status` (used when `status` is absent).", string(enum=RUN_STATES)
        ),
        "since": query(
            "since",
            "Runs whose slot is at or after this RFC 3339 time (with an offset).",
            timestamp(),
        ),
        "until": query(
            "until",
            "Runs whose slot is before this RFC 3339 time (with an offset).",
            timestamp(),
        ),
    }


ERRORS: dict[str, tuple[str, str, str]] = {
    # status: (component name, description, example code)
    "400": ("BadRequest", "Invalid input; `field` names it.", "invalid_field"),
    "401": (
        "Unauthorized",
        "No bearer token, or an unknown one (`WWW-Authenticate: Bearer`).",
        "unauthorized",
    ),
    "403": ("Forbidden", "The token's role may not do this (needs admin).", "forbidden"),
    "404": ("NotFound", "No such job or run.", "not_found"),
    "409": ("Conflict", "Duplicate name or a state that forbids the request.", "conflict"),
    "413": ("TooLarge", "Body over CHRONORAFT_MAX_REQUEST_BYTES.", "body_too_large"),
    "500": (
        "InternalError",
        "Unexpected failure; details in the controller log.",
        "internal_error",
    ),
    "503": ("Unavailable", "PostgreSQL is unreachable.", "database_unavailable"),
}


def error_responses() -> dict[str, Schema]:
    return {
        name: {
            "description": description,
            "content": {
                "application/json": {
                    "schema": ref("Error"),
                    "example": {"error": {"code": code, "message": description}},
                }
            },
        }
        for name, description, code in ERRORS.values()
    }


def json_response(description: str, schema: Schema) -> Schema:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def operation(
    operation_id: str,
    tag: str,
    summary: str,
    responses: dict[str, Schema],
    *,
    params: tuple[str, ...] = (),
    body: str | None = None,
    errors: tuple[int, ...] = (),
) -> Schema:
    op: Schema = {"operationId": operation_id, "tags": [tag], "summary": summary}
    if params:
        op["parameters"] = [{"$ref": f"#/components/parameters/{p}"} for p in params]
    if body:
        op["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": ref(body)}},
        }
    op["responses"] = {
        **responses,
        **{str(s): {"$ref": f"#/components/responses/{ERRORS[str(s)][0]}"} for s in sorted(errors)},
    }
    return op


DB = (500, 503)  # every handler that reads PostgreSQL
BODY = (400, 413)


def paths() -> dict[str, Schema]:
    job = json_response("The job.", ref("Job"))
    return {
        "/api/v1/jobs": {
            "get": operation(
                "listJobs",
                "jobs",
                "List jobs, oldest first.",
                {"200": json_response("A page of jobs.", ref("JobList"))},
                params=("limit", "offset", "job_status", "q"),
                errors=(400, *DB),
            ),
            "post": operation(
                "createJob",
                "jobs",
                "Create a job.",
                {"201": json_response("Created.", ref("Job"))},
                body="JobCreate",
                errors=(*BODY, 409, *DB),
            ),
        },
        "/api/v1/jobs/{ref}": {
            "get": operation(
                "getJob",
                "jobs",
                "One job, with its next run time.",
                {
                    "200": json_response(
                        "The cron job, or the DAG job (role `dag`) with this id.",
                        {"oneOf": [ref("Job"), ref("DagJob")]},
                    )
                },
                params=("ref",),
                errors=(404, *DB),
            ),
            "put": operation(
                "replaceJob",
                "jobs",
                "Replace a job definition (omitted fields get defaults).",
                {"200": job},
                params=("ref",),
                body="JobCreate",
                errors=(*BODY, 404, 409, *DB),
            ),
            "patch": operation(
                "patchJob",
                "jobs",
                "Change some fields of a job.",
                {"200": job},
                params=("ref",),
                body="JobPatch",
                errors=(*BODY, 404, 409, *DB),
            ),
            "delete": operation(
                "deleteJob",
                "jobs",
                "Delete a job; its run history stays.",
                {"200": json_response("Deleted.", ref("JobDeleted"))},
                params=("ref",),
                errors=(404, 409, *DB),
            ),
        },
        "/api/v1/jobs/{ref}/pause": {
            "post": operation(
                "pauseJob",
                "jobs",
                "Stop firing slots until resumed.",
                {"200": job},
                params=("ref",),
                errors=(404, 409, *DB),
            ),
        },
        "/api/v1/jobs/{ref}/resume": {
            "post": operation(
                "resumeJob",
                "jobs",
                "Fire again from the next slot on.",
                {"200": job},
                params=("ref",),
                errors=(404, 409, *DB),
            ),
        },
        "/api/v1/jobs/{ref}/trigger": {
            "post": operation(
                "triggerJob",
                "jobs",
                "Run once now (trigger `manual`).",
                {"201": json_response("The new run.", ref("Run"))},
                params=("ref",),
                errors=(404, 409, *DB),
            ),
        },
        "/api/v1/jobs/{ref}/backfill": {
            "post": operation(
                "backfillJob",
                "jobs",
                "Replay the slots of a past range, each once, at a bounded rate.",
                {"202": json_response("Runs created (or already there).", ref("BackfillResult"))},
                params=("ref",),
                body="BackfillRequest",
                errors=(*BODY, 404, 409, *DB),
            ),
        },
        "/api/v1/runs": {
            "get": operation(
                "listRuns",
                "runs",
                "Search the run history, newest first.",
                {"200": json_response("A page of runs.", ref("RunList"))},
                params=("limit", "offset", "job_id", "run_status", "run_state", "since", "until"),
                errors=(400, *DB),
            ),
        },
        "/api/v1/runs/{id}": {
            "get": operation(
                "getRun",
                "runs",
                "One run with its attempts and output.",
                {"200": json_response("The run.", ref("RunDetail"))},
                params=("id",),
                errors=(400, 404, *DB),
            ),
        },
        "/api/v1/runs/{id}/cancel": {
            "post": operation(
                "cancelRun",
                "runs",
                "Cancel a pending run, or ask the leader to kill an active one.",
                {
                    "200": json_response("Cancelled (it was pending).", ref("CancelResult")),
                    "202": json_response("Cancelling (it is active).", ref("CancelResult")),
                },
                params=("id",),
                errors=(400, 404, 409, *DB),
            ),
        },
        "/api/v1/cluster": {
            "get": operation(
                "getCluster",
                "cluster",
                "This node, its Raft view, the leader and epoch, peers and workers.",
                {"200": json_response("The cluster as this node sees it.", ref("Cluster"))},
                errors=DB,
            ),
        },
        "/api/v1/workers": {
            "get": operation(
                "listWorkers",
                "cluster",
                "Every registered worker, alive or lost.",
                {"200": json_response("Workers.", ref("WorkerList"))},
                errors=DB,
            ),
        },
        "/healthz": {
            "get": operation(
                "healthz",
                "operations",
                "Liveness: the process answers.",
                {"200": json_response("Alive.", ref("Health"))},
            ),
        },
        "/readyz": {
            "get": operation(
                "readyz",
                "operations",
                "Readiness: PostgreSQL answers and Raft has a state.",
                {
                    "200": json_response("Ready.", ref("Ready")),
                    "503": json_response("Not ready; `checks` says why.", ref("Ready")),
                },
            ),
        },
        "/metrics": {
            "get": operation(
                "metrics",
                "operations",
                "Prometheus metrics of this controller.",
                {
                    "200": {
                        "description": "Prometheus text exposition format.",
                        "content": {"text/plain": {"schema": string()}},
                    }
                },
            ),
        },
        OPENAPI_PATH: {
            "get": operation(
                "openapi",
                "docs",
                "This document.",
                {"200": json_response("OpenAPI 3.0 document.", {"type": "object"})},
            ),
        },
        DOCS_PATH: {
            "get": operation(
                "docs",
                "docs",
                "Swagger UI for this document.",
                {
                    "200": {
                        "description": "HTML page.",
                        "content": {"text/html": {"schema": string()}},
                    }
                },
            ),
        },
        DOCS_PATH + "/": {
            "get": operation(
                "docsSlash",
                "docs",
                "Redirect to the Swagger UI page.",
                {"301": {"description": f"To {DOCS_PATH}."}},
            ),
        },
        DOCS_PATH + "/{asset}": {
            "get": static_asset(
                "docsAsset", "docs", "the Swagger UI page", example="swagger-ui-bundle.js"
            ),
        },
        **dashboard_paths(),
    }


def static_asset(operation_id: str, tag: str, page: str, *, example: str) -> Schema:
    """GET of one static file (``{asset}`` in the path) belonging to ``page``."""
    return {
        **operation(
            operation_id,
            tag,
            f"A static file of {page}.",
            {
                "200": {
                    "description": "The file.",
                    "content": {"*/*": {"schema": string(format="binary")}},
                }
            },
            errors=(404,),
        ),
        "parameters": [
            {"name": "asset", "in": "path", "required": True, "schema": string(example=example)}
        ],
    }


def dashboard_paths() -> dict[str, Schema]:
    """The web dashboard (controller/dashboard): an HTML page and its static files."""
    html = {"description": "HTML page.", "content": {"text/html": {"schema": string()}}}
    return {
        "/": {
            "get": operation(
                "dashboard", "dashboard", "The web dashboard (reads this API).", {"200": html}
            ),
        },
        "/static/{asset}": {
            "get": static_asset("dashboardAsset", "dashboard", "the dashboard", example="app.js"),
        },
    }


def audit_schemas() -> dict[str, Schema]:
    return {
        "AuditEntry": obj(
            {
                "id": integer(),
                "at": timestamp("When the write was answered."),
                "actor": string("Name of the API token (`anonymous` in insecure dev mode)."),
                "role": string(enum=list(access.ROLES)),
                "action": string(
                    "`<target type>.<verb>`: verbs create, replace, update, delete, or the "
                    "action of the route (pause, resume, trigger, backfill, cancel, ...).",
                    example="job.pause",
                ),
                "method": string(example="POST"),
                "path": string(example="/api/v1/jobs/backup/pause"),
                "target_type": string(nullable=True, example="job"),
                "target_id": string(
                    "The id or name from the path, or the id of what was created.",
                    nullable=True,
                ),
                "status": integer("HTTP status of the answer."),
                "detail": {
                    "type": "object",
                    "description": "Path parameters (`params`), the names (never the values) "
                    "of the body's fields (`fields`), and the id in the answer (`result_id`).",
                },
            }
        ),
        "AuditList": page_of("AuditEntry"),
    }


def audit_parameters() -> dict[str, Schema]:
    def query(name: str, description: str, schema: Schema) -> Schema:
        return {
            "name": name,
            "in": "query",
            "required": False,
            "description": description,
            "schema": schema,
        }

    return {
        "audit_actor": query("actor", "Only writes by this token name.", string(maxLength=64)),
        "audit_action": query(
            "action", "Only this action, e.g. `job.delete`.", string(maxLength=100)
        ),
        "audit_since": query("since", "Only writes at or after this RFC 3339 time.", timestamp()),
    }


def audit_paths() -> dict[str, Schema]:
    return {
        "/api/v1/audit": {
            "get": operation(
                "listAudit",
                "audit",
                "Who created, changed, triggered, paused or deleted what, newest first "
                "(admin only).",
                {"200": json_response("A page of audit entries.", ref("AuditList"))},
                params=("limit", "offset", "audit_actor", "audit_action", "audit_since"),
                errors=(400, *DB),
            ),
        },
    }


def secured(all_paths: dict[str, Schema]) -> dict[str, Schema]:
    """Mark every operation with what controller/api/access.py asks of it: public ones get
    ``security: []``; the rest document 401, and 403 when they need the admin role."""
    for path, item in all_paths.items():
        for method, op in item.items():
            role = access.needed_role(method, path, protect_ops=False)
            if role is None:
                op["security"] = []
                continue
            statuses = ("401", "403") if role == access.ADMIN else ("401",)
            for status in statuses:
                op["responses"][status] = {"$ref": f"#/components/responses/{ERRORS[status][0]}"}
            op["description"] = f"Needs a token with the {role} role."
    return all_paths


def build_document() -> dict[str, Any]:
    """The whole OpenAPI document as plain JSON-ready data."""
    from controller.api import openapi_dags  # here: it is built on this module's helpers

    return {
        "openapi": "3.0.3",
        "info": {
            "title": "chronoraft",
            "version": version(),
            "description": (
                "REST API of a chronoraft controller. Every controller serves the same API and "
                "accepts writes, also followers. Errors are "
                '`{"error": {"code", "message", "field"}}`. Times are RFC 3339 with an offset. '
                "Send `Authorization: Bearer <token>`: reads need a token with the read or admin "
                "role, writes (and the audit trail) the admin role; health, readiness, metrics, "
                "this document and the dashboard page are open."
            ),
            "license": {"name": "Apache-2.0"},
        },
        "tags": [
            {"name": "jobs", "description": "Cron job definitions."},
            {"name": "runs", "description": "Run history, one run per slot with its attempts."},
            {"name": "cluster", "description": "Raft, leadership and the worker fleet."},
            {"name": "operations", "description": "Health, readiness and metrics."},
            {"name": "docs", "description": "This document and its Swagger UI."},
            {"name": "dashboard", "description": "The web dashboard served at /."},
            {"name": "audit", "description": "Who changed what, and when."},
            *openapi_dags.TAGS,
        ],
        "paths": secured({**paths(), **audit_paths(), **openapi_dags.paths()}),
        "security": [{"bearerAuth": []}],
        "components": {
            "schemas": {**schemas(), **audit_schemas(), **openapi_dags.schemas()},
            "parameters": {**parameters(), **audit_parameters(), **openapi_dags.parameters()},
            "responses": error_responses(),
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An API token from CHRONORAFT_API_TOKENS or "
                    "CHRONORAFT_API_TOKENS_FILE (`chronoraft up` prints one).",
                }
            },
        },
    }


# ----- handlers -----

routes = web.RouteTableDef()

DOCS_PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>chronoraft API</title>
  <link rel="stylesheet" href="docs/swagger-ui.css">
  <link rel="icon" type="image/png" href="docs/favicon-32x32.png">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="docs/swagger-ui-bundle.js"></script>
  <script>
    window.ui = SwaggerUIBundle({
      url: "v1/openapi.json",
      dom_id: "#swagger-ui",
      deepLinking: true,
      presets: [SwaggerUIBundle.presets.apis],
      layout: "BaseLayout"
    });
  </script>
</body>
</html>
"""
"""Relative links, so the page also works behind a proxy that adds a path prefix."""


def swagger_ui_dir() -> Path | None:
    """The Swagger UI files of the ``swagger-ui-bundle`` package, if it is installed."""
    try:
        from swagger_ui_bundle import swagger_ui_path
    except ImportError:
        return None
    return Path(str(swagger_ui_path))


@routes.get(OPENAPI_PATH)
async def openapi_json(request: web.Request) -> web.Response:
    return web.json_response(build_document())


@routes.get(DOCS_PATH)
async def docs(request: web.Request) -> web.Response:
    return web.Response(text=DOCS_PAGE, content_type="text/html")


@routes.get(DOCS_PATH + "/")
async def docs_slash(request: web.Request) -> web.Response:
    raise web.HTTPMovedPermanently(DOCS_PATH)


@routes.get(DOCS_PATH + "/{asset}")
async def docs_asset(request: web.Request) -> web.StreamResponse:
    """Only names listed in the package's folder: no path from the client reaches the disk."""
    folder = swagger_ui_dir()
    name = request.match_info["asset"]
    if folder is None:
        raise web.HTTPNotFound(text="Swagger UI files are not installed (swagger-ui-bundle)")
    files = {p.name: p for p in folder.iterdir() if p.is_file()}
    if name not in files:
        raise web.HTTPNotFound(text=f"{name}: no such Swagger UI file")
    return web.FileResponse(files[name])

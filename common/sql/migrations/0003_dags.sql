-- DAG workflows: namespaces, immutable versioned definitions, DAGs of jobs with edges,
-- DAG runs whose nodes are ordinary runs (same dispatcher, workers, retries and reaper),
-- and *_history tables that prune moves finished rows into.

CREATE TABLE namespaces (
    name        text PRIMARY KEY,
    description text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now(),
    deleted_at  timestamptz
);
INSERT INTO namespaces (name, description) VALUES ('default', 'the namespace of cron jobs');

-- A definition version is never changed: an update inserts version N+1 and marks the old
-- one deleted; DAG jobs keep pointing at the version they were built from.
CREATE TABLE definitions (
    id                     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    namespace              text NOT NULL REFERENCES namespaces (name),
    name                   text NOT NULL,
    version                integer NOT NULL,
    kind                   text NOT NULL CHECK (kind IN ('cmd', 'http', 'binary')),
    description            text NOT NULL DEFAULT '',
    command                text NOT NULL DEFAULT '',
    args                   jsonb,
    env                    jsonb NOT NULL DEFAULT '{}',
    cwd                    text,
    http                   jsonb,
    timeout_seconds        double precision NOT NULL DEFAULT 0,
    max_retries            integer NOT NULL DEFAULT 0,
    retry_backoff_seconds  double precision NOT NULL DEFAULT 10,
    delay_interval_seconds double precision NOT NULL DEFAULT 0,
    cron_spec              text,
    timezone               text NOT NULL DEFAULT 'UTC',
    labels                 jsonb NOT NULL DEFAULT '{}',
    created_at             timestamptz NOT NULL DEFAULT now(),
    deleted_at             timestamptz,
    UNIQUE (namespace, name, version)
);
CREATE UNIQUE INDEX definitions_live ON definitions (namespace, name) WHERE deleted_at IS NULL;

-- Jobs: a cron job (role 'cron', incl. one scheduled from a definition's cron_spec) or a
-- definition version placed in DAGs (role 'dag'). Both run through the same runs table.
ALTER TABLE jobs
    ADD COLUMN namespace text NOT NULL DEFAULT 'default' REFERENCES namespaces (name),
    ADD COLUMN role text NOT NULL DEFAULT 'cron' CHECK (role IN ('cron', 'dag')),
    ADD COLUMN kind text NOT NULL DEFAULT 'cmd' CHECK (kind IN ('cmd', 'http', 'binary')),
    ADD COLUMN http jsonb,
    ADD COLUMN definition_id bigint REFERENCES definitions (id),
    ADD COLUMN priority integer NOT NULL DEFAULT 0,
    ADD COLUMN payload jsonb,
    ADD COLUMN delay_interval_seconds double precision NOT NULL DEFAULT 0;
DROP INDEX jobs_name_live;
CREATE UNIQUE INDEX jobs_name_live ON jobs (name) WHERE deleted_at IS NULL AND role = 'cron';
DROP INDEX jobs_schedulable;
CREATE INDEX jobs_schedulable ON jobs (id) WHERE deleted_at IS NULL AND NOT paused AND role = 'cron';
CREATE INDEX jobs_definition ON jobs (definition_id) WHERE definition_id IS NOT NULL;

CREATE TABLE dags (
    id                     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    namespace              text NOT NULL REFERENCES namespaces (name),
    name                   text NOT NULL,
    version                integer NOT NULL DEFAULT 1,
    description            text NOT NULL DEFAULT '',
    schedule               text,
    timezone               text NOT NULL DEFAULT 'UTC',
    paused                 boolean NOT NULL DEFAULT false,
    catchup_window_seconds double precision NOT NULL DEFAULT 60,
    next_fire_at           timestamptz,
    one_shot               boolean NOT NULL DEFAULT false,  -- made by POST /workflows
    created_at             timestamptz NOT NULL DEFAULT now(),
    updated_at             timestamptz NOT NULL DEFAULT now(),
    deleted_at             timestamptz
);
CREATE UNIQUE INDEX dags_live ON dags (namespace, name) WHERE deleted_at IS NULL;
CREATE INDEX dags_schedulable ON dags (id)
    WHERE deleted_at IS NULL AND NOT paused AND schedule IS NOT NULL;

-- A job may be shared by several DAGs.
CREATE TABLE dag_jobs (
    dag_id   bigint NOT NULL REFERENCES dags (id),
    job_id   bigint NOT NULL REFERENCES jobs (id),
    added_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (dag_id, job_id)
);
CREATE INDEX dag_jobs_job ON dag_jobs (job_id);

CREATE TABLE dependencies (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    dag_id          bigint NOT NULL REFERENCES dags (id),
    parent_job_id   bigint NOT NULL REFERENCES jobs (id),
    child_job_id    bigint NOT NULL REFERENCES jobs (id),
    dependency_type text NOT NULL DEFAULT 'data' CHECK (dependency_type IN ('data', 'order-only')),
    created_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (dag_id, parent_job_id, child_job_id),
    CHECK (parent_job_id <> child_job_id)
);

-- One run of a whole DAG. ``edges`` is the graph as it was when the run started, so edits
-- to the DAG never change a run in flight. No foreign key to dags: runs outlive pruning.
CREATE TABLE dag_runs (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    dag_id          bigint NOT NULL,
    dag_version     integer NOT NULL,
    namespace       text NOT NULL,
    state           text NOT NULL DEFAULT 'running'
                        CHECK (state IN ('running', 'succeeded', 'failed', 'cancelled', 'skipped')),
    trigger         text NOT NULL
                        CHECK (trigger IN ('manual', 'schedule', 'catchup', 'workflow')),
    idempotency_key text,
    request_hash    text,
    scheduled_for   timestamptz NOT NULL DEFAULT now(),
    edges           jsonb NOT NULL DEFAULT '[]',
    error           text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz
);
CREATE UNIQUE INDEX dag_runs_one_per_slot ON dag_runs (dag_id, scheduled_for)
    WHERE trigger IN ('schedule', 'catchup');
CREATE UNIQUE INDEX dag_runs_idempotency ON dag_runs (dag_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL AND trigger <> 'workflow';
CREATE UNIQUE INDEX dag_runs_workflow_idempotency ON dag_runs (namespace, idempotency_key)
    WHERE idempotency_key IS NOT NULL AND trigger = 'workflow';
CREATE INDEX dag_runs_running ON dag_runs (id) WHERE state = 'running';
CREATE INDEX dag_runs_dag_recent ON dag_runs (dag_id, id DESC);

-- DAG nodes are runs: 'waiting' until the leader finds their parents done,
-- 'upstream_failed' when a parent failed for good.
ALTER TABLE runs DROP CONSTRAINT runs_job_id_fkey;
ALTER TABLE runs
    ADD COLUMN dag_run_id bigint REFERENCES dag_runs (id),
    ADD COLUMN input jsonb,
    ADD COLUMN idempotency_key text,
    ADD COLUMN reused_run_id bigint;
ALTER TABLE runs DROP CONSTRAINT runs_state_check;
ALTER TABLE runs ADD CONSTRAINT runs_state_check
    CHECK (state IN ('waiting', 'pending', 'dispatched', 'running', 'succeeded', 'failed',
                     'timed_out', 'cancelled', 'skipped', 'upstream_failed'));
ALTER TABLE runs DROP CONSTRAINT runs_trigger_check;
ALTER TABLE runs ADD CONSTRAINT runs_trigger_check
    CHECK (trigger IN ('schedule', 'catchup', 'manual', 'backfill', 'dag'));
ALTER TABLE runs DROP CONSTRAINT runs_one_per_slot;
CREATE UNIQUE INDEX runs_one_per_slot ON runs (job_id, scheduled_for) WHERE dag_run_id IS NULL;
CREATE UNIQUE INDEX runs_one_per_dag_node ON runs (dag_run_id, job_id) WHERE dag_run_id IS NOT NULL;
CREATE INDEX runs_idempotency ON runs (idempotency_key) WHERE idempotency_key IS NOT NULL;

-- History: whole rows as JSON, so later columns never break the move (read back with
-- jsonb_populate_record).
CREATE TABLE definitions_history (id bigint PRIMARY KEY, row jsonb NOT NULL,
                                  pruned_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE dags_history (id bigint PRIMARY KEY, row jsonb NOT NULL,
                           pruned_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE jobs_history (id bigint PRIMARY KEY, row jsonb NOT NULL,
                           pruned_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE dependencies_history (id bigint PRIMARY KEY, row jsonb NOT NULL,
                                   pruned_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE dag_jobs_history (dag_id bigint NOT NULL, job_id bigint NOT NULL,
                               row jsonb NOT NULL, pruned_at timestamptz NOT NULL DEFAULT now(),
                               PRIMARY KEY (dag_id, job_id));
